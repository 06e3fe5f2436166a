// Bytes <-> values for the Nix worker protocol. Pure: no sockets, no promises, no timers.
//
// Everything on the wire is made of 8-byte little-endian words; a byte string is its length as a
// word, its bytes, and zero padding up to the next multiple of 8 (Nix's src/libutil/serialise.cc).

import { HoldError } from '../errors.js'

/** A string longer than this is refused before its body is read (16 MiB: far above any path or log line). */
export const MAX_STRING = 16 * 1024 * 1024
/** A list longer than this is refused before its items are read. */
export const MAX_COUNT = 10_000_000

// Thrown inside a reader when the buffer ends mid-value; `tryRead` turns it into "not yet".
class Incomplete {}
const incomplete = new Incomplete()

const malformed = (what: string): HoldError => new HoldError('store', `the Nix daemon sent ${what}`)

/** A cursor over bytes already received; each read consumes whole words or throws "incomplete". */
export class WireReader {
  #offset: number
  private readonly buf: Buffer

  /** Reads `buf` from `start` on (a connection reads a long buffer piece by piece without copying). */
  constructor(buf: Uint8Array, start = 0) {
    this.buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
    this.#offset = start
  }

  /** Where the next read starts in `buf`. */
  get offset(): number {
    return this.#offset
  }

  #take(n: number): Uint8Array {
    if (this.buf.length - this.#offset < n) throw incomplete
    const out = this.buf.subarray(this.#offset, this.#offset + n)
    this.#offset += n
    return out
  }

  /** Consumes exactly `n` bytes as they are. */
  raw(n: number): Uint8Array {
    return this.#take(n)
  }

  /** Consumes exactly 8 bytes; refuses values above 2^53 - 1, which no count, length or tag reaches. */
  u64(): number {
    const at = this.#offset
    if (this.buf.length - at < 8) throw incomplete
    this.#offset = at + 8
    const lo = this.buf.readUInt32LE(at)
    const hi = this.buf.readUInt32LE(at + 4)
    if (hi > 0x1fffff) throw malformed(`an integer above 2^53 (high word 0x${hi.toString(16)})`)
    return hi * 0x1_0000_0000 + lo
  }

  /** Consumes one word and accepts only 0 or 1. */
  bool(): boolean {
    const v = this.u64()
    if (v > 1) throw malformed(`${v} where a boolean (0 or 1) belongs`)
    return v === 1
  }

  // Consumes a length word, the body and its zero padding; returns where the body starts.
  #padded(max: number): { start: number; len: number } {
    const len = this.u64()
    if (len > max) throw malformed(`a string of ${len} bytes, more than the ${max} allowed`)
    const start = this.#offset
    const end = start + len + ((8 - (len % 8)) % 8)
    if (end > this.buf.length) throw incomplete
    for (let i = start + len; i < end; i++) if (this.buf[i] !== 0) throw malformed('non-zero padding after a string')
    this.#offset = end
    return { start, len }
  }

  /** Consumes a length word, that many bytes and their zero padding; refuses a length above `max` before reading on. */
  bytes(max = MAX_STRING): Uint8Array {
    const { start, len } = this.#padded(max)
    return this.buf.subarray(start, start + len)
  }

  /** Like `bytes`, decoded as UTF-8 (invalid sequences become U+FFFD: Nix strings are opaque bytes). */
  string(max = MAX_STRING): string {
    const { start, len } = this.#padded(max)
    return this.buf.toString('utf8', start, start + len)
  }

  /** Consumes a count word and that many strings; refuses a count above `maxCount` before reading on. */
  strings(maxCount = MAX_COUNT, maxLength = MAX_STRING): string[] {
    const n = this.u64()
    if (n > maxCount) throw malformed(`a list of ${n} items, more than the ${maxCount} allowed`)
    const out: string[] = []
    for (let i = 0; i < n; i++) out.push(this.string(maxLength))
    return out
  }
}

/**
 * Runs `read` over the bytes received so far, from `start`: the value and how many bytes it used,
 * or `undefined` when `buf` ends before the value does (call again once more bytes arrive).
 * Malformed input throws a HoldError of kind `store`; the stream is then unusable.
 */
export function tryRead<T>(buf: Uint8Array, read: (r: WireReader) => T, start = 0): { value: T; used: number } | undefined {
  const r = new WireReader(buf, start)
  try {
    const value = read(r)
    return { value, used: r.offset - start }
  } catch (err) {
    if (err === incomplete) return undefined
    throw err
  }
}

/** Builds a request: words and padded strings appended to one growing buffer. */
export class WireWriter {
  #buf: Buffer
  #length = 0

  constructor(capacity = 256) {
    this.#buf = Buffer.alloc(capacity)
  }

  #reserve(n: number): void {
    if (this.#length + n <= this.#buf.length) return
    const next = Buffer.alloc(Math.max(this.#buf.length * 2, this.#length + n))
    this.#buf.copy(next, 0, 0, this.#length)
    this.#buf = next
  }

  /** Appends one 8-byte little-endian word; `n` must be a safe non-negative integer. */
  u64(n: number): this {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a u64: ${n}`)
    this.#reserve(8)
    this.#buf.writeUInt32LE(n % 0x1_0000_0000, this.#length)
    this.#buf.writeUInt32LE(Math.floor(n / 0x1_0000_0000), this.#length + 4)
    this.#length += 8
    return this
  }

  bool(b: boolean): this {
    return this.u64(b ? 1 : 0)
  }

  /** Appends a length word, the bytes (a string is encoded as UTF-8) and zero padding. */
  bytes(data: Uint8Array | string): this {
    const len = typeof data === 'string' ? Buffer.byteLength(data, 'utf8') : data.length
    const padded = len + ((8 - (len % 8)) % 8)
    this.u64(len)
    this.#reserve(padded)
    if (typeof data === 'string') this.#buf.write(data, this.#length, 'utf8')
    else this.#buf.set(data, this.#length)
    this.#buf.fill(0, this.#length + len, this.#length + padded)
    this.#length += padded
    return this
  }

  /** Appends a count word and each string. */
  strings(items: readonly string[]): this {
    this.u64(items.length)
    for (const item of items) this.bytes(item)
    return this
  }

  /** The bytes written so far (a view; do not keep writing after sending it). */
  finish(): Buffer {
    return this.#buf.subarray(0, this.#length)
  }
}
