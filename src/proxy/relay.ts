// One client connection of the proxy, relayed byte for byte to a daemon connection of its own.
// What the daemon's worker roots for that connection lasts as long as the connection: when the
// client goes between operations, the daemon connection stays open (held); when it goes in the
// middle of one, the daemon connection is closed at once, so the daemon stops that operation as
// it would for a client of its own that went away.

import type { Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { Stderr } from '../store/protocol.js'
import type { Transport } from '../store/transport.js'
import { WireWriter } from '../store/wire.js'
import { OperationTracker, type Pending } from './operations.js'

// How much a relay lets wait to be written to one side before it stops reading the other. A
// stream's own mark (16 KiB) would stop and start the reading for every chunk of a NAR.
const MAX_QUEUED = 4 * 1024 * 1024

// Copies `from` to `to` with back-pressure, each chunk as `through` gives it.
function forward(from: Readable, to: Writable, through: (chunk: Buffer) => Buffer): void {
  let paused = false
  const resume = () => {
    paused = false
    from.resume()
  }
  from.on('data', (chunk: Buffer) => {
    const out = through(chunk)
    if (out.length === 0) return
    to.write(out)
    if (!paused && to.writableLength > MAX_QUEUED) {
      paused = true
      from.pause()
      to.once('drain', resume)
    }
  })
}

/**
 * Settles once the paths an operation made are held beyond the worker's own roots: 'held', or
 * 'gone' when some of them were not valid any more (a collection that was already running as
 * the operation ended took them).
 */
export type Confirm = (pending: Pending) => Promise<'held' | 'gone'>

// How often an operation whose outputs a running collection took is run again before the client
// is told it failed
const RERUNS = 2

// An error in the daemon's own form at `minor` (protocol doc §4), for an operation's end that
// cannot be passed on
function errorMessage(minor: number, message: string): Buffer {
  const w = new WireWriter().u64(Stderr.Error)
  if (minor >= 26) w.bytes('Error').u64(0).bytes('Error').bytes(message).u64(0).u64(0)
  else w.bytes(message).u64(1)
  return w.finish()
}

export type RelayEnd =
  /** the client left between operations: the daemon connection is held open */
  | 'held'
  /** the client left during an operation, or the daemon connection ended: nothing is held */
  | 'closed'

/**
 * Relays `client` to `upstream` until one of them ends; `ended` settles with what became of the
 * daemon connection. Whoever owns the relay closes a held one (`close()`), which drops its roots.
 */
export class Relay {
  readonly #client: Socket
  readonly #upstream: Transport
  readonly #tracker = new OperationTracker()
  readonly ended: Promise<RelayEnd>
  /** Settles once the daemon connection has ended, however it did. */
  readonly upstreamEnded: Promise<void>
  #closed = false

  readonly #confirm: Confirm
  #reruns = 0

  constructor(client: Socket, upstream: Transport, confirm: Confirm) {
    this.#client = client
    this.#upstream = upstream
    this.#confirm = confirm
    forward(client, upstream.output, (chunk) => (this.#tracker.fromClient(chunk), chunk))
    forward(upstream.input, client, (chunk) => {
      const out = this.#tracker.fromDaemon(chunk)
      if (this.#tracker.pending) void this.#endOperation()
      return out
    })
    this.upstreamEnded = new Promise((resolve) => upstream.input.once('close', () => resolve()))
    this.ended = new Promise((resolve) => {
      // the client went: held if nothing was under way, else the daemon must stop what it does
      client.once('close', () => {
        if (this.#closed) return
        if (this.#tracker.busy) {
          this.close()
          resolve('closed')
        } else resolve('held')
      })
      // the daemon side went (a restart, a worker that died, a daemon that refused the client
      // and hung up): the client hears of it as it would from the daemon itself, by the
      // connection closing once what the daemon said last has reached it
      const gone = () => {
        client.end()
        this.#closed = true
        resolve('closed')
      }
      upstream.input.once('close', gone)
      upstream.input.once('end', gone)
      upstream.input.on('error', () => undefined)
      upstream.output.on('error', () => undefined)
    })
    client.on('error', () => undefined) // a client killed mid-write resets; 'close' follows
    client.resume()
  }

  /** Whether the client is inside an operation (or the handshake) now. */
  get busy(): boolean {
    return this.#tracker.busy
  }

  // An operation that made paths has ended, its end held back: it goes on to the client once they
  // are held; if a collection took some, the operation runs again (a build), or the client is
  // told it failed, rather than that it succeeded.
  #ending = false
  async #endOperation(): Promise<void> {
    const pending = this.#tracker.pending
    if (this.#ending || !pending) return
    this.#ending = true
    let outcome: 'held' | 'gone'
    try {
      outcome = await this.#confirm(pending)
    } catch {
      outcome = 'held' // the holder cannot tell (its store is away): the worker's own roots stand
    }
    this.#ending = false
    if (this.#closed) return
    // the client has gone: its end is for no one, and a rerun would build for no one
    if (this.#client.destroyed) return void this.#tracker.release()
    if (outcome === 'held') {
      this.#reruns = 0
      this.#client.write(this.#tracker.release())
    } else if (pending.rerunnable && this.#reruns < RERUNS) {
      this.#reruns++
      this.#upstream.output.write(this.#tracker.rerun())
    } else {
      this.#reruns = 0
      const minor = this.#tracker.minor!
      this.#tracker.drop()
      this.#client.write(errorMessage(minor, `nix-hold: a garbage collection that was already running took ${[...pending.paths, ...pending.derivations].join(', ')} as this operation ended; run it again`))
    }
  }

  /** What the daemon's worker rooted for this connection; undefined when that cannot be told (operations.ts). */
  get rooted(): { readonly paths: readonly string[]; readonly derivations: readonly string[] } | undefined {
    return this.#tracker.rooted
  }

  /** Closes both sides at once; the daemon drops this connection's roots. */
  close(): void {
    this.#closed = true
    this.#client.destroy()
    this.#upstream.destroy()
  }
}
