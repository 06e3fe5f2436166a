// The handshake and the response loop against a scripted daemon, for versions the local Nix 2.8
// cannot play (1.35 trust status, 1.38 features) and for broken daemons.

import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { holdPaths } from '../../src/hold/start.js'
import { collectorWait, hasRaceFix } from '../../src/store/collector.js'
import { DaemonConnection } from '../../src/store/daemon.js'
import { cat, hex, str, strs, word } from '../helpers/bytes.js'
import { fakeDaemon, type ScriptedPeer } from '../helpers/fake-daemon.js'
import { startWrapper } from '../helpers/wrapper.js'

const MAGIC_1 = hex('6378696e00000000') // "nixc" little-endian
const MAGIC_2 = hex('6f69786400000000') // "dxio"
const LAST = hex('73746c6100000000') // STDERR_LAST "alts"
const ERROR = hex('7074786300000000') // STDERR_ERROR "cxtp"
const NEXT = hex('676d6c6f00000000') // STDERR_NEXT "olmg"
const START = hex('5452545300000000') // STDERR_START_ACTIVITY
const STOP = hex('504f545300000000') // STDERR_STOP_ACTIVITY

const v = (minor: number) => word(0x100 | minor)
let cleanup: (() => void) | undefined
afterEach(() => cleanup?.())

async function withDaemon(script: (peer: ScriptedPeer) => Promise<void>, run: (path: string) => Promise<void>): Promise<void> {
  const d = fakeDaemon(script)
  cleanup = d.close
  await run(d.path)
  await d.result
}

// what a daemon of `minor` expects after our version, up to its first stderr loop
const clientTail = (minor: number) => cat(...(minor >= 38 ? [strs([])] : []), word(0), word(0))

