// One connection to a Nix daemon: handshake, and the operations a root holder needs. Requests are
// pipelined: each call writes at once, and responses.ts matches the answers to them by order.

import { HoldError, isHoldError } from '../errors.js'
import { checkMinor, GcAction, NEWEST_MINOR, OLDEST_MINOR, Op, Trust, WORKER_MAGIC_1, WORKER_MAGIC_2, majorOf, minorOf, protocolVersion } from './protocol.js'
import { describeTarget, type DaemonTarget } from './resolve.js'
import { Responses, type Refused } from './responses.js'
import { openTransport } from './open-transport.js'
import type { Transport } from './transport.js'
import { WireWriter, type WireReader } from './wire.js'

export interface ConnectOptions {
  /** Announce at most this minor version (tests use it to exercise older protocol paths). */
  readonly maxMinor?: number
  readonly signal?: AbortSignal
}

const readWord = (r: WireReader): number => r.u64()

/**
 * A handshaken connection to a Nix daemon. Temp roots added through it last exactly as long as it
 * stays open; `close()` (or losing the connection) drops them all at once.
 */
export class DaemonConnection {
  readonly #responses: Responses
  #outbox: Buffer[] = []
  #failure: HoldError | undefined
  #handshaken = false
  #closing = false
  #minor = OLDEST_MINOR
  #daemonMinor = OLDEST_MINOR
  #daemonVersion: string | undefined
  #trust: Trust | undefined
  readonly #lost: Promise<HoldError>
  #markLost!: (err: HoldError) => void

