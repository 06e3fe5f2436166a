// The byte streams a daemon connection runs over: a Unix socket to a running daemon
// (socket-transport.ts), or a child that speaks the protocol on its stdin and stdout
// (child-transport.ts: `nix-daemon --stdio` for a local store, ssh to another machine's).
// open-transport.ts picks one; the connection on top (daemon.ts) does not know which.

import type { Readable, Writable } from 'node:stream'

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
