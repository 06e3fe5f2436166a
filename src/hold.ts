// The library: build and hold, or hold paths that exist, over a daemon connection this process owns.

import { setTimeout as sleep } from 'node:timers/promises'
import { prepareBuild } from './build/command.js'
import { HoldError } from './errors.js'
import type { BuiltDerivation } from './channel/messages.js'
import { waitForCollections } from './store/collector.js'
import { checkMinor, DaemonConnection, type DaemonTarget } from './store/daemon.js'
import { storeDirFromEnv, toStorePath } from './store/path.js'
import { resolveStore } from './store/resolve.js'

export interface HoldOptions {
  /** The store to build in and hold roots on (a URL as for `nix --store`); default: as Nix picks it from `env`. */
  readonly store?: string
  /** The environment for the build and for finding the store; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv
  /** Aborts connecting and building; an established hold is ended with `release()`, not this. */
  readonly signal?: AbortSignal
  /** Called with paths that disappeared while the daemon connection was being re-established. */
  readonly onLost?: (paths: readonly string[]) => void
  /** Where notes meant for a person go (a rebuild, a reconnect); default: nowhere. */
  readonly log?: (message: string) => void
  /** Announce at most this protocol minor to the daemon (for testing older protocol paths). */
  readonly protocolMinor?: number
}

/** Store paths kept alive against garbage collection until `release()`. */
export interface Hold {
  /** Every held path: the build's outputs or the kept paths, then any added with `keep`. */
  readonly paths: readonly string[]
  /** For a `nix build`, its outputs per derivation as `--json` reported them. */
  readonly derivations: readonly BuiltDerivation[] | undefined
  /**
   * Adds paths to the hold once they are valid and rooted; returns them as store paths. A path
   * that is not a valid store path fails the whole call (kind `usage`) and adds none.
   */
  keep(paths: readonly string[]): Promise<readonly string[]>
  /** Drops every root at once by closing the daemon connection. Idempotent. */
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
}

