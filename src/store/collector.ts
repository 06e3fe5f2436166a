// Whether a garbage collection is running on a store whose state directory this machine can see,
// and waiting for it to end.
//
// Why this exists: from Nix 2.5 to 2.34, a temp root that reaches a running collector (through
// the collector's socket) for a path the collector has already judged dead is acknowledged, and
// the path is deleted anyway (fixed in Nix 2.35.0). A root is therefore trustworthy only once no
// collection that was running when it was added is still running: then whatever that collection
// deleted is gone, and the validity answer that follows is final, because a collection that starts
// later reads the root at its start. The fix is in the collector, not in the daemon that passes the
// root on: a collection run by an older Nix in a process of its own, or by another program, has
// the race whatever the daemon is. Nix 2.3 needs none of this (adding a root waits for a running
// collection there), and its state directory has no collector socket, so the check costs nothing.
//
// A collector listens on <state dir>/gc-socket/socket from before it reads the roots until after
// its last deletion; it leaves the file behind, so a finished collection refuses connections
// (ECONNREFUSED). When it finishes, it shuts down every client connection: waiting for that is
// waiting for the collection, with no polling.

import { createConnection } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const gcSocketPath = (stateDir: string): string => join(stateDir, 'gc-socket', 'socket')

// Any of these means no collector is listening there now: ENOENT (no 2.5+ collection ever ran
// on this state directory, or Nix 2.3), ECONNREFUSED (the last one has ended), ENOTDIR. EACCES:
// the directory is not ours to see, while a collector's socket and its directory are open to all.
const IDLE = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTDIR', 'EACCES'])

/**
 * Connects to the collector's socket: 'idle' when nothing listens; 'ended' once the collection
 * that accepted us has ended (`accepted` is called as it does); 'retry' for a connect that failed
 * otherwise (EAGAIN: its backlog of waiting connections is full, so a collection is running).
 */
function probe(path: string, signal: AbortSignal | undefined, accepted: () => void): Promise<'idle' | 'ended' | 'retry'> {
  return new Promise((resolve) => {
    const socket = createConnection({ path })
    let connected = false
    let code: string | undefined
    const onAbort = () => socket.destroy()
    signal?.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => {
      connected = true
      accepted()
      // Nothing is sent: the collector's reader sees no path, and ends our connection when done.
      // We never close it first, short of an abort: Nix 2.5 to 2.35 (at least) abort the whole
      // collection (std::terminate in its socket server) when a client hangs up within about a
      // millisecond of connecting and another connection follows.
      socket.resume()
    })
    socket.once('error', (err: NodeJS.ErrnoException) => (code = err.code))
    socket.once('close', () => {
      signal?.removeEventListener('abort', onAbort)
      resolve(connected ? 'ended' : IDLE.has(code ?? '') ? 'idle' : 'retry')
    })
  })
}

export interface WaitOptions {
  /** Told once, when there is a collection to wait for. */
  readonly onWait?: (socketPath: string) => void
  readonly signal?: AbortSignal | undefined
}

/**
 * Settles once no garbage collection is running on the store whose state directory is
 * `stateDir`: at once when none is (one refused connect), else after the running one (and any
 * that follows it straight away) has ended. Returns whether it had to wait.
 */
export async function waitForCollections(stateDir: string, { onWait, signal }: WaitOptions = {}): Promise<boolean> {
  const path = gcSocketPath(stateDir)
  let waited = false
  // told as the wait begins, not once it is over
  const running = () => {
    if (!waited) onWait?.(path)
    waited = true
  }
  for (;;) {
    signal?.throwIfAborted()
    const state = await probe(path, signal, running)
    if (state === 'idle') return waited
    if (state === 'retry') {
      running()
      // a full backlog gives no connection to wait on: try again shortly
      await sleep(20, undefined, signal ? { signal } : {})
    }
  }
}

/**
 * How a root on this connection is made trustworthy against a collection already running:
 * - 'gc-socket': wait on the collector's socket in the store's state directory, which this
 *   machine can see (one refused connect when no collection runs). Whatever the daemon is: the
 *   process collecting need not be the daemon (root's nix-collect-garbage of an older Nix collects
 *   in its own process and serves the socket itself, as third-party collectors do);
 * - 'none': where that socket cannot be seen, and the daemon needs nothing: Nix 2.3 (protocol
 *   below 1.32; 2.4 to 2.6 say 1.32) makes a root wait for a running collection itself, and Nix
 *   2.35.0 fixed the race (its deletion loop looks at roots that arrived late);
 * - 'daemon': ask the daemon to wait (DaemonConnection.waitForCollector): another machine's store,
 *   or a daemon socket whose state directory is not known here.
 */
export type CollectorWait = 'none' | 'gc-socket' | 'daemon'

export function collectorWait(stateDir: string | undefined, minor: number, daemonVersion: string | undefined): CollectorWait {
  if (stateDir !== undefined) return 'gc-socket'
  return minor < 32 || hasRaceFix(daemonVersion) ? 'none' : 'daemon'
}

/**
 * Whether a daemon that calls itself `version` has Nix 2.35.0's fix: a release 2.35 or later.
 * Not a pre-release (master said 2.35.0pre for three months before the fix), and not Lix, whose
 * versions run from 2.90 and which has not fixed it. Unknown or unparsable: no.
 */
export function hasRaceFix(version: string | undefined): boolean {
  const m = /^(\d+)\.(\d+)(?:\.\d+)?(.*)$/.exec(version ?? '')
  if (!m) return false
  const [major, minor, rest] = [Number(m[1]), Number(m[2]), m[3]!]
  return major === 2 && minor >= 35 && minor < 90 && !/^pre/.test(rest)
}
