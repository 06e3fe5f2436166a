// One connection to a Nix daemon: connect, handshake, and the operations a root holder needs.
// Requests are pipelined: each call writes at once and its response is matched by order, since
// the daemon answers strictly one request after another (docs/nix-worker-protocol §9).

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { once } from 'node:events'
import { createConnection } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { HoldError, isHoldError } from '../errors.js'
import {
  GcAction,
  NEWEST_MINOR,
  OLDEST_MINOR,
  Op,
  Trust,
  WORKER_MAGIC_1,
  WORKER_MAGIC_2,
  majorOf,
  minorOf,
  protocolVersion,
} from './protocol.js'
import { readStderrMessage } from './stderr.js'
import { sshArguments, type SshStore } from './ssh.js'
import { tryRead, WireWriter, type WireReader } from './wire.js'
import { Queue } from '../queue.js'

/**
 * Where a store's daemon is: a Unix socket, or a `nix-daemon --stdio` child serving a local store.
 * `stateDir` is the store's state directory when this machine can see it (its garbage collector
 * listens in there while it runs); undefined when it cannot be known.
 */
export type DaemonTarget =
  | { readonly type: 'socket'; readonly path: string; readonly stateDir?: string | undefined }
  | { readonly type: 'stdio'; readonly storeUri: string; readonly env: NodeJS.ProcessEnv; readonly stateDir?: string | undefined }
  | { readonly type: 'ssh'; readonly store: SshStore; readonly env: NodeJS.ProcessEnv; readonly stateDir?: undefined }

export interface ConnectOptions {
  /** Announce at most this minor version (tests use it to exercise older protocol paths). */
  readonly maxMinor?: number
  readonly signal?: AbortSignal
}

interface Transport {
  readonly input: Readable
  readonly output: Writable
  /** Ends the connection at once; with it go the temp roots the daemon's worker registered for it. */
  destroy(): void
  /**
   * Ends the connection and settles once the daemon's side of it is gone too, so its roots are
   * gone: a socket is half-closed and the worker's own close awaited (it drops its temp roots and
   * then exits); a `nix-daemon --stdio` child is killed and its exit awaited. Waits at most
   * `CLOSE_WAIT_MS` for a worker that does not hang up, then destroys.
   */
  end(): Promise<void>
  /** What the transport itself last said went wrong (ssh's last line on stderr), if anything. */
  why?(): string | undefined
}

/** How long `close()` waits for the daemon's worker to hang up after our half-close. */
export const CLOSE_WAIT_MS = 2000

interface Pending {
  // 'stderr': still in the log-message loop; 'result': the loop ended with LAST, the value follows
  phase: 'stderr' | 'result'
  readonly decode: (r: WireReader) => unknown
  readonly resolve: (value: unknown) => void
  readonly reject: (err: Error) => void
}

const describeTarget = (t: DaemonTarget): string =>
  t.type === 'socket' ? `the Nix daemon socket ${t.path}` : t.type === 'stdio' ? `nix-daemon --stdio (store ${t.storeUri})` : `the store ${t.store.uri} (${t.store.remoteCommand} over ssh)`

async function openSocket(path: string, signal: AbortSignal | undefined): Promise<Transport> {
  const socket = createConnection({ path })
  try {
    await once(socket, 'connect', signal ? { signal } : {})
  } catch (err) {
    socket.destroy()
    if (signal?.aborted) throw signal.reason
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'no Nix daemon is listening there' : String(err)
    throw new HoldError('store', `cannot connect to the Nix daemon at ${path}: ${why}`, { cause: err })
  }
  // 'close' comes after 'error' too: waiting on it (not on once(), which rejects on 'error') can
  // never reject, so a reset cannot surface as an unhandled rejection
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return {
    input: socket,
    output: socket,
    destroy: () => socket.destroy(),
    async end() {
      const timer = socket.destroyed ? undefined : setTimeout(() => socket.destroy(), CLOSE_WAIT_MS)
      socket.end()
      await closed
      clearTimeout(timer)
    },
  }
}

/**
 * Starts a child that speaks the protocol on its stdin and stdout, and waits until it runs; a
 * failure to start is a HoldError of kind `store` that says it could not start `what`.
 */
async function startChild(file: string, args: string[], options: SpawnOptions, what: string, signal?: AbortSignal): Promise<{ child: ChildProcess; destroy: () => void; closed: Promise<void> }> {
  const child = spawn(file, args, options)
  // a spawn that fails after an abort has stopped waiting for it must not be an uncaught 'error'
  child.on('error', () => undefined)
  // 'close' comes once the child has exited and its output is read to the end
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
  try {
    await once(child, 'spawn', signal ? { signal } : {})
  } catch (err) {
    child.kill('SIGKILL')
    if (signal?.aborted) throw signal.reason
    throw new HoldError('store', `cannot start ${what}: ${String(err)}`, { cause: err })
  }
  const destroy = () => {
    child.stdin!.destroy()
    child.stdout!.destroy()
    child.kill('SIGKILL')
  }
  return { child, destroy, closed }
}

