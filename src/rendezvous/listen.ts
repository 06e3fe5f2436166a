// Listening under a name in the private directory (runtime-dir.ts) that one process at a time may
// have, for as long as it listens: a holder's, or a proxy's.

import { randomBytes } from 'node:crypto'
import { linkSync, renameSync, unlinkSync } from 'node:fs'
import { createConnection, type Server } from 'node:net'
import { join } from 'node:path'
import { fileIdOf, sameFile, type FileId } from './runtime-dir.js'

// Whether something accepts connections on the socket at `path`. A busy one (EAGAIN: its backlog
// is full) is live too.
const listening = (path: string): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ path })
    socket.once('connect', () => (socket.destroy(), resolve(true)))
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EAGAIN'))
  })

/**
 * Makes `server` listen as `path` (in `dir`), or says another process listens there ('taken').
 *
 * The socket is bound under a name of its own first and then linked to `path`, which fails if
 * that name exists: so a live listener's socket is never replaced. A name left by a process that
 * was killed (nothing listens on it) is replaced by renaming over it. Two that replace one stale
 * name at once may both end up listening, one of them under a name no longer its own: the
 * identity returned tells them apart (`ownsName`).
 */
export async function listenAs(server: Server, dir: string, path: string): Promise<{ state: 'ready' | 'taken'; bound: FileId | undefined }> {
  const fresh = join(dir, `${randomBytes(16).toString('hex')}.sock`)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ path: fresh }, () => resolve())
  })
  const bound = fileIdOf(fresh)
  try {
    linkSync(fresh, path)
    unlinkSync(fresh)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      server.close()
      throw err
    }
    if (await listening(path)) {
      server.close() // Node removes the socket's own name as it closes it
      return { state: 'taken', bound }
    }
    renameSync(fresh, path)
  }
  return { state: 'ready', bound }
}

/** Whether `path` still names the socket `bound`. */
export const ownsName = (path: string, bound: FileId | undefined): boolean => sameFile(fileIdOf(path), bound)

/** Removes `path` if it still names the socket `bound` (a name another took over is theirs). */
export function releaseName(path: string, bound: FileId | undefined): void {
  if (!ownsName(path, bound)) return
  try {
    unlinkSync(path)
  } catch {
    // gone already
  }
}
