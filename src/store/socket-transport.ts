// A daemon listening on a Unix socket.

import { once } from 'node:events'
import { createConnection } from 'node:net'
import { HoldError } from '../errors.js'
import { CLOSE_WAIT_MS, type Transport } from './transport.js'

/** Connects to the daemon socket at `path`; one that nothing listens on is a HoldError of kind `store`. */
export async function openSocket(path: string, signal: AbortSignal | undefined): Promise<Transport> {
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
