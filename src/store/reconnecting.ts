// A daemon connection that outlives the daemon's: when one is lost (a worker killed, the daemon
// restarted, a host's ssh gone) its temp roots go with it, so a new one is made and readied (the
// roots put back) before requests go on.

import { setTimeout as sleep } from 'node:timers/promises'
import { HoldError } from '../errors.js'
import type { DaemonConnection } from './daemon.js'
import { isDaemonAnswer } from './responses.js'

/**
 * Readies a replacement before it takes over, typically by rooting again what the lost one held.
 * A throw counts as a failed attempt. What it returns runs once the replacement has taken over.
 */
export type Restore = (conn: DaemonConnection, signal: AbortSignal) => Promise<(() => void) | void>

export interface ReconnectOptions {
  /** Opens a new connection to the same store. */
  readonly open: (signal: AbortSignal) => Promise<DaemonConnection>
  /** Where notes meant for a person go. */
  readonly log?: ((message: string) => void) | undefined
  /** How messages name the store: '' for the hold's own, ' to URL' for another. */
  readonly label: string
}

/** Delays between attempts: the first at once, then 50 ms doubling up to 2 s. */
const FIRST_DELAY_MS = 50
const MAX_DELAY_MS = 2000

/** One connection at a time, replaced when lost; `use` runs requests on whichever is current. */
export class ReconnectingConnection {
  #conn: DaemonConnection
  // settles when the replacement under way has taken over or given up (with why); requests wait on it
  #ready: Promise<HoldError | undefined> = Promise.resolve(undefined)
  #replacing = false
  // a connection made to replace a lost one, until it has taken over
  #candidate: DaemonConnection | undefined
  #restore: Restore | undefined
  #attempts: number | undefined
  #closing: Promise<void> | undefined
  // aborted by close(): retries stop, and waits break off
  readonly #stop = new AbortController()

  /**
   * Takes over `conn`. Until `retryUntilClosed` is called (while a build runs, say), a lost
   * connection is replaced only when a request needs it, `attempts` tries at most for each
   * request, and a request lost with its connection runs again at most that often.
   */
  constructor(
    conn: DaemonConnection,
    private readonly options: ReconnectOptions,
    { attempts, restore }: { attempts?: number; restore?: Restore } = {},
  ) {
    this.#conn = conn
    this.#attempts = attempts
    this.#restore = restore
    this.#watch(conn)
  }

  /** The connection requests go to now. */
  get current(): DaemonConnection {
    return this.#conn
  }

  /** Aborted once `close()` is called. */
  get closed(): AbortSignal {
    return this.#stop.signal
  }

  /**
   * From now on a lost connection is replaced as soon as it is lost, however often it takes, each
   * replacement readied by `restore`: what it holds must not stay unheld until the next request.
   */
  retryUntilClosed(restore: Restore): void {
    this.#attempts = undefined
    this.#restore = restore
    if (!this.#conn.isOpen) void this.#conn.lost.then((why) => this.#startReplacing(why))
  }

  /**
   * Runs `request` on the current connection. If the connection is lost while it runs, what the
   * request did went with it: it runs again on the replacement, once that has taken over.
   */
  async use<T>(request: (conn: DaemonConnection) => Promise<T>): Promise<T> {
    for (let runs = 1; ; runs++) {
      this.#stop.signal.throwIfAborted()
      let gaveUp = await this.#ready
      // lost while bounded: replaced now, with tries of this request's own (the daemon may be back)
      if (!this.#conn.isOpen && this.#attempts !== undefined) gaveUp = await this.#startReplacing(await this.#conn.lost)
      if (gaveUp) throw gaveUp
      const conn = this.#conn
      try {
        // one already gone, its replacement not begun yet: nothing sent on it could be answered
        if (!conn.isOpen) throw await conn.lost
        return await request(conn)
      } catch (err) {
        // the daemon's own error answer stands even if it hung up right after: a replacement
        // would be told the same (a daemon that keeps no roots refuses every one)
        if (this.#stop.signal.aborted || conn.isOpen || isDaemonAnswer(err)) throw err
        if (this.#attempts !== undefined && runs >= this.#attempts) throw err
        // lost while the request was out: its watcher (subscribed before this request, so told
        // first) is replacing it, or the next turn of this loop does
        await conn.lost
      }
    }
  }

  /** Closes the current connection (and any replacement being made): every root on it goes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    this.#stop.abort(new HoldError('store', 'connection closed'))
    // a replacement still being readied may wait on the daemon (Nix 2.3 makes a root wait for a
    // running collection; a host may stall): closing it ends that wait
    void this.#candidate?.close()
    await this.#ready
    await this.#conn.close()
  }

  #watch(conn: DaemonConnection): void {
    void conn.lost.then((why) => {
      if (this.#stop.signal.aborted || conn !== this.#conn) return
      // while bounded (a build runs), the next request replaces it: the daemon may be back by then
      if (this.#attempts === undefined) void this.#startReplacing(why)
    })
  }

  #startReplacing(why: HoldError): Promise<HoldError | undefined> {
    if (!this.#replacing) {
      this.#replacing = true
      this.#ready = this.#replace(why).finally(() => (this.#replacing = false))
    }
    return this.#ready
  }

  // Makes and readies a replacement; settles with why it gave up, if it did (bounded attempts).
  async #replace(why: HoldError): Promise<HoldError | undefined> {
    const { log, label } = this.options
    tell(() => log?.(`lost the daemon connection${label} (${why.message}); reconnecting`))
    const signal = this.#stop.signal
    for (let attempt = 1, delay = FIRST_DELAY_MS; !signal.aborted; attempt++, delay = Math.min(delay * 2, MAX_DELAY_MS)) {
      let conn: DaemonConnection | undefined
      let afterwards: (() => void) | void
      try {
        conn = await this.options.open(signal)
        this.#candidate = conn
        // closed while it opened: #close could not see it to close it
        signal.throwIfAborted()
        afterwards = await this.#restore?.(conn, signal)
      } catch (err) {
        await conn?.close()
        if (signal.aborted) return undefined
        if (this.#attempts !== undefined && attempt >= this.#attempts) {
          return new HoldError('store', `lost the daemon connection${label} and could not reconnect in ${attempt} attempts: ${(err as Error).message}`, { cause: err })
        }
        tell(() => log?.(`reconnect${label} failed (${(err as Error).message}); retrying in ${delay} ms`))
        await sleep(delay, undefined, { signal }).catch(() => undefined)
        continue
      } finally {
        this.#candidate = undefined
      }
      this.#conn = conn
      this.#watch(conn)
      // closed while the replacement was readied: nothing is held any more, so nothing is reported
      if (signal.aborted) return void (await conn.close())
      // the caller's own code comes last: a throw there must not undo the new connection
      if (afterwards) tell(afterwards)
      return undefined
    }
    return undefined
  }
}

/** Calls a caller's callback; what it throws is its own business, not the connection's. */
export function tell(callback: () => void): void {
  try {
    callback()
  } catch {
    // a throwing log or onLost must not break a reconnect
  }
}
