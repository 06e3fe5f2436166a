// Checks and opens the file descriptors a caller hands over. Linux only: /proc tells an fd's
// access mode and whether it was inherited.

import { createReadStream, createWriteStream, fstatSync, readdirSync, readFileSync, type Stats } from 'node:fs'
import { Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { isatty, ReadStream, WriteStream } from 'node:tty'
import { HoldError } from '../errors.js'

export type Direction = 'read' | 'write' | 'both'

const O_ACCMODE = 0o3

const accessMode = (fd: number): number =>
  Number.parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0', 8) & O_ACCMODE

// Node opens pipes of its own at start-up, so a number the caller never passed can still name a
// pipe here. Node holds both ends of those: a read-only and a write-only fd on one pipe. An end
// the caller passed has its partner in the caller (a pipe we could write to ourselves would
// never show the caller's EOF, so refusing that case loses nothing).
function isOwnPipe(fd: number, stat: Stats, mode: number): boolean {
  if (mode === 2) return false
  for (const name of readdirSync('/proc/self/fd')) {
    const other = Number(name)
    if (other === fd) continue
    try {
      const s = fstatSync(other)
      if (s.isFIFO() && s.ino === stat.ino && s.dev === stat.dev && accessMode(other) === 1 - mode) return true
    } catch {
      // the directory's own fd, already closed
    }
  }
  return false
}

/**
 * Checks that `fd` was handed to this process and can be used in `direction`; throws a HoldError
 * of kind `usage` naming `flag` otherwise. Reads nothing from the fd.
 */
export function checkFd(fd: number, direction: Direction, flag: string): void {
  const closed = () => new HoldError('usage', `${flag} ${fd}: file descriptor ${fd} is not open in nix-hold (did the caller pass it to the child?)`)
  let stat
  try {
    stat = fstatSync(fd)
  } catch {
    throw closed()
  }
  // epoll and eventfd descriptors (Node's own) are none of these types
  if (!(stat.isSocket() || stat.isFIFO() || stat.isCharacterDevice() || stat.isFile())) throw closed()
  const mode = accessMode(fd) // 0 read-only, 1 write-only, 2 both
  if (stat.isFIFO() && isOwnPipe(fd, stat, mode)) throw closed()
  // A pipe opened both ways (`3<>fifo`, `3<> <(:)`) is one buffer, not two directions: the events
  // would come back in as requests, and nix-hold, holding a write end itself, would never see the
  // caller's EOF. (Node cannot open a second stream on it either.)
  if (direction === 'both' && stat.isFIFO() && mode === 2) {
    throw new HoldError('usage', `${flag} ${fd}: file descriptor ${fd} is a pipe opened for both reading and writing, which cannot carry requests one way and events the other (${BOTH_WAYS})`)
  }
  const canRead = mode === 0 || mode === 2
  const canWrite = mode === 1 || mode === 2
  if ((direction !== 'write' && !canRead) || (direction !== 'read' && !canWrite)) {
    const has = canRead ? 'only for reading' : 'only for writing'
    const hint = direction === 'both' ? ` (${BOTH_WAYS})` : ''
    throw new HoldError('usage', `${flag} ${fd}: file descriptor ${fd} is open ${has}${hint}`)
  }
}

// what to pass instead of an fd that cannot carry the channel both ways
const BOTH_WAYS = '--fd needs a socket, e.g. one end of a socketpair; for two pipes use --command-fd and --status-fd'

/** A readable stream over an inherited fd, of the kind that fits what the fd is. */
export function readableFd(fd: number): Readable {
  if (isatty(fd)) return new ReadStream(fd)
  const stat = fstatSync(fd)
  if (stat.isSocket() || stat.isFIFO()) return new Socket({ fd, readable: true, writable: false, allowHalfOpen: true })
  return createReadStream('', { fd, autoClose: false })
}

/** A writable stream over an inherited fd, of the kind that fits what the fd is. */
export function writableFd(fd: number): Writable {
  if (isatty(fd)) return new WriteStream(fd)
  const stat = fstatSync(fd)
  if (stat.isSocket() || stat.isFIFO()) return new Socket({ fd, readable: false, writable: true, allowHalfOpen: true })
  return createWriteStream('', { fd, autoClose: false })
}

/** One socket both ways (a socketpair end). */
export function duplexFd(fd: number): { input: Readable; output: Writable } {
  if (!fstatSync(fd).isSocket()) return { input: readableFd(fd), output: writableFd(fd) }
  const socket = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true })
  return { input: socket, output: socket }
}
