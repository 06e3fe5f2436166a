// Where a relayed connection is between a Nix client and its daemon: in the handshake, inside an
// operation, or between operations; what the daemon's worker rooted for it; and, for an operation
// that made paths the client will rely on, the end of it held back until those paths are held
// elsewhere too. No I/O: the relay hands it each chunk of either direction.
//
// The daemon's side is read as far as framing needs: its handshake, each operation's stderr loop
// up to STDERR_LAST or STDERR_ERROR, and the results of the operations whose end is held back
// (results.ts); any other result is passed over unread. Of the client's side only each request's
// head is read, for what it makes the worker root (requests.ts), and a request is kept (when it
// is small) so that it can be sent again. An operation starts with the client's first byte after
// the previous one ended: a Nix client reads an operation's whole result before it sends the next
// request, and the daemon sends nothing between operations, so every byte of a result has reached
// the relay before the client's next request can.

import { HoldError } from '../errors.js'
import { minorOf, WORKER_MAGIC_1, WORKER_MAGIC_2 } from '../store/protocol.js'
import { readStderrMessage } from '../store/stderr.js'
import { tryRead, type WireReader } from '../store/wire.js'
import { MultipleAdd } from './multiple.js'
import { readRequestHead, type RequestHead } from './requests.js'
import { resultReader, type ResultReader } from './results.js'

// A request head that has not been read by the time this much of the request has come is not one
// this reader knows
const MAX_HEAD = 1024 * 1024
// A request is kept for sending again up to this size (a build's is a few hundred bytes; an added
// path's carries its contents)
const MAX_REPLAY = 4 * 1024 * 1024

/**
 * - `handshake`: before the daemon's handshake has ended (its first stderr loop included)
 * - `operation`: the client has sent a request, and the daemon has not ended its stderr loop
 * - `held`: the daemon has ended an operation that made paths; its end (from STDERR_LAST on) is
 *   being kept from the client until they are confirmed held (`pending`, `release`, `rerun`)
 * - `between`: the last operation's loop has ended (its result may still be on its way)
 * - `unknown`: the daemon sent something this reader does not understand; from here on it can
 *   tell nothing, and the connection must be treated as busy for good
 */
export type Phase = 'handshake' | 'operation' | 'held' | 'between' | 'unknown'

/** Paths an operation made that the client is about to be told of: to be held before it is. */
export interface Pending {
  /** Store paths that must be valid (added, or asked to be made valid). */
  readonly paths: readonly string[]
  /** Derivation outputs that must be valid: `DRV!out1,out2`, `DRV!*` or a bare `DRV` (all). */
  readonly derivations: readonly string[]
  /** Whether the request can be sent again (`rerun`) if some are gone. */
  readonly rerunnable: boolean
}

// the daemon's handshake up to its first stderr loop, at negotiated minor `n` (protocol doc §3):
// the minor, and the protocol features it offers (1.38 on)
function readDaemonHello(r: WireReader, clientMinor: number): { minor: number; features: string[] } {
  if (r.u64() !== WORKER_MAGIC_2) throw new HoldError('store', 'the Nix daemon did not answer with its magic number')
  const minor = Math.min(clientMinor, minorOf(r.u64()))
  const features = minor >= 38 ? r.strings(1024, 1024) : []
  if (minor >= 33) r.string() // its Nix version
  if (minor >= 35) r.u64() // trust
  return { minor, features }
}

// the client's side of the handshake as far as it matters: its feature list (1.38 on), after its
// magic and version
const readClientFeatures = (r: WireReader): string[] => (r.raw(16), r.strings(1024, 1024))

// Longest client handshake kept for reading its features
const MAX_CLIENT_HELLO = 64 * 1024

const EMPTY = Buffer.alloc(0)

export class OperationTracker {
  #phase: Phase = 'handshake'
  // the daemon's bytes not yet read, while they are being read
  #daemon: Buffer = EMPTY
  // the client's handshake: its first two words (magic, version), then its features
  #client: Buffer = EMPTY
  #clientMinor: number | undefined
  #minor: number | undefined // negotiated, once the daemon's hello is read
  // the protocol features both sides offered
  #features: ReadonlySet<string> = new Set()
  // the operation under way: its head once read
  #head: RequestHead | undefined
  // the whole request, kept for reading its head and sending it again; undefined once it is too
  // long for that
  #replay: Buffer[] | undefined = []
  #replayBytes = 0
  // an AddMultipleToStore under way, reading its paths as they pass
  #multiple: MultipleAdd | undefined
  // the operation's own paths, for holding back its end
  #opPaths: string[] = []
  // held back: the daemon's bytes from STDERR_LAST on, and the reader of the result among them
  #held: Buffer[] = []
  #result: ResultReader | undefined
  #pending: Pending | undefined
  // what the worker rooted for this connection, as far as it can be told
  readonly #paths = new Set<string>()
  readonly #derivations = new Set<string>()
  #understood = true

  get phase(): Phase {
    return this.#phase
  }

