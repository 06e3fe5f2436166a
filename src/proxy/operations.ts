// Where a relayed connection is between a Nix client and its daemon: in the handshake, inside an
// operation, or between operations. No I/O: the relay hands it each chunk of either direction.
//
// The daemon's side is read only as far as framing needs: its handshake, and each operation's
// stderr loop up to STDERR_LAST or STDERR_ERROR. What follows LAST (the operation's result) is
// passed over unread, but for the path an added path's result starts with. Of the client's side
// only each request's head is read, for what it makes the worker root (requests.ts). An operation
// starts with the client's first byte after the previous one ended. That holds because a Nix client reads an
// operation's whole result before it sends the next one, and the daemon sends nothing between
// operations: every byte of a result has reached the relay before the client's next request can.

import { HoldError } from '../errors.js'
import { minorOf, WORKER_MAGIC_1, WORKER_MAGIC_2 } from '../store/protocol.js'
import { readStderrMessage } from '../store/stderr.js'
import { tryRead, type WireReader } from '../store/wire.js'
import { MultipleAdd } from './multiple.js'
import { readRequestHead, type RequestHead } from './requests.js'

// A request head that has not been read by the time this much of the request has come is not one
// this reader knows
const MAX_HEAD = 1024 * 1024

/**
 * - `handshake`: before the daemon's handshake has ended (its first stderr loop included)
 * - `operation`: the client has sent a request, and the daemon has not ended its stderr loop
 * - `result`: the loop ended with LAST, and the path the result starts with is being read
 * - `between`: the last operation's loop has ended (its result may still be on its way)
 * - `unknown`: the daemon sent something this reader does not understand; from here on it can
 *   tell nothing, and the connection must be treated as busy for good
 */
export type Phase = 'handshake' | 'operation' | 'result' | 'between' | 'unknown'

// the daemon's handshake up to its first stderr loop, at negotiated minor `n` (protocol doc §3)
function readDaemonHello(r: WireReader, clientMinor: number): number {
  if (r.u64() !== WORKER_MAGIC_2) throw new HoldError('store', 'the Nix daemon did not answer with its magic number')
  const n = Math.min(clientMinor, minorOf(r.u64()))
  if (n >= 38) {
    const features = r.u64()
    for (let i = 0; i < features; i++) r.string()
  }
  if (n >= 33) r.string() // its Nix version
  if (n >= 35) r.u64() // trust
  return n
}

export class OperationTracker {
  #phase: Phase = 'handshake'
  // the daemon's bytes not yet read, while they are being read
  #daemon: Buffer = Buffer.alloc(0)
  // the client's first two words (magic, version), until the client minor is known
  #client: Buffer = Buffer.alloc(0)
  #clientMinor: number | undefined
  #minor: number | undefined // negotiated, once the daemon's hello is read
  // the operation under way: its head once read, and the client's bytes of it until then
  #head: RequestHead | undefined
  #request: Buffer = Buffer.alloc(0)
  // an AddMultipleToStore under way, reading its paths as they pass
  #multiple: MultipleAdd | undefined
  // what the worker rooted for this connection, as far as it can be told
  readonly #paths = new Set<string>()
  readonly #derivations = new Set<string>()
  #understood = true

  get phase(): Phase {
    return this.#phase
  }

  /** Whether an operation (or the handshake) is under way: a client that leaves now leaves it unfinished. */
  get busy(): boolean {
    return this.#phase !== 'between' && this.#phase !== 'result'
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

  /** The client sent `chunk`. */
  fromClient(chunk: Uint8Array): void {
    if (this.#phase === 'handshake' && this.#clientMinor === undefined) {
      this.#client = Buffer.concat([this.#client, chunk]).subarray(0, 16)
      if (this.#client.length === 16) {
        const magic = this.#client.readUInt32LE(0) + this.#client.readUInt32LE(4) * 2 ** 32
        if (magic !== WORKER_MAGIC_1) return void (this.#phase = 'unknown')
        this.#clientMinor = minorOf(this.#client.readUInt32LE(8))
      }
      return
    }
    if ((this.#phase === 'between' || this.#phase === 'result') && chunk.length > 0) {
      // a new request: whatever the daemon sent since the last loop ended was that one's result
      if (this.#phase === 'result') this.#understood = false
      this.#phase = 'operation'
      this.#daemon = Buffer.alloc(0)
      this.#head = undefined
      this.#request = Buffer.alloc(0)
      this.#multiple = undefined
    }
    if (this.#phase !== 'operation') return
    if (this.#head === undefined) this.#readHead(chunk)
    else if (this.#multiple) this.#feedMultiple(chunk)
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
    for (const p of multiple.paths.slice(before)) this.#paths.add(p)
  }

  #readHead(chunk: Uint8Array): void {
    this.#request = Buffer.concat([this.#request, chunk])
    let head: RequestHead
    let rest: Buffer = Buffer.alloc(0)
    try {
      const read = tryRead(this.#request, (r) => readRequestHead(r, this.#minor!))
      if (read) {
        head = read.value
        rest = this.#request.subarray(read.used)
      } else if (this.#request.length > MAX_HEAD) head = { kind: 'unknown' }
      else return
    } catch {
      head = { kind: 'unknown' }
    }
    this.#head = head
    this.#request = Buffer.alloc(0)
    if (head.kind === 'multiple') {
      this.#multiple = new MultipleAdd()
      if (rest.length > 0) this.#feedMultiple(rest)
    }
    if (head.kind === 'unknown') this.#understood = false
    if (head.kind === 'roots') {
      for (const p of head.paths) this.#paths.add(p)
      for (const d of head.derivations) this.#derivations.add(d)
    }
  }

  /** The daemon sent `chunk`. */
  fromDaemon(chunk: Uint8Array): void {
    if (this.#phase === 'between' || this.#phase === 'unknown') return
    // a reply before the request's head could be read (it cannot answer what it has not read)
    if (this.#phase === 'operation' && this.#head === undefined) this.#understood = false
    this.#daemon = this.#daemon.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#daemon, chunk])
    try {
      this.#read()
    } catch {
      this.#phase = 'unknown'
      this.#daemon = Buffer.alloc(0)
    }
  }

  #read(): void {
    let at = 0
    if (this.#minor === undefined) {
      // the daemon cannot go past its magic and version before it has the client's version
      if (this.#clientMinor === undefined) {
        if (this.#daemon.length > 16) throw new HoldError('store', 'the Nix daemon spoke before the client')
        return
      }
      const hello = tryRead(this.#daemon, (r) => readDaemonHello(r, this.#clientMinor!))
      if (!hello) return
      this.#minor = hello.value
      at = hello.used
    }
    if (this.#phase === 'result') {
      const path = tryRead(this.#daemon, (r) => r.string())
      if (!path) return
      this.#paths.add(path.value)
      this.#phase = 'between'
      this.#daemon = Buffer.alloc(0)
      return
    }
    for (;;) {
      const message = tryRead(this.#daemon, (r) => readStderrMessage(r, this.#minor!), at)
      if (!message) break
      at += message.used
      if (message.value.type === 'last' || message.value.type === 'error') {
        const added = message.value.type === 'last' && this.#head?.kind === 'result-path'
        this.#phase = added ? 'result' : 'between'
        this.#daemon = this.#daemon.subarray(at)
        if (added) this.#read()
        else this.#daemon = Buffer.alloc(0)
        return
      }
    }
    this.#daemon = this.#daemon.subarray(at)
  }
}
