// The library API, in-process, against a real daemon.

import { join } from 'node:path'
import { expect, it } from 'vitest'
import { buildAndHold, holdPaths, HoldError } from '../../src/index.js'
import { FIXTURES, demoCommand, failedBuildCode, nixVersions, scriptCommand, unique, useNix } from '../helpers/nix.js'

const nix = useNix()

const demo = () => demoCommand(unique('lib'))

it('holds a build for the scope of `await using`, and releases when the scope ends', async () => {
  let path: string
  {
    await using hold = await buildAndHold(demo(), { env: nix.env })
    path = hold.paths[0]!
    // nix build reports per derivation; nix-build (used on Nix 2.3) only prints paths
    expect(hold.derivations?.[0]?.outputs.out).toBe(nixVersions().client.legacy ? undefined : path)
    await nix.gc()
    expect(await nix.isValid(path)).toBe(true)
  }
  await nix.gc()
  expect(await nix.isValid(path)).toBe(false)
})

it('holds existing paths, adds more with keep(), and release() is idempotent', async () => {
  const [a, b] = [await nix.buildDemo(`lib-keep-a-${process.pid}`), await nix.buildDemo(`lib-keep-b-${process.pid}`)]
  const hold = await holdPaths([a], { env: nix.env })
  expect(await hold.keep([b, a])).toEqual([b, a])
  expect(hold.paths).toEqual([a, b])
  // a store URL that could reach ssh as an option is the caller's mistake, as a bad path is; the hold stays
  await expect(hold.keep([a], { store: 'ssh-ng://-oProxyCommand=x' })).rejects.toMatchObject({ kind: 'usage', message: expect.stringMatching(/refusing the store URL/) })
  await expect(hold.keep(['/tmp/not-in-the-store'])).rejects.toMatchObject({ kind: 'usage' })
  expect(hold.paths).toEqual([a, b])
  await nix.gc()
  expect([await nix.isValid(a), await nix.isValid(b)]).toEqual([true, true])
  await hold.release()
  await hold.release()
  await expect(hold.keep([a])).rejects.toMatchObject({ kind: 'usage' })
  await nix.gc()
  expect([await nix.isValid(a), await nix.isValid(b)]).toEqual([false, false])
})

it('gives each hold its own connection: releasing one leaves the other\'s roots', async () => {
  const path = await nix.buildDemo(`lib-two-${process.pid}`)
  const first = await holdPaths([path], { env: nix.env })
  const second = await holdPaths([path], { env: nix.env })
  await first.release()
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)
  await second.release()
  await nix.gc()
  expect(await nix.isValid(path)).toBe(false)
})

it('rejects a failed build with kind build and the build command\'s exit code', async () => {
  const command = ['nix-build', join(FIXTURES, 'fail.nix'), '--argstr', 'n', `lib-fail-${process.pid}`]
  const err = await buildAndHold(command, { env: nix.env }).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(HoldError)
  expect(err).toMatchObject({ kind: 'build', exitCode: failedBuildCode(command) })
})

it('takes the store from options.store and passes it to the build', async () => {
  const hold = await buildAndHold(demo(), { env: { ...nix.env, NIX_REMOTE: '' }, store: `unix://${nix.socketPath}` })
  await nix.gc()
  expect(await nix.isValid(hold.paths[0]!)).toBe(true)
  await hold.release()
})

it('aborts a build through options.signal', async () => {
  const controller = new AbortController()
  const slow = scriptCommand(`slow-${process.pid}`, '/bin/sleep 30')
  const pending = buildAndHold(slow, { env: nix.env, signal: controller.signal })
  setTimeout(() => controller.abort(new Error('changed my mind')), 300)
  await expect(pending).rejects.toThrow('changed my mind')
})
