// The paths in an AddMultipleToStore request (op 44), read as its bytes pass: after its two flags
// the request is framed data (u64 length, that many bytes, until a length of 0), and the data is a
// count and then, for each path, its path info and its NAR (Nix's Store::addMultipleToStore,
// reading ValidPathInfo in the layout of protocol 1.16 whatever was negotiated). A NAR is skipped
// by its size from the path info, never buffered: `nix copy` sends gigabytes this way.

import { HoldError } from '../errors.js'
import { tryRead, type WireReader } from '../store/wire.js'

// ValidPathInfo at 1.16: path, deriver, NAR hash, references, registration time, NAR size,
// ultimate, signatures, content address; the path and the NAR size are what is wanted
function readPathInfo(r: WireReader): { path: string; narSize: number } {
  const path = r.string()
  r.string() // deriver
  r.string() // NAR hash
  r.strings() // references
  r.u64() // registration time
  const narSize = r.u64()
  r.bool() // ultimate
  r.strings() // signatures
  r.string() // content address
  return { path, narSize }
}

// A path info longer than this is not one
const MAX_INFO = 1024 * 1024

export class MultipleAdd {
  readonly paths: string[] = []
  // framing: bytes left in the current frame, or undefined while a frame's length is being read
  #frameLeft: number | undefined
  #lengthBytes: Buffer = Buffer.alloc(0)
  #ended = false
  // the data inside the frames
  #expected: number | undefined // paths announced
  #nar = 0 // bytes of the current NAR still to skip
  #pending: Buffer = Buffer.alloc(0) // data not yet read (a count or a path info in pieces)

  /** Whether the framed data has ended (a frame of length 0). */
  get ended(): boolean {
    return this.#ended
  }

  /** Feeds bytes the client sent after the request's flags; a malformed stream throws. */
  feed(chunk: Uint8Array): void {
    let at = 0
    while (at < chunk.length && !this.#ended) {
      if (this.#frameLeft === undefined) {
        const need = 8 - this.#lengthBytes.length
        this.#lengthBytes = Buffer.concat([this.#lengthBytes, chunk.subarray(at, at + need)])
        at += Math.min(need, chunk.length - at)
        if (this.#lengthBytes.length < 8) return
        const length = this.#lengthBytes.readUInt32LE(0) + this.#lengthBytes.readUInt32LE(4) * 2 ** 32
        this.#lengthBytes = Buffer.alloc(0)
        if (length === 0) this.#ended = true
        else this.#frameLeft = length
        continue
      }
      const take = Math.min(this.#frameLeft, chunk.length - at)
      this.#data(chunk.subarray(at, at + take))
      at += take
      this.#frameLeft -= take
      if (this.#frameLeft === 0) this.#frameLeft = undefined
    }
  }

  #data(bytes: Uint8Array): void {
    let at = 0
    while (at < bytes.length) {
      if (this.#nar > 0) {
        const skip = Math.min(this.#nar, bytes.length - at)
        this.#nar -= skip
        at += skip
        continue
      }
      this.#pending = Buffer.concat([this.#pending, bytes.subarray(at)])
      at = bytes.length
      this.#readPending()
    }
  }

  // Reads the count, then path infos, from the pending data; what follows an info is its NAR.
  #readPending(): void {
    for (;;) {
      if (this.#expected === undefined) {
        const count = tryRead(this.#pending, (r) => r.u64())
        if (!count) return
        this.#expected = count.value
        this.#pending = this.#pending.subarray(count.used)
        continue
      }
      if (this.paths.length >= this.#expected) {
        if (this.#pending.length > 0) throw new HoldError('protocol', 'data after the last path of AddMultipleToStore')
        return
      }
      const info = tryRead(this.#pending, readPathInfo)
      if (!info) {
        if (this.#pending.length > MAX_INFO) throw new HoldError('protocol', 'a path info of AddMultipleToStore longer than any is')
        return
      }
      this.paths.push(info.value.path)
      const rest = this.#pending.subarray(info.used)
      this.#pending = Buffer.alloc(0)
      this.#nar = info.value.narSize
      // the NAR may have begun in the same piece
      if (rest.length > 0) this.#data(rest)
      return
    }
  }
}
