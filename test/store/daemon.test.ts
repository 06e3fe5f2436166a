// The worker-protocol client against the real Nix daemon, at every protocol minor it must speak.

import { describe, expect, it } from 'vitest'
import { DaemonConnection } from '../../src/store/daemon.js'
import { unique, useNix } from '../helpers/nix.js'

const nix = useNix()

const socket = () => ({ type: 'socket' as const, path: nix.socketPath })

describe.each([21, 25, 26, 27, 33, 34, 38])('announcing protocol 1.%i', (minor) => {
  it('adds a temp root that keeps a path through GC until the connection closes', async () => {
    const conn = await DaemonConnection.open(socket(), { maxMinor: minor })
    expect(conn.minor).toBe(Math.min(minor, 34)) // the local daemon is Nix 2.8: 1.34
    const path = await nix.buildDemo(unique(`minor-${minor}`))
    await conn.addTempRoot(path)
    expect(await conn.isValidPath(path)).toBe(true)
    const missing = path.replace(/-demo-/, '-nothere-')
    expect(await conn.queryValidPaths([path, missing])).toEqual(new Set([path]))
    expect(await conn.isValidPath(missing)).toBe(false)

    await nix.gc()
    expect(await nix.isValid(path)).toBe(true)
    await conn.close()
    await conn.lost
    await nix.gc()
    expect(await nix.isValid(path)).toBe(false)
  })

  it('turns a daemon error into a store error carrying the daemon\'s message', async () => {
    const conn = await DaemonConnection.open(socket(), { maxMinor: minor })
    // AddTextToStore with a reference that is not valid fails after the arguments are read,
    // so the connection stays usable
    const bogus = `${nix.storeDir}/00000000000000000000000000000000-bogus`
    await expect(conn.addTextToStore('x', 'y', [bogus])).rejects.toMatchObject({ kind: 'store', message: expect.stringContaining('bogus') })
    expect(await conn.isValidPath(bogus)).toBe(false)
    await conn.close()
  })
})

it('pipelines 20,000 AddTempRoot requests without deadlocking', async () => {
  const conn = await DaemonConnection.open(socket())
  const alphabet = '0123456789abcdfghijklmnpqrsvwxyz' // Nix's base 32
  const hash = (i: number) => Array.from({ length: 32 }, (_, k) => alphabet[(i >> (k % 16)) & 31]).join('')
  const paths = Array.from({ length: 20_000 }, (_, i) => `${nix.storeDir}/${hash(i)}-p${i}`)
  await conn.addTempRoots(paths)
  expect(await conn.isValidPath(paths[0]!)).toBe(false)
  await conn.close()
})

it('holds a root in a local store through a nix-daemon --stdio child', async () => {
  const env = { ...nix.env, NIX_REMOTE: 'local' }
  const conn = await DaemonConnection.open({ type: 'stdio', storeUri: 'local', env })
  const path = await conn.addTextToStore('stdio-held', `held by ${process.pid}`)
  await conn.addTempRoot(path)
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)
  await conn.close() // settles once the child has exited, and its temp roots with it
  await nix.gc()
  expect(await nix.isValid(path)).toBe(false)
})