describe('handshake', () => {
  // Nix 2.24 answers the feature exchange with none; 2.35 (still 1.38 to a 1.38 client) with two.
  // The real 2.24 daemon runs in the integration matrix; 2.35 is played here.
  it.each([
    ['2.24.15', []],
    ['2.35.2', ['delete-dead-specific-referrers', 'realisation-with-path-not-hash']],
  ])('speaks 1.38 with Nix %s: feature sets, version string, trust status', async (version, features) => {
    await withDaemon(
      async (peer) => {
        await peer.expect(cat(MAGIC_1, v(38)))
        peer.send(cat(MAGIC_2, v(38)))
        await peer.expect(clientTail(38))
        peer.send(cat(strs(features), str(version), word(1), LAST))
      },
      async (path) => {
        const conn = await DaemonConnection.open({ type: 'socket', path })
        expect([conn.minor, conn.daemonVersion, conn.trust]).toEqual([38, version, 'trusted'])
        await conn.close()
      },
    )
  })

  it('negotiates down to a Lix-style 1.35 daemon and reads its trust status', async () => {
    await withDaemon(
      async (peer) => {
        await peer.expect(cat(MAGIC_1, v(38)))
        peer.send(cat(MAGIC_2, v(35)))
        await peer.expect(clientTail(35))
        peer.send(cat(str('2.90.0'), word(2), LAST))
      },
      async (path) => {
        const conn = await DaemonConnection.open({ type: 'socket', path })
        expect([conn.minor, conn.trust]).toEqual([35, 'not-trusted'])
        await conn.close()
      },
    )
  })

  it('refuses a daemon older than 1.21 with a store error that names both versions', async () => {
    await withDaemon(
      async (peer) => {
        await peer.expect(cat(MAGIC_1, v(38)))
        peer.send(cat(MAGIC_2, v(20)))
      },
      async (path) => {
        await expect(DaemonConnection.open({ type: 'socket', path })).rejects.toMatchObject({ kind: 'store', message: expect.stringMatching(/1\.20.*1\.21/) })
      },
    )
  })

  it('refuses something that is not a Nix daemon', async () => {
    await withDaemon(
      async (peer) => {
        await peer.expect(cat(MAGIC_1, v(38)))
        peer.send(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'))
      },
      async (path) => {
        await expect(DaemonConnection.open({ type: 'socket', path })).rejects.toMatchObject({ kind: 'store', message: expect.stringMatching(/not a Nix daemon/) })
      },
    )
  })

  it('reports a daemon that hangs up before any byte (how every Nix refuses a user) as a store error', async () => {
    // a refusing daemon decides from the peer's credentials before it reads a thing, and closes;
    // the real one is refused in daemon.test.ts (allowed-users)
    await withDaemon(
      async (peer) => {
        peer.socket.destroy()
      },
      async (path) => {
        await expect(DaemonConnection.open({ type: 'socket', path })).rejects.toMatchObject({
          kind: 'store',
          message: expect.stringMatching(/(closed|dropped) the connection.* before the handshake: the daemon refused this user/),
        })
      },
    )
  })

  it('says that a daemon hanging up right after its version may refuse the protocol we announced below its own (Lix below 1.35)', async () => {
    await withDaemon(
      async (peer) => {
        await peer.expect(cat(MAGIC_1, v(34)))
        peer.send(cat(MAGIC_2, v(35)))
        await peer.expect(clientTail(34))
        peer.socket.end() // Lix: "the Nix client version is too old", in its own log only
      },
      async (path) => {
        await expect(DaemonConnection.open({ type: 'socket', path }, { maxMinor: 34 })).rejects.toMatchObject({
          kind: 'store',
          message: expect.stringMatching(/before the handshake: it may refuse a client that announces protocol 1\.34 \(Lix's daemon refuses any below 1\.35\), or the daemon refused this user/),
        })
      },
    )
  })

  it('is a store error when no daemon listens', async () => {
    await expect(DaemonConnection.open({ type: 'socket', path: '/nonexistent/nix-hold/socket' })).rejects.toMatchObject({ kind: 'store', message: expect.stringMatching(/no Nix daemon is listening/) })
  })
})

async function handshake34(peer: ScriptedPeer): Promise<void> {
  await peer.expect(cat(MAGIC_1, v(38)))
  peer.send(cat(MAGIC_2, v(34)))
  await peer.expect(clientTail(34))
  peer.send(cat(str('2.8.0'), LAST))
}

const P1 = '/nix/store/00000000000000000000000000000001-a'
const P2 = '/nix/store/00000000000000000000000000000002-b'

describe('responses', () => {
  it('skips log lines and activities before a result, and matches pipelined responses in order', async () => {
    await withDaemon(
      async (peer) => {
        await handshake34(peer)
        await peer.expect(cat(word(11), str(P1), word(1), str(P2)))
        peer.send(cat(NEXT, str('a log line\n'), START, word(7), word(3), word(102), str('text'), word(2), word(0), word(5), word(1), str('f'), word(0), STOP, word(7), LAST, word(1)))
        peer.send(cat(LAST, word(1)))
      },
      async (path) => {
        const conn = await DaemonConnection.open({ type: 'socket', path })
        const [, valid] = await Promise.all([conn.addTempRoot(P1), conn.isValidPath(P2)])
        expect(valid).toBe(true)
        await conn.close()
      },
    )
  })

  it('fails only the request whose response is an error, and the connection stays usable', async () => {
    await withDaemon(
      async (peer) => {
        await handshake34(peer)
        await peer.expect(cat(word(1), str(P1), word(1), str(P2)))
        peer.send(cat(ERROR, str('Error'), word(0), str('Error'), str('something broke'), word(0), word(1), word(0), str('while doing a thing')))
        peer.send(cat(LAST, word(0)))
      },
      async (path) => {
        const conn = await DaemonConnection.open({ type: 'socket', path })
        const [first, second] = await Promise.allSettled([conn.isValidPath(P1), conn.isValidPath(P2)])
        expect(first).toMatchObject({ status: 'rejected', reason: { kind: 'store', message: 'something broke\nwhile doing a thing' } })
        expect(second).toEqual({ status: 'fulfilled', value: false })
        await conn.close()
      },
    )
  })

  it('reads the pre-1.26 error form: message and exit status', async () => {
    await withDaemon(
      async (peer) => {
        await peer.expect(cat(MAGIC_1, v(25)))
        peer.send(cat(MAGIC_2, v(34)))
        await peer.expect(clientTail(25))
        peer.send(LAST)
        await peer.expect(cat(word(1), str(P1)))
        peer.send(cat(ERROR, str('error: old style'), word(1)))
      },
      async (path) => {
        const conn = await DaemonConnection.open({ type: 'socket', path }, { maxMinor: 25 })
        expect(conn.minor).toBe(25)
        await expect(conn.isValidPath(P1)).rejects.toMatchObject({ kind: 'store', message: 'error: old style' })
        await conn.close()
      },
    )
  })

  it('fails every pending request when the daemon repeats an error and hangs up', async () => {
    const err = cat(ERROR, str('Error'), word(0), str('Error'), str('bad argument'), word(0), word(0))
    await withDaemon(
      async (peer) => {
        await handshake34(peer)
        await peer.expect(cat(word(1), str(P1), word(1), str(P2), word(1), str(P1)))
        peer.send(cat(err, err))
        peer.socket.end()
      },
      async (path) => {
        const conn = await DaemonConnection.open({ type: 'socket', path })
        const results = await Promise.allSettled([conn.isValidPath(P1), conn.isValidPath(P2), conn.isValidPath(P1)])
        expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected'])
        expect(conn.isOpen).toBe(false)
        // the hang-up is what ends it, reported in the daemon's words (not the repetition)
        await expect(conn.lost).resolves.toMatchObject({ kind: 'store', message: expect.stringMatching(/closed the connection: bad argument$/) })
      },
    )
  })

  it('skips activities whose ids pass 2^53 (a worker pid above 2^21) and answers the request', async () => {
    const bigId = (4_194_303n << 32n) + 7n // pid_max on systemd machines is 4,194,304
    await withDaemon(
      async (peer) => {
        await handshake34(peer)
        await peer.expect(cat(word(1), str(P1)))
        peer.send(cat(START, word(bigId), word(0), word(105), str(''), word(1), word(0), word(bigId), word(bigId - 7n), hex('544c535200000000'), word(bigId), word(101), word(0), STOP, word(bigId), LAST, word(1)))
      },
      async (path) => {
        const conn = await DaemonConnection.open({ type: 'socket', path })
        expect(await conn.isValidPath(P1)).toBe(true)
        await conn.close()
      },
    )
  })

  it('closes on an unknown message tag instead of guessing', async () => {
    await withDaemon(
      async (peer) => {
        await handshake34(peer)
        await peer.expect(cat(word(1), str(P1)))
        peer.send(word(0x12345678))
      },
      async (path) => {
        const conn = await DaemonConnection.open({ type: 'socket', path })
        await expect(conn.isValidPath(P1)).rejects.toMatchObject({ kind: 'store', message: expect.stringMatching(/unknown message tag 0x12345678/) })
        expect(conn.isOpen).toBe(false)
      },
    )
  })
})

// A hold on a store whose collector socket cannot be seen from here (another machine, or a daemon
// socket outside a state directory, as this scripted one is): the daemon itself is asked to wait
// for a running collection, between the roots and the check, in one write. A daemon with Nix
// 2.35's fix, or Nix 2.3's blocking roots, is asked nothing.
describe('waiting for a running collection through the daemon', () => {
  const path = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-held'
  const roots = cat(word(11), str(path)) // AddTempRoot
  const check = (minor: number) => cat(word(31), strs([path]), ...(minor >= 27 ? [word(0)] : [])) // QueryValidPaths
  // CollectGarbage: ReturnLive, no paths, ignoreLiveness 0, maxFreed 0, three obsolete words
  const wait = cat(word(20), word(0), word(0), word(0), word(0), word(0), word(0), word(0))
  const handshake = async (peer: ScriptedPeer, minor: number, version: string) => {
    await peer.expect(cat(MAGIC_1, v(38)))
    peer.send(cat(MAGIC_2, v(minor)))
    await peer.expect(clientTail(minor))
    peer.send(cat(...(minor >= 38 ? [strs([])] : []), ...(minor >= 33 ? [str(version)] : []), ...(minor >= 35 ? [word(1)] : []), LAST))
  }

  it.each([
    [38, '2.34.8', true],
    [35, '2.93.3', true], // Lix: not fixed
    [38, '2.35.0pre20260302_abcdef', true], // master before the fix
    [34, '2.8.0', true],
    [38, '2.35.2', false],
    [38, '2.36.0', false],
    [21, '', false], // Nix 2.3: a root waits for the collection itself
  ])('at 1.%i, a daemon saying "%s" is asked to wait: %s', async (minor, version, asked) => {
    await withDaemon(
      async (peer) => {
        await handshake(peer, minor, version)
        await peer.expect(cat(roots, ...(asked ? [wait] : []), check(minor)))
        peer.send(cat(LAST, word(1)))
        // the daemon's log lines while it waits for the collector's lock, then nothing live and nothing freed
        if (asked) peer.send(cat(NEXT, str('waiting for the big garbage collector lock...'), LAST, strs([]), word(0), word(0)))
        peer.send(cat(LAST, strs([path])))
        await peer.closed()
      },
      async (socket) => {
        const hold = await holdPaths([path], { env: { NIX_REMOTE: `unix://${socket}`, NIX_STORE_DIR: '/nix/store' } })
        expect(hold.paths).toEqual([path])
        await hold.release()
      },
    )
  })
})

it('tells which daemons have Nix 2.35.0\'s fix of the collector race', () => {
  const fixed = ['2.35.0', '2.35.2', '2.36.1', '2.40.0+2']
  const not = ['2.34.8', '2.35.0pre20260302_abcdef', '2.90.0', '2.93.3', '3.0.0', '', 'nix', undefined]
  expect(fixed.map(hasRaceFix)).toEqual(fixed.map(() => true))
  expect(not.map(hasRaceFix)).toEqual(not.map(() => false))
  expect([collectorWait('/var', 38, '2.34.8'), collectorWait(undefined, 38, '2.34.8'), collectorWait(undefined, 21, undefined), collectorWait(undefined, 38, '2.35.2')]).toEqual(['gc-socket', 'daemon', 'none', 'none'])
  // a collector this machine can see is asked whatever the daemon is: it may not be the daemon's
  expect([collectorWait('/var', 38, '2.35.2'), collectorWait('/var', 21, undefined)]).toEqual(['gc-socket', 'gc-socket'])
})

// A collector on this machine is not always the daemon's: root's nix-collect-garbage of an older
// Nix collects in its own process and serves the collector's socket itself, as third-party
// collectors do. So the socket is asked wherever this machine can see it, whatever the daemon
// says it is; only the wait through the daemon is left out for a daemon with Nix 2.35's fix.
describe('waiting on the collector socket of a store this machine can see', () => {
  const path = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-held'

  it('waits for a collection running there before confirming, even with a daemon that says 2.35.2', async () => {
    // the store's state directory: the daemon's socket at daemon-socket/socket (a link to the
    // scripted one) names it, and the collector listens at gc-socket/socket
    const state = mkdtempSync(join(tmpdir(), 'nix-hold-state-'))
    let collectionEnded = false
    let checkedAfterEnd: boolean | undefined
    const d = fakeDaemon(async (peer) => {
      await peer.expect(cat(MAGIC_1, v(38)))
      peer.send(cat(MAGIC_2, v(38)))
      await peer.expect(clientTail(38))
      peer.send(cat(strs(['delete-dead-specific-referrers', 'realisation-with-path-not-hash']), str('2.35.2'), word(1), LAST))
      await peer.expect(cat(word(11), str(path)))
      peer.send(cat(LAST, word(1)))
      // the validity check, which must come only once the collection has ended
      await peer.expect(cat(word(31), strs([path]), word(0)))
      checkedAfterEnd = collectionEnded
      peer.send(cat(LAST, strs([path])))
      await peer.closed()
    })
    const collector = createServer()
    try {
      mkdirSync(join(state, 'daemon-socket'))
      symlinkSync(d.path, join(state, 'daemon-socket', 'socket'))
      mkdirSync(join(state, 'gc-socket'))
      let probed!: (socket: Socket) => void
      const connected = new Promise<Socket>((resolve) => (probed = resolve))
      collector.on('connection', (socket) => probed(socket))
      collector.listen(join(state, 'gc-socket', 'socket'))
      await once(collector, 'listening')

      const messages: string[] = []
      let said!: () => void
      const waiting = new Promise<void>((resolve) => (said = resolve))
      const log = (m: string) => (messages.push(m), said())
      const env = { NIX_REMOTE: 'daemon', NIX_STATE_DIR: state, NIX_STORE_DIR: '/nix/store' }
      const holding = holdPaths([path], { env, log })
      const first = await Promise.race([holding.then(() => 'held'), waiting.then(() => 'waiting for the collection')])
      expect(first).toBe('waiting for the collection')
      expect(messages).toEqual([`a garbage collection is running; waiting for it to end before confirming ${path}`])
      // the collection ends as Nix's does: no more listening, then every client connection shut
      collector.close()
      collectionEnded = true
      ;(await connected).end()
      const hold = await holding
      expect(hold.paths).toEqual([path])
      expect(checkedAfterEnd).toBe(true)
      await hold.release()
      await d.result
    } finally {
      collector.close()
      d.close()
      rmSync(state, { recursive: true, force: true })
    }
  })
})

// Daemons that speak the protocol but keep no temporary roots: Harmonia's and snix's answer
// AddTempRoot with an error (both announce 1.37, so the error is the structured form of 1.26 on:
// type, level, name, message, no position, no traces). Harmonia goes on serving the connection;
// the snix daemon is played hanging up after its error.
describe('a daemon that cannot keep temporary roots', () => {
  const path = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-held'
  const refusal = (message: string) => cat(ERROR, str('Error'), word(0), str('Error'), str(message), word(0), word(0))
  const HARMONIA = ['2.24.0 (Harmonia)', 2, 'AddTempRoot is not supported by this store', 'serves on'] as const
  const SNIX = ['2.18.2', 1, 'unsupported operation AddTempRoot', 'hangs up'] as const

  // Serves each connection as such a daemon does, counting them.
  function refusingDaemon([version, trust, message, after]: typeof HARMONIA | typeof SNIX) {
    const served = { connections: 0 }
    const d = fakeDaemon(async (peer) => {
      served.connections++
      await peer.expect(cat(MAGIC_1, v(38)))
      peer.send(cat(MAGIC_2, v(37)))
      await peer.expect(clientTail(37))
      peer.send(cat(str(version), word(trust), LAST))
      // its socket names no state directory: the roots, the wait through the daemon and the check
      // go out in one write
      await peer.expect(cat(word(11), str(path), word(20), word(0), word(0), word(0), word(0), word(0), word(0), word(0), word(31), strs([path]), word(0)))
      peer.send(refusal(message))
      if (after === 'hangs up') return
      peer.send(refusal('CollectGarbage is not supported by this store'))
      peer.send(cat(LAST, strs([path])))
      await peer.closed()
    })
    cleanup = d.close
    return { ...d, served }
  }
  const said = (socket: string, version: string, message: string) =>
    `the Nix daemon socket ${socket} cannot keep temporary roots, which is how nix-hold holds paths: its daemon (it says it is ${JSON.stringify(version)}) refused AddTempRoot: ${message}`

  it.each([
    ['Harmonia', HARMONIA],
    ['snix', SNIX],
  ] as const)('%s\'s is a store error at once, with nothing held and no second connection', async (_, daemon) => {
    const d = refusingDaemon(daemon)
    const started = Date.now()
    const holding = holdPaths([path], { env: { NIX_REMOTE: `unix://${d.path}`, NIX_STORE_DIR: '/nix/store' } })
    await expect(holding).rejects.toMatchObject({ kind: 'store', message: said(d.path, daemon[0], daemon[2]) })
    expect(Date.now() - started).toBeLessThan(1000)
    await d.result
    expect(d.served.connections).toBe(1)
  }, 10_000)

  it('makes the command say so and exit 3, with no kept', async () => {
    const d = refusingDaemon(HARMONIA)
    const w = startWrapper(['--store', `unix://${d.path}`, '--keep', path], { ...process.env, NIX_STORE_DIR: '/nix/store' })
    expect(await w.next()).toEqual({ error: { kind: 'store', message: said(d.path, HARMONIA[0], HARMONIA[2]) } })
    expect((await w.exit).code).toBe(3)
    expect(w.received).toHaveLength(1)
    expect(w.stderr()).toContain('cannot keep temporary roots')
    await d.result
  }, 10_000)
})
