// The handshake and the response loop against a scripted daemon, for versions the local Nix 2.8
// cannot play (1.35 trust status, 1.38 features) and for broken daemons.

import { afterEach, describe, expect, it } from 'vitest'
import { holdPaths } from '../../src/hold/start.js'
import { collectorWait, hasRaceFix } from '../../src/store/collector.js'
import { DaemonConnection } from '../../src/store/daemon.js'
import { cat, hex, str, strs, word } from '../helpers/bytes.js'
import { fakeDaemon, type ScriptedPeer } from '../helpers/fake-daemon.js'

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
})
