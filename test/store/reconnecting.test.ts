// The reconnecting connection on its own, over stand-in connections whose loss each test causes:
// what a real daemon restart does to the roots is the integration tests' business (faults).

import { describe, expect, it } from 'vitest'
import { HoldError } from '../../src/errors.js'
import type { DaemonConnection } from '../../src/store/daemon.js'
import { ReconnectingConnection } from '../../src/store/reconnecting.js'
import { Responses } from '../../src/store/responses.js'
import { cat, str, word } from '../helpers/bytes.js'

/** A stand-in connection: lose() drops it as a dead daemon would. */
function standIn(name: string) {
  let markLost!: (err: HoldError) => void
  const lost = new Promise<HoldError>((resolve) => (markLost = resolve))
  let open = true
  const conn = {
    name,
    lost,
    get isOpen() {
      return open
    },
    closed: false,
    async close() {
      conn.closed = true
      if (open) (open = false), markLost(new HoldError('store', 'connection closed'))
    },
    lose() {
      open = false
      markLost(new HoldError('store', `${name} dropped the connection`))
    },
  }
  return conn
}
type StandIn = ReturnType<typeof standIn>
const asConn = (c: StandIn) => c as unknown as DaemonConnection
const nameOf = (c: DaemonConnection) => (c as unknown as StandIn).name

/** A gate a test opens when it chooses. */
function gate() {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { opened, open }
}

