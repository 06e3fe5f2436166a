// The private directory holders listen in: used only when it is this user's alone. The tests run
// as root and play a user of their own (a uid no account has), so every directory below is made
// by root and given to that uid.

import { chownSync, chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { runtimeDir } from '../../src/rendezvous/runtime-dir.js'

const uid = 3_900_000 + (process.pid % 1000)
const fallback = `/tmp/nix-hold-${uid}`
let xdg: string

beforeEach(() => {
  xdg = mkdtempSync(join(tmpdir(), 'nix-hold-xdg-'))
  rmSync(fallback, { recursive: true, force: true })
})
afterEach(() => {
  rmSync(xdg, { recursive: true, force: true })
  rmSync(fallback, { recursive: true, force: true })
})

const own = (dir: string, mode = 0o700) => {
  mkdirSync(dir, { recursive: true })
  chownSync(dir, uid, uid)
  chmodSync(dir, mode)
}

it("uses nix-hold's directory in the user's own runtime directory", () => {
  own(xdg)
  own(join(xdg, 'nix-hold'))
  expect(runtimeDir({ XDG_RUNTIME_DIR: xdg }, uid)).toBe(join(xdg, 'nix-hold'))
})

it("falls back to /tmp when the runtime directory is another user's (sudo kept the caller's)", () => {
  // xdg stays root's
  own(fallback)
  expect(runtimeDir({ XDG_RUNTIME_DIR: xdg }, uid)).toBe(fallback)
})

it('refuses a /tmp directory another user made first, and says whose it is', () => {
  mkdirSync(fallback, { mode: 0o700 }) // root's
  expect(() => runtimeDir({}, uid)).toThrow(expect.objectContaining({ kind: 'store', message: expect.stringContaining(`belongs to uid 0, not to this user (uid ${uid})`) }))
})

it('goes round a /tmp directory another user made first by one under the home directory', () => {
  mkdirSync(fallback, { mode: 0o700 }) // root's
  const cache = join(xdg, 'home', '.cache')
  own(join(cache, 'nix-hold'))
  expect(runtimeDir({ HOME: join(xdg, 'home') }, uid)).toBe(join(cache, 'nix-hold'))
})

it('refuses a directory of its own that other users may enter', () => {
  own(fallback, 0o755)
  expect(() => runtimeDir({}, uid)).toThrow(expect.objectContaining({ kind: 'store', message: expect.stringContaining('other users may use it') }))
})

it('refuses a link in place of the directory, even to a directory of its own', () => {
  const real = join(xdg, 'real')
  own(real)
  symlinkSync(real, fallback)
  expect(() => runtimeDir({}, uid)).toThrow(expect.objectContaining({ kind: 'store', message: expect.stringContaining('is not a directory') }))
})

it('makes the directory, private, when there is none', () => {
  // as root, for root: the only user a test can make a directory as
  const dir = runtimeDir({ XDG_RUNTIME_DIR: xdg }, 0)
  expect(dir).toBe(join(xdg, 'nix-hold'))
})
