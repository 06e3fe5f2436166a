import { readlinkSync, realpathSync } from 'node:fs'
import { dirname, resolve } from 'node:path'

// What a store path looks like (Nix's src/libstore/path.cc): <store dir>/<32 base-32 chars>-<name>.
// Checking this before sending a path matters: a daemon that cannot parse an argument drops the
// whole connection, and with it every temp root the connection holds.

const HASH = /^[0123456789abcdfghijklmnpqrsvwxyz]{32}$/
const NAME = /^[A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]*$/
const MAX_NAME = 211
const DOTDOT = /(?:^|\/)\.\.(?:\/|$)/

/** The store directory the environment points at, as Nix reads it. */
export const storeDirFromEnv = (env: NodeJS.ProcessEnv): string => env.NIX_STORE_DIR || '/nix/store'

/** Says why `path` is not a store path directly inside `storeDir`, or returns undefined when it is one. */
export function storePathProblem(path: string, storeDir: string): string | undefined {
  if (path.includes('\0')) return 'contains a NUL byte'
  if (!path.startsWith(`${storeDir}/`)) return `is not inside the store ${storeDir}`
  const base = path.slice(storeDir.length + 1)
  if (base.includes('/')) return 'is a path inside a store path, not a store path'
  const hash = base.slice(0, 32)
  const name = base.slice(33)
  if (!HASH.test(hash) || base[32] !== '-') return 'does not start with a 32-character Nix hash and a dash'
  if (name.length > MAX_NAME) return `has a name longer than ${MAX_NAME} characters`
  if (!NAME.test(name)) return 'has a name with characters Nix does not allow'
  return undefined
}

/**
 * The store path that `arg` names: a store path as it is, a path inside one cut back to it, or a
 * symlink (such as a `result` link) followed into the store. Returns the path, or a reason it names
 * none. Only a path outside the store directory touches the file system.
 */
export function toStorePath(arg: string, storeDir: string, cwd: string): { path: string } | { problem: string } {
  if (arg.length === 0) return { problem: 'is empty' }
  if (arg.includes('\0')) return { problem: 'contains a NUL byte' }
  if (DOTDOT.test(arg)) return { problem: 'contains a ".." segment' }
  let path = arg.startsWith('/') ? arg : `${cwd.replace(/\/$/, '')}/${arg}`
  if (!path.startsWith(`${storeDir}/`)) {
    try {
      path = realpathSync(path)
    } catch {
      // a result link whose output was collected is the usual case
      const target = danglingTarget(path)
      if (target === undefined) return { problem: `is not inside the store ${storeDir} and does not exist` }
      const where = target.startsWith(`${storeDir}/`) ? 'in the store' : `(outside the store ${storeDir})`
      return { problem: `is a dangling link to ${target}, which does not exist ${where}` }
    }
    if (!path.startsWith(`${storeDir}/`)) return { problem: `resolves to ${path}, outside the store ${storeDir}` }
  }
  return topStorePath(path, storeDir)
}

// The first path in the chain of links from `path` that does not exist; undefined when `path` is
// not a link, or its chain fails another way (a loop, a component that is not a directory).
function danglingTarget(path: string): string | undefined {
  let at = path
  for (let hops = 0; hops < 40; hops++) {
    try {
      at = resolve(dirname(at), readlinkSync(at))
    } catch (err) {
      return hops > 0 && (err as NodeJS.ErrnoException).code === 'ENOENT' ? at : undefined
    }
  }
  return undefined
}

/**
 * The store path that `arg` names on another machine: the text itself, cut back from a path
 * inside one. A local symlink says nothing about that machine's store, so nothing is followed.
 */
export function remoteStorePath(arg: string, storeDir: string): { path: string } | { problem: string } {
  if (!arg.startsWith(`${storeDir}/`)) return { problem: `is not a path in the store ${storeDir}` }
  return topStorePath(arg, storeDir)
}

// `path` (inside storeDir) cut back to the store path it is in, or why that is none.
function topStorePath(path: string, storeDir: string): { path: string } | { problem: string } {
  const end = path.indexOf('/', storeDir.length + 1)
  const top = end < 0 ? path : path.slice(0, end)
  const problem = storePathProblem(top, storeDir)
  return problem ? { problem } : { path: top }
}