async function openStdioDaemon(storeUri: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<Transport> {
  // The child serves the local store in-process and registers temp roots under its own pid; it
  // exits when its stdin closes, which also happens if this process is killed.
  const { child, destroy, closed } = await startChild('nix-daemon', ['--stdio'], { env: { ...env, NIX_REMOTE: storeUri }, stdio: ['pipe', 'pipe', 'inherit'] }, 'nix-daemon --stdio for the local store', signal)
  // The child's temp-roots file is locked while it lives, and a collector ignores an unlocked one:
  // once it has exited, its roots are gone, so killing it is as good as a clean shutdown, and quicker.
  return { input: child.stdout!, output: child.stdin!, destroy, end: () => (destroy(), closed) }
}

// ssh says on stderr why a connection failed (unknown host key, refused key, no nix-daemon on the
// host); the last lines of it are kept for the error message, and the rest is not echoed: a
// hold on many hosts would otherwise fill its stderr with their banners.
const STDERR_KEPT = 4096

async function openSshDaemon(target: Extract<DaemonTarget, { type: 'ssh' }>, signal?: AbortSignal): Promise<Transport> {
  const { child, destroy, closed } = await startChild('ssh', sshArguments(target.store, target.env), { env: target.env, stdio: ['pipe', 'pipe', 'pipe'] }, `ssh for the store ${target.store.uri}`, signal)
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    stderr = (stderr + s).slice(-STDERR_KEPT)
  })
  return {
    input: child.stdout!,
    output: child.stdin!,
    destroy,
    // closing ssh's stdin is EOF for the host's daemon: it drops its roots and exits, and ssh with it
    async end() {
      child.stdin!.end()
      const timer = setTimeout(destroy, CLOSE_WAIT_MS)
      await closed
      clearTimeout(timer)
    },
    why: () => stderr.split(/\r?\n/).map((line) => line.trim()).filter(Boolean).slice(-2).join('; ') || undefined,
  }
}

const readWord = (r: WireReader): number => r.u64()

/** Refuses a protocol minor that no supported daemon can serve (a usage error, before any I/O). */
export function checkMinor(minor: number): void {
  if (!Number.isInteger(minor) || minor < OLDEST_MINOR || minor > NEWEST_MINOR) {
    // below 1.21 the handshake differs (and Nix 2.3 would wait for a word never sent); Lix serves
    // 1.35 and up only, Nix 2.33+ 1.18 and up
    throw new HoldError('usage', `protocol minor ${minor} is outside what nix-hold speaks: 1.${OLDEST_MINOR} to 1.${NEWEST_MINOR}`)
  }
}

/**
 * A handshaken connection to a Nix daemon. Temp roots added through it last exactly as long as it
 * stays open; `close()` (or losing the connection) drops them all at once.
 */
