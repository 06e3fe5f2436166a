// What a `--for` hold and the holder for its owner say to each other, over a Unix socket in the
// user's private directory (runtime-dir.ts).
//
// Only this user (and root) can enter that directory, so whoever connects is one of this user's
// processes: the kernel decides that, and nothing needs proving. A hold sends its request as a
// header and its paths in lines of bounded length (any number of paths, no line too long to
// parse cheaply); the holder answers once it holds them all:
//
//   hold → holder    {"hold": {"store": "unix:///…", "storeDir": "/nix/store", "paths": 2}}
//   hold → holder    {"paths": ["/nix/store/…-a", "/nix/store/…-b"]}        (as many lines as it takes)
//   holder → hold    {"held": 2}   or   {"error": {"kind": …, "message": …}}
//
// A `--proxy` asks for the proxy of a store instead, started on first use (proxy/):
//
//   hold → holder    {"proxy": {"store": "unix:///…"}}
//   holder → hold    {"proxy": "unix:///run/user/1000/nix-hold/….sock"}   or   {"error": …}
//
// The store is named as on the command line: the holder resolves it in its own environment, and
// nothing in a request chooses a program for the holder to run.

import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import type { Transform } from 'node:stream'
import ndjson from 'ndjson'
import { HoldError, type HoldErrorKind } from '../errors.js'
import type { ProcessId } from './process.js'

/**
 * The socket of the holder for `owner` in the private directory `dir`. The name is a hash of the
 * owner's pid and start time, so a listing of the machine's sockets (/proc/net/unix shows them to
 * every user) does not say whose it is.
 */
export function holderSocketPath(dir: string, owner: ProcessId): string {
  const hash = createHash('sha256').update(`nix-hold holder\0${owner.pid}\0${owner.start}`).digest('hex').slice(0, 32)
  return join(dir, `${hash}.sock`)
}

/** A hold's request: its paths, already valid and rooted by the hold, and the store they are in. */
export interface HandOver {
  readonly paths: readonly string[]
  /** The store, as `--store` would name it: `unix://PATH`, `local?…`, `ssh-ng://host`. */
  readonly store: string
  /** The store directory the paths are in. */
  readonly storeDir: string
  /** Hold them this long at most; absent: until the owner exits. */
  readonly maxHoldMs?: number
  readonly protocolMinor?: number
}

/** The request's first line, which says how many paths follow. */
export interface HandOverHeader extends Omit<HandOver, 'paths'> {
  readonly paths: number
}

/** The answer to `{"proxy": {"store": URL}}`: the proxy's store URI, or why there is none. */
export type ProxyReply = { readonly proxy: string } | { readonly error: { readonly kind: HoldErrorKind; readonly message: string } }

export type HandOverReply = { readonly held: number } | { readonly error: { readonly kind: HoldErrorKind; readonly message: string } }

/** Longest first line either side takes: a header names a store and a few numbers. */
export const MAX_FIRST_LINE = 4096
/** Longest line of any other kind; a hand-over's paths are split to fit. */
export const MAX_LINE = 64 * 1024
// what a line of paths carries at most, leaving room for the JSON around it
const PATHS_PER_LINE_BYTES = 32 * 1024

/** The lines of `handOver`: a header, then its paths in lines of at most MAX_LINE bytes. */
export function requestLines(handOver: HandOver): unknown[] {
  const { paths, ...rest } = handOver
  const lines: unknown[] = [{ hold: { ...rest, paths: paths.length } satisfies HandOverHeader }]
  let chunk: string[] = []
  let bytes = 0
  for (const path of paths) {
    const size = JSON.stringify(path).length + 1
    if (chunk.length > 0 && bytes + size > PATHS_PER_LINE_BYTES) {
      lines.push({ paths: chunk })
      chunk = []
      bytes = 0
    }
    chunk.push(path)
    bytes += size
  }
  if (chunk.length > 0) lines.push({ paths: chunk })
  return lines
}

/**
 * One JSON value per line over a connected socket, in order. `next()` rejects (kind `store`) once
 * the peer hangs up, sends a line that is not JSON or is too long (the first line may be at most
 * MAX_FIRST_LINE bytes, any other MAX_LINE), or `signal` aborts.
 */
export class LineSocket {
  readonly #socket: Socket
  readonly #lines: unknown[] = []
  #waiting: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined
  #failed: HoldError | undefined
  // bytes received before the first newline, while there has been none
  #firstLine: number | undefined = 0

  constructor(socket: Socket, peer: string) {
    this.#socket = socket
    const parser = ndjson.parse({ strict: true, maxLength: MAX_LINE } as ndjson.ParseOptions) as Transform & { overflow?: boolean }
    parser.on('data', (value: unknown) => {
      this.#lines.push(value)
      this.#wake()
    })
    const fail = (why: string) => {
      this.#failed ??= new HoldError('store', `${peer} ${why}`)
      socket.destroy()
      this.#wake()
    }
    parser.on('error', () => fail('sent a line that is not JSON'))
    socket.on('data', (chunk: Buffer) => {
      if (this.#firstLine !== undefined) {
        const newline = chunk.indexOf(10)
        const length = this.#firstLine + (newline === -1 ? chunk.length : newline)
        if (length > MAX_FIRST_LINE) return fail(`sent a first line longer than ${MAX_FIRST_LINE} bytes`)
        this.#firstLine = newline === -1 ? length : undefined
      }
      parser.write(chunk)
      if (parser.overflow) fail(`sent a line longer than ${MAX_LINE} bytes`)
    })
    socket.on('error', (err) => fail(`failed: ${err.message}`))
    socket.on('close', () => fail('hung up'))
  }

  async next(signal?: AbortSignal): Promise<unknown> {
    signal?.throwIfAborted()
    if (this.#lines.length > 0) return this.#lines.shift()
    if (this.#failed) throw this.#failed
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#waiting = undefined
        this.#socket.destroy()
        reject(signal!.reason)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      const settled = () => signal?.removeEventListener('abort', onAbort)
      this.#waiting = {
        resolve: (v) => (settled(), resolve(v)),
        reject: (e) => (settled(), reject(e)),
      }
    })
  }

  send(value: unknown): void {
    if (!this.#socket.destroyed) this.#socket.write(`${JSON.stringify(value)}\n`)
  }

  /** Sends a last line, if any, and hangs up once it is written. */
  end(value?: unknown): void {
    if (value !== undefined) this.send(value)
    this.#socket.end()
  }

  destroy(): void {
    this.#socket.destroy()
  }

  #wake(): void {
    const w = this.#waiting
    if (!w) return
    this.#waiting = undefined
    if (this.#lines.length > 0) w.resolve(this.#lines.shift())
    else if (this.#failed) w.reject(this.#failed)
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** The value of `key` in a message, when the message is an object that has it. */
export const field = (message: unknown, key: string): unknown => (isObject(message) ? message[key] : undefined)
