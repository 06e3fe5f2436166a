// The holder: one background process per owner, keeping the roots of every `--for` hold made for
// that owner until the owner exits. Holds join it over an abstract Unix socket (handover.ts).

import { closeSync, constants, openSync, readdirSync, readFileSync, writeSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { deadline } from '../deadline.js'
import { HoldError, isHoldError } from '../errors.js'
import { openRoots } from '../hold/active.js'
import type { StoreRoots } from '../hold/types.js'
import { field, isNonce, LineSocket, newNonce, proofOf, proves, socketName, type HandOver, type HandOverReply } from './handover.js'
import { isRunning, ownerSecret, type ProcessId } from './process.js'

/**
 * What one holder takes at most. Only the owner's user gets past the handshake, but anyone may
 * connect: a connection that has not proved itself within the handshake time is dropped (a real
 * hold answers at once), and when every connection is taken, the oldest one that has not proved
 * itself yet makes way for the newcomer; so no one can make the holder grow without bound, nor
 * keep the owner's own holds out by holding connections open.
 */
export interface Limits {
  readonly connections: number
  readonly handshakeMs: number
  readonly paths: number
  readonly groups: number
}

export const LIMITS: Limits = {
  connections: 32,
  handshakeMs: 2_000,
  /** paths held over every store */
  paths: 100_000,
  /** connections to stores: one per store, and one per hold with --max-hold (its own deadline) */
  groups: 64,
}

/** How often the holder looks whether its owner still runs: an exit is seen within this. */
export const WATCH_MS = 250

/** A hold's request, as far as the holder trusts its shape: it comes from the owner's user. */
function readHandOver(message: unknown): HandOver | undefined {
  const h = field(message, 'hold')
  const paths = field(h, 'paths')
  const location = field(h, 'location')
  const maxHoldMs = field(h, 'maxHoldMs')
  const protocolMinor = field(h, 'protocolMinor')
  if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) return undefined
  if (typeof field(location, 'storeDir') !== 'string' || typeof field(location, 'target') !== 'object') return undefined
  if (maxHoldMs !== undefined && !(typeof maxHoldMs === 'number' && maxHoldMs > 0)) return undefined
  if (protocolMinor !== undefined && typeof protocolMinor !== 'number') return undefined
  return h as HandOver
}

export class Holder {
  readonly #owner: ProcessId
  readonly #limits: Limits
  readonly #secret: Buffer
  readonly #server: Server
  // roots per store; a hold with its own deadline gets a connection of its own, closed then
  readonly #groups = new Map<string, Promise<StoreRoots>>()
  // the groups whose connection is open, to count what is held without waiting for any other
  readonly #opened = new Map<string, StoreRoots>()
  #deadlines = 0
  // every connection open now, and those of them that have not proved themselves yet, oldest first
  readonly #live = new Set<LineSocket>()
  readonly #unproven = new Set<LineSocket>()
  readonly #stopped = new AbortController()
  #watch: NodeJS.Timeout | undefined
  readonly #done: Promise<void>
  #finish!: () => void

  constructor(owner: ProcessId, limits: Limits = LIMITS) {
    this.#owner = owner
    this.#limits = limits
    this.#secret = ownerSecret(owner)
    this.#server = createServer((socket) => this.#accept(socket))
    this.#done = new Promise((resolve) => (this.#finish = resolve))
  }

