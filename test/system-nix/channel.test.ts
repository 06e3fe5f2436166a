// The channel, nix-hold's own part whatever Nix builds: every kind of channel a caller can give
// (a socketpair, two pipes, stdin and stdout, and those as --command-fd and --status-fd), EOF as
// the release, garbage on it, descriptors that are not there, and how the process ends. A real
// build and a real collection on Debian's Nix; test/nix/cli.test.ts builds and holds on every Nix.

import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { demoCommand, holdsUntilEnded, unique, useNix } from '../helpers/nix.js'
import { CLI, startWrapper, type Mode } from '../helpers/wrapper.js'

const nix = useNix()

const demo = (n: string): string[] => demoCommand(n)

// on fd, test/nix/cli.test.ts does this on every Nix
describe.each<Mode>(['pipes', 'stdio', 'std-pipes'])('channel on %s', (mode) => {
  it('keeps the output through a GC while held, and lets the GC take it after {"release":true}', () => holdsUntilEnded(nix, demo(unique(mode)), mode))
})

it('releases when the caller closes the channel (EOF)', () => holdsUntilEnded(nix, demo(unique('eof')), 'fd', 'eof'))

it('answers garbage on the channel with protocol errors and keeps holding', async () => {
  const w = startWrapper(['--', ...demo(unique('garbage'))], nix.env)
  const built = (await w.next()).built!
  const bad = ['not json', '[1,2]', '"release"', '{"release":false}', '{"release":true,"extra":1}', '{"hello":1}', 'null']
  for (const line of bad) w.send(line)
  for (const _ of bad) expect((await w.next()).error?.kind).toBe('protocol')
  await nix.gc()
  expect(await nix.isValid(built[0]!)).toBe(true)
  w.send({ release: true })
  expect(await w.next()).toEqual({ released: true })
  expect((await w.exit).code).toBe(0)
})

it('exits 2 before building when --fd names a descriptor the caller did not pass', async () => {
  for (const fd of ['9', '5', '42']) {
    const r = spawnSync(process.execPath, [CLI, '--fd', fd, '--', ...demo(unique('nofd'))], { env: nix.env, encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(new RegExp(`--fd ${fd}: file descriptor ${fd} is not open`))
  }
})

it('takes one socket named as both --command-fd and --status-fd', async () => {
  const w = startWrapper(['--command-fd', '3', '--status-fd', '3', '--', ...demo(unique('samefd'))], nix.env, 'raw')
  const built = (await w.next()).built!
  expect(built).toHaveLength(1)
  w.send({ release: true })
  expect(await w.next()).toEqual({ released: true })
  expect((await w.exit).code).toBe(0)
})

it.each(['fd', 'stdio', 'pipes', 'std-pipes'] as const)('ends the channel and exits promptly after a release (%s)', async (mode) => {
  const w = startWrapper(['--', ...demo(unique(`exit-${mode}`))], nix.env, mode)
  await w.next()
  w.send({ release: true })
  expect(await w.next()).toEqual({ released: true })
  const released = Date.now()
  expect((await w.exit).code).toBe(0)
  // a stand-in for process.stdout that was never ended made --stdio wait out a whole second
  // between its last event and its exit
  expect(Date.now() - released).toBeLessThan(500)
})

it.each<[Mode, RegExp]>([
  ['stdio', /standard input reached EOF .*--stdio holds only while standard input stays open/],
  ['fd', /file descriptor 3 \(--fd\) reached EOF .*holds only while the caller keeps its end of the socket open/],
  ['pipes', /\(--command-fd\) reached EOF.*holds only while the caller keeps both pipes open/],
])('exits 4, not 0, when the caller closes the channel (%s) before anything is held, and says which end and what keeps it open', async (mode, why) => {
  const w = startWrapper(['--', ...demo(unique(`left-early-${mode}`))], nix.env, mode)
  w.end()
  expect((await w.exit).code).toBe(4)
  // the exit can be seen before the channel's last lines are read: only its end says none came
  await w.ended
  expect(w.received).toEqual([])
  expect(w.stderr()).toMatch(/the caller closed the channel before anything was held: /)
  expect(w.stderr()).toMatch(why)
})

it('says why it exits 4 under CI: --stdio with standard input at EOF from the start', async () => {
  const r = spawnSync(process.execPath, [CLI, '--stdio', '--', ...demo(unique('ci'))], { env: nix.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  expect(r.status).toBe(4)
  expect(r.stdout).toBe('')
  expect(r.stderr).toMatch(/standard input reached EOF .*--stdio holds only while standard input stays open/)
})
