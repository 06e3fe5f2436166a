// The one directory where nix-hold's background processes listen: a directory only this user can
// enter. Access to what listens there is then decided by the kernel (the directory's owner and
// mode), not by anything a peer could work out or guess.

import { lstatSync, mkdirSync, statSync, type Stats } from 'node:fs'
import { join } from 'node:path'
import { HoldError } from '../errors.js'

// sockaddr_un's sun_path holds 108 bytes with the terminating NUL
const MAX_SOCKET_PATH = 107
// the longest name put in the directory: a 32-hex-digit hash and ".sock"
const LONGEST_NAME = 38

const other = (st: Stats): boolean => (st.mode & 0o077) !== 0

// Why `dir` may not be used, or undefined when it may: a real directory (not a link to one),
// owned by `uid`, that no other user may enter, read or write.
function unfit(dir: string, uid: number): string | undefined {
  let st: Stats
  try {
    st = lstatSync(dir)
  } catch (err) {
    return `${dir} cannot be looked at (${(err as NodeJS.ErrnoException).code ?? String(err)})`
  }
  if (!st.isDirectory()) return `${dir} is not a directory`
  if (st.uid !== uid) return `${dir} belongs to uid ${st.uid}, not to this user (uid ${uid})`
  if (other(st)) return `${dir} has mode ${(st.mode & 0o777).toString(8)}: other users may use it`
  return undefined
}

// Makes `dir` (mode 0700) unless it exists; then checks it. An existing one is never repaired:
// whoever made it wrong may still be using it.
function ensure(dir: string, uid: number): void {
  try {
    mkdirSync(dir, { mode: 0o700 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new HoldError('store', `cannot make nix-hold's private directory ${dir}: ${(err as Error).message}`, { cause: err })
    }
  }
  const why = unfit(dir, uid)
  if (why) throw new HoldError('store', `cannot use ${dir} as nix-hold's private directory: ${why}`)
}

/**
 * This user's private directory for nix-hold's sockets, made if need be:
 * `$XDG_RUNTIME_DIR/nix-hold` when that runtime directory is this user's own and private (as
 * systemd-logind makes it), else `/tmp/nix-hold-UID` (`$TMPDIR` is not used: it may differ between
 * the processes that have to meet there), else, when that one is not this user's alone,
 * `$XDG_CACHE_HOME/nix-hold` (`~/.cache/nix-hold`). A directory that exists but is not this
 * user's alone is refused (kind `store`), never used.
 */
export function runtimeDir(env: NodeJS.ProcessEnv, uid: number = process.geteuid!()): string {
  const xdg = env.XDG_RUNTIME_DIR
  // sudo may keep the invoking user's runtime directory in the environment: only one's own counts
  if (xdg && xdg.startsWith('/') && unfit(xdg, uid) === undefined) {
    const dir = join(xdg, 'nix-hold')
    if (dir.length + 1 + LONGEST_NAME <= MAX_SOCKET_PATH) {
      ensure(dir, uid)
      return dir
    }
  }
  const dir = `/tmp/nix-hold-${uid}`
  try {
    ensure(dir, uid)
    return dir
  } catch (err) {
    // another user may make /tmp/nix-hold-UID first, to keep this one out: the home directory,
    // which no one else can write, is the way round that
    const home = env.XDG_CACHE_HOME || (env.HOME ? join(env.HOME, '.cache') : undefined)
    const own = home?.startsWith('/') ? join(home, 'nix-hold') : undefined
    if (!own || own.length + 1 + LONGEST_NAME > MAX_SOCKET_PATH) throw err
    try {
      mkdirSync(home!, { recursive: true, mode: 0o700 })
    } catch {
      throw err
    }
    ensure(own, uid)
    return own
  }
}

/** The identity of a file, to tell whether a name still points at the socket a process bound. */
export interface FileId {
  readonly dev: number
  readonly ino: number
}

/** The identity of the file at `path` now, or undefined when there is none. */
export function fileIdOf(path: string): FileId | undefined {
  try {
    const st = statSync(path)
    return { dev: st.dev, ino: st.ino }
  } catch {
    return undefined
  }
}

export const sameFile = (a: FileId | undefined, b: FileId | undefined): boolean => a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino
