// The worker-protocol client against the real Nix daemon of this test project (the matrix runs it
// on every Nix from 2.3 to 2.35, and on Lix), at every protocol minor it must speak.

import { renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonConnection } from '../../src/store/daemon.js'
import { nixLabel, nixVersions, startNix, unique, useNix, type NixInstance } from '../helpers/nix.js'

const nix = useNix()

const socket = () => ({ type: 'socket' as const, path: nix.socketPath })

// The protocol minor each daemon in the matrix speaks (../shared/nix-versions/README.md). Lix
// speaks 1.35 whatever its version, and refuses a client that announces less.
const DAEMON_MINOR: Record<string, number> = { '2.3': 21, '2.8': 34, '2.18': 35, '2.24': 38, '2.26': 38, '2.34': 38, '2.35': 38 }
const LIX_MINOR = 35
const daemonMinor = (): number => {
  const { daemon } = nixVersions()
  const minor = daemon.lix ? LIX_MINOR : DAEMON_MINOR[`${daemon.major}.${daemon.minor}`]
  if (minor === undefined) throw new Error(`no known protocol minor for Nix ${daemon.text}; add it to DAEMON_MINOR`)
  return minor
}
const refuses = (minor: number): boolean => nixVersions().daemon.lix && minor < LIX_MINOR
// An error answer comes in the old form (message and status) below 1.26 and structured from 1.26
// on; how the daemon goes on after one is its version's business, not the minor's. Failed roots
// are tried at the floor, the first structured minor and the newest.
const ERROR_FORMS = [21, 26, 38]

// Replaces the state directory's temproots/ with a plain file while `body` runs: a worker that
// has not yet opened its temp-roots file then fails every AddTempRoot, as on a full disk or a
// read-only state directory. Nix reports that as an error and keeps the connection.
async function withTempRootsBroken<T>(body: () => Promise<T>): Promise<T> {
  const dir = join(nix.stateDir, 'temproots')
  const saved = `${dir}.saved-${process.pid}`
  mkdirSync(dir, { recursive: true })
  renameSync(dir, saved)
  writeFileSync(dir, 'not a directory\n')
  try {
    return await body()
  } finally {
    rmSync(dir)
    renameSync(saved, dir)
  }
}