  private constructor(
    private readonly transport: Transport,
    readonly target: DaemonTarget,
  ) {
    this.#lost = new Promise((resolve) => (this.#markLost = resolve))
    this.#responses = new Responses(
      () => this.#minor,
      (err) => this.#fail(err),
    )
    transport.input.on('data', (chunk: Buffer) => this.#responses.receive(chunk))
    transport.input.on('end', () => this.#fail(this.#closedError()))
    transport.input.on('error', (err) => this.#fail(this.#closedError(err)))
    transport.output.on('error', (err) => this.#fail(this.#closedError(err)))
  }

  /** Connects and handshakes; a daemon that is absent, too old or speaks garbage gives a HoldError of kind `store`. */
  static async open(target: DaemonTarget, { maxMinor = NEWEST_MINOR, signal }: ConnectOptions = {}): Promise<DaemonConnection> {
    checkMinor(maxMinor)
    signal?.throwIfAborted()
    const conn = new DaemonConnection(await openTransport(target, signal), target)
    const onAbort = () => conn.#fail(new HoldError('store', 'aborted', { cause: signal?.reason }))
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted) onAbort() // aborted while the transport opened
    try {
      await conn.#handshake(maxMinor)
      conn.#handshaken = true
    } catch (err) {
      // nothing is held yet: no need to wait for the daemon to hang up politely
      conn.#fail(isHoldError(err) ? err : new HoldError('store', String(err), { cause: err }))
      await conn.transport.end()
      if (signal?.aborted) throw signal.reason
      // ssh's own account may have arrived only as it exited
      const said = conn.transport.why?.()
      if (said !== undefined && isHoldError(err) && err.kind === 'store' && !err.message.includes(said)) {
        throw new HoldError('store', `${err.message}: ${said}`, { cause: err })
      }
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    return conn
  }

  /** The negotiated minor version: min(ours, the daemon's). */
  get minor(): number {
    return this.#minor
  }
  /** The minor version the daemon announced: what it is, whatever was negotiated. */
  get daemonMinor(): number {
    return this.#daemonMinor
  }
  /** The daemon's Nix version, sent from minor 33 on. */
  get daemonVersion(): string | undefined {
    return this.#daemonVersion
  }
  /** Whether the daemon trusts us, sent from minor 35 on. */
  get trust(): Trust | undefined {
    return this.#trust
  }
  /** Settles with the reason once the connection is gone, whether closed by us or lost. */
  get lost(): Promise<HoldError> {
    return this.#lost
  }
  get isOpen(): boolean {
    return this.#failure === undefined
  }

  async #handshake(ourMinor: number): Promise<void> {
    this.#send(new WireWriter().u64(WORKER_MAGIC_1).u64(protocolVersion(ourMinor)).finish())
    // the magic is compared as raw bytes first: a peer that is no daemon need not send a valid word
    const magic = await this.#expect((r) => r.raw(8))
    if (Buffer.compare(magic, new WireWriter().u64(WORKER_MAGIC_2).finish()) !== 0) {
      throw new HoldError('store', `${describeTarget(this.target)} is not a Nix daemon: expected the magic word "dxio", got ${JSON.stringify(Buffer.from(magic).toString('latin1'))}`)
    }
    const serverVersion = await this.#expect((r) => r.u64())
    if (majorOf(serverVersion) !== 1 || minorOf(serverVersion) < OLDEST_MINOR) {
      throw new HoldError('store', `the Nix daemon speaks protocol ${majorOf(serverVersion)}.${minorOf(serverVersion)}; nix-hold needs 1.${OLDEST_MINOR} or newer (Nix 2.3+)`)
    }
    const minor = Math.min(ourMinor, minorOf(serverVersion))
    this.#minor = minor
    this.#daemonMinor = minorOf(serverVersion)
    const w = new WireWriter()
    if (minor >= 38) w.strings([]) // our feature set: none needed for roots
    if (minor >= 14) w.u64(0) // no CPU affinity
    if (minor >= 11) w.u64(0) // obsolete reserveSpace
    this.#send(w.finish())
    if (minor >= 38) await this.#expect((r) => r.strings())
    if (minor >= 33) this.#daemonVersion = await this.#expect((r) => r.string())
    if (minor >= 35) {
      const t = await this.#expect((r) => r.u64())
      if (!(t in Trust)) throw new HoldError('store', `the Nix daemon sent trust status ${t}, expected 0, 1 or 2`)
      this.#trust = Trust[t as keyof typeof Trust]
    }
    await this.#response(() => undefined)
  }

  /** Whether `path` is a valid store path (false, not an error, for one that does not exist). */
  isValidPath(path: string): Promise<boolean> {
    return this.#request(new WireWriter().u64(Op.IsValidPath).bytes(path), (r) => r.bool())
  }

  /** The subset of `paths` that is valid, in one round trip; never substitutes. */
  async queryValidPaths(paths: readonly string[]): Promise<Set<string>> {
    const w = new WireWriter().u64(Op.QueryValidPaths).strings(paths)
    if (this.#minor >= 27) w.bool(false)
    return new Set(await this.#request(w, (r) => r.strings()))
  }

  /**
   * The outputs of the derivation `drvPath` whose paths are known (a floating content-addressed
   * output's is not before it is built), by name: QueryDerivationOutputMap from 1.22 on (its map's
   * optional path is an empty string for none). Before it, QueryDerivationOutputs gives the paths
   * without their names: each is named "*" then.
   */
  async derivationOutputs(drvPath: string): Promise<Array<{ name: string; path: string }>> {
    if (this.#minor < 22) {
      const paths = await this.#request(new WireWriter().u64(Op.QueryDerivationOutputs).bytes(drvPath), (r) => r.strings())
      return paths.map((path) => ({ name: '*', path }))
    }
    return this.#request(new WireWriter().u64(Op.QueryDerivationOutputMap).bytes(drvPath), (r) => {
      const n = r.u64()
      const out: Array<{ name: string; path: string }> = []
      for (let i = 0; i < n; i++) {
        const name = r.string()
        const path = r.string()
        if (path !== '') out.push({ name, path })
      }
      return out
    })
  }

  /** Registers `path` (valid or not yet) as a GC root for as long as this connection is open. */
  async addTempRoot(path: string): Promise<void> {
    await this.#request(new WireWriter().u64(Op.AddTempRoot).bytes(path), readWord, this.#cannotRoot)
  }

  /** Registers every path, pipelined: one write, then one response each; rejects with the first failure. */
  addTempRoots(paths: readonly string[]): Promise<void> {
    if (paths.length === 0) return Promise.resolve()
    if (this.#failure) return Promise.reject(this.#failure)
    const w = new WireWriter(paths.length * 96)
    for (const p of paths) w.u64(Op.AddTempRoot).bytes(p)
    const answered = this.#responses.expectMany(paths.length, readWord, this.#cannotRoot)
    this.#send(w.finish())
    return answered
  }

  // An AddTempRoot answered with an error: the daemon keeps no temporary roots at all (Harmonia's
  // and snix's daemons refuse every one), or cannot now (Nix, with its temp-roots file unwritable).
  // Either way nothing of that request is held, and asking again on a new connection would not
  // change it.
  readonly #cannotRoot = (why: string): HoldError => {
    const version = this.#daemonVersion === undefined ? '' : ` (it says it is ${JSON.stringify(this.#daemonVersion)})`
    return new HoldError('store', `${describeTarget(this.target)} cannot keep temporary roots, which is how nix-hold holds paths: its daemon${version} refused AddTempRoot: ${why}`)
  }

  /**
   * Settles once no garbage collection that was running when this request reached the daemon is
   * still running (store/collector.ts says why that matters). It asks for a collection that only
   * reports the live paths (ReturnLive) and may free nothing (maxFreed 0): the daemon takes the
   * collector's lock, so it waits for a running collection to end, reads the roots, and answers
   * with no paths, deleting nothing and never scanning the store. Any user the daemon accepts may
   * send it. Requests sent after it are answered after it.
   */
  async waitForCollector(): Promise<void> {
    const w = new WireWriter().u64(Op.CollectGarbage).u64(GcAction.ReturnLive).strings([])
    w.bool(false) // ignoreLiveness
    w.u64(0) // maxFreed
    w.u64(0).u64(0).u64(0) // three obsolete settings
    // the live paths (none were looked for), bytes freed, and an obsolete word
    await this.#request(w, (r) => [r.strings(), r.u64(), r.u64()])
  }

  /**
   * Closes the connection, and with it drops every temp root it registered; settles once the
   * daemon's side has hung up too (bounded by CLOSE_WAIT_MS), so a collection started after this
   * settles may take the paths. Idempotent.
   */
  async close(): Promise<void> {
    this.#closing = true
    this.#fail(new HoldError('store', 'connection closed'), false)
    await this.transport.end()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  #request<T>(w: WireWriter, decode: (r: WireReader) => T, refused?: Refused): Promise<T> {
    const promise = this.#response(decode, refused)
    this.#send(w.finish())
    return promise
  }

  // A response is a stderr loop and then, after LAST, a value.
  #response<T>(decode: (r: WireReader) => T, refused?: Refused): Promise<T> {
    return this.#failure ? Promise.reject(this.#failure) : this.#responses.expect('stderr', decode, refused)
  }

  // A bare value, as in the handshake before the first stderr loop.
  #expect<T>(decode: (r: WireReader) => T): Promise<T> {
    return this.#failure ? Promise.reject(this.#failure) : this.#responses.expect('result', decode)
  }

