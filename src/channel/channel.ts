// The caller's side of nix-hold: requests come in as JSON lines (ndjson), events go out the same way.

import ndjson from 'ndjson'
import type { Readable, Transform, Writable } from 'node:stream'
import { HoldError } from '../errors.js'
import { checkEvent, parseRequest, type ChannelEvent, type ChannelRequest } from './messages.js'
import { checkFd, duplexFd, readableFd, writableFd } from './fd.js'
import { Queue } from '../queue.js'

/** Which fds carry the channel, as the command line names them. */
export type ChannelSpec =
  | { readonly type: 'fd'; readonly fd: number }
  | { readonly type: 'pipes'; readonly commandFd: number; readonly statusFd: number }
  | { readonly type: 'stdio' }

/** A request line longer than this is refused (and skipped up to its newline) instead of buffered. */
export const MAX_LINE = 1024 * 1024
/** Reading pauses while this many incoming lines wait to be taken, so a flood cannot fill memory. */
export const MAX_QUEUED = 1024
/** Replies beyond this many waiting for a caller that does not read are dropped, not kept in memory. */
export const MAX_UNREAD_EVENTS = 1024

const NULL_LINE = Symbol('the line null')

/** What arrives on the channel: a valid request, or a line the protocol does not allow. */
export type Incoming = { readonly type: 'request'; readonly request: ChannelRequest } | { readonly type: 'invalid'; readonly error: HoldError }

/** Checks every fd in `spec` without touching it; throws a HoldError of kind `usage`. */
export function checkChannel(spec: ChannelSpec): void {
  // fd 2 carries nix-hold's own messages and the build's progress: events there would be mixed
  // with both, and a stream of the channel's on it would clash with Node's process.stderr
  const named: Array<[flag: string, fd: number]> = spec.type === 'fd' ? [['--fd', spec.fd]] : spec.type === 'pipes' ? [['--command-fd', spec.commandFd], ['--status-fd', spec.statusFd]] : []
  for (const [flag, fd] of named) {
    if (fd === 2) throw new HoldError('usage', `${flag} 2: file descriptor 2 is nix-hold's standard error, where its own messages and the build's progress go; give the channel a descriptor of its own`)
  }
  if (spec.type === 'fd') checkFd(spec.fd, 'both', '--fd')
  // one fd named for both directions is opened as --fd would open it
  else if (spec.type === 'pipes' && spec.commandFd === spec.statusFd) checkFd(spec.commandFd, 'both', '--command-fd and --status-fd')
  else if (spec.type === 'pipes') {
    checkFd(spec.commandFd, 'read', '--command-fd')
    checkFd(spec.statusFd, 'write', '--status-fd')
  } else {
    checkFd(0, 'read', '--stdio: standard input')
    checkFd(1, 'write', '--stdio: standard output')
  }
}

/**
 * Says how the caller's end of `spec` went away and what keeps it open, for a caller that left
 * before anything was held: under CI or with `</dev/null`, standard input is at EOF from the start.
 */
export function describeHangup(spec: ChannelSpec): string {
  if (spec.type === 'stdio') return 'standard input reached EOF (or was closed); --stdio holds only while standard input stays open, so give it a pipe the caller keeps open rather than </dev/null or a CI step\'s closed input'
  if (spec.type === 'fd') return `file descriptor ${spec.fd} (--fd) reached EOF (or was closed); nix-hold holds only while the caller keeps its end of the socket open`
  return `file descriptor ${spec.commandFd} (--command-fd) reached EOF, or ${spec.statusFd} (--status-fd) lost its reader; nix-hold holds only while the caller keeps both pipes open`
}

/** Owns the caller's fds: iterate with `next()`, answer with `send()`, finish with `close()`. */
export class Channel {
  readonly #input: Readable
  readonly #output: Writable
  readonly #encoder: Transform = ndjson.stringify()
  // a burst can bring 100,000 lines at once
  readonly #queue = new Queue<Incoming>()
  // callers of next() waiting for a line or the end; each is woken, and takes one if one is left
  readonly #waiters = new Set<() => void>()
  #ended = false
  #dropped = 0
  readonly #hangup: Promise<void>
  #markHangup!: () => void

