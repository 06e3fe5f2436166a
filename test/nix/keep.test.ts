// --keep mode and {"keep"} requests against a real daemon.

import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { execa } from 'execa'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { nixVersions, unique, useNix } from '../helpers/nix.js'
import { startWrapper } from '../helpers/wrapper.js'

const nix = useNix()

const fresh = () => nix.buildDemo(unique('keep'))

it('holds existing paths given with --keep, resolving a result link into the store', async () => {
  const [a, b] = [await fresh(), await fresh()]
  const link = join(nix.root, unique('result'))
  symlinkSync(b, link)
  const w = startWrapper(['--keep', a, link], nix.env)
  expect(await w.next()).toEqual({ kept: [a, b] })
  await nix.gc()
  expect([await nix.isValid(a), await nix.isValid(b)]).toEqual([true, true])
  w.send({ release: true })
  expect(await w.next()).toEqual({ released: true })
  expect((await w.exit).code).toBe(0)
  await nix.gc()
  expect([await nix.isValid(a), await nix.isValid(b)]).toEqual([false, false])
})

it('refuses --keep of a path that is not valid, with a usage error, exit 2 and nothing held', async () => {
  const a = await fresh()
  const missing = a.replace(/-keep-/, '-gone-')
  const w = startWrapper(['--keep', a, missing, '/etc/passwd'], nix.env)
  const event = await w.next()
  expect(event.error?.kind).toBe('usage')
  expect(event.error?.message).toContain('/etc/passwd')
  expect((await w.exit).code).toBe(2)
  await nix.gc()
  expect(await nix.isValid(a)).toBe(false)
})

it('adds paths to a hold with {"keep"} and refuses a request with an invalid path as a whole', async () => {
  const [a, b, c] = [await fresh(), await fresh(), await fresh()]
  const w = startWrapper(['--keep', a], nix.env)
  expect(await w.next()).toEqual({ kept: [a] })

  const missing = b.replace(/-keep-/, '-gone-')
  w.send({ keep: [c, missing] })
  const refused = await w.next()
  expect(refused.error).toMatchObject({ kind: 'protocol', message: expect.stringContaining(missing) })
  for (const bad of ['/etc/passwd', `${nix.storeDir}/../etc`, 'a\u0000b', '']) {
    w.send({ keep: [bad] })
    expect((await w.next()).error?.kind).toBe('protocol')
  }

  w.send({ keep: [b] })
  expect(await w.next()).toEqual({ kept: [b] })
  await nix.gc()
  // a and b are held; c was in the refused request and is not
  expect([await nix.isValid(a), await nix.isValid(b), await nix.isValid(c)]).toEqual([true, true, false])
  w.end()
  expect((await w.exit).code).toBe(0)
})

it('adds paths with {"keep"} to a hold made by a build', async () => {
  const extra = await fresh()
  const { FIXTURES } = await import('../helpers/nix.js')
  const w = startWrapper(['--', 'nix-build', join(FIXTURES, 'demo.nix'), '--argstr', 'n', unique('keep-build')], nix.env)
  const built = (await w.next()).built!
  w.send({ keep: [extra] })
  expect(await w.next()).toEqual({ kept: [extra] })
  await nix.gc()
  expect([await nix.isValid(built[0]!), await nix.isValid(extra)]).toEqual([true, true])
  w.send({ release: true })
  await w.exit
})

const holdsInConfiguredStore = async (where: 'nix.conf' | 'NIX_CONFIG') => {
  // another store with the same store directory (a chroot store under `root`): a path valid
  // there is not valid in the instance's own store, so holding it in the wrong one fails
  const root = join(nix.root, unique('other-store'))
  const setting = `store = local?root=${root}\n`
  const etc = join(nix.root, unique('etc'))
  mkdirSync(etc)
  writeFileSync(join(etc, 'nix.conf'), readFileSync(join(nix.env.NIX_CONF_DIR!, 'nix.conf'), 'utf8') + (where === 'nix.conf' ? setting : ''))
  const env = { ...nix.env, NIX_CONF_DIR: etc, ...(where === 'NIX_CONFIG' ? { NIX_CONFIG: setting } : {}) } // NIX_REMOTE=daemon stays: the setting wins
  const file = join(root, '..', `${unique('payload')}.txt`)
  writeFileSync(file, 'held in the other store\n')
  const run = (args: string[]) => execa('nix-store', args, { env, extendEnv: false, stdin: 'ignore' })
  const path = (await run(['--add', file])).stdout.trim()
  expect(await nix.isValid(path)).toBe(false) // not in the instance's own store
  const w = startWrapper(['--keep', path], env)
  expect(await w.next()).toEqual({ kept: [path] })
  await run(['--gc'])
  expect((await run(['--check-validity', path])).exitCode).toBe(0)
  w.send({ release: true })
  expect(await w.next()).toEqual({ released: true })
  await run(['--gc'])
  await expect(run(['--check-validity', path])).rejects.toThrow()
}

it('holds in the store that `store = …` in nix.conf names, as the Nix in use picks it', () => holdsInConfiguredStore('nix.conf'))
// Nix 2.3 has no NIX_CONFIG
it.skipIf(nixVersions().client.legacy)('holds in the store that `store = …` in NIX_CONFIG names, as the Nix in use picks it', () => holdsInConfiguredStore('NIX_CONFIG'))