  // Requests made in the same tick go out as one write, so a batch costs one syscall.
  #send(bytes: Buffer): void {
    if (this.#failure) return
    this.#outbox.push(bytes)
    if (this.#outbox.length === 1) queueMicrotask(() => this.#flush())
  }

  #flush(): void {
    const out = this.#outbox.length === 1 ? this.#outbox[0]! : Buffer.concat(this.#outbox)
    this.#outbox = []
    if (!this.#failure) this.transport.output.write(out)
  }

  // How the connection ended, in the daemon's own words when it said any: a daemon that cannot go
  // on sends an error and hangs up, and with requests of ours still unread the hang-up arrives as
  // a reset (ECONNRESET) rather than a clean close.
  #closedError(err?: Error): HoldError {
    const why = this.#responses.lastError()
    const where = describeTarget(this.target)
    // a hang-up with bytes of ours unread arrives as ECONNRESET, or EPIPE on our next write
    const how = err ? `dropped the connection (${(err as NodeJS.ErrnoException).code ?? err.message})` : 'closed the connection'
    const said = this.transport.why?.()
    if (said !== undefined && why === undefined) {
      // what ssh (or the host's shell) said is the best account of a connection that ended
      return new HoldError('store', `${where} ${how}${this.#handshaken ? '' : ' before the handshake'}: ${said}`, { cause: err })
    }
    if (why !== undefined) return new HoldError('store', `${where} ${how}: ${why}`, { cause: err })
    if (!this.#handshaken) {
      // Nix checks allowed-users and trusted-users, and opens its store, before it says a word;
      // either failing, it hangs up without one (its own log says which)
      const refused = 'the daemon refused this user (see allowed-users and trusted-users in its nix.conf) or could not open its store'
      if (this.#minor < this.#daemonMinor) {
        // we announced less than it speaks (--protocol-minor): Lix hangs up on any client below
        // its own 1.35, after its version and before a word of its own, just the same
        return new HoldError('store', `${where} ${how} before the handshake: it may refuse a client that announces protocol 1.${this.#minor} (Lix's daemon refuses any below 1.35), or ${refused}`, { cause: err })
      }
      return new HoldError('store', `${where} ${how} before the handshake: ${refused}`, { cause: err })
    }
    return new HoldError('store', `${where} ${how}`, { cause: err })
  }

  #fail(err: HoldError, destroy = true): void {
    if (this.#failure) return
    this.#failure = this.#closing ? new HoldError('store', 'connection closed') : err
    this.#responses.failAll(this.#failure)
    this.#markLost(this.#failure)
    if (destroy) this.transport.destroy()
  }
}
