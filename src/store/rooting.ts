// Rooting paths so that a validity answer about them can be trusted.

import { collectorWait, waitForCollections } from './collector.js'
import type { DaemonConnection } from './daemon.js'

export interface RootingOptions {
  /** Breaks off a wait for a running collection. */
  readonly signal?: AbortSignal | undefined
  /** Where a note meant for a person goes (a collection being waited for). */
  readonly log?: ((message: string) => void) | undefined
}

/**
 * Roots `paths` on `conn`, then asks which are valid; returns those that are not. Validity counts
 * only once the roots are in, and once no collection that was running as they went in is still
 * running: Nix 2.5 to 2.34 can delete a path whose root reached a collection that had already
 * judged it dead (collector.ts). Where the store's state directory is visible, that wait costs
 * one refused connect when no collection runs, between the roots' answers and the check;
 * elsewhere (another machine) the daemon waits, and the roots, the wait and the check go out as
 * one write, answered in that order.
 */
export async function rootAndCheck(conn: DaemonConnection, paths: readonly string[], { signal, log }: RootingOptions = {}): Promise<string[]> {
  const { stateDir } = conn.target
  // what the daemon is decides, not what was negotiated (--protocol-minor may announce less)
  const wait = collectorWait(stateDir, conn.daemonMinor, conn.daemonVersion)
  if (wait === 'gc-socket') {
    await conn.addTempRoots(paths)
    await waitForCollections(stateDir!, {
      signal,
      onWait: () => log?.(`a garbage collection is running; waiting for it to end before confirming ${paths.length === 1 ? paths[0] : `${paths.length} paths`}`),
    })
    const valid = await conn.queryValidPaths(paths)
    return paths.filter((p) => !valid.has(p))
  }
  const [, , valid] = await Promise.all([conn.addTempRoots(paths), wait === 'daemon' ? conn.waitForCollector() : undefined, conn.queryValidPaths(paths)])
  return paths.filter((p) => !valid.has(p))
}