  /**
   * Whether an operation (or the handshake) is known to be under way: a client that leaves now
   * leaves it unfinished. Not when this reader can tell nothing any more: then a root is never
   * dropped, and the connection is kept.
   */
  get busy(): boolean {
    return this.#phase === 'handshake' || this.#phase === 'operation'
  }

  /** The negotiated protocol minor, once the handshake has been read. */
  get minor(): number | undefined {
    return this.#minor
  }

  /**
   * What the daemon's worker rooted for this connection: store paths, and derivations whose
   * outputs it rooted; undefined when a request (or the daemon) said something this reader does
   * not know, so that what was rooted cannot be told.
   */
  get rooted(): { readonly paths: readonly string[]; readonly derivations: readonly string[] } | undefined {
    if (!this.#understood || this.#phase === 'unknown') return undefined
    return { paths: [...this.#paths], derivations: [...this.#derivations] }
  }

  /** Once an operation's end is held back and its result is whole: the paths to confirm. */
  get pending(): Pending | undefined {
    return this.#pending
  }

  /** The client sent `chunk`. */
  fromClient(chunk: Uint8Array): void {
    if (this.#phase === 'handshake') {
      if (this.#client.length < MAX_CLIENT_HELLO) this.#client = Buffer.concat([this.#client, chunk])
      if (this.#clientMinor === undefined && this.#client.length >= 16) {
        const magic = this.#client.readUInt32LE(0) + this.#client.readUInt32LE(4) * 2 ** 32
        if (magic !== WORKER_MAGIC_1) return void (this.#phase = 'unknown')
        this.#clientMinor = minorOf(this.#client.readUInt32LE(8))
      }
      return
    }
    if (this.#phase === 'held' || this.#phase === 'unknown') {
      // a request sent before the last one's result was read (a client that pipelines): what it
      // roots cannot be told, and its answer follows the held end, in order
      if (chunk.length > 0) this.#understood = false
      return
    }
    if (this.#phase === 'between' && chunk.length > 0) {
      // a new request: whatever the daemon sent since the last loop ended was that one's result
      this.#phase = 'operation'
      this.#daemon = EMPTY
      this.#head = undefined
      this.#replay = []
      this.#replayBytes = 0
      this.#multiple = undefined
      this.#opPaths = []
    }
    if (this.#phase !== 'operation') return
    this.#keep(chunk)
    if (this.#head === undefined) this.#readHead()
    else if (this.#multiple) this.#feedMultiple(chunk)
  }

  #keep(chunk: Uint8Array): void {
    if (!this.#replay) return
    this.#replayBytes += chunk.length
    if (this.#replayBytes > MAX_REPLAY) this.#replay = undefined
    else this.#replay.push(Buffer.from(chunk))
  }

  #feedMultiple(chunk: Uint8Array): void {
    const multiple = this.#multiple!
    const before = multiple.paths.length
    try {
      multiple.feed(chunk)
    } catch {
      this.#understood = false
      this.#multiple = undefined
      return
    }
    for (const p of multiple.paths.slice(before)) this.#rootedPath(p)
  }

  #rootedPath(path: string): void {
    this.#paths.add(path)
    this.#opPaths.push(path)
  }

  // Reads the request's head from what the client has sent of it so far (kept by #keep).
  #readHead(): void {
    const request = this.#replay && this.#replayBytes <= MAX_HEAD ? Buffer.concat(this.#replay) : undefined
    let head: RequestHead
    let rest: Buffer = EMPTY
    try {
      const read = request && tryRead(request, (r) => readRequestHead(r, this.#minor!))
      if (read) {
        head = read.value
        rest = request.subarray(read.used)
      } else if (!request) head = { op: -1, kind: 'unknown' }
      else return
    } catch {
      head = { op: -1, kind: 'unknown' }
    }
    this.#head = head
    if (head.kind === 'multiple') {
      this.#multiple = new MultipleAdd()
      if (rest.length > 0) this.#feedMultiple(rest)
    }
    if (head.kind === 'unknown') this.#understood = false
    if (head.kind === 'roots') {
      for (const p of head.paths) this.#rootedPath(p)
      for (const d of head.derivations) this.#derivations.add(d)
    }
  }

  /**
   * The daemon sent `chunk`; returns the bytes that may go on to the client now. Inside an
   * operation those are whole stderr messages only (a message cut short waits for its end), so
   * that an end held back starts exactly at its STDERR_LAST: nothing of it has reached the client
   * if it is replaced. The operation's end and what follows are held back until `release()`,
   * `rerun()` or `drop()`.
   */
  fromDaemon(chunk: Uint8Array): Buffer {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)
    if (this.#phase === 'between' || this.#phase === 'unknown') return bytes
    if (this.#phase === 'held') {
      this.#held.push(Buffer.from(bytes))
      return this.#readResult(bytes) ? EMPTY : this.#giveUp()
    }
    this.#daemon = this.#daemon.length === 0 ? Buffer.from(bytes) : Buffer.concat([this.#daemon, bytes])
    if (this.#phase === 'handshake') {
      // the handshake goes on as it comes (the client answers parts of it before it is whole)
      try {
        this.#readHandshake()
      } catch {
        this.#unknown()
      }
      return bytes
    }
    // a reply before the request's head could be read (it cannot answer what it has not read)
    if (this.#head === undefined) this.#understood = false
    try {
      return this.#readOperation()
    } catch {
      const rest = this.#daemon
      this.#unknown()
      return rest
    }
  }

  #unknown(): void {
    this.#phase = 'unknown'
    this.#daemon = EMPTY
  }

  #readHandshake(): void {
    let at = 0
    if (this.#minor === undefined) {
      // the daemon cannot go past its magic and version before it has the client's version
      if (this.#clientMinor === undefined) {
        if (this.#daemon.length > 16) throw new HoldError('store', 'the Nix daemon spoke before the client')
        return
      }
      const hello = tryRead(this.#daemon, (r) => readDaemonHello(r, this.#clientMinor!))
      if (!hello) return
      this.#minor = hello.value.minor
      at = hello.used
      if (this.#minor >= 38) {
        // the daemon sent its features only once it had the client's
        const theirs = tryRead(this.#client, readClientFeatures)
        if (!theirs) throw new HoldError('store', "the client's features could not be read")
        this.#features = new Set(theirs.value.filter((f) => hello.value.features.includes(f)))
      }
      this.#client = EMPTY
    }
    for (;;) {
      const message = tryRead(this.#daemon, (r) => readStderrMessage(r, this.#minor!), at)
      if (!message) break
      at += message.used
      if (message.value.type === 'last' || message.value.type === 'error') return void this.#ended()
    }
    this.#daemon = this.#daemon.subarray(at)
  }

  // Reads whole stderr messages of the operation; returns the bytes to pass on.
  #readOperation(): Buffer {
    let at = 0
    for (;;) {
      const message = tryRead(this.#daemon, (r) => readStderrMessage(r, this.#minor!), at)
      if (!message) break
      const start = at
      at += message.used
      if (message.value.type === 'error') {
        const all = this.#daemon
        this.#ended()
        return all
      }
      if (message.value.type !== 'last') continue
      const head = this.#head
      const reader = head && head.kind !== 'none' && head.kind !== 'unknown' ? resultReader(head.op, this.#minor!, this.#features) : undefined
      if (!reader) {
        if (head?.kind === 'result-path') this.#understood = false // its path cannot be read
        const all = this.#daemon
        this.#ended()
        return all
      }
      const before = this.#daemon.subarray(0, start)
      this.#held = [Buffer.from(this.#daemon.subarray(start))]
      this.#phase = 'held'
      this.#result = reader
      this.#daemon = this.#daemon.subarray(at)
      if (!this.#readResult(EMPTY)) return Buffer.concat([before, this.#giveUp()])
      return before
    }
    const whole = this.#daemon.subarray(0, at)
    this.#daemon = this.#daemon.subarray(at)
    return whole
  }

  #ended(): void {
    this.#phase = 'between'
    this.#daemon = EMPTY
  }

  // A held result that cannot be read: its end goes on as it is, and what the connection rooted
  // can no longer be told (so it is kept open when its client leaves).
  #giveUp(): Buffer {
    const held = Buffer.concat(this.#held)
    this.#held = []
    this.#pending = undefined
    this.#result = undefined
    this.#understood = false
    this.#ended()
    return held
  }

  // Reads the held result once it is whole; then the operation's paths are pending. False when
  // the result is not what its layout says.
  #readResult(chunk: Uint8Array): boolean {
    if (chunk.length > 0) this.#daemon = this.#daemon.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#daemon, chunk])
    if (this.#pending) return true
    let read
    try {
      read = tryRead(this.#daemon, this.#result!)
    } catch {
      return false
    }
    if (!read) return true
    const facts = read.value
    if (facts && 'added' in facts) this.#rootedPath(facts.added)
    const head = this.#head!
    let paths = [...this.#opPaths]
    let derivations = head.kind === 'roots' ? head.derivations : []
    if (facts && 'built' in facts) {
      // a build that failed is told as a failure (its own words, in the result): only what was
      // built must be there
      const built = new Set(facts.built)
      paths = paths.filter((p) => built.has(p))
      derivations = derivations.filter((d) => built.has(d))
    }
    this.#pending = { paths, derivations, rerunnable: this.#replay !== undefined && (head.op === 9 || head.op === 46) }
    return true
  }

  /** The operation's end may go on to the client: returns the bytes held back. */
  release(): Buffer {
    const held = Buffer.concat(this.#held)
    this.#held = []
    this.#pending = undefined
    this.#result = undefined
    this.#ended()
    return held
  }

  /** The operation is to be run again: returns its request, to send to the daemon instead of passing its end on. */
  rerun(): Buffer {
    const request = Buffer.concat(this.#replay ?? [])
    this.#held = []
    this.#pending = undefined
    this.#result = undefined
    this.#daemon = EMPTY
    this.#phase = 'operation'
    return request
  }

  /** The operation's end is to be replaced by an error: drops what was held back. */
  drop(): void {
    this.#held = []
    this.#pending = undefined
    this.#result = undefined
    this.#ended()
  }
}
