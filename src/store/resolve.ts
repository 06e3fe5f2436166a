// Which store a build uses, decided the way Nix decides it (src/libstore/store-api.cc): a store
// named on the command line, else the `store` setting from nix.conf or NIX_CONFIG, else
// NIX_REMOTE, else "auto".

import { accessSync, constants, existsSync } from 'node:fs'
import { join } from 'node:path'
import { HoldError } from '../errors.js'
import { readNixConfig } from './config.js'
import { isSshStoreUri, parseSshStore, type SshStore } from './ssh.js'

/**
 * Where a store's daemon is, and how to reach it: a Unix socket; a `nix-daemon --stdio` child
 * serving a local store; or another machine's daemon over ssh. `stateDir` is the store's state
 * directory when this machine can see it (its garbage collector listens in there while it runs);
 * undefined when it cannot be known.
 */
export type DaemonTarget =
  | { readonly type: 'socket'; readonly path: string; readonly stateDir?: string | undefined }
  | { readonly type: 'stdio'; readonly storeUri: string; readonly env: NodeJS.ProcessEnv; readonly stateDir?: string | undefined }
  | { readonly type: 'ssh'; readonly store: SshStore; readonly env: NodeJS.ProcessEnv; readonly stateDir?: undefined }

/** The target as messages name it. */
export const describeTarget = (t: DaemonTarget): string =>
  t.type === 'socket' ? `the Nix daemon socket ${t.path}` : t.type === 'stdio' ? `nix-daemon --stdio (store ${t.storeUri})` : `the store ${t.store.uri} (${t.store.remoteCommand} over ssh)`

/**
 * The target as a store URL that resolves to it again (under the environment that resolved it):
 * how a process that roots on the same store names it to another.
 */
export const storeUrlOf = (t: DaemonTarget): string => (t.type === 'socket' ? `unix://${t.path}` : t.type === 'stdio' ? t.storeUri : t.store.uri)

const stateDir = (env: NodeJS.ProcessEnv): string => env.NIX_STATE_DIR || '/nix/var/nix'

/** The daemon socket Nix itself would use under `env`. */
export const defaultSocketPath = (env: NodeJS.ProcessEnv): string =>
  env.NIX_DAEMON_SOCKET_PATH || `${stateDir(env)}/daemon-socket/socket`

const writable = (dir: string): boolean => {
  try {
    accessSync(dir, constants.R_OK | constants.W_OK)
    return true
  } catch {
    return false
  }
}

/** What "auto" needs to know of the machine; tests supply their own. */
export interface Machine {
  readonly writable: (dir: string) => boolean
  readonly exists: (path: string) => boolean
  readonly isRoot: boolean
}

const thisMachine = (): Machine => ({ writable, exists: existsSync, isRoot: process.getuid?.() === 0 })

/** The store URL Nix would use under `env` when its command line names none. */
export function configuredStore(env: NodeJS.ProcessEnv): string {
  return readNixConfig(env).get('store') || env.NIX_REMOTE || 'auto'
}

// A local store's state directory: its `state` parameter, else under its `root`, else NIX_STATE_DIR.
function localStateDir(uri: string, env: NodeJS.ProcessEnv): string {
  const [scheme = '', query = ''] = uri.split('?', 2)
  const params = new URLSearchParams(query)
  const root = scheme.startsWith('/') ? scheme : params.get('root')
  return params.get('state') || (root ? join(root, 'nix', 'var', 'nix') : stateDir(env))
}

// A daemon socket at <state dir>/daemon-socket/socket tells us its store's state directory.
const socketTarget = (path: string): DaemonTarget => {
  const m = /^(.*)\/daemon-socket\/socket$/.exec(path)
  return { type: 'socket', path, stateDir: m?.[1] || undefined }
}

/**
 * Where to hold roots for the store `uri` (undefined: as Nix picks it from `env`). A store that
 * cannot hold temp roots (a binary cache) is a HoldError of kind `store`; an ssh URL that could
 * reach ssh as an option is one of kind `usage`.
 */
export function resolveStore(uri: string | undefined, env: NodeJS.ProcessEnv, machine: Machine = thisMachine()): DaemonTarget {
  const chosen = uri ?? configuredStore(env)
  const [scheme = '', query = ''] = chosen.split('?', 2)
  if (scheme === 'daemon') return socketTarget(defaultSocketPath(env))
  if (scheme.startsWith('unix://')) return socketTarget(scheme.slice('unix://'.length) || defaultSocketPath(env))
  if (scheme === 'local' || scheme.startsWith('/')) return { type: 'stdio', storeUri: chosen, env, stateDir: localStateDir(chosen, env) }
  if (scheme === '' || scheme === 'auto') return resolveAuto(query, env, machine)
  // another machine: its nix-daemon over ssh (a URL that could reach ssh as an option is refused)
  if (isSshStoreUri(chosen)) return { type: 'ssh', store: parseSshStore(chosen), env }
  throw new HoldError('store', `cannot hold roots in the store "${chosen}": only a local store, a Nix daemon (daemon, unix://…, local, auto) or a Nix machine over ssh (ssh-ng://…, ssh://…) keeps temporary roots`)
}

// "auto", in Nix's order: the local store when its state directory may be written (root,
// single-user), else the daemon when its socket exists, else (Nix 2.10+, Linux, not root, no
// /nix at all, nothing relocated) a store under the user's data directory, else local.
function resolveAuto(query: string, env: NodeJS.ProcessEnv, machine: Machine): DaemonTarget {
  const local = (uri: string): DaemonTarget => ({ type: 'stdio', storeUri: uri, env, stateDir: localStateDir(uri, env) })
  const params = new URLSearchParams(query)
  const state = params.get('state') || stateDir(env)
  if (machine.writable(state)) return local(query ? `local?${query}` : 'local')
  if (machine.exists(defaultSocketPath(env))) return socketTarget(defaultSocketPath(env))
  if (process.platform === 'linux' && query === '' && !machine.isRoot && !machine.exists(state) && !env.NIX_STORE_DIR && !env.NIX_STATE_DIR) {
    // Nix 2.25 added NIX_DATA_HOME; before it, and without it, the XDG data directory
    const data = env.NIX_DATA_HOME || join(env.XDG_DATA_HOME || join(env.HOME || '/', '.local', 'share'), 'nix')
    return local(`local?root=${join(data, 'root')}`)
  }
  // Nix would go on with the local store and fail at its first write; a root is such a write
  if (machine.exists(state)) {
    throw new HoldError('store', `no Nix daemon is running (no socket at ${defaultSocketPath(env)}), and this user may not write the local store's state directory ${state}: start nix-daemon, or hold as a user who may write the store`)
  }
  return local(query ? `local?${query}` : 'local')
}
