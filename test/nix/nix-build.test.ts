// nix-build under nix-hold runs as nix-instantiate and nix-store --realise, so that it leaves no
// root behind (src/runner/nix-build-args.ts). These check that it still builds and reports what
// nix-build would, and that the derivations are held in the gap between the two.

import { readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { expect, it } from 'vitest'
import { FIXTURES, unique, useNix } from '../helpers/nix.js'
import { withShims } from '../helpers/shims.js'
import { startWrapper } from '../helpers/wrapper.js'

const nix = useNix()

// What nix-build itself prints for these arguments, each path once (nix-build repeats a derivation
// named twice; `built` lists each path once): the reference nix-hold must agree with.
async function nixBuildPrints(args: string[]): Promise<string[]> {
  const { stdout } = await execa('nix-build', ['--no-out-link', ...args], { env: nix.env, extendEnv: false, stdin: 'ignore' })
  return [...new Set(stdout.split('\n').filter((line) => line.length > 0))]
}

async function holdOnce(args: string[], env = nix.env): Promise<{ built: string[]; stderr: string }> {
  const w = startWrapper(['--', 'nix-build', ...args], env)
  const event = await w.next()
  expect(event).toHaveProperty('built')
  // held: a collection now leaves every output
  await nix.gc()
  for (const path of event.built!) expect(await nix.isValid(path)).toBe(true)
  w.send({ release: true })
  expect((await w.exit).code).toBe(0)
  return { built: event.built!, stderr: w.stderr() }
}

const multi = (n: string) => `(import ${join(FIXTURES, 'multi.nix')} { n = "${n}"; })`

it.each([
  ['a file and an argument', (n: string) => [join(FIXTURES, 'multi.nix'), '--argstr', 'n', n]],
  ['an expression selecting a second output', (n: string) => ['-E', `${multi(n)}.lib`]],
  ['a list of both outputs, -E after it', (n: string) => [`[ ${multi(n)} ${multi(n)}.lib ]`, '-E']],
  ['the same derivation twice', (n: string) => ['-E', `{ a = ${multi(n)}; b = ${multi(n)}; }`, '-A', 'a', '-A', 'b']],
  // settings the table knows, one it does not (asked of nix-instantiate), compound flags
  ['settings among the arguments', (n: string) => ['--max-silent-time', '600', join(FIXTURES, 'demo.nix'), '--keep-outputs', '--log-lines', '5', '-Kj1', '--argstr', 'n', n, '--option', 'cores', '1']],
])('holds exactly what nix-build prints, for %s', async (_, args) => {
  const a = args(unique('same'))
  const { built } = await holdOnce(a)
  expect(built.length).toBeGreaterThan(0)
  expect(built).toEqual(await nixBuildPrints(a))
})

it('holds in the store a --store after -E names, not the one the environment names', async () => {
  // -E takes no value (the expression is a later word), so --store S is the store here; the
  // environment's store has no daemon, and rooting there would fail with "cannot connect"
  const env = { ...nix.env, NIX_REMOTE: `unix://${nix.root}/no-daemon-here/socket` }
  const { built } = await holdOnce(['-E', '--store', `unix://${nix.socketPath}`, `${multi(unique('expr-store'))}.lib`], env)
  expect(built).toHaveLength(1)
  expect(built[0]).toMatch(/-lib$/)
})

it('builds a store derivation named directly, through a link, and with an output', async () => {
  const n = unique('drv')
  const { stdout } = await execa('nix-instantiate', ['--no-gc-warning', join(FIXTURES, 'multi.nix'), '--argstr', 'n', n], { env: nix.env, extendEnv: false, stdin: 'ignore' })
  const drv = stdout.trim()
  const link = join(nix.root, `${n}.link`)
  symlinkSync(drv, link)
  // a file with no derivation in it beside one: nix-build builds the one
  const empty = join(nix.root, `${n}-empty.nix`)
  writeFileSync(empty, '{ }\n')
  for (const args of [[drv], [link], [`${drv}!lib`], [link, `${drv}!lib`], [empty, drv]]) {
    const { built } = await holdOnce(args)
    expect(built).toEqual(await nixBuildPrints(args))
  }
})

it('holds the derivations between evaluation and build: a collection in that gap takes nothing it needs', async () => {
  // a shim for nix-store collects garbage, then builds: the derivations nix-instantiate made are
  // rooted by nothing but nix-hold by then
  const env = withShims(nix.root, nix.env, { 'nix-store': '#!/bin/sh\nPATH="$REAL_PATH" nix-store --gc >&2 || exit 99\nPATH="$REAL_PATH" exec nix-store "$@"\n' })
  const a = [join(FIXTURES, 'multi.nix'), '--argstr', 'n', unique('gap')]
  const { built, stderr } = await holdOnce(a, env)
  expect(stderr).toMatch(/deleting garbage|deleted|freed/)
  expect(built).toEqual(await nixBuildPrints(a))
})

it('evaluates again when a collection takes the derivations before nix-hold roots them', async () => {
  // a shim for nix-instantiate deletes what it printed, the first time only
  const marker = join(nix.root, unique('deleted-once'))
  const env = withShims(nix.root, nix.env, {
    'nix-instantiate': `#!/bin/sh
out=$(PATH="$REAL_PATH" nix-instantiate "$@") || exit $?
if [ ! -e "${marker}" ]; then
  touch "${marker}"
  for d in $(printf '%s\\n' "$out" | sed 's/!.*//'); do PATH="$REAL_PATH" nix-store --delete "$d" >&2 || exit 99; done
fi
printf '%s\\n' "$out"
`,
  })
  const a = [join(FIXTURES, 'demo.nix'), '--argstr', 'n', unique('evalagain')]
  const { built, stderr } = await holdOnce(a, env)
  expect(stderr).toContain('evaluating again')
  expect(built).toEqual(await nixBuildPrints(a))
})

it('adds nothing to gcroots, where nix-build alone leaves an entry until the next collection', async () => {
  const auto = join(nix.stateDir, 'gcroots', 'auto')
  const entries = (): string[] => {
    try {
      return readdirSync(auto).sort()
    } catch {
      return []
    }
  }
  await nix.gc()
  const before = entries()
  const a = [join(FIXTURES, 'demo.nix'), '--argstr', 'n', unique('noroot')]
  const w = startWrapper(['--', 'nix-build', ...a], nix.env)
  await w.next()
  expect(entries()).toEqual(before)
  w.send({ release: true })
  expect((await w.exit).code).toBe(0)
  expect(entries()).toEqual(before)
  // the reference: nix-build on its own does leave one (this is what the split avoids)
  await nixBuildPrints(a)
  expect(entries().length).toBe(before.length + 1)
})

it.each([
  [['--dry-run'], /--dry-run in the build command: a dry run builds nothing/],
  [['--eval-store', 'auto'], /--eval-store in the build command/],
])('refuses %j as a usage error, before building', async (extra, message) => {
  const w = startWrapper(['--', 'nix-build', join(FIXTURES, 'demo.nix'), ...extra], nix.env)
  expect(await w.next()).toEqual({ error: { kind: 'usage', message: expect.stringMatching(message) } })
  expect((await w.exit).code).toBe(2)
})

it('passes an option this Nix does not have to nix-instantiate, whose error the user sees', async () => {
  const w = startWrapper(['--', 'nix-build', join(FIXTURES, 'demo.nix'), '--no-such-flag'], nix.env)
  expect(await w.next()).toEqual({ error: { kind: 'build', message: expect.stringMatching(/^nix-build failed \(exit code 1\): error: unrecognised flag '--no-such-flag'/), exitCode: 1 } })
  expect((await w.exit).code).toBe(1)
  expect(w.stderr()).toContain("unrecognised flag '--no-such-flag'")
})

it.each([
  ['a build that fails', (n: string) => [join(FIXTURES, 'fail.nix'), '--argstr', 'n', n], (n: string) => new RegExp(`builder for '[^']*-fail-${n}\\.drv' failed with exit code 3[^]*failing on purpose|failing on purpose\nbuilder for '[^']*-fail-${n}\\.drv' failed with exit code 3|Cannot build '[^']*-fail-${n}\\.drv'\\.\\s+Reason: builder failed with exit code 3[^]*failing on purpose`)],
  ['an evaluation that fails', (n: string) => ['-E', `throw "no ${n}"`], (n: string) => new RegExp(`error: .*no ${n}`)],
])('exits as nix-build does for %s, naming nix-build and saying what Nix said', async (_, args, said) => {
  const n = unique('fails')
  const a = args(n)
  const reference = await execa('nix-build', ['--no-out-link', ...a], { env: nix.env, extendEnv: false, stdin: 'ignore', reject: false })
  expect(reference.exitCode).not.toBe(0)
  const w = startWrapper(['--', 'nix-build', ...a], nix.env)
  const message = expect.stringMatching(new RegExp(`^nix-build failed \\(exit code ${reference.exitCode}\\): `))
  expect(await w.next()).toEqual({ error: { kind: 'build', message, exitCode: reference.exitCode } })
  expect(w.received[0]?.error?.message).toMatch(said(n))
  expect((await w.exit).code).toBe(reference.exitCode)
})

it('refuses an option whose value count nix-instantiate does not make clear, before building', async () => {
  // a nix-instantiate that answers the question with an error nix-hold does not know
  const env = withShims(nix.root, nix.env, { 'nix-instantiate': '#!/bin/sh\necho "error: the disk is on fire" >&2\nexit 1\n' })
  const w = startWrapper(['--', 'nix-build', join(FIXTURES, 'demo.nix'), '--some-setting', 'x'], env)
  expect(await w.next()).toEqual({
    error: { kind: 'usage', message: 'cannot tell how many values --some-setting takes: nix-instantiate said error: the disk is on fire; a setting can be given as --option NAME VALUE instead' },
  })
  expect((await w.exit).code).toBe(2)
})
