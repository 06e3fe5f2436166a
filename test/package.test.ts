// The package as npm would install it: packed from a fresh clone (so nothing built here leaks in),
// installed from its tarball into an empty folder with no network, then used both ways; and
// installed globally from the tarball, as the README's Install section does.

import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'

const REPO = new URL('..', import.meta.url).pathname
const scratch = mkdtempSync(join(tmpdir(), 'nix-hold-package-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

const run = (file: string, args: string[], cwd: string) => execFileSync(file, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

it('packs from a fresh clone with dist/ in it, installs alone from the tarball, and runs as a command and a library', () => {
  const clone = join(scratch, 'clone')
  run('git', ['clone', '--quiet', REPO, clone], scratch)
  // the clone builds with the tools already installed here (npm ci would need the network)
  symlinkSync(join(REPO, 'node_modules'), join(clone, 'node_modules'))
  // the README's install is `npm install -g "$(npm pack --silent)"`: the build's own output goes to
  // stderr, so standard output is the tarball's name alone
  const packed = run('npm', ['pack', '--silent', '--pack-destination', scratch], clone)
  expect(packed).toMatch(/^nix-hold-\d+\.\d+\.\d+\.tgz\n$/)
  const tarball = join(scratch, packed.trim())
  const files = run('tar', ['tzf', tarball], scratch).trim().split('\n').sort()
  for (const f of ['dist/nix-hold.js', 'dist/cli.js', 'dist/build.js', 'dist/cli.cache', 'dist/build.cache', 'dist/index.mjs', 'dist/index.d.mts', 'PROTOCOL.md', 'package.json']) {
    expect(files).toContain(`package/${f}`)
  }

  const app = join(scratch, 'app')
  mkdirSync(app)
  run('npm', ['init', '-y'], app)
  run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], app)
  // everything it runs is bundled: installing it installs nothing else
  expect(readdirSync(join(app, 'node_modules')).filter((d) => !d.startsWith('.'))).toEqual(['nix-hold'])
  expect(run(join(app, 'node_modules', '.bin', 'nix-hold'), ['--help'], app)).toMatch(/^Usage:/)
  const exported = run(process.execPath, ['--input-type=module', '-e', "const m = await import('nix-hold'); console.log(typeof m.buildAndHold, typeof m.holdPaths)"], app)
  expect(exported.trim()).toBe('function function')

  // installed globally from the tarball, the command is a copy that outlives the clone
  const prefix = join(scratch, 'prefix')
  run('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], scratch)
  rmSync(clone, { recursive: true, force: true })
  const bin = join(prefix, 'bin', 'nix-hold')
  expect(run(bin, ['--version'], scratch)).toMatch(/^nix-hold \d+\.\d+\.\d+\n$/)
  expect(run(bin, ['--help'], scratch)).toMatch(/^Usage:/)
}, 180_000)
