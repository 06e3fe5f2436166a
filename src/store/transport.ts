// The byte streams a daemon connection runs over: a Unix socket to a running daemon, or a child
// that speaks the protocol on its stdin and stdout (`nix-daemon --stdio` for a local store, ssh to
// another machine's). The connection on top (daemon.ts) does not know which.

import { once } from 'node:events'
import { createConnection } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { HoldError } from '../errors.js'
import type { DaemonTarget } from './resolve.js'

export interface Transport {
  readonly input: Readable
  readonly output: Writable
  /** Ends the connection at once; with it go the temp roots the daemon's worker registered for it. */
  destroy(): void
  /**
   * Ends the connection and settles once the daemon's side of it is gone too, so its roots are
   * gone: a socket is half-closed and the worker's own close awaited (it drops its temp roots and
   * then exits); a child is told EOF or killed and its exit awaited. Waits at most
   * `CLOSE_WAIT_MS` for a worker that does not hang up, then destroys.
   */
  end(): Promise<void>
  /** What the transport itself last said went wrong (ssh's last lines on stderr), if anything. */
  why?(): string | undefined
}

/** How long `end()` waits for the daemon's side to hang up after ours. */
export const CLOSE_WAIT_MS = 2000

/**
 * Opens the streams to `target`'s daemon; one that cannot be reached is a HoldError of kind
 * `store`, and an abort rejects with the signal's reason.
 */
export async function openTransport(target: DaemonTarget, signal?: AbortSignal): Promise<Transport> {
  if (target.type === 'socket') return openSocket(target.path, signal)
  // a child process is needed only for these, and node:child_process costs a plain local hold
  // about 0.4 MiB of resident memory: it is loaded on first use
  const children = await import('./child-transport.js')
  return target.type === 'stdio' ? children.openStdioDaemon(target.storeUri, target.env, signal) : children.openSshDaemon(target.store, target.env, signal)
}

async function openSocket(path: string, signal: AbortSignal | undefined): Promise<Transport> {
  const socket = createConnection({ path })
  try {
    await once(socket, 'connect', signal ? { signal } : {})
  } catch (err) {
    socket.destroy()
    if (signal?.aborted) throw signal.reason
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' || code === 'ECONNREFUSED' ? 'no Nix daemon is listening there' : String(err)
    throw new HoldError('store', `cannot connect to the Nix daemon at ${path}: ${why}`, { cause: err })
  }
  // 'close' comes after 'error' too: waiting on it (not on once(), which rejects on 'error') can
  // never reject, so a reset cannot surface as an unhandled rejection
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return {
    input: socket,
    output: socket,
    destroy: () => socket.destroy(),
    async end() {
      const timer = socket.destroyed ? undefined : setTimeout(() => socket.destroy(), CLOSE_WAIT_MS)
      socket.end()
      await closed
      clearTimeout(timer)
    },
  }
}
