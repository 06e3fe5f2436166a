// What the command line refuses, before anything is built.

import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import pkg from '../package.json' with { type: 'json' }
import { withShims } from './helpers/shims.js'
import { CLI, startWrapper } from './helpers/wrapper.js'

const run = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

it('prints help and version', () => {
  expect(run(['--help'])).toMatchObject({ status: 0, stdout: expect.stringContaining('--command-fd R') })
  expect(run(['--version'])).toMatchObject({ status: 0, stdout: `nix-hold ${pkg.version}\n` })
})

it.each([
  [['--frob', '--', 'nix', 'build'], /^nix-hold: unknown option --frob \(see nix-hold --help\)\n$/],
  [['--', 'nix', 'build'], /choose exactly one of --for PID, --fd N/],
  [['--fd', '3', '--stdio', '--', 'nix', 'build'], /choose exactly one of --for PID, --fd N/],
  [['--command-fd', '0', '--', 'nix', 'build'], /go together/],
  [['--fd', 'x', '--', 'nix', 'build'], /--fd takes a file descriptor number/],
  [['--stdio'], /no build command given after --/],
  [['--stdio', 'nix', 'build'], /unexpected argument "nix"; put the build command after --/],
  [['--stdio', '--keep'], /--keep needs at least one path/],
  [['--stdio', '--proxy'], /--proxy goes with --for PID/],
  [['--for', '1', '--proxy', '--keep', '/nix/store/x'], /--proxy takes no paths and no build command/],
  [['--for', '1', '--proxy', '--', 'nix', 'build'], /--proxy takes no paths and no build command/],
  [['--for', '1', '--proxy', '--max-hold', '5'], /--proxy takes only --store/],
  [['--stdio', '--max-hold', '0', '--', 'nix', 'build'], /--max-hold takes a positive number/],
  // parseArgs calls a missing value, or one starting with a dash, "ambiguous"
  [['--fd', '--stdio', '--', 'nix', 'build'], /^nix-hold: --fd takes a file descriptor number, got "--stdio" \(see nix-hold --help\)\n$/],
  [['--stdio', '--max-hold', '-1', '--', 'nix', 'build'], /^nix-hold: --max-hold takes a positive number of seconds, got "-1" \(see/],
  // a Node timer longer than 2^31 - 1 ms fires at once: such a hold would end as it began
  [['--for', '1', '--max-hold', '2147484', '--keep', '/nix/store/x'], /^nix-hold: --max-hold takes at most 2147483 seconds \(about 24 days\), got "2147484"/],
  [['--stdio', '--max-hold'], /^nix-hold: --max-hold takes a positive number of seconds, got nothing \(see/],
  [['--stdio=yes', '--', 'nix', 'build'], /^nix-hold: --stdio takes no value \(see/],
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

// a shell's `3<>` opens a pipe both ways: nix-hold used to start the build, then crash on it
it.each([
  ['--fd 3', '3<> <(:)'],
  ['--fd 3', '3<>"$FIFO"'],
  ['--command-fd 3 --status-fd 3', '3<>"$FIFO"'],
])('exits 2 before the build starts for %s on a pipe opened both ways (%s), saying what to pass instead', (flags, redirect) => {
  const dir = mkdtempSync(join(tmpdir(), 'nix-hold-fifo-'))
  try {
    execFileSync('mkfifo', [join(dir, 'fifo')])
    const started = join(dir, 'started')
    // nix-build runs as nix-instantiate first: its stand-in notes that the build began
    const env = withShims(dir, { ...process.env, NIX_REMOTE: 'unix:///nonexistent', FIFO: join(dir, 'fifo') }, { 'nix-instantiate': `#!/bin/sh\ntouch "${started}"\n` })
    const r = spawnSync('bash', ['-c', `exec "${process.execPath}" "${CLI}" ${flags} -- nix-build x.nix ${redirect}`], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/file descriptor 3 is a pipe opened for both reading and writing.*one end of a socketpair.*--command-fd and --status-fd/)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(existsSync(started)).toBe(false)
  } finally {
    rmSync(dir, { recursive: true })
  }
})

it.each([
  [['--', 'nix', 'build', '.#x', '--out-link', 'r'], 'usage', 2, /out-link is not allowed/],
  [['--', 'nix', 'develop'], 'usage', 2, /^the build command must be "nix build" or "nix-build", not "nix develop"$/],
  [['--', 'make'], 'usage', 2, /^the build command must be "nix build" or "nix-build", not "make"$/],
  [['--store', 'daemon', '--', 'nix', 'build', '--store', 'local', '.#x'], 'usage', 2, /^--store daemon, given to nix-hold, disagrees with --store local in the build command$/],
  [['--store', 'https://cache.example', '--', 'nix', 'build', '.#x'], 'store', 3, /cannot hold roots in the store "https:\/\/cache.example"/],
  [['--', 'nix', 'build', '--store', 'ssh-ng://-oProxyCommand=x', '.#x'], 'usage', 2, /refusing the store URL "ssh-ng:\/\/-oProxyCommand=x": the host must be/],
])('reports %j on the channel and exits before building', async (args, kind, code, message) => {
  // PATH without nix: reaching the build would fail differently
  const w = startWrapper(args, { ...process.env, PATH: '/nonexistent' })
  expect(await w.next()).toEqual({ error: { kind, message: expect.stringMatching(message) } })
  expect((await w.exit).code).toBe(code)
  expect(w.stderr()).toMatch(/^nix-hold: /)
  expect(w.stderr()).not.toMatch(/^nix-hold: nix-hold/) // the prefix once
})
