// The whole product against a real isolated daemon, on every Nix in the matrix: build, hold
// through GC, release, and what the build and the store make of it. What the channel itself does
// (every kind of channel, EOF, garbage on it, its exit) is nix-hold's own whatever Nix builds:
// test/system-nix/channel.test.ts, once.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { FIXTURES, demoCommand, failedBuildCode, holdsUntilEnded, nixVersions, scriptCommand, stepsOf, unique, useNix } from '../helpers/nix.js'
import { eventually } from '../helpers/proc.js'
import { withShims } from '../helpers/shims.js'
import { startWrapper } from '../helpers/wrapper.js'

const nix = useNix()

const demo = (n: string): string[] => demoCommand(n)

it('keeps the output through a GC while held, and lets the GC take it after {"release":true}', () => holdsUntilEnded(nix, demo(unique('held'))))

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

it.runIf(nixVersions().client.legacy)('says to wrap nix-build when this Nix\'s nix build cannot report its outputs (Nix 2.3)', async () => {
  const w = startWrapper(['--', 'nix', 'build', '-f', join(FIXTURES, 'demo.nix'), '--argstr', 'n', unique('old-nix-build')], nix.env)
  const event = await w.next()
  expect(event.error).toMatchObject({ kind: 'usage', message: expect.stringMatching(/^Nix 2\.3's "nix build" cannot report what it built .*wrap nix-build instead/) })
  expect((await w.exit).code).toBe(2)
})
