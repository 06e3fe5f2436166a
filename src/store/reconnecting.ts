// A daemon connection that outlives the daemon's: when one is lost (a worker killed, the daemon
// restarted, a host's ssh gone) its temp roots go with it, so a new one is made and readied (the
// roots put back) before requests go on.

import { setTimeout as sleep } from 'node:timers/promises'
import { HoldError } from '../errors.js'
import type { DaemonConnection } from './daemon.js'

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
  // settles when a lost connection has been replaced (or given up on); requests wait on it
  #ready: Promise<void> = Promise.resolve()
  // a connection made to replace a lost one, until it has taken over
  #replacing: DaemonConnection | undefined
  // why replacing stopped for good: attempts ran out
  #gaveUp: HoldError | undefined
  #restore: Restore | undefined
  #attempts: number | undefined
  #closing: Promise<void> | undefined
  // aborted by close(): retries stop, and waits break off
  readonly #stop = new AbortController()

  /**
   * Takes over `conn`. Until `retryUntilClosed` is called, a lost connection is replaced at most
   * `attempts` times in a row before requests fail with the last error.
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

  /** From now on a lost connection is replaced however often it takes, each replacement readied by `restore`. */
  retryUntilClosed(restore: Restore): void {
    this.#attempts = undefined
    this.#restore = restore
  }

  /**
   * Runs `request` on the current connection. If the connection is lost while it runs, what the
   * request did went with it: it runs again on the replacement, once that has taken over.
   */
  async use<T>(request: (conn: DaemonConnection) => Promise<T>): Promise<T> {
    for (;;) {
      this.#stop.signal.throwIfAborted()
      await this.#ready
      if (this.#gaveUp) throw this.#gaveUp
      const conn = this.#conn
      try {
        // one already gone, its replacement not begun yet: nothing sent on it could be answered
        if (!conn.isOpen) throw await conn.lost
        return await request(conn)
      } catch (err) {
        if (this.#stop.signal.aborted || conn.isOpen) throw err
        // its watcher (subscribed before this request, so told first) is replacing it
        await conn.lost
        await this.#ready
        if (this.#conn === conn) throw this.#gaveUp ?? err
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
    void this.#replacing?.close()
    await this.#ready
    await this.#conn.close()
  }

  #watch(conn: DaemonConnection): void {
    void conn.lost.then((why) => {
      if (this.#stop.signal.aborted || conn !== this.#conn) return
      this.#ready = this.#replace(why)
    })
  }

  async #replace(why: HoldError): Promise<void> {
    const { log, label } = this.options
    tell(() => log?.(`lost the daemon connection${label} (${why.message}); reconnecting`))
    const signal = this.#stop.signal
    for (let attempt = 1, delay = FIRST_DELAY_MS; !signal.aborted; attempt++, delay = Math.min(delay * 2, MAX_DELAY_MS)) {
      let conn: DaemonConnection | undefined
      let afterwards: (() => void) | void
      try {
        conn = await this.options.open(signal)
        this.#replacing = conn
        afterwards = await this.#restore?.(conn, signal)
      } catch (err) {
        await conn?.close()
        if (signal.aborted) return
        if (this.#attempts !== undefined && attempt >= this.#attempts) {
          this.#gaveUp = new HoldError('store', `lost the daemon connection${label} and could not reconnect in ${attempt} attempts: ${(err as Error).message}`, { cause: err })
          return
        }
        tell(() => log?.(`reconnect${label} failed (${(err as Error).message}); retrying in ${delay} ms`))
        await sleep(delay, undefined, { signal }).catch(() => undefined)
        continue
      } finally {
        this.#replacing = undefined
      }
      this.#conn = conn
      this.#watch(conn)
      // closed while the replacement was readied: nothing is held any more, so nothing is reported
      if (signal.aborted) return void (await conn.close())
      // the caller's own code comes last: a throw there must not undo the new connection
      if (afterwards) tell(afterwards)
      return
    }
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
