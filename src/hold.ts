// The library: build and hold, or hold paths that exist, over a daemon connection this process owns.

import { setMaxListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { prepareBuild } from './runner/command.js'
import { HoldError, isHoldError } from './errors.js'
import type { BuiltDerivation } from './channel/messages.js'
import { collectorWait, waitForCollections } from './store/collector.js'
import { checkMinor, DaemonConnection, type DaemonTarget } from './store/daemon.js'
import { remoteStorePath, storeDirFromEnv, toStorePath } from './store/path.js'
import { resolveStore } from './store/resolve.js'

export interface HoldOptions {
  /** The store to build in and hold roots on (a URL as for `nix --store`); default: as Nix picks it from `env`. */
  readonly store?: string
  /** The environment for the build and for finding the store; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv
  /** Aborts connecting and building; an established hold is ended with `release()`, not this. */
  readonly signal?: AbortSignal
  /**
   * Called with paths that disappeared while a daemon connection was being re-established;
   * `store` is the store a `keep` or `expect` named, undefined for the hold's own.
   */
  readonly onLost?: (paths: readonly string[], store?: string) => void
  /** Where notes meant for a person go (a rebuild, a reconnect); default: nowhere. */
  readonly log?: (message: string) => void
  /** Announce at most this protocol minor to the daemon (for testing older protocol paths). */
  readonly protocolMinor?: number
}

/** Which store a `keep` or `expect` is for. */
export interface StoreOption {
  /** A store URL (`ssh-ng://host`, …); absent: the hold's own store. */
  readonly store?: string
}

/** Store paths kept alive against garbage collection until `release()`. */
export interface Hold {
  /** Every path held on the hold's own store: the build's outputs or the kept paths, then any added with `keep`. */
  readonly paths: readonly string[]
  /** For a `nix build`, its outputs per derivation as `--json` reported them. */
  readonly derivations: readonly BuiltDerivation[] | undefined
  /**
   * Adds paths to the hold once they are valid and rooted; returns them as store paths. A path
   * that is not a valid store path fails the whole call (kind `usage`) and adds none. With
   * `store`, they are held on that store, over a connection this hold opens on first use.
   */
  keep(paths: readonly string[], options?: StoreOption): Promise<readonly string[]>
  /**
   * Roots store paths that need not exist yet (a `nix copy` that then makes them valid lands them
   * held); returns them. A later `keep` of the same paths confirms they are valid.
   */
  expect(paths: readonly string[], options?: StoreOption): Promise<readonly string[]>
  /** Drops every root on every store at once by closing the daemon connections. Idempotent. */
  release(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** How often a build is run again when a garbage collection takes an output before it is rooted. */
export const BUILD_ATTEMPTS = 3

interface Context {
  readonly env: NodeJS.ProcessEnv
  readonly target: DaemonTarget
  readonly storeDir: string
  readonly options: HoldOptions
  /** The store URL a request named; undefined for the hold's own store. */
  readonly named: string | undefined
}

// The hold's own store comes from the command line or the library call: a URL refused there is
// a usage error. One named by a request is the caller's protocol error (resolveStore says so).
const contextFor = (options: HoldOptions, store: string | undefined, named?: string): Context => {
  const env = options.env ?? process.env
  if (options.protocolMinor !== undefined) checkMinor(options.protocolMinor)
  let target: DaemonTarget
  try {
    target = resolveStore(store, env)
  } catch (err) {
    if (named === undefined && isHoldError(err) && err.kind === 'protocol') throw new HoldError('usage', err.message, { cause: err })
    throw err
  }
  return { env, target, storeDir: storeDirFromEnv(env), options, named }
}

const connect = (ctx: Context, signal = ctx.options.signal): Promise<DaemonConnection> =>
  DaemonConnection.open(ctx.target, {
    ...(ctx.options.protocolMinor === undefined ? {} : { maxMinor: ctx.options.protocolMinor }),
    ...(signal ? { signal } : {}),
  })

/**
 * Roots `paths` on `conn`, then asks which are valid; returns those that are not. Validity counts
 * only once the roots are in, and once no collection that was running as they went in is still
 * running: Nix 2.5 to 2.34 can delete a path whose root reached a collection that had already
 * judged it dead (store/collector.ts). Where the store's state directory is visible, that wait
 * costs one refused connect when no collection runs; elsewhere (another machine) the daemon
 * waits, pipelined between the roots and the check, so it costs no extra round trip.
 */
async function rootAndCheck(ctx: Context, conn: DaemonConnection, paths: readonly string[], signal?: AbortSignal): Promise<string[]> {
  const { stateDir } = ctx.target
  // what the daemon is decides, not what was negotiated (--protocol-minor may announce less)
  const wait = collectorWait(stateDir, conn.daemonMinor, conn.daemonVersion)
  if (wait === 'gc-socket') {
    await conn.addTempRoots(paths)
    await waitForCollections(stateDir!, {
      signal,
      onWait: () => ctx.options.log?.(`a garbage collection is running; waiting for it to end before confirming ${paths.length === 1 ? paths[0] : `${paths.length} paths`}`),
    })
    const valid = await conn.queryValidPaths(paths)
    return paths.filter((p) => !valid.has(p))
  }
  // one write: the daemon answers in order, so the check runs after the roots and the wait
  const [, , valid] = await Promise.all([conn.addTempRoots(paths), wait === 'daemon' ? conn.waitForCollector() : undefined, conn.queryValidPaths(paths)])
  return paths.filter((p) => !valid.has(p))
}

/**
 * Runs `command` (["nix", "build", ...] or ["nix-build", ...]) and holds every output it reports.
 * An output that a garbage collection took between the build's exit and its root is built again,
 * so the returned paths are valid and held.
 */
export async function buildAndHold(command: readonly string[], options: HoldOptions = {}): Promise<Hold> {
  const prepared = prepareBuild(command, options.store)
  const ctx = contextFor(options, prepared.store)
  // The connection is made while the runner (execa) loads and the build runs: nothing is rooted
  // before an evaluation ends (nix-build's derivations) or the build does (its outputs), so the
  // build does not wait for the daemon's handshake. A connection that fails stops the build, and
  // its error is the one reported.
  const connectionFailed = new AbortController()
  const connecting = connect(ctx)
  connecting.catch((err: unknown) => connectionFailed.abort(err))
  const signal = options.signal ? AbortSignal.any([options.signal, connectionFailed.signal]) : connectionFailed.signal
  let conn: DaemonConnection | undefined
  // Roots paths (the build's outputs; nix-build's derivations before they are built) and returns
  // those not valid. A connection lost while the build ran (a daemon restart), or while they were
  // being rooted, held nothing that counts yet: it is replaced and they are rooted there.
  const root = async (paths: readonly string[]): Promise<string[]> => {
    conn ??= await connecting
    for (let tries = 1; ; tries++) {
      if (!conn.isOpen) conn = await connect(ctx)
      try {
        return await rootAndCheck(ctx, conn, paths, options.signal)
      } catch (err) {
        if (conn.isOpen || tries === BUILD_ATTEMPTS) throw err
      }
    }
  }
  try {
    const { runBuild } = await import('./runner/run.js')
    for (let attempt = 1; ; attempt++) {
      const built = await runBuild(prepared, { env: ctx.env, signal, root, log: options.log })
      const gone = await root(built.paths)
      // root() has set conn: the connection the outputs are now rooted on
      if (gone.length === 0) return new ActiveHold(new StoreHold(ctx, conn!, built.paths), built.derivations)
      if (attempt === BUILD_ATTEMPTS) {
        throw new HoldError('store', `garbage collection took ${gone.join(', ')} after each of ${BUILD_ATTEMPTS} builds`)
      }
      options.log?.(`${gone.join(', ')} was collected before it could be held; building again`)
    }
  } catch (err) {
    await (conn ?? (await connecting.catch(() => undefined)))?.close()
    throw err
  }
}

/**
 * Holds paths that already exist (store paths, or symlinks into the store such as `result`).
 * They are rooted and checked in one round trip; a path that is not valid is a HoldError of kind
 * `usage`, and the connection is closed with whatever it rooted: nothing is held.
 */
export async function holdPaths(paths: readonly string[], options: HoldOptions = {}): Promise<Hold> {
  const ctx = contextFor(options, options.store)
  // settled before connecting, so that a path naming no store path is refused as such whatever
  // happens to the connection meanwhile (a caller hanging up stops it)
  const resolved = resolvePaths(ctx, paths)
  const own = new StoreHold(ctx, await connect(ctx), [])
  try {
    await own.add(resolved, 'fresh')
  } catch (err) {
    await own.release()
    throw err
  }
  return new ActiveHold(own, undefined)
}

// Store paths as the context's store names them, or a HoldError of kind `usage` naming each
// argument that is none. On another machine a path is taken as written: a local symlink says
// nothing about that machine's store.
function resolvePaths(ctx: Context, args: readonly string[]): string[] {
  const remote = ctx.target.type === 'ssh'
  const resolved: string[] = []
  const problems: string[] = []
  for (const arg of args) {
    const r = remote ? remoteStorePath(arg, ctx.storeDir) : toStorePath(arg, ctx.storeDir, process.cwd())
    if ('problem' in r) problems.push(`${JSON.stringify(arg)} ${r.problem}`)
    else resolved.push(r.path)
  }
  if (problems.length > 0) throw new HoldError('usage', `not a store path: ${problems.join('; ')}`)
  return resolved
}

/** One hold over many stores: its own, and each store a `keep` or `expect` named. */
class ActiveHold implements Hold {
  readonly #own: StoreHold
  // a store's connection is opened on first use; a failed opening is forgotten, so a later
  // request tries again
  readonly #others = new Map<string, Promise<StoreHold>>()
  #releaseDone: Promise<void> | undefined
  // aborted once the hold is released, which ends connections still being opened; one listener
  // per opening store, and a deployment may open fifty at once
  readonly #releasing = new AbortController()

  constructor(
    own: StoreHold,
    readonly derivations: readonly BuiltDerivation[] | undefined,
  ) {
    this.#own = own
    setMaxListeners(0, this.#releasing.signal)
  }

  get paths(): readonly string[] {
    return this.#own.paths
  }

  get location(): StoreLocation {
    const { target, storeDir, named } = this.#own.ctx
    return { target, storeDir, named: named ?? this.#own.ctx.options.store }
  }

  async keep(paths: readonly string[], options: StoreOption = {}): Promise<readonly string[]> {
    return (await this.#storeHold(options.store)).add(paths, 'held')
  }

  async expect(paths: readonly string[], options: StoreOption = {}): Promise<readonly string[]> {
    return (await this.#storeHold(options.store)).add(paths, 'expect')
  }

  #storeHold(store: string | undefined): Promise<StoreHold> {
    if (this.#releasing.signal.aborted) return Promise.reject(new HoldError('usage', 'this hold was released'))
    if (store === undefined || store === this.#own.ctx.options.store) return Promise.resolve(this.#own)
    let opening = this.#others.get(store)
    if (!opening) {
      const ctx = contextFor(this.#own.ctx.options, store, store) // a refused URL throws here, before any process starts
      opening = connect(ctx, this.#releasing.signal).then((conn) => new StoreHold(ctx, conn, []))
      this.#others.set(store, opening)
      opening.catch(() => this.#others.get(store) === opening && this.#others.delete(store))
    }
    return opening
  }

  release(): Promise<void> {
    this.#releaseDone ??= this.#release()
    return this.#releaseDone
  }

  async #release(): Promise<void> {
    this.#releasing.abort(new HoldError('usage', 'this hold was released'))
    const others = [...this.#others.values()].map((p) => p.then((h) => h.release(), () => undefined))
    await Promise.all([this.#own.release(), ...others])
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release()
  }
}

/** The roots on one store: one connection, remade (and every root with it) when it is lost. */
class StoreHold {
  #conn: DaemonConnection
  // valid and rooted
  #paths: string[]
  // rooted, validity not asked for (expect): not reported lost when they are not valid
  readonly #expected = new Set<string>()
  #releasing: Promise<void> | undefined
  // a connection made to replace a lost one, until it has taken over
  #replacing: DaemonConnection | undefined
  // settles when a lost connection has been replaced; requests wait on it
  #ready: Promise<void> = Promise.resolve()
  // aborted by release(): retries stop, and waits break off
  readonly #stopRetrying = new AbortController()

  get #released(): boolean {
    return this.#stopRetrying.signal.aborted
  }

  constructor(
    readonly ctx: Context,
    conn: DaemonConnection,
    paths: readonly string[],
  ) {
    this.#conn = conn
    this.#paths = [...paths]
    this.#watch(conn)
  }

  get paths(): readonly string[] {
    return this.#paths
  }

  /**
   * Roots `args` on this store's connection. On a `fresh` hold a refusal ends the connection, so
   * the paths are rooted and checked in one round trip; on a hold that already holds paths a
   * refused request must root nothing, which takes a check before the roots as well; `expect`
   * roots without asking.
   */
  async add(args: readonly string[], mode: 'fresh' | 'held' | 'expect'): Promise<readonly string[]> {
    for (;;) {
      if (this.#released) throw new HoldError('usage', 'this hold was released')
      await this.#ready // a lost connection being replaced
      const conn = this.#conn
      try {
        return await this.#addOn(conn, args, mode)
      } catch (err) {
        // released meanwhile: whatever broke off (a wait for a collection, the request itself)
        // broke off because of that
        if (this.#released) throw new HoldError('usage', 'this hold was released', { cause: err })
        // The connection went while the request was out (a worker killed, the daemon restarted):
        // what it rooted went with it. Its watcher (subscribed earlier, so told first) is
        // replacing it and rooting every held path again; ask again on the new one.
        if (conn.isOpen) throw err
        await conn.lost
        await this.#ready
        if (this.#conn === conn) throw err // released while reconnecting
      }
    }
  }

  async #addOn(conn: DaemonConnection, args: readonly string[], mode: 'fresh' | 'held' | 'expect'): Promise<readonly string[]> {
    const resolved = resolvePaths(this.ctx, args)
    const unique = [...new Set(resolved)]
    if (mode === 'expect') {
      await conn.addTempRoots(unique)
      const held = new Set(this.#paths)
      for (const p of unique) if (!held.has(p)) this.#expected.add(p)
      return resolved
    }
    const where = this.ctx.named === undefined ? 'the store' : `the store ${this.ctx.named}`
    if (mode === 'held') {
      const before = await conn.queryValidPaths(unique)
      const invalid = unique.filter((p) => !before.has(p))
      if (invalid.length > 0) {
        const expected = invalid.some((p) => this.#expected.has(p)) ? ' (expected there: has the copy happened?)' : ''
        throw new HoldError('usage', `not valid in ${where}: ${invalid.join(', ')}${expected}`)
      }
    }
    const gone = await rootAndCheck(this.ctx, conn, unique, this.#stopRetrying.signal)
    // (on a held hold, these were valid a moment ago: a collection took them before the roots)
    if (gone.length > 0) throw new HoldError('usage', `not valid in ${where}: ${gone.join(', ')}`)
    const held = new Set(this.#paths)
    for (const p of unique) {
      this.#expected.delete(p)
      if (!held.has(p)) this.#paths.push(p)
    }
    return resolved
  }

  release(): Promise<void> {
    this.#releasing ??= this.#release()
    return this.#releasing
  }

  async #release(): Promise<void> {
    this.#stopRetrying.abort()
    // a replacement connection still being set up may wait on the daemon (Nix 2.3 makes a root
    // wait for a running collection; a host may stall): closing it ends that wait
    void this.#replacing?.close()
    await this.#ready
    await this.#conn.close()
  }

  #watch(conn: DaemonConnection): void {
    void conn.lost.then((why) => {
      if (this.#released || conn !== this.#conn) return
      this.#ready = this.#reconnect(why)
    })
  }

  // The roots went with the connection: get a new one, root everything again, and say which
  // paths a collection took in between rather than pretend they are still held. Expected paths
  // are rooted again too; one that is still not valid was never there, so it is not lost.
  async #reconnect(why: HoldError): Promise<void> {
    const { log, onLost } = this.ctx.options
    const label = this.ctx.named === undefined ? '' : ` to ${this.ctx.named}`
    tell(() => log?.(`lost the daemon connection${label} (${why.message}); reconnecting`))
    const signal = this.#stopRetrying.signal
    for (let delay = 50; !signal.aborted; delay = Math.min(delay * 2, 2000)) {
      let conn: DaemonConnection | undefined
      let lost: string[]
      try {
        conn = await connect(this.ctx, signal)
        this.#replacing = conn
        lost = await rootAndCheck(this.ctx, conn, this.#paths, signal)
        if (this.#expected.size > 0) await conn.addTempRoots([...this.#expected])
      } catch (err) {
        await conn?.close()
        if (signal.aborted) return
        tell(() => log?.(`reconnect${label} failed (${(err as Error).message}); retrying in ${delay} ms`))
        await sleep(delay, undefined, { signal }).catch(() => undefined)
        continue
      } finally {
        this.#replacing = undefined
      }
      this.#conn = conn
      const gone = new Set(lost)
      this.#paths = this.#paths.filter((p) => !gone.has(p))
      this.#watch(conn)
      if (this.#released) await conn.close()
      // the caller's callbacks come last: a throw there must not undo the new connection
      tell(() => log?.(`reconnected${label}; ${this.#paths.length + this.#expected.size} paths held again`))
      if (lost.length > 0) tell(() => onLost?.(lost, this.ctx.named))
      return
    }
  }
}

// Calls a caller's callback; what it throws is its own business, not the hold's.
function tell(callback: () => void): void {
  try {
    callback()
  } catch {
    // a throwing log or onLost must not break a reconnect
  }
}

/**
 * Which store a hold's own roots are on, as another process needs it to root the same paths
 * there: the daemon to reach and how, and the store directory paths are checked against.
 */
export interface StoreLocation {
  readonly target: DaemonTarget
  readonly storeDir: string
  /** The store URL the hold was given, for messages; undefined for the store Nix picks. */
  readonly named?: string | undefined
}

/** The store `hold`'s own paths are rooted on. */
export function locationOf(hold: Hold): StoreLocation {
  if (!(hold instanceof ActiveHold)) throw new TypeError('locationOf takes a hold made by buildAndHold or holdPaths')
  return hold.location
}

/** Roots on one store over one connection, remade (every root with it) when it is lost. */
export interface StoreRoots {
  /** Every path rooted and valid. */
  readonly paths: readonly string[]
  /** Roots `paths` once they are valid; a path that is not valid fails the call and adds none. */
  add(paths: readonly string[]): Promise<readonly string[]>
  /** Drops every root by closing the connection. Idempotent. */
  release(): Promise<void>
}

/** Opens a connection to `location`'s store to root paths on, for a process that gathers roots from other holds. */
export async function openRoots(location: StoreLocation, options: Pick<HoldOptions, 'log' | 'onLost' | 'protocolMinor' | 'signal'> = {}): Promise<StoreRoots> {
  const ctx: Context = { env: process.env, target: location.target, storeDir: location.storeDir, options, named: location.named }
  const roots = new StoreHold(ctx, await connect(ctx), [])
  return { get paths() { return roots.paths }, add: (paths) => roots.add(paths, 'held'), release: () => roots.release() }
}
