import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { remoteStorePath, storePathProblem, toStorePath } from '../../src/store/path.js'

const S = '/nix/store'
const P = `${S}/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12`

describe('storePathProblem', () => {
  it('accepts a store path', () => {
    expect(storePathProblem(P, S)).toBeUndefined()
  })
  it.each([
    ['/etc/passwd', /not inside the store/],
    [`${S}/tooshort-x`, /32-character Nix hash/],
    [`${S}/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x`, /32-character Nix hash/], // e is not in Nix's base 32
    [`${P}/bin/hello`, /inside a store path/],
    [`${S}/0123456789abcdfghijklmnpqrsvwxyz-.hidden`, /characters Nix does not allow/],
    [`${S}/0123456789abcdfghijklmnpqrsvwxyz-a b`, /characters Nix does not allow/],
    [`${P}\0`, /NUL/],
    [`${S}/0123456789abcdfghijklmnpqrsvwxyz-${'n'.repeat(212)}`, /longer than 211/],
  ])('refuses %s', (path, why) => {
    expect(storePathProblem(path, S)).toMatch(why)
  })
})

describe('toStorePath', () => {
  it('cuts a path inside a store path back to the store path', () => {
    expect(toStorePath(`${P}/bin/hello`, S, '/')).toEqual({ path: P })
  })
  it('follows a symlink into the store, as a result link', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nix-hold-path-'))
    const store = join(dir, 'store')
    const path = `${store}/0123456789abcdfghijklmnpqrsvwxyz-x`
    mkdirSync(store)
    writeFileSync(path, '')
    symlinkSync(path, join(dir, 'result'))
    expect(toStorePath('result', store, dir)).toEqual({ path })
    symlinkSync('/etc', join(dir, 'out'))
    try {
      expect(toStorePath(join(dir, 'out'), store, dir)).toEqual({ problem: expect.stringMatching(/resolves to \/etc, outside the store/) })
    } finally {
      rmSync(dir, { recursive: true })
    }
  })
  it('says that a link whose target is gone (a collected result) is a dangling link to that store path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nix-hold-path-'))
    const gone = `${dir}/store/0123456789abcdfghijklmnpqrsvwxyz-collected`
    mkdirSync(join(dir, 'store'))
    symlinkSync(gone, join(dir, 'result'))
    symlinkSync('result', join(dir, 'result-of-result')) // relative, and a chain
    symlinkSync(join(dir, 'nowhere'), join(dir, 'elsewhere'))
    try {
      const inStore = { problem: `is a dangling link to ${gone}, which does not exist in the store` }
      expect(toStorePath('result', `${dir}/store`, dir)).toEqual(inStore)
      expect(toStorePath(join(dir, 'result-of-result'), `${dir}/store`, '/')).toEqual(inStore)
      expect(toStorePath('elsewhere', `${dir}/store`, dir)).toEqual({ problem: `is a dangling link to ${dir}/nowhere, which does not exist (outside the store ${dir}/store)` })
    } finally {
      rmSync(dir, { recursive: true })
    }
  })
  it.each([
    ['', /empty/],
    [`${S}/../etc/passwd`, /".." segment/],
    ['/definitely/not/here', /not inside the store .* does not exist/],
    [`${P}\0x`, /NUL/],
  ])('refuses %j', (arg, why) => {
    expect(toStorePath(arg, S, '/')).toEqual({ problem: expect.stringMatching(why) })
  })
})

describe('remoteStorePath', () => {
  it('cuts a path inside a store path back to the store path, as written', () => {
    expect(remoteStorePath(`${P}/bin/hello`, S)).toEqual({ path: P })
  })
  it('follows no local link: a relative name or a path elsewhere names nothing on another machine', () => {
    expect(remoteStorePath('result', S)).toEqual({ problem: `is not a path in the store ${S}` })
    expect(remoteStorePath('/tmp/result', S)).toEqual({ problem: `is not a path in the store ${S}` })
  })
  it('refuses what is not a store path', () => {
    expect(remoteStorePath(`${S}/tooshort-x/bin`, S)).toEqual({ problem: expect.stringMatching(/32-character Nix hash/) })
  })
})