  /**
   * Listens for holds; 'taken' when another holder for this owner listens already (two holds that
   * both found none start one each, and the name lets only one of them in).
   */
  async listen(): Promise<'ready' | 'taken'> {
    const name = socketName(this.#owner, this.#secret, process.getuid!())
    const result = await new Promise<'ready' | 'taken'>((resolve, reject) => {
      this.#server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve('taken') : reject(err)))
      this.#server.listen({ path: `\0${name}` }, () => resolve('ready'))
    })
    if (result === 'ready') {
      this.#watch = setInterval(() => isRunning(this.#owner) || void this.stop(), WATCH_MS)
      // an owner that exited while this holder started is seen at once
      if (!isRunning(this.#owner)) void this.stop()
    }
    return result
  }

  /** Settles once the holder has stopped and dropped every root. */
  get done(): Promise<void> {
    return this.#done
  }

  /** Drops every root and stops listening. */
  async stop(): Promise<void> {
    if (this.#stopped.signal.aborted) return this.#done
    this.#stopped.abort(new HoldError('usage', `process ${this.#owner.pid} has exited; nothing more is held for it`))
    clearInterval(this.#watch)
    this.#server.close()
    const groups = [...this.#groups.values()]
    this.#groups.clear()
    this.#opened.clear()
    await Promise.all(groups.map((g) => g.then((roots) => roots.release(), () => undefined)))
    this.#finish()
  }

  #accept(socket: Socket): void {
    if (this.#live.size >= this.#limits.connections) {
      const oldest = this.#unproven.values().next()
      if (!oldest.done) this.#drop(oldest.value)
    }
    if (this.#live.size >= this.#limits.connections || this.#stopped.signal.aborted) {
      socket.destroy()
      return
    }
    const line = new LineSocket(socket, 'a hold')
    this.#live.add(line)
    this.#unproven.add(line)
    socket.once('close', () => this.#drop(line))
    this.#serve(line).catch(() => this.#drop(line))
  }

  #drop(line: LineSocket): void {
    this.#live.delete(line)
    this.#unproven.delete(line)
    line.destroy()
  }

  async #serve(line: LineSocket): Promise<void> {
    const limit = deadline(this.#limits.handshakeMs)
    try {
      await this.#handshakeAndTake(line, AbortSignal.any([limit.signal, this.#stopped.signal]))
    } finally {
      limit.clear()
    }
  }

  async #handshakeAndTake(line: LineSocket, handshake: AbortSignal): Promise<void> {
    const mine = newNonce()
    line.send({ nonce: mine })
    const hello = await line.next(handshake)
    const theirs = field(hello, 'nonce')
    // a peer that cannot prove it knows the secret learns nothing, not even why
    if (!isNonce(theirs) || !proves(this.#secret, 'hold', mine, field(hello, 'proof'))) return line.destroy()
    this.#unproven.delete(line)
    line.send({ proof: proofOf(this.#secret, 'holder', theirs) })
    const request = readHandOver(await line.next(handshake))
    if (!request) return line.end({ error: { kind: 'protocol', message: 'the holder did not understand the hand-over' } } satisfies HandOverReply)
    line.end(await this.#take(request))
  }

  async #take(request: HandOver): Promise<HandOverReply> {
    try {
      let total = 0
      for (const roots of this.#opened.values()) total += roots.paths.length
      if (total + request.paths.length > this.#limits.paths) {
        throw new HoldError('store', `the holder for process ${this.#owner.pid} holds ${total} paths already, and takes at most ${this.#limits.paths}`)
      }
      const roots = await this.#rootsFor(request)
      return { held: await roots.add(request.paths) }
    } catch (err) {
      const e = isHoldError(err) ? err : new HoldError('store', `the holder failed: ${String(err)}`)
      return { error: { kind: e.kind, message: e.message } }
    }
  }

  #rootsFor(request: HandOver): Promise<StoreRoots> {
    if (this.#stopped.signal.aborted) return Promise.reject(this.#stopped.signal.reason)
    // one connection per store and protocol version; the environment a target carries (for ssh
    // and nix-daemon --stdio) is the first hold's
    const { env: _, ...where } = request.location.target as { env?: unknown }
    const shared = JSON.stringify([where, request.location.storeDir, request.protocolMinor ?? null])
    const key = request.maxHoldMs === undefined ? shared : `${shared} deadline ${++this.#deadlines}`
    const existing = this.#groups.get(key)
    if (existing) return existing
    if (this.#groups.size >= this.#limits.groups) return Promise.reject(new HoldError('store', `the holder for process ${this.#owner.pid} has ${this.#limits.groups} store connections open already`))
    const opening = openRoots(request.location, {
      signal: this.#stopped.signal,
      onLost: (paths, store) => this.#tellOwner(`${paths.join(', ')} ${paths.length === 1 ? 'was' : 'were'} collected${store ? ` in ${store}` : ''} while the connection to the store was being made again, and ${paths.length === 1 ? 'is' : 'are'} no longer held`),
      ...(request.protocolMinor === undefined ? {} : { protocolMinor: request.protocolMinor }),
    })
    this.#groups.set(key, opening)
    opening.then(
      (roots) => this.#groups.get(key) === opening && this.#opened.set(key, roots),
      () => this.#groups.get(key) === opening && this.#groups.delete(key),
    )
    if (request.maxHoldMs !== undefined) {
      const expire = setTimeout(() => {
        this.#groups.delete(key)
        this.#opened.delete(key)
        void opening.then((roots) => roots.release(), () => undefined)
      }, request.maxHoldMs)
      this.#stopped.signal.addEventListener('abort', () => clearTimeout(expire), { once: true })
    }
    return opening
  }

  // Nothing is listening to a --for hold once it has printed its paths; a path that is lost is a
  // promise broken, so the owner's standard error hears of it, if it still has one.
  #tellOwner(message: string): void {
    try {
      const fd = openSync(`/proc/${this.#owner.pid}/fd/2`, constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK)
      try {
        writeSync(fd, `nix-hold: ${message}\n`)
      } finally {
        closeSync(fd)
      }
    } catch {
      // the owner has no standard error any more, or it is full: there is no one else to tell
    }
  }
}

/**
 * Closes the descriptors the holder inherited from the hold that started it (Node passes on any
 * that is not close-on-exec: a script's `exec 3>…`, a caller's channel). The holder outlives that
 * hold by as long as the owner runs, and a pipe or socket it kept open would never show its other
 * end an EOF. Node's own descriptors are all close-on-exec; standard input, output and error are
 * the holder's own.
 */
function closeInherited(): void {
  const O_CLOEXEC = 0o2000000
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name)
    if (fd <= 2) continue
    try {
      const flags = Number.parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] ?? '', 8)
      if (!Number.isNaN(flags) && (flags & O_CLOEXEC) === 0) closeSync(fd)
    } catch {
      // the directory listing's own descriptor, closed by now
    }
  }
}

/**
 * The holder process's whole life: listen for `owner`, say on standard output whether it
 * listens ("ready") or another does ("taken"), then hold until the owner exits or a signal ends it.
 */
export async function runHolder(owner: ProcessId): Promise<number> {
  closeInherited()
  const report = (line: string) => {
    try {
      writeSync(1, `${line}\n`)
    } catch {
      // the hold that started this holder has gone already
    }
  }
  let holder: Holder
  let state: 'ready' | 'taken'
  try {
    holder = new Holder(owner)
    state = await holder.listen()
  } catch (err) {
    report(`error ${(err as Error).message}`)
    return 1
  }
  report(state)
  if (state === 'taken') return 0
  // the terminal the owner ran in may go away: the owner's exit, not a hang-up, ends the hold
  process.on('SIGHUP', () => undefined)
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void holder.stop())
  await holder.done
  return 0
}