  constructor(input: Readable, output: Writable) {
    this.#input = input
    this.#output = output
    this.#hangup = new Promise((resolve) => (this.#markHangup = resolve))

    // ndjson frames lines and parses each; split2 beneath it skips a line past maxLength.
    // (@types/ndjson leaves out the options ndjson hands through to split2)
    const splitOptions = { strict: true, maxLength: MAX_LINE, skipOverflow: true } as ndjson.ParseOptions
    const parser = ndjson.parse(splitOptions) as Transform & { overflow?: boolean }
    // An object stream cannot carry null: ndjson pushes the line `null` as a value, which would
    // end the stream early and drop every later line. Until the caller's EOF, carry it boxed.
    let sawEof = false
    const push = parser.push.bind(parser)
    parser.push = (chunk: unknown) => push(chunk === null && !sawEof ? NULL_LINE : chunk)

    parser.on('data', (value: unknown) => {
      try {
        this.#push({ type: 'request', request: parseRequest(value === NULL_LINE ? null : value) })
      } catch (err) {
        this.#push({ type: 'invalid', error: err as HoldError })
      }
    })
    parser.on('error', () => this.#push({ type: 'invalid', error: new HoldError('protocol', 'a line that is not JSON') }))
    parser.on('end', () => this.#end())

    let overflowing = false
    input.on('data', (chunk: Buffer) => {
      parser.write(chunk)
      if (parser.overflow && !overflowing) {
        this.#push({ type: 'invalid', error: new HoldError('protocol', `a line longer than ${MAX_LINE} bytes; it is skipped up to its newline`) })
      }
      overflowing = parser.overflow === true
    })
    // After EOF the parser still has to hand over a last line without a newline; it ends the
    // channel itself. A read error or a close without EOF ends it at once.
    input.on('end', () => {
      sawEof = true
      parser.end()
    })
    input.on('error', () => this.#end())
    input.on('close', () => sawEof || this.#end())

    this.#encoder.pipe(output)
    // A reader that went away (EPIPE) is a hang-up like EOF.
    output.on('error', () => this.#end())
  }

  /** Opens the fds in `spec` (check them first with `checkChannel`). */
  static open(spec: ChannelSpec): Channel {
    const [inFd, outFd] = spec.type === 'fd' ? [spec.fd, spec.fd] : spec.type === 'pipes' ? [spec.commandFd, spec.statusFd] : [0, 1]
    // one fd both ways takes one stream, also when named twice: a second on it would clash
    const { input, output } = inFd === outFd ? duplexFd(inFd) : { input: readableFd(inFd), output: writableFd(outFd) }
    // Node opens a stream of its own on fd 0 or 1 the first time anything reads process.stdin or
    // process.stdout (execa does as it loads). One opened while the channel is reading that fd
    // fails with EEXIST, and Node's stdout blocks on a full pipe, which would hang on a caller that
    // does not read. So on those fds the channel's non-blocking streams stand in for Node's.
    if (inFd === 0) Object.defineProperty(process, 'stdin', { value: input, configurable: true, writable: true })
    if (outFd === 1) Object.defineProperty(process, 'stdout', { value: output, configurable: true, writable: true })
    return new Channel(input, output)
  }

  /** Settles when the caller has closed, hung up or failed its end: time to release. */
  get hangup(): Promise<void> {
    return this.#hangup
  }

  /**
   * The next request or invalid line; undefined once the caller's end is closed and every line
   * before it was taken, or as soon as `signal` aborts.
   */
  async next(signal?: AbortSignal): Promise<Incoming | undefined> {
    while (this.#queue.size === 0) {
      if (this.#ended || signal?.aborted) return undefined
      // the abort listener is removed after each wait: left on a long-lived signal, one per call
      // would pile up for as long as the hold lasts
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake)
          signal?.removeEventListener('abort', wake)
          resolve()
        }
        signal?.addEventListener('abort', wake, { once: true })
        this.#waiters.add(wake)
      })
    }
    const item = this.#queue.shift()
    if (this.#queue.size === 0 && this.#input.isPaused()) this.#input.resume()
    return item
  }

  /**
   * Writes one event line. Never blocks: once MAX_UNREAD_EVENTS wait behind a full fd the event is
   * dropped, so a caller that never reads cannot make the wrapper grow without bound.
   */
  send(event: ChannelEvent): void {
    checkEvent(event)
    if (this.#output.destroyed || this.#output.writableEnded) return
    // the fd takes what the kernel buffers; then the pipe holds events back in the encoder
    if (this.#encoder.writableLength + this.#encoder.readableLength >= MAX_UNREAD_EVENTS) {
      if (this.#dropped++ === 0) process.stderr.write('nix-hold: the caller is not reading its channel; dropping replies\n')
      return
    }
    this.#encoder.write(event)
  }

  /** Flushes what the caller can still take, waiting at most `timeoutMs`, then closes both fds. */
  async close(timeoutMs = 1000): Promise<void> {
    // Readable.pipe() never ends a destination that is process.stdout, and on fd 1 the output
    // stands in for it: end it here once the encoder has handed everything over, or the wait
    // below would always run out its whole timeout
    this.#encoder.once('end', () => this.#output.end())
    this.#encoder.end()
    if (!this.#output.destroyed && !this.#output.writableFinished) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs)
        const done = () => {
          clearTimeout(timer)
          resolve()
        }
        this.#output.once('finish', done).once('error', done).once('close', done)
      })
    }
    this.#output.destroy()
    this.#input.destroy()
  }

  #push(item: Incoming): void {
    this.#queue.push(item)
    if (this.#queue.size >= MAX_QUEUED) this.#input.pause()
    this.#wake()
  }

  #end(): void {
    if (this.#ended) return
    this.#ended = true
    this.#markHangup()
    this.#wake()
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake()
  }
}