export class DaemonConnection {
  // bytes received and not yet consumed: #buf from #at on
  #buf: Buffer = Buffer.alloc(0)
  #at = 0
  readonly #pending = new Queue<Pending>()
  #outbox: Buffer[] = []
  #failure: HoldError | undefined
  // the daemon's last error message, until a request succeeds after it: a daemon that hangs up
  // right after an error (one it cannot recover from) is reported in its own words
  #lastError: string | undefined
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
    transport.input.on('data', (chunk: Buffer) => this.#onData(chunk))
    transport.input.on('end', () => this.#fail(this.#closedError()))
    transport.input.on('error', (err) => this.#fail(this.#closedError(err)))
    transport.output.on('error', (err) => this.#fail(this.#closedError(err)))
  }

  /** Connects and handshakes; a daemon that is absent, too old or speaks garbage gives a HoldError of kind `store`. */
  static async open(target: DaemonTarget, { maxMinor = NEWEST_MINOR, signal }: ConnectOptions = {}): Promise<DaemonConnection> {
    checkMinor(maxMinor)
    signal?.throwIfAborted()
    const transport =
      target.type === 'socket' ? await openSocket(target.path, signal) : target.type === 'stdio' ? await openStdioDaemon(target.storeUri, target.env, signal) : await openSshDaemon(target, signal)
    const conn = new DaemonConnection(transport, target)
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

  /** Registers `path` (valid or not yet) as a GC root for as long as this connection is open. */
  async addTempRoot(path: string): Promise<void> {
    await this.#request(new WireWriter().u64(Op.AddTempRoot).bytes(path), readWord)
  }

  /** Registers every path, pipelined: one write, then one response each; rejects with the first failure. */
  addTempRoots(paths: readonly string[]): Promise<void> {
    if (paths.length === 0) return Promise.resolve()
    if (this.#failure) return Promise.reject(this.#failure)
    const w = new WireWriter(paths.length * 96)
    for (const p of paths) w.u64(Op.AddTempRoot).bytes(p)
    // one promise for the batch: thousands of requests need not cost thousands of promises
    return new Promise<void>((resolve, reject) => {
      let left = paths.length
      let failed = false
      const done = () => --left === 0 && !failed && resolve()
      const fail = (err: Error) => {
        if (!failed) reject(err)
        failed = true
      }
      for (let i = 0; i < paths.length; i++) this.#pending.push({ phase: 'stderr', decode: readWord, resolve: done, reject: fail })
      this.#send(w.finish())
    })
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

  #request<T>(w: WireWriter, decode: (r: WireReader) => T): Promise<T> {
    const promise = this.#response(decode)
    this.#send(w.finish())
    return promise
  }

  // A response is a stderr loop and then, after LAST, a value.
  #response<T>(decode: (r: WireReader) => T): Promise<T> {
    return this.#enqueue('stderr', decode)
  }

  // A bare value, as in the handshake before the first stderr loop.
  #expect<T>(decode: (r: WireReader) => T): Promise<T> {
    return this.#enqueue('result', decode)
  }

  #enqueue<T>(phase: Pending['phase'], decode: (r: WireReader) => T): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure)
    const promise = new Promise<T>((resolve, reject) => {
      this.#pending.push({ phase, decode, resolve: resolve as (v: unknown) => void, reject })
    })
    // bytes for this response may already be here: the daemon can answer before we ask to read
    if (this.#pending.size === 1 && this.#buf.length > this.#at) this.#drainOrFail()
    return promise
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

  #onData(chunk: Buffer): void {
    this.#buf = this.#at >= this.#buf.length ? chunk : Buffer.concat([this.#buf.subarray(this.#at), chunk])
    this.#at = 0
    this.#drainOrFail()
  }

  #drainOrFail(): void {
    try {
      this.#drain()
    } catch (err) {
      this.#fail(err as HoldError)
    }
  }

  #consume(n: number): void {
    this.#at += n
  }

  readonly #readMessage = (r: WireReader) => readStderrMessage(r, this.#minor)

  #drain(): void {
    for (;;) {
      const head = this.#pending.peek()
      if (!head) return
      if (head.phase === 'result') {
        const v = tryRead(this.#buf, head.decode, this.#at)
        if (!v) return
        this.#consume(v.used)
        this.#pending.shift()
        this.#lastError = undefined
        head.resolve(v.value)
        continue
      }
      const m = tryRead(this.#buf, this.#readMessage, this.#at)
      if (!m) return
      this.#consume(m.used)
      const msg = m.value
      if (msg.type === 'last') {
        head.phase = 'result'
      } else if (msg.type === 'error') {
        // An error answers the request at the head. Whether it also ends the connection shows
        // only in what follows: a daemon that cannot go on hangs up (its error may even arrive
        // twice first), and then #closedError reports it. Identical errors in a row are not a
        // sign of that: two roots refused for the same reason are two answers on a live connection.
        this.#lastError = msg.message
        this.#pending.shift()
        head.reject(new HoldError('store', msg.message))
      } else if (msg.type === 'read' || msg.type === 'write') {
        throw new HoldError('store', `the Nix daemon asked to ${msg.type} data, which no operation nix-hold sends needs`)
      }
    }
  }

  // How the connection ended, in the daemon's own words when it said any: a daemon that cannot go
  // on sends an error and hangs up, and with requests of ours still unread the hang-up arrives as
  // a reset (ECONNRESET) rather than a clean close. Its error may also still sit unparsed in the
  // buffer (no request was waiting for it).
  #closedError(err?: Error): HoldError {
    let why = this.#lastError
    try {
      const m = tryRead(this.#buf, this.#readMessage, this.#at)
      if (m?.value.type === 'error') why = m.value.message
    } catch {
      // what is left is not a message at all; the plain report below says enough
    }
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
      return new HoldError('store', `${where} ${how} before the handshake: the daemon refused this user (see allowed-users and trusted-users in its nix.conf) or could not open its store`, { cause: err })
    }
    return new HoldError('store', `${where} ${how}`, { cause: err })
  }

  #fail(err: HoldError, destroy = true): void {
    if (this.#failure) return
    this.#failure = this.#closing ? new HoldError('store', 'connection closed') : err
    const pending = this.#pending.takeAll()
    for (const p of pending) p.reject(this.#failure)
    this.#markLost(this.#failure)
    if (destroy) this.transport.destroy()
  }
}
