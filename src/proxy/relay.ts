// One client connection of the proxy, relayed byte for byte to a daemon connection of its own.
// What the daemon's worker roots for that connection lasts as long as the connection: when the
// client goes between operations, the daemon connection stays open (held); when it goes in the
// middle of one, the daemon connection is closed at once, so the daemon stops that operation as
// it would for a client of its own that went away.

import type { Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import type { Transport } from '../store/transport.js'
import { OperationTracker } from './operations.js'

// Copies `from` to `to` with back-pressure, telling `seen` of each chunk first.
function forward(from: Readable, to: Writable, seen: (chunk: Buffer) => void): void {
  from.on('data', (chunk: Buffer) => {
    seen(chunk)
    if (!to.write(chunk)) {
      from.pause()
      to.once('drain', () => from.resume())
    }
  })
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

  constructor(client: Socket, upstream: Transport) {
    this.#client = client
    this.#upstream = upstream
    forward(client, upstream.output, (chunk) => this.#tracker.fromClient(chunk))
    forward(upstream.input, client, (chunk) => this.#tracker.fromDaemon(chunk))
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
      // the daemon side went (a restart, a worker that died): the client hears of it as it would
      // from the daemon itself, by the connection closing
      const gone = () => {
        client.destroy()
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
