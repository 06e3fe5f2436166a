import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { holderEnvironment } from '../../src/owner/holder-env.js'

const store = mkdtempSync(join(tmpdir(), 'nix-hold-env-store-'))
afterAll(() => rmSync(store, { recursive: true, force: true }))
const dir = (name: string, programs: string[] = []) => {
  const d = join(store, `${'a'.repeat(32)}-${name}`, 'bin')
  mkdirSync(d, { recursive: true })
  for (const p of programs) writeFileSync(join(d, p), '')
  return d
}

it("keeps what reaching a store needs, and no store path that it does not (a nix-shell's environment)", () => {
  const nix = dir('nix', ['nix-daemon'])
  const gcc = dir('gcc')
  const env = {
    NIX_STORE_DIR: store,
    PATH: `${gcc}:${nix}:/usr/bin:/bin`,
    NIX_REMOTE: 'daemon',
    NIX_SSHOPTS: '-p 2222',
    NIX_CC: `${store}/${'b'.repeat(32)}-gcc-wrapper`,
    NIX_PATH: `nixpkgs=${store}/${'c'.repeat(32)}-source`,
    DEPLOY_TOKEN: 'hunter2',
    HOME: '/home/u',
    SSH_AUTH_SOCK: '/run/user/1/agent',
  }
  expect(holderEnvironment(env)).toEqual({
    NIX_STORE_DIR: store,
    PATH: `${nix}:/usr/bin:/bin`,
    NIX_REMOTE: 'daemon',
    NIX_SSHOPTS: '-p 2222',
    HOME: '/home/u',
    SSH_AUTH_SOCK: '/run/user/1/agent',
  })
})
