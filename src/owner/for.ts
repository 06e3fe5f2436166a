// `--for PID`: a hold that lasts as long as a process runs, with no channel to keep open. The
// build and its roots happen here, as in every other mode; then the paths are handed to the one
// background holder for that process (started by the first such hold), and this process is done.

import { locationOf } from '../hold/active.js'
import { buildAndHold, holdPaths } from '../hold/start.js'
import type { HoldOptions } from '../hold/types.js'
import { resolveStore, storeUrlOf } from '../store/resolve.js'
import { handOver, proxyFor } from './join.js'
import type { ProcessId } from './process.js'

export interface ForRequest {
  /** Hold these existing paths (`--keep`), rather than build `command`. */
  readonly keep: boolean
  /** The paths to keep, or the build command. */
  readonly operands: readonly string[]
  /** Hold at most this long (`--max-hold`). */
  readonly maxHoldMs?: number | undefined
}

/**
 * Builds (or roots the paths to keep), hands what is held to the holder for `owner`, and returns
 * the held paths. They stay rooted here until the holder has rooted them too: there is no moment
 * at which nothing roots them.
 */
export async function holdFor(owner: ProcessId, request: ForRequest, options: HoldOptions, holderCommand: readonly string[]): Promise<readonly string[]> {
  const hold = request.keep ? await holdPaths(request.operands, options) : await buildAndHold(request.operands, options)
  try {
    const { target, storeDir } = locationOf(hold)
    await handOver(
      owner,
      {
        paths: hold.paths,
        store: storeUrlOf(target),
        storeDir,
        ...(request.maxHoldMs === undefined ? {} : { maxHoldMs: request.maxHoldMs }),
        ...(options.protocolMinor === undefined ? {} : { protocolMinor: options.protocolMinor }),
      },
      { command: holderCommand, env: options.env ?? process.env, signal: options.signal },
    )
    return hold.paths
  } finally {
    await hold.release()
  }
}

/**
 * The store URI of the proxy that the holder for `owner` serves for the store `options` name (as
 * Nix picks it from the environment, when they name none). Where that store is already this
 * owner's proxy (a script that exported it asks again), the holder says so and gives it again.
 */
export async function proxyUri(owner: ProcessId, options: HoldOptions, holderCommand: readonly string[]): Promise<string> {
  const env = options.env ?? process.env
  const url = storeUrlOf(resolveStore(options.store, env))
  return proxyFor(owner, url, { command: holderCommand, env, signal: options.signal })
}
