// Starting a hold: build and hold the outputs, or hold paths that exist.

import { HoldError } from '../errors.js'
import { prepareBuild } from '../runner/command.js'
import { ReconnectingConnection } from '../store/reconnecting.js'
import { rootAndCheck } from '../store/rooting.js'
import { ActiveHold } from './active.js'
import { connect, contextFor, labelOf, reconnectOptions, resolvePaths } from './context.js'
import { StoreHold } from './store-hold.js'
import type { Hold, HoldOptions } from './types.js'

/**
 * How often a build is run again when a garbage collection takes an output before it is rooted;
 * and, while it runs, how many tries each rooting gets at replacing a lost connection (and at
 * running again on the replacement) before the build fails.
 */
export const BUILD_ATTEMPTS = 3

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
  // everything rooted so far (derivations before they are built, then outputs): a connection lost
  // while the build runs (a daemon restart) is replaced, and these are rooted there again
  const rooted = new Set<string>()
  let building = true
  const connecting = connect(ctx).then(
    (conn) =>
      new ReconnectingConnection(
        conn,
        // the caller's signal stops a reconnect while the build runs; once held, only release() does
        reconnectOptions(ctx, () => (building ? options.signal : undefined)),
        {
          attempts: BUILD_ATTEMPTS,
          restore: async (c) => {
            await c.addTempRoots([...rooted])
            return () => options.log?.(`reconnected${labelOf(ctx)}; ${rooted.size} paths held again`)
          },
        },
      ),
  )
  connecting.catch((err: unknown) => connectionFailed.abort(err))
  const signal = options.signal ? AbortSignal.any([options.signal, connectionFailed.signal]) : connectionFailed.signal
  const root = async (paths: readonly string[]): Promise<string[]> => {
    const conn = await connecting
    for (const p of paths) rooted.add(p)
    return conn.use((c) => rootAndCheck(c, paths, { signal: options.signal, log: options.log }))
  }
  try {
    const { runBuild } = await import('../runner/run.js')
    for (let attempt = 1; ; attempt++) {
      const built = await runBuild(prepared, { env: ctx.env, signal, root, log: options.log })
      const gone = await root(built.paths)
      if (gone.length === 0) {
        building = false
        return new ActiveHold(new StoreHold(ctx, await connecting, built.paths), built.derivations)
      }
      if (attempt === BUILD_ATTEMPTS) {
        throw new HoldError('store', `garbage collection took ${gone.join(', ')} after each of ${BUILD_ATTEMPTS} builds`)
      }
      options.log?.(`${gone.join(', ')} was collected before it could be held; building again`)
    }
  } catch (err) {
    await (await connecting.catch(() => undefined))?.close()
    throw err
  }
}

/**
 * Holds paths that already exist (store paths, or symlinks into the store such as `result`).
 * They are rooted and checked together; a path that is not valid is a HoldError of kind `usage`,
 * and the connection is closed with whatever it rooted: nothing is held.
 */
export async function holdPaths(paths: readonly string[], options: HoldOptions = {}): Promise<Hold> {
  const ctx = contextFor(options, options.store)
  // settled before connecting, so that a path naming no store path is refused as such whatever
  // happens to the connection meanwhile (a caller hanging up stops it)
  resolvePaths(ctx, paths)
  const own = await StoreHold.open(ctx)
  try {
    await own.holdFirst(paths)
  } catch (err) {
    await own.release()
    throw err
  }
  return new ActiveHold(own, undefined)
}
