// What every operation of a hold on one store needs: where the store is, how to reach it, and
// the caller's options; and turning the caller's arguments into that store's paths.

import { HoldError } from '../errors.js'
import { DaemonConnection } from '../store/daemon.js'
import { remoteStorePath, storeDirFromEnv, toStorePath } from '../store/path.js'
import { checkMinor } from '../store/protocol.js'
import type { ReconnectOptions } from '../store/reconnecting.js'
import { resolveStore, type DaemonTarget } from '../store/resolve.js'
import type { HoldOptions } from './types.js'

export interface Context {
  readonly env: NodeJS.ProcessEnv
  readonly target: DaemonTarget
  readonly storeDir: string
  readonly options: HoldOptions
  /** The store URL a request named; undefined for the hold's own store. */
  readonly named: string | undefined
}

/** Resolves `store` under the options' environment; a URL that names no store roots can be kept in throws (resolveStore says how). */
export function contextFor(options: HoldOptions, store: string | undefined, named?: string): Context {
  const env = options.env ?? process.env
  if (options.protocolMinor !== undefined) checkMinor(options.protocolMinor)
  return { env, target: resolveStore(store, env), storeDir: storeDirFromEnv(env), options, named }
}

/** Opens a connection to the context's store. */
export const connect = (ctx: Context, signal = ctx.options.signal): Promise<DaemonConnection> =>
  DaemonConnection.open(ctx.target, {
    ...(ctx.options.protocolMinor === undefined ? {} : { maxMinor: ctx.options.protocolMinor }),
    ...(signal ? { signal } : {}),
  })

/** How messages name the context's store: '' for the hold's own, ' to URL' for one a request named. */
export const labelOf = (ctx: Context): string => (ctx.named === undefined ? '' : ` to ${ctx.named}`)

/**
 * How a lost connection to the context's store is made again. `alsoStop`, asked at each attempt,
 * gives a signal that stops an attempt too (the caller's, while a build runs).
 */
export const reconnectOptions = (ctx: Context, alsoStop?: () => AbortSignal | undefined): ReconnectOptions => ({
  open: (signal) => {
    const also = alsoStop?.()
    return connect(ctx, also ? AbortSignal.any([signal, also]) : signal)
  },
  log: ctx.options.log,
  label: labelOf(ctx),
})

/**
 * Store paths as the context's store names them, or a HoldError of kind `usage` naming each
 * argument that is none. On another machine a path is taken as written: a local symlink says
 * nothing about that machine's store.
 */
export function resolvePaths(ctx: Context, args: readonly string[]): string[] {
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
