// The daemon's side of a connection, as bytes become answers: the bytes received and not yet
// read, and the requests still waiting for theirs. No I/O: the connection hands it each chunk as
// it arrives, in whatever pieces the transport cut, and it settles each request once the whole of
// its answer is here.

import { HoldError } from '../errors.js'
import { Queue } from '../queue.js'
import { readStderrMessage } from './stderr.js'
import { tryRead, type WireReader } from './wire.js'

interface Pending {
  // 'stderr': still in the log-message loop; 'result': the loop ended with LAST, the value follows
  phase: 'stderr' | 'result'
  readonly decode: (r: WireReader) => unknown
  // what an error answer means for this request, in the daemon's words
  readonly refused: Refused
  readonly resolve: (value: unknown) => void
  readonly reject: (err: Error) => void
}

/** Makes the error a request is rejected with when the daemon answers it with one. */
export type Refused = (message: string) => HoldError

const plainly: Refused = (message) => new HoldError('store', message)

// The errors that are a daemon's answer to a request, as against the loss of the connection it
// was sent on: an answer stands whatever happens to the connection after it.
const answers = new WeakSet<Error>()

/** Whether `err` is a daemon's error answer to a request (not a lost connection, not ours). */
export const isDaemonAnswer = (err: unknown): boolean => err instanceof Error && answers.has(err)

/** Answers matched to requests by order, since a daemon answers strictly one request after another. */
export class Responses {
  // bytes received and not yet consumed: #buf from #at on
  #buf: Buffer = Buffer.alloc(0)
  #at = 0
  readonly #pending = new Queue<Pending>()
  // the daemon's last error message, until a request succeeds after it: a daemon that hangs up
  // right after an error (one it cannot recover from) is reported in its own words
  #lastError: string | undefined

  /**
   * `minor` is read at each message: the log messages' layout depends on the negotiated version.
   * `malformed` hears of bytes that can be no answer (a HoldError of kind `store`): the connection
   * must end then, since nothing after them can be matched to a request.
   */
  constructor(
    private readonly minor: () => number,
    private readonly malformed: (err: HoldError) => void,
  ) {}

  /** How many requests are still waiting for their answer. */
  get waiting(): number {
    return this.#pending.size
  }

  /** Waits for an answer: a stderr loop ending in LAST and then a value (`stderr`), or a bare value (`result`, as in the handshake). */
  expect<T>(phase: Pending['phase'], decode: (r: WireReader) => T, refused: Refused = plainly): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ phase, decode, refused, resolve: resolve as (v: unknown) => void, reject })
      // bytes for this answer may already be here: the daemon can answer before we ask to read
      if (this.#pending.size === 1 && this.#buf.length > this.#at) this.#drainOrReport()
    })
  }

  /**
   * Waits for `count` answers of one kind with one promise (thousands of pipelined requests need
   * not cost thousands of promises); rejects with the first failure.
   */
  expectMany(count: number, decode: (r: WireReader) => unknown, refused: Refused = plainly): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let left = count
      let failed = false
      const done = () => --left === 0 && !failed && resolve()
      const fail = (err: Error) => {
        if (!failed) reject(err)
        failed = true
      }
      for (let i = 0; i < count; i++) this.#pending.push({ phase: 'stderr', decode, refused, resolve: done, reject: fail })
      if (this.#pending.size === count && this.#buf.length > this.#at) this.#drainOrReport()
    })
  }

  /** Takes bytes as they arrive and settles every request whose answer is now complete. */
  receive(chunk: Buffer): void {
    this.#buf = this.#at >= this.#buf.length ? chunk : Buffer.concat([this.#buf.subarray(this.#at), chunk])
    this.#at = 0
    this.#drainOrReport()
  }

  /** Rejects every waiting request with `err`. */
  failAll(err: Error): void {
    for (const p of this.#pending.takeAll()) p.reject(err)
  }

  /**
   * What the daemon last said was wrong: an error that arrived for no waiting request (still
   * unread here), else the last error it answered with, if no success came after it.
   */
  lastError(): string | undefined {
    try {
      const m = tryRead(this.#buf, this.#readMessage, this.#at)
      if (m?.value.type === 'error') return m.value.message
    } catch {
      // what is left is not a message at all
    }
    return this.#lastError
  }

  readonly #readMessage = (r: WireReader) => readStderrMessage(r, this.minor())

  #drainOrReport(): void {
    try {
      this.#drain()
    } catch (err) {
      this.malformed(err as HoldError)
    }
  }

  #drain(): void {
    for (;;) {
      const head = this.#pending.peek()
      if (!head) return
      if (head.phase === 'result') {
        const v = tryRead(this.#buf, head.decode, this.#at)
        if (!v) return
        this.#at += v.used
        this.#pending.shift()
        this.#lastError = undefined
        head.resolve(v.value)
        continue
      }
      const m = tryRead(this.#buf, this.#readMessage, this.#at)
      if (!m) return
      this.#at += m.used
      const msg = m.value
      if (msg.type === 'last') {
        head.phase = 'result'
      } else if (msg.type === 'error') {
        // An error answers the request at the head. Whether it also ends the connection shows
        // only in what follows: a daemon that cannot go on hangs up (its error may even arrive
        // twice first). Identical errors in a row are not a sign of that: two roots refused for
        // the same reason are two answers on a live connection.
        this.#lastError = msg.message
        this.#pending.shift()
        const answer = head.refused(msg.message)
        answers.add(answer)
        head.reject(answer)
      } else if (msg.type === 'read' || msg.type === 'write') {
        throw new HoldError('store', `the Nix daemon asked to ${msg.type} data, which no operation nix-hold sends needs`)
      }
    }
  }
}