const contextFor = (options: HoldOptions, store: string | undefined): Context => {
  const env = options.env ?? process.env
  if (options.protocolMinor !== undefined) checkMinor(options.protocolMinor)
  return { env, target: resolveStore(store, env), storeDir: storeDirFromEnv(env), options }
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
 * judged it dead (store/collector.ts). That wait costs one refused connect when no collection
 * runs; where the store's state directory is not visible from here, it cannot be made.
 */
async function rootAndCheck(ctx: Context, conn: DaemonConnection, paths: readonly string[], signal?: AbortSignal): Promise<string[]> {
  const { stateDir } = ctx.target
  if (stateDir === undefined) {
    const [, valid] = await Promise.all([conn.addTempRoots(paths), conn.queryValidPaths(paths)])
    return paths.filter((p) => !valid.has(p))
  }
  await conn.addTempRoots(paths)
  await waitForCollections(stateDir, {
    signal,
    onWait: () => ctx.options.log?.(`a garbage collection is running; waiting for it to end before confirming ${paths.length === 1 ? paths[0] : `${paths.length} paths`}`),
  })
  const valid = await conn.queryValidPaths(paths)
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
  // The connection is made while the runner (execa) loads and the build runs: nothing can be
  // rooted before the build ends, so the build does not wait for the daemon's handshake. A
  // connection that fails stops the build, and its error is the one reported.
  const connectionFailed = new AbortController()
  const connecting = connect(ctx)
  connecting.catch((err: unknown) => connectionFailed.abort(err))
  const signal = options.signal ? AbortSignal.any([options.signal, connectionFailed.signal]) : connectionFailed.signal
  let conn: DaemonConnection | undefined
  try {
    const { runBuild } = await import('./build/run.js')
    for (let attempt = 1; ; attempt++) {
      const built = await runBuild(prepared, { env: ctx.env, signal })
      conn ??= await connecting
      let gone: string[]
      for (let tries = 1; ; tries++) {
        // a connection lost while the build ran (a daemon restart), or while its outputs were
        // being rooted, held nothing that counts yet: replace it and root them there
        if (!conn.isOpen) conn = await connect(ctx)
        try {
          gone = await rootAndCheck(ctx, conn, built.paths, options.signal)
          break
        } catch (err) {
          if (conn.isOpen || tries === BUILD_ATTEMPTS) throw err
        }
      }
      if (gone.length === 0) return new ActiveHold(ctx, conn, built.paths, built.derivations)
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
  const conn = await connect(ctx)
  const hold = new ActiveHold(ctx, conn, [], undefined)
  try {
    await hold.add(paths, 'fresh')
  } catch (err) {
    await hold.release()
    throw err
  }
  return hold
}

class ActiveHold implements Hold {
  #conn: DaemonConnection
  #paths: string[]
  #released = false
  // settles when a lost connection has been replaced; keep() waits on it
  #ready: Promise<void> = Promise.resolve()
  readonly #stopRetrying = new AbortController()

  constructor(
    private readonly ctx: Context,
    conn: DaemonConnection,
    paths: readonly string[],
    readonly derivations: readonly BuiltDerivation[] | undefined,
  ) {
    this.#conn = conn
    this.#paths = [...paths]
    this.#watch(conn)
  }

  get paths(): readonly string[] {
    return this.#paths
  }

  keep(args: readonly string[]): Promise<readonly string[]> {
    return this.add(args, 'held')
  }

  /**
   * Roots `args` on this hold's connection. On a `fresh` hold a refusal ends the connection, so
   * the paths are rooted and checked in one round trip; on a hold that already holds paths a
   * refused request must root nothing, which takes a check before the roots as well.
   */
  async add(args: readonly string[], state: 'fresh' | 'held'): Promise<readonly string[]> {
    for (;;) {
      if (this.#released) throw new HoldError('usage', 'this hold was released')
      await this.#ready // a lost connection being replaced
      const conn = this.#conn
      try {
        return await this.#addOn(conn, args, state)
      } catch (err) {
        // The connection went while the request was out (a worker killed, the daemon restarted):
        // what it rooted went with it. Its watcher (subscribed earlier, so told first) is
        // replacing it and rooting every held path again; ask again on the new one.
        if (conn.isOpen || this.#released) throw err
        await conn.lost
        await this.#ready
        if (this.#conn === conn) throw err // released while reconnecting
      }
    }
  }

  async #addOn(conn: DaemonConnection, args: readonly string[], state: 'fresh' | 'held'): Promise<readonly string[]> {
    const resolved: string[] = []
    const problems: string[] = []
    for (const arg of args) {
      const r = toStorePath(arg, this.ctx.storeDir, process.cwd())
      if ('problem' in r) problems.push(`${JSON.stringify(arg)} ${r.problem}`)
      else resolved.push(r.path)
    }
    if (problems.length > 0) throw new HoldError('usage', `not a store path: ${problems.join('; ')}`)
    const unique = [...new Set(resolved)]
    if (state === 'held') {
      const before = await conn.queryValidPaths(unique)
      const invalid = unique.filter((p) => !before.has(p))
      if (invalid.length > 0) throw new HoldError('usage', `not valid in the store: ${invalid.join(', ')}`)
    }
    const gone = await rootAndCheck(this.ctx, conn, unique, this.#stopRetrying.signal)
    // (on a held hold, these were valid a moment ago: a collection took them before the roots)
    if (gone.length > 0) throw new HoldError('usage', `not valid in the store: ${gone.join(', ')}`)
    const held = new Set(this.#paths)
    for (const p of unique) if (!held.has(p)) this.#paths.push(p)
    return resolved
  }

  async release(): Promise<void> {
    if (this.#released) return
    this.#released = true
    this.#stopRetrying.abort()
    await this.#ready
    await this.#conn.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release()
  }

  #watch(conn: DaemonConnection): void {
    void conn.lost.then((why) => {
      if (this.#released || conn !== this.#conn) return
      this.#ready = this.#reconnect(why)
    })
  }

  // The roots went with the connection: get a new one, root everything again, and say which
  // paths a collection took in between rather than pretend they are still held.
  async #reconnect(why: HoldError): Promise<void> {
    const { log, onLost } = this.ctx.options
    log?.(`lost the daemon connection (${why.message}); reconnecting`)
    const signal = this.#stopRetrying.signal
    for (let delay = 50; !signal.aborted; delay = Math.min(delay * 2, 2000)) {
      let conn: DaemonConnection | undefined
      try {
        conn = await connect(this.ctx, signal)
        const lost = await rootAndCheck(this.ctx, conn, this.#paths, signal)
        this.#conn = conn
        const gone = new Set(lost)
        this.#paths = this.#paths.filter((p) => !gone.has(p))
        this.#watch(conn)
        if (this.#released) await conn.close()
        log?.(`reconnected; ${this.#paths.length} paths held again`)
        if (lost.length > 0) onLost?.(lost)
        return
      } catch (err) {
        await conn?.close()
        if (signal.aborted) return
        log?.(`reconnect failed (${(err as Error).message}); retrying in ${delay} ms`)
        await sleep(delay, undefined, { signal }).catch(() => undefined)
      }
    }
  }
}
