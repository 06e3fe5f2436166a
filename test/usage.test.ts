// What the command line refuses, before anything is built.

import { spawnSync } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { expect, it } from 'vitest'
import pkg from '../package.json' with { type: 'json' }
import { CLI, startWrapper } from './helpers/wrapper.js'

const run = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

it('prints help and version', () => {
  expect(run(['--help'])).toMatchObject({ status: 0, stdout: expect.stringContaining('--command-fd R') })
  expect(run(['--version'])).toMatchObject({ status: 0, stdout: `nix-hold ${pkg.version}\n` })
})

it.each([
  [['--frob', '--', 'nix', 'build'], /^nix-hold: unknown option --frob \(see nix-hold --help\)\n$/],
  [['--', 'nix', 'build'], /choose exactly one channel/],
  [['--fd', '3', '--stdio', '--', 'nix', 'build'], /choose exactly one channel/],
  [['--command-fd', '0', '--', 'nix', 'build'], /go together/],
  [['--fd', 'x', '--', 'nix', 'build'], /--fd takes a file descriptor number/],
  [['--stdio'], /no build command given after --/],
  [['--stdio', 'nix', 'build'], /unexpected argument "nix"; put the build command after --/],
  [['--stdio', '--keep'], /--keep needs at least one path/],
  [['--stdio', '--max-hold', '0', '--', 'nix', 'build'], /--max-hold takes a positive number/],
  [['--command-fd', '0', '--status-fd', '2', '--', 'nix', 'build'], /--status-fd 2: file descriptor 2 is nix-hold's standard error/],
  [['--fd', '2', '--keep', '/nix/store/00000000000000000000000000000000-x'], /--fd 2: file descriptor 2 is nix-hold's standard error/],
  // below 1.21 Nix 2.3 would wait for a word never sent; no daemon speaks above 1.38
  [['--stdio', '--protocol-minor', '10', '--', 'nix', 'build'], /protocol minor 10 is outside what nix-hold speaks: 1\.21 to 1\.38/],
  [['--stdio', '--protocol-minor', '39', '--', 'nix', 'build'], /protocol minor 39 is outside/],
])('exits 2 with a one-line message for %j', (args, message) => {
  const r = run(args)
  expect(r.status).toBe(2)
  expect(r.stderr).toMatch(message)
  expect(r.stderr.trim().split('\n')).toHaveLength(1)
})

it('exits 2 when --fd is open in one direction only', () => {
  // fd 0 here is /dev/null opened read-only: usable for --command-fd, not for --fd
  const devNull = openSync('/dev/null', 'r')
  const r = spawnSync(process.execPath, [CLI, '--fd', '0', '--', 'nix', 'build'], { encoding: 'utf8', stdio: [devNull, 'pipe', 'pipe'] })
  closeSync(devNull)
  expect(r.status).toBe(2)
  expect(r.stderr).toMatch(/--fd 0: file descriptor 0 is open only for reading .*--command-fd and --status-fd/)
})

it.each([
  [['--', 'nix', 'build', '.#x', '--out-link', 'r'], 'usage', 2, /out-link is not allowed/],
  [['--', 'nix', 'develop'], 'usage', 2, /wraps "nix build" or "nix-build"/],
  [['--store', 'https://cache.example', '--', 'nix', 'build', '.#x'], 'store', 3, /cannot hold roots in the store "https:\/\/cache.example"/],
  [['--', 'nix', 'build', '--store', 'ssh-ng://-oProxyCommand=x', '.#x'], 'usage', 2, /refusing the store URL "ssh-ng:\/\/-oProxyCommand=x": the host must be/],
])('reports %j on the channel and exits before building', async (args, kind, code, message) => {
  // PATH without nix: reaching the build would fail differently
  const w = startWrapper(args, { ...process.env, PATH: '/nonexistent' })
  expect(await w.next()).toEqual({ error: { kind, message: expect.stringMatching(message) } })
  expect((await w.exit).code).toBe(code)
})
