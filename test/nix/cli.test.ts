// The whole product against a real isolated daemon: build, hold through GC, release.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { FIXTURES, demoCommand, failedBuildCode, nixVersions, scriptCommand, stepsOf, unique, useNix } from '../helpers/nix.js'
import { eventually } from '../helpers/proc.js'
import { withShims } from '../helpers/shims.js'
import { startWrapper, type Mode } from '../helpers/wrapper.js'

const nix = useNix()

const demo = (n: string): string[] => demoCommand(n)

describe.each<Mode>(['fd', 'pipes', 'stdio', 'std-pipes'])('channel on %s', (mode) => {
  it('keeps the output through a GC while held, and lets the GC take it after {"release":true}', async () => {
    const w = startWrapper(['--', ...demo(unique(mode))], nix.env, mode)
    const built = (await w.next()).built!
    expect(built).toHaveLength(1)
    await nix.gc()
    expect(await nix.isValid(built[0]!)).toBe(true)

    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    expect((await w.exit).code).toBe(0)
    await nix.gc()
    expect(await nix.isValid(built[0]!)).toBe(false)
  })
})

it('releases when the caller closes the channel (EOF)', async () => {
  const w = startWrapper(['--', ...demo(unique('eof'))], nix.env)
  const built = (await w.next()).built!
  await nix.gc()
  expect(await nix.isValid(built[0]!)).toBe(true)
  w.end()
  expect((await w.exit).code).toBe(0)
  await nix.gc()
  expect(await nix.isValid(built[0]!)).toBe(false)
})

it('holds the output of nix-build', async () => {
  const n = unique('nix-build')
  const w = startWrapper(['--', 'nix-build', join(FIXTURES, 'demo.nix'), '--argstr', 'n', n], nix.env)
  const event = await w.next()
  expect(event.built).toEqual([expect.stringMatching(new RegExp(`^${nix.storeDir}/[a-z0-9]{32}-demo-${n}$`))])
  expect(event.outputs).toBeUndefined()
  await nix.gc()
  expect(await nix.isValid(event.built![0]!)).toBe(true)
  w.send({ release: true })
  await w.exit
})

// Nix 2.3's nix build cannot report outputs (no --json); its nix-build is tested throughout
it.skipIf(nixVersions().client.legacy)('holds both outputs of a two-output derivation, each once, in the order nix build reports them', async () => {
  const n = unique('multi')
  const w = startWrapper(['--', 'nix', 'build', '-f', join(FIXTURES, 'multi.nix'), '--argstr', 'n', n, 'out', 'lib'], nix.env)
  const event = await w.next()
  expect(event.built).toHaveLength(2)
  const reported = event.outputs!.flatMap((d) => Object.values(d.outputs))
  expect(event.built).toEqual(reported)
  expect(event.built).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`-multi-${n}$`)), expect.stringMatching(new RegExp(`-multi-${n}-lib$`))]))
  await nix.gc()
  for (const p of event.built!) expect(await nix.isValid(p)).toBe(true)
  w.send({ release: true })
  await w.exit
  await nix.gc()
  for (const p of event.built!) expect(await nix.isValid(p)).toBe(false)
})

it('reports a failing build as an error of kind build and exits with the build command\'s code', async () => {
  const command = demoCommand(unique('fail'), 'fail.nix')
  const w = startWrapper(['--', ...command], nix.env)
  const event = await w.next()
  expect(event.error?.kind).toBe('build')
  expect(event.error?.exitCode).toBe(failedBuildCode(command))
  // what the user ran, then Nix's own words: which builder failed, and its log
  const ran = command[0] === 'nix' ? 'nix build' : 'nix-build'
  expect(event.error?.message).toMatch(new RegExp(`^${ran} failed \\(exit code ${failedBuildCode(command)}\\): `))
  // Nix up to 2.33 says "builder for '…drv' failed with exit code 3"; 2.34 on, "Cannot build
  // '…drv'. Reason: builder failed with exit code 3."
  expect(event.error?.message).toMatch(/builder for '[^']*-fail-[^']*\.drv' failed with exit code 3|Cannot build '[^']*-fail-[^']*\.drv'\.\s+Reason: builder failed with exit code 3/)
  expect(event.error?.message).toContain('failing on purpose')
  expect((await w.exit).code).toBe(failedBuildCode(command))
  expect(w.stderr()).toMatch(/builder for '[^']*-fail-[^']*\.drv' failed|Cannot build '[^']*-fail-[^']*\.drv'/) // Nix's own output passes through
  // and nix-hold's own line, last, says what failed without printing Nix's lines again
  expect(w.stderr()).toMatch(/\nnix-hold: [^\n]* failed \(exit code \d+\): [^\n]*\n$/)
})

