// Opening the transport a daemon target needs.

import type { DaemonTarget } from './resolve.js'
import { openSocket } from './socket-transport.js'
import type { Transport } from './transport.js'

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

