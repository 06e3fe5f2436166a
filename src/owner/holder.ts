// The holder: one background process per owner, keeping the roots of every `--for` hold made for
// that owner until the owner exits. Holds reach it over a Unix socket in the user's private
// directory (runtime-dir.ts, handover.ts).

import { closeSync, constants, openSync, readdirSync, readFileSync, writeSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { dirname } from 'node:path'
import { HoldError, isHoldError } from '../errors.js'
import { openRoots } from '../hold/active.js'
import type { StoreRoots } from '../hold/types.js'
import { storeDirFromEnv } from '../store/path.js'
import { resolveStore } from '../store/resolve.js'
import type { StoreProxy } from '../proxy/store-proxy.js'
import { field, holderSocketPath, LineSocket, type HandOverHeader, type HandOverReply, type ProxyReply } from './handover.js'
import { parseStartup, type HolderStartup } from './holder-env.js'
import { isRunning, type ProcessId } from './process.js'
import { listenAs, ownsName, releaseName } from '../rendezvous/listen.js'
import { runtimeDir, type FileId } from '../rendezvous/runtime-dir.js'

/**
 * What one holder takes at most. Only the owner's user can connect, but a hold of that user may
 * still be broken: a connection that sends nothing for the handshake time while its request is
 * incomplete is dropped, and when every connection is taken, the oldest one still sending its
 * request makes way for a newcomer.
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

/** A request's header, as far as the holder trusts its shape: it comes from the owner's user. */
function readHeader(message: unknown): HandOverHeader | undefined {
  const h = field(message, 'hold')
  const { paths, store, storeDir, maxHoldMs, protocolMinor } = (typeof h === 'object' && h !== null ? h : {}) as Record<string, unknown>
  if (!Number.isSafeInteger(paths) || (paths as number) < 0) return undefined
  if (typeof store !== 'string' || typeof storeDir !== 'string' || !storeDir.startsWith('/')) return undefined
  if (maxHoldMs !== undefined && !(typeof maxHoldMs === 'number' && maxHoldMs > 0)) return undefined
  if (protocolMinor !== undefined && !Number.isSafeInteger(protocolMinor)) return undefined
  return h as HandOverHeader
}

const refusal = (kind: 'protocol' | 'store', message: string): HandOverReply => ({ error: { kind, message } })

// Messages to the owner's terminal carry text of the holder's own making; still, nothing in them
// may move the cursor or start a line that looks like another program's
const printable = (s: string): string => s.replace(/[\x00-\x1f\x7f]/g, '?')

export class Holder {
  readonly #owner: ProcessId
  readonly #limits: Limits
  readonly #env: NodeJS.ProcessEnv
  readonly #dir: string
  readonly #path: string
  readonly #server: Server
  #bound: FileId | undefined
  // roots per store; a hold with its own deadline gets a connection of its own, closed then
  readonly #groups = new Map<string, Promise<StoreRoots>>()
  // the groups whose connection is open, to count what is held without waiting for any other
  readonly #opened = new Map<string, StoreRoots>()
  #deadlines = 0
  // the proxies this holder serves, by the store URL behind each
  readonly #proxies = new Map<string, Promise<StoreProxy>>()
  // every connection open now, and those of them still sending their request, oldest first
  readonly #live = new Set<LineSocket>()
  readonly #incomplete = new Set<LineSocket>()
  #stopped = false
  #watch: NodeJS.Timeout | undefined
  readonly #done: Promise<void>
  #finish!: () => void

  constructor(owner: ProcessId, startup: HolderStartup, limits: Limits = LIMITS) {
    this.#owner = owner
    this.#limits = limits
    this.#env = startup.env
    this.#dir = startup.dir
    this.#path = holderSocketPath(startup.dir, owner)
    this.#server = createServer((socket) => this.#accept(socket))
    this.#done = new Promise((resolve) => (this.#finish = resolve))
  }

  /**
   * Listens for holds; 'taken' when another holder for this owner listens already (two holds that
   * both found none start one each, and only one of them gets the name: owner/listen.ts).
   */
  async listen(): Promise<'ready' | 'taken'> {
    const { state, bound } = await listenAs(this.#server, this.#dir, this.#path)
    if (state === 'taken') return state
    this.#bound = bound
    this.#watch = setInterval(() => this.#look(), WATCH_MS)
    // an owner that exited while this holder started is seen at once
    this.#look()
    return state
  }

  // Stops once the owner has exited. A holder whose name another took over (two replaced a stale
  // name at once) is one no new hold can reach: once it holds nothing, it has no more to do.
  #look(): void {
    if (!isRunning(this.#owner)) return void this.stop()
    if (!ownsName(this.#path, this.#bound) && this.#groups.size === 0 && this.#proxies.size === 0 && this.#live.size === 0) void this.stop()
  }

  /** Settles once the holder has stopped and dropped every root. */
  get done(): Promise<void> {
    return this.#done
  }

  /** Drops every root and stops listening. */
  async stop(): Promise<void> {
    if (this.#stopped) return this.#done
    this.#stopped = true
    clearInterval(this.#watch)
    releaseName(this.#path, this.#bound)
    this.#server.close()
    for (const line of this.#live) line.destroy()
    for (const proxy of this.#proxies.values()) void proxy.then((p) => p.stop(), () => undefined)
    this.#proxies.clear()
    const groups = [...this.#groups.values()]
    this.#groups.clear()
    this.#opened.clear()
    await Promise.all(groups.map((g) => g.then((roots) => roots.release(), () => undefined)))
    this.#finish()
  }

  #accept(socket: Socket): void {
    if (this.#live.size >= this.#limits.connections) {
      const oldest = this.#incomplete.values().next()
      if (!oldest.done) this.#drop(oldest.value)
    }
    if (this.#live.size >= this.#limits.connections || this.#stopped) {
      socket.destroy()
      return
    }
    const line = new LineSocket(socket, 'a hold')
    this.#live.add(line)
    this.#incomplete.add(line)
    socket.once('close', () => this.#drop(line))
    // quiet for the handshake time while the request is incomplete: dropped (a real hold sends
    // it at once). A timer per socket, cleared with it: nothing outlives the connection.
    socket.setTimeout(this.#limits.handshakeMs, () => socket.destroy())
    this.#serve(line, socket).catch(() => this.#drop(line))
  }

  #drop(line: LineSocket): void {
    this.#live.delete(line)
    this.#incomplete.delete(line)
    line.destroy()
  }

  async #serve(line: LineSocket, socket: Socket): Promise<void> {
    const first = await line.next()
    const proxy = field(field(first, 'proxy'), 'store')
    if (typeof proxy === 'string') {
      this.#incomplete.delete(line)
      socket.setTimeout(0)
      return line.end(await this.#proxyFor(proxy))
    }
    const header = readHeader(first)
    if (!header) return line.end(refusal('protocol', 'the holder did not understand the hand-over'))
    const held = this.#count()
    if (held + header.paths > this.#limits.paths) {
      return line.end(refusal('store', `the holder for process ${this.#owner.pid} holds ${held} paths already, and takes at most ${this.#limits.paths}`))
    }
    const paths: string[] = []
    while (paths.length < header.paths) {
      const more = field(await line.next(), 'paths')
      if (!Array.isArray(more) || more.length === 0 || !more.every((p) => typeof p === 'string') || paths.length + more.length > header.paths) {
        return line.end(refusal('protocol', 'the holder did not understand the hand-over'))
      }
      paths.push(...(more as string[]))
    }
    // the request is whole: rooting may wait for a garbage collection, with no time limit
    socket.setTimeout(0)
    this.#incomplete.delete(line)
    line.end(await this.#take(header, paths))
  }

  // The proxy for `store`, started on first use; its URI, or why there is none.
  async #proxyFor(store: string): Promise<ProxyReply> {
    try {
      if (this.#stopped) throw new HoldError('usage', `process ${this.#owner.pid} has exited; nothing more is held for it`)
      const target = resolveStore(store, this.#env)
      if (target.type === 'socket' && dirname(target.path) === this.#dir) {
        // the store named is a socket of this user's nix-hold: one of this holder's proxies (a
        // script that exported its URI asks again), or another process's, whose holds end with it
        for (const p of this.#proxies.values()) {
          const own = await p.catch(() => undefined)
          if (own?.path === target.path) return { proxy: `unix://${own.path}` }
        }
        throw new HoldError('usage', `${store} is the proxy of another process, whose holds end when it exits: name the store behind it with --store, or unset NIX_REMOTE`)
      }
      let proxy = this.#proxies.get(store)
      if (!proxy) {
        // resolved in the holder's own environment, as a hold's store is
        proxy = (async () => {
          const { StoreProxy, proxySocketPath } = await import('../proxy/store-proxy.js')
          const header = { store, storeDir: storeDirFromEnv(this.#env), paths: 0 }
          const adopt = async (paths: readonly string[], derivations: readonly string[]) => (await this.#rootsFor(header)).adopt(paths, derivations)
          const p = new StoreProxy(proxySocketPath(this.#dir, this.#owner, store), target, adopt)
          if ((await p.listen(this.#dir)) === 'taken') throw new HoldError('store', `something else listens as the proxy ${p.path}`)
          if (this.#stopped) p.stop()
          return p
        })()
        this.#proxies.set(store, proxy)
        proxy.catch(() => this.#proxies.get(store) === proxy && this.#proxies.delete(store))
      }
      return { proxy: `unix://${(await proxy).path}` }
    } catch (err) {
      const e = isHoldError(err) ? err : new HoldError('store', `the holder could not start a proxy: ${String(err)}`)
      return { error: { kind: e.kind, message: e.message } }
    }
  }

  #count(): number {
    let total = 0
    for (const roots of this.#opened.values()) total += roots.paths.length
    return total
  }

  async #take(header: HandOverHeader, paths: readonly string[]): Promise<HandOverReply> {
    try {
      const roots = await this.#rootsFor(header)
      return { held: (await roots.add(paths)).length }
    } catch (err) {
      const e = isHoldError(err) ? err : new HoldError('store', `the holder failed: ${String(err)}`)
      return { error: { kind: e.kind, message: e.message } }
    }
  }

  #rootsFor(request: HandOverHeader): Promise<StoreRoots> {
    if (this.#stopped) return Promise.reject(new HoldError('usage', `process ${this.#owner.pid} has exited; nothing more is held for it`))
    // one connection per store and protocol version
    const shared = JSON.stringify([request.store, request.storeDir, request.protocolMinor ?? null])
    const key = request.maxHoldMs === undefined ? shared : `${shared} deadline ${++this.#deadlines}`
    const existing = this.#groups.get(key)
    if (existing) return existing
    if (this.#groups.size >= this.#limits.groups) return Promise.reject(new HoldError('store', `the holder for process ${this.#owner.pid} has ${this.#limits.groups} store connections open already`))
    // the store as the command line would name it, resolved in the holder's own environment: a
    // request chooses no program and no environment for the holder to run
    let target: ReturnType<typeof resolveStore>
    try {
      target = resolveStore(request.store, this.#env)
    } catch (err) {
      return Promise.reject(err)
    }
    const store = request.store
    const opening = openRoots(
      { target, storeDir: request.storeDir, named: store },
      {
        env: this.#env,
        onLost: (paths) => this.#tellOwner(`${paths.join(', ')} ${paths.length === 1 ? 'was' : 'were'} collected in ${store} while the connection to the store was being made again, and ${paths.length === 1 ? 'is' : 'are'} no longer held`),
        ...(request.protocolMinor === undefined ? {} : { protocolMinor: request.protocolMinor }),
      },
    )
    this.#groups.set(key, opening)
    opening.then(
      (roots) => (this.#groups.get(key) === opening && !this.#stopped ? this.#opened.set(key, roots) : undefined),
      () => this.#groups.get(key) === opening && this.#groups.delete(key),
    )
    if (request.maxHoldMs !== undefined) {
      const expire = setTimeout(() => {
        if (this.#stopped) return
        this.#groups.delete(key)
        this.#opened.delete(key)
        void opening.then((roots) => roots.release(), () => undefined)
      }, request.maxHoldMs)
      // the timer must not keep a holder that has stopped alive
      void this.#done.then(() => clearTimeout(expire))
    }
    return opening
  }

  // Nothing is listening to a --for hold once it has printed its paths; a path that is lost is a
  // promise broken, so the owner's standard error hears of it, if it still has one open for
  // writing. Opened again through /proc, fd 2 could be any file the owner has open for reading
  // (a file of the user's they must not be made to write into): its own access mode decides.
  #tellOwner(message: string): void {
    try {
      if (!isRunning(this.#owner)) return
      const info = readFileSync(`/proc/${this.#owner.pid}/fdinfo/2`, 'utf8')
      const flags = Number.parseInt(/^flags:\s*([0-7]+)$/m.exec(info)?.[1] ?? '', 8)
      const access = flags & 3 // O_ACCMODE
      if (Number.isNaN(flags) || (access !== constants.O_WRONLY && access !== constants.O_RDWR)) return
      const fd = openSync(`/proc/${this.#owner.pid}/fd/2`, constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK | constants.O_NOCTTY)
      try {
        writeSync(fd, `nix-hold: ${printable(message)}\n`)
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
 * The holder process's whole life: read its startup line, listen for `owner`, say on standard
 * output whether it listens ("ready") or another does ("taken"), then hold until the owner exits
 * or a signal ends it.
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
    // the hold writes one line and closes the pipe: reading to its end does not wait for anyone
    const startup = parseStartup(readFileSync(0, 'utf8'))
    if (!startup) throw new Error('its startup line was not understood')
    // the directory is checked again, by the process that will listen in it
    if (runtimeDir(startup.env) !== startup.dir) throw new Error(`it was told to listen in ${startup.dir}, which is not this user's private directory`)
    holder = new Holder(owner, startup)
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