describe('ReconnectingConnection', () => {
  it('replaces a lost connection, readies the replacement first, and runs a request lost with it again there', async () => {
    const first = standIn('first')
    const second = standIn('second')
    const log: string[] = []
    const restored: string[] = []
    const rc = new ReconnectingConnection(asConn(first), { open: async () => asConn(second), log: (m) => log.push(m), label: '' })
    rc.retryUntilClosed(async (conn) => {
      restored.push(nameOf(conn))
      return () => log.push('afterwards')
    })
    const ran: string[] = []
    const answer = await rc.use(async (conn) => {
      ran.push(nameOf(conn))
      if (conn === asConn(first)) {
        first.lose()
        throw new HoldError('store', 'first dropped the connection')
      }
      return 'answered'
    })
    expect(answer).toBe('answered')
    expect(ran).toEqual(['first', 'second'])
    expect(restored).toEqual(['second'])
    expect(log).toEqual(['lost the daemon connection (first dropped the connection); reconnecting', 'afterwards'])
    expect(nameOf(rc.current)).toBe('second')
  })

  it('reports nothing for a replacement readied after it was closed, and closes the replacement', async () => {
    const first = standIn('first')
    const second = standIn('second')
    const restoring = gate()
    const letRestoreFinish = gate()
    const told: string[] = []
    const rc = new ReconnectingConnection(asConn(first), { open: async () => asConn(second), label: '' })
    rc.retryUntilClosed(async () => {
      restoring.open()
      await letRestoreFinish.opened
      return () => told.push('lost paths reported')
    })
    first.lose()
    await restoring.opened
    // released while the replacement re-roots what was held
    const closing = rc.close()
    letRestoreFinish.open()
    await closing
    expect(told).toEqual([])
    expect(second.closed).toBe(true)
    await expect(rc.use(async () => 'x')).rejects.toThrow('connection closed')
  })

  it('gives up after as many failed attempts in a row as it was allowed, with the last reason', async () => {
    const first = standIn('first')
    let opens = 0
    const log: string[] = []
    const rc = new ReconnectingConnection(
      asConn(first),
      {
        open: async () => {
          opens++
          throw new HoldError('store', 'no Nix daemon is listening there')
        },
        log: (m) => log.push(m),
        label: ' to ssh-ng://host1',
      },
      { attempts: 3 },
    )
    first.lose()
    await expect(rc.use(async () => 'x')).rejects.toThrow('lost the daemon connection to ssh-ng://host1 and could not reconnect in 3 attempts: no Nix daemon is listening there')
    expect(opens).toBe(3)
    // waits between attempts grow
    expect(log.filter((m) => m.startsWith('reconnect'))).toEqual([
      'reconnect to ssh-ng://host1 failed (no Nix daemon is listening there); retrying in 50 ms',
      'reconnect to ssh-ng://host1 failed (no Nix daemon is listening there); retrying in 100 ms',
    ])
  })

  it('while bounded, gives each request tries of its own: a later one reconnects to a daemon that is back', async () => {
    const first = standIn('first')
    const back = standIn('back')
    let daemonUp = false
    let opens = 0
    const rc = new ReconnectingConnection(
      asConn(first),
      {
        open: async () => {
          opens++
          if (!daemonUp) throw new HoldError('store', 'no Nix daemon is listening there')
          return asConn(back)
        },
        label: '',
      },
      { attempts: 2 },
    )
    first.lose()
    // nothing is tried until a request needs the connection
    await first.lost
    expect(opens).toBe(0)
    await expect(rc.use(async () => 'x')).rejects.toThrow('could not reconnect in 2 attempts')
    daemonUp = true
    expect(await rc.use(async (conn) => nameOf(conn))).toBe('back')
    expect(opens).toBe(3)
  })

  it('while bounded, runs a request lost with its connection again at most as often as allowed', async () => {
    const conns = [standIn('c1'), standIn('c2'), standIn('c3'), standIn('c4')]
    let opened = 1
    const rc = new ReconnectingConnection(asConn(conns[0]!), { open: async () => asConn(conns[opened++]!), label: '' }, { attempts: 3 })
    const ran: string[] = []
    // every connection dies under the request
    const request = rc.use(async (conn) => {
      ran.push(nameOf(conn))
      ;(conn as unknown as StandIn).lose()
      throw new HoldError('store', `${nameOf(conn)} dropped the connection`)
    })
    await expect(request).rejects.toThrow('c3 dropped the connection')
    expect(ran).toEqual(['c1', 'c2', 'c3'])
  })

  it('keeps trying, once told to, until a replacement can be readied', async () => {
    const first = standIn('first')
    const replacements = [standIn('r1'), standIn('r2'), standIn('r3')]
    let opened = 0
    const rc = new ReconnectingConnection(asConn(first), { open: async () => asConn(replacements[opened++]!), label: '' }, { attempts: 1 })
    // a restore that fails twice (a collection took the daemon's lock; the host stalled) is retried
    rc.retryUntilClosed(async (conn) => {
      if (nameOf(conn) !== 'r3') throw new HoldError('store', 'refused')
    })
    first.lose()
    expect(await rc.use(async (conn) => nameOf(conn))).toBe('r3')
    expect(replacements.map((r) => r.closed)).toEqual([true, true, false])
  })

  it('does not run a request again when it failed on a connection that is still open', async () => {
    const first = standIn('first')
    const rc = new ReconnectingConnection(asConn(first), { open: async () => asConn(standIn('second')), label: '' })
    let runs = 0
    await expect(
      rc.use(async () => {
        runs++
        throw new HoldError('store', 'path is not valid')
      }),
    ).rejects.toThrow('path is not valid')
    expect(runs).toBe(1)
    await rc.close()
    expect(first.closed).toBe(true)
  })

  it('does not run a request again that the daemon answered with an error and then hung up', async () => {
    // the daemon's answer, read from its bytes as a real connection reads them
    const responses = new Responses(() => 38, () => undefined)
    const answered = responses.expect('stderr', (r) => r.u64(), (why) => new HoldError('store', `refused: ${why}`))
    responses.receive(cat(word(0x63787470), str('Error'), word(0), str('Error'), str('AddTempRoot is not supported'), word(0), word(0)))
    const first = standIn('first')
    let replaced = false
    const rc = new ReconnectingConnection(asConn(first), { open: async () => ((replaced = true), asConn(standIn('second'))), label: '' })
    rc.retryUntilClosed(async () => undefined)
    let runs = 0
    await expect(
      rc.use(async () => {
        runs++
        const refusal = await answered.catch((err: unknown) => err)
        first.lose() // its hang-up after the error arrives before the request is judged
        throw refusal
      }),
    ).rejects.toThrow('refused: AddTempRoot is not supported')
    expect(runs).toBe(1)
    await rc.close()
    expect(replaced).toBe(true) // the lost connection itself is still replaced, for what it held
  })
})