describe.each([21, 25, 26, 27, 33, 34, 35, 38])(`announcing protocol 1.%i (${nixLabel()})`, (minor) => {
  it.runIf(refuses(minor))('is refused by Lix with a store error that says what may have been refused', async () => {
    // Lix reads our version, logs "the Nix client version is too old" and hangs up without a word
    const opening = DaemonConnection.open(socket(), { maxMinor: minor })
    await expect(opening).rejects.toMatchObject({ kind: 'store', message: expect.stringMatching(new RegExp(`before the handshake: .*refuses? a client that announces protocol 1\\.${minor}`)) })
  })

  it.skipIf(refuses(minor))('negotiates min(ours, the daemon\'s) and holds a temp root through GC until the connection closes', async () => {
    const conn = await DaemonConnection.open(socket(), { maxMinor: minor })
    const negotiated = Math.min(minor, daemonMinor())
    expect(conn.minor).toBe(negotiated)
    // what the handshake carries from 1.33 and 1.35 on, read from a real daemon
    expect(conn.daemonVersion).toBe(negotiated >= 33 ? nixVersions().daemon.text : undefined)
    expect(conn.trust).toBe(negotiated >= 35 ? 'trusted' : undefined) // root is a trusted user by default
    const [path] = await nix.addFiles(unique(`minor-${minor}`))
    await conn.addTempRoot(path!)
    expect(await conn.isValidPath(path!)).toBe(true)
    const missing = path!.replace(/-minor-/, '-nothere-')
    expect(await conn.queryValidPaths([path!, missing])).toEqual(new Set([path]))
    expect(await conn.isValidPath(missing)).toBe(false)

    await nix.gc()
    expect(await nix.isValid(path!)).toBe(true)
    await conn.close() // settles once the daemon's worker has hung up: no waiting after it
    await nix.gc()
    expect(await nix.isValid(path!)).toBe(false)
  })

  it.skipIf(refuses(minor) || !ERROR_FORMS.includes(minor))('takes two failed AddTempRoots (identical on Nix) as two answers, and the connection (and its roots) stays', async () => {
    const [held] = await nix.addFiles(unique('held-before'))
    const conn = await DaemonConnection.open(socket(), { maxMinor: minor })
    await conn.addTempRoot(held!) // opens this worker's temp-roots file while it still can
    const other = await DaemonConnection.open(socket(), { maxMinor: minor })
    const [a, b] = await nix.addFiles(unique('refused'), 2)
    const results = await withTempRootsBroken(() => Promise.allSettled([other.addTempRoot(a!), other.addTempRoot(b!), other.isValidPath(a!)]))
    expect(results[0]).toMatchObject({ status: 'rejected', reason: { kind: 'store', message: expect.stringContaining('temproots') } })
    // Nix fails both with the same words, which must not pass for the repeated error before a
    // hang-up; Lix names a new temporary file in each
    const same = nixVersions().daemon.lix ? expect.stringContaining('temproots') : (results[0] as PromiseRejectedResult).reason.message
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { kind: 'store', message: same } })
    expect(results[2]).toEqual({ status: 'fulfilled', value: true })
    expect(other.isOpen).toBe(true)
    await other.close()
    expect(conn.isOpen).toBe(true)
    await nix.gc()
    expect(await nix.isValid(held!)).toBe(true)
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
  const [path] = await nix.addFiles(unique('stdio-held'))
  await conn.addTempRoot(path!)
  await nix.gc()
  expect(await nix.isValid(path!)).toBe(true)
  await conn.close() // settles once the child has exited, and its temp roots with it
  await nix.gc()
  expect(await nix.isValid(path!)).toBe(false)
})

describe('a daemon that refuses this user', () => {
  // Nix checks allowed-users (and trusted-users, which root is in by default) before the
  // handshake, and refuses by closing the connection without a word
  let refusing: NixInstance
  beforeAll(async () => {
    refusing = await startNix({ extraConf: 'allowed-users = nobody\ntrusted-users = nobody\n' })
  })
  afterAll(async () => refusing?.stop())

  it('is a store error that says the daemon refused before the handshake', async () => {
    const opening = DaemonConnection.open({ type: 'socket', path: refusing.socketPath })
    await expect(opening).rejects.toMatchObject({ kind: 'store', message: expect.stringMatching(/(closed the connection|dropped the connection \((ECONNRESET|EPIPE)\)) before the handshake: the daemon refused this user/) })
  })
})

it('reports a fatal error followed by a hang-up in the daemon\'s words, even with requests still unread (a reset)', async () => {
  const conn = await DaemonConnection.open(socket())
  const [path] = await nix.addFiles(unique('fatal'))
  // a path outside the store cannot even be parsed: the daemon reports it and hangs up, with
  // the pipelined requests behind it still unread
  const bogus = '/not-the-store/00000000000000000000000000000000-x'
  const results = await Promise.allSettled([conn.isValidPath(bogus), ...Array.from({ length: 200 }, () => conn.isValidPath(path!))])
  expect(results[0]).toMatchObject({ status: 'rejected', reason: { kind: 'store', message: expect.stringContaining('not-the-store') } })
  if (nixVersions().daemon.legacy) {
    // Nix 2.3 answers such a request with the error and goes on serving the rest
    expect(results.slice(1)).toEqual(results.slice(1).map(() => ({ status: 'fulfilled', value: true })))
    expect(conn.isOpen).toBe(true)
    await conn.close()
    return
  }
  expect(results.every((r) => r.status === 'rejected')).toBe(true)
  const why = await conn.lost
  expect(why).toMatchObject({ kind: 'store', message: expect.stringMatching(/(closed|dropped) the connection.*: .*not-the-store/) })
})
