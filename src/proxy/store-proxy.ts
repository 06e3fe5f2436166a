// The proxy for one store: a socket in the user's private directory that Nix reaches as
// `unix://PATH`, each connection relayed to a daemon connection of its own (relay.ts). Served by
// the owner's holder, and so ended, with every daemon connection it holds, when the owner exits.

import { createHash } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import type { Adopted } from '../hold/types.js'
import { listenAs, releaseName } from '../rendezvous/listen.js'
import type { FileId } from '../rendezvous/runtime-dir.js'
import { openTransport } from '../store/open-transport.js'
import type { DaemonTarget } from '../store/resolve.js'
import { Relay, type Confirm } from './relay.js'

/** The proxy socket for `owner` and the store `store` in the private directory `dir`. */
export function proxySocketPath(dir: string, owner: { readonly pid: number; readonly start: string }, store: string): string {
  const hash = createHash('sha256').update(`nix-hold proxy\0${owner.pid}\0${owner.start}\0${store}`).digest('hex').slice(0, 32)
  return join(dir, `${hash}.sock`)
}

/** Roots `paths`, and the outputs of `derivations`, on the holder's own connection to the store (StoreRoots.adopt). */
export type Adopt = (paths: readonly string[], derivations: readonly string[]) => Promise<Adopted>

export class StoreProxy {
  readonly #server: Server
  readonly #target: DaemonTarget
  readonly path: string
  #bound: FileId | undefined
  // every relay whose daemon connection is open: a client's, or one held after its client left
  readonly #relays = new Set<Relay>()
  readonly #stopping = new AbortController()

  readonly #adopt: Adopt

  /**
   * `adopt` roots what a finished client's daemon connection rooted on a connection of the
   * holder's own, so that one can be closed (one daemon worker per command, kept for as long as
   * the owner runs, would be too many).
   */
  constructor(path: string, target: DaemonTarget, adopt: Adopt) {
    this.path = path
    this.#target = target
    this.#adopt = adopt
    this.#server = createServer({ pauseOnConnect: true }, (client) => this.#accept(client))
  }

  /** Listens; 'taken' when something else listens as this proxy already. */
  async listen(dir: string): Promise<'ready' | 'taken'> {
    const { state, bound } = await listenAs(this.#server, dir, this.path)
    this.#bound = bound
    return state
  }

  /** Daemon connections open now: one per connected client, and one per client that left between operations. */
  get connections(): number {
    return this.#relays.size
  }

  #accept(client: Socket): void {
    client.on('error', () => undefined)
    // the client's first bytes wait in its paused socket until the daemon connection is open
    openTransport(this.#target, this.#stopping.signal).then(
      (upstream) => {
        if (this.#stopping.signal.aborted || client.destroyed) return upstream.destroy()
        const relay = new Relay(client, upstream, this.#confirm)
        this.#relays.add(relay)
        void relay.upstreamEnded.then(() => this.#relays.delete(relay))
        void relay.ended.then((end) => (end === 'held' ? this.#handOver(relay) : undefined))
      },
      // the store cannot be reached: the client sees the connection close, as it would were the
      // daemon not running
      () => client.destroy(),
    )
  }

  // Before a client hears that an operation made its paths, they are held on the holder's own
  // connection too, rooted once no collection that was running is still running (rooting.ts):
  // a collection already under way when the worker rooted them (Nix 2.5-2.34, Lix) may have
  // taken them in between, and then they are 'gone'.
  readonly #confirm: Confirm = async (pending) => {
    const { held, outputs, unresolved } = await this.#adopt(pending.paths, pending.derivations)
    const have = new Set(held)
    // an output that cannot even be found is not held either
    return unresolved === 0 && [...pending.paths, ...outputs].every((p) => have.has(p)) ? 'held' : 'gone'
  }

  // A client left between operations: its connection's roots move to the holder's connection,
  // and then it is closed. Where they cannot be told (a request this proxy does not read) or
  // cannot be taken over (the store refused), the connection stays open: a root is never dropped.
  async #handOver(relay: Relay): Promise<void> {
    const rooted = relay.rooted
    if (!rooted) return
    try {
      await this.#adopt(rooted.paths, rooted.derivations)
    } catch {
      return
    }
    if (!this.#stopping.signal.aborted) relay.close()
  }

  /** Stops listening and closes every daemon connection: their roots go. */
  stop(): void {
    this.#stopping.abort()
    releaseName(this.path, this.#bound)
    this.#server.close()
    for (const relay of this.#relays) relay.close()
    this.#relays.clear()
  }
}