it("passes the build's output through to its own stderr while the build runs", async () => {
  const name = unique('live')
  const go = join(nix.root, unique('go'))
  // the builder waits for the test, which waits to see Nix say it is building
  const w = startWrapper(['--', ...scriptCommand(name, `while [ ! -e ${go} ]; do /bin/sleep 0.05; done; echo > $out`)], nix.env)
  expect(await eventually(() => w.stderr().includes(`-${name}.drv'`), 60_000)).toBe(true)
  writeFileSync(go, '')
  expect(await w.next()).toMatchObject({ built: [expect.stringMatching(new RegExp(`-${name}$`))] })
  w.send({ release: true })
  expect((await w.exit).code).toBe(0)
})

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
  const { spawnSync } = await import('node:child_process')
  const { CLI } = await import('../helpers/wrapper.js')
  for (const fd of ['9', '5', '42']) {
    const r = spawnSync(process.execPath, [CLI, '--fd', fd, '--', ...demo(unique('nofd'))], { env: nix.env, encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(new RegExp(`--fd ${fd}: file descriptor ${fd} is not open`))
  }
})

it('delivers a valid, held path even when the output is deleted right after the build exits', async () => {
  // A shim for the program that builds, first on PATH, runs the real one, then deletes what it
  // built: the first time only.
  const marker = join(nix.root, unique('deleted-once'))
  const tool = stepsOf(demo('x')).builds
  const env = withShims(nix.root, nix.env, {
    [tool]: `#!/bin/sh
out=$(/usr/bin/env PATH="$REAL_PATH" ${tool} "$@") || exit $?
if [ ! -e "${marker}" ]; then
  touch "${marker}"
  for p in $(printf '%s' "$out" | grep -o '${nix.storeDir}/[^"]*' | grep -v '[.]drv$'); do
    PATH="$REAL_PATH" nix-store --delete "$p" >&2 || exit 99
  done
fi
printf '%s\\n' "$out"
`,
  })
  const w = startWrapper(['--', ...demo(unique('deleted'))], env)
  const built = (await w.next()).built!
  expect(w.stderr()).toContain('building again')
  expect(await nix.isValid(built[0]!)).toBe(true)
  await nix.gc()
  expect(await nix.isValid(built[0]!)).toBe(true)
  w.send({ release: true })
  expect((await w.exit).code).toBe(0)
})

it('holds in a local store (no daemon) through a nix-daemon --stdio child', async () => {
  const env = { ...nix.env, NIX_REMOTE: 'local' }
  const w = startWrapper(['--', ...demo(unique('local'))], env)
  const built = (await w.next()).built!
  await nix.gc()
  expect(await nix.isValid(built[0]!)).toBe(true)
  w.send({ release: true })
  expect((await w.exit).code).toBe(0)
  await nix.gc()
  expect(await nix.isValid(built[0]!)).toBe(false)
})

it('takes one socket named as both --command-fd and --status-fd', async () => {
  const w = startWrapper(['--command-fd', '3', '--status-fd', '3', '--', ...demo(unique('samefd'))], nix.env, 'raw')
  const built = (await w.next()).built!
  expect(built).toHaveLength(1)
  w.send({ release: true })
  expect(await w.next()).toEqual({ released: true })
  expect((await w.exit).code).toBe(0)
})

it.runIf(nixVersions().client.legacy)('says to wrap nix-build when this Nix\'s nix build cannot report its outputs (Nix 2.3)', async () => {
  const w = startWrapper(['--', 'nix', 'build', '-f', join(FIXTURES, 'demo.nix'), '--argstr', 'n', unique('old-nix-build')], nix.env)
  const event = await w.next()
  expect(event.error).toMatchObject({ kind: 'usage', message: expect.stringMatching(/^Nix 2\.3's "nix build" cannot report what it built .*wrap nix-build instead/) })
  expect((await w.exit).code).toBe(2)
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
  const { spawnSync } = await import('node:child_process')
  const { CLI } = await import('../helpers/wrapper.js')
  const r = spawnSync(process.execPath, [CLI, '--stdio', '--', ...demo(unique('ci'))], { env: nix.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  expect(r.status).toBe(4)
  expect(r.stdout).toBe('')
  expect(r.stderr).toMatch(/standard input reached EOF .*--stdio holds only while standard input stays open/)
})
