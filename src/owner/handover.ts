// What a `--for` hold and the holder for its owner say to each other, over an abstract Unix socket.
//
// An abstract socket is found by name, with no file anywhere, and it is gone when its listener
// is; but it has no permissions, and anyone may bind a free name. So both sides prove, before
// anything else is said, that they know the owner's secret (owner/process.ts), which only the
// owner's user can read:
//
//   holder → hold    {"nonce": N1}
//   hold → holder    {"nonce": N2, "proof": HMAC(secret, "hold" N1)}
//   holder → hold    {"proof": HMAC(secret, "holder" N2)}        (or it hangs up)
//   hold → holder    {"hold": {paths, location, ...}}
//   holder → hold    {"held": [...]} or {"error": {kind, message}}
//
// A process of another user can neither take part nor pose as the holder: it learns no path,
// adds no root, and ends nothing.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Socket } from 'node:net'
import ndjson from 'ndjson'
import type { Transform } from 'node:stream'
import { HoldError, type HoldErrorKind } from '../errors.js'
import type { ProcessId } from './process.js'
import type { StoreLocation } from '../hold/types.js'

/** The abstract socket name (without its leading NUL) of the holder for `owner`, as user `uid`. */
export function socketName(owner: ProcessId, secret: Buffer, uid: number): string {
  // the secret's hash in the name gives a new holder to an owner that has exec'd another program
  // (same pid and start time, new secret); it says nothing of the secret itself
  const tag = createHash('sha256').update(secret).digest('hex').slice(0, 16)
  return `nix-hold/v1/${uid}/${owner.pid}/${owner.start}/${tag}`
}

export const newNonce = (): string => randomBytes(16).toString('hex')

export const proofOf = (secret: Buffer, role: 'hold' | 'holder', nonce: string): string =>
  createHmac('sha256', secret).update(`${role}\0${nonce}`).digest('hex')

/** Whether `proof` is what `proofOf` gives, compared in constant time. */
export function proves(secret: Buffer, role: 'hold' | 'holder', nonce: string, proof: unknown): boolean {
  if (typeof proof !== 'string' || !/^[0-9a-f]{64}$/.test(proof)) return false
  return timingSafeEqual(Buffer.from(proof, 'hex'), Buffer.from(proofOf(secret, role, nonce), 'hex'))
}

export const isNonce = (value: unknown): value is string => typeof value === 'string' && /^[0-9a-f]{32}$/.test(value)

/** What a hold hands over: its paths, already valid and rooted, and the store they are in. */
export interface HandOver {
  readonly paths: readonly string[]
  readonly location: StoreLocation
  /** Hold them this long at most; absent: until the owner exits. */
  readonly maxHoldMs?: number
  readonly protocolMinor?: number
}

export type HandOverReply = { readonly held: readonly string[] } | { readonly error: { readonly kind: HoldErrorKind; readonly message: string } }

/** Longest line either side takes: a hand-over of some thousands of paths fits with room to spare. */
export const MAX_HANDOVER_LINE = 4 * 1024 * 1024

/**
 * One JSON value per line over a connected socket, in order. `next()` rejects (kind `store`) once
 * the peer hangs up, sends a line that is not JSON or is too long, or `signal` aborts.
 */
export class LineSocket {
  readonly #socket: Socket
  readonly #lines: unknown[] = []
  #waiting: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined
  #failed: HoldError | undefined

  constructor(socket: Socket, peer: string) {
    this.#socket = socket
    const parser = ndjson.parse({ strict: true, maxLength: MAX_HANDOVER_LINE } as ndjson.ParseOptions) as Transform & { overflow?: boolean }
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
      parser.write(chunk)
      if (parser.overflow) fail(`sent a line longer than ${MAX_HANDOVER_LINE} bytes`)
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
