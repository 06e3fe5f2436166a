// Which store a build uses, decided the way Nix decides it (src/libstore/store-api.cc, 2.8):
// an explicit store URL, else NIX_REMOTE, else "auto".

import { accessSync, constants, existsSync } from 'node:fs'
import { HoldError } from '../errors.js'
import type { DaemonTarget } from './daemon.js'

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

/**
 * Where to hold roots for the store `uri` (undefined: NIX_REMOTE, then auto). A store that cannot
 * hold temp roots (a binary cache, an SSH store) is a HoldError of kind `store`.
 */
export function resolveStore(uri: string | undefined, env: NodeJS.ProcessEnv): DaemonTarget {
  const chosen = uri ?? env.NIX_REMOTE ?? ''
  const [scheme = '', query = ''] = chosen.split('?', 2)
  if (scheme === 'daemon') return { type: 'socket', path: defaultSocketPath(env) }
  if (scheme.startsWith('unix://')) return { type: 'socket', path: scheme.slice('unix://'.length) || defaultSocketPath(env) }
  if (scheme === 'local' || scheme.startsWith('/')) return { type: 'stdio', storeUri: chosen, env }
  if (scheme === '' || scheme === 'auto') {
    // Nix picks the local store when it may write the state directory (root, single-user), else the daemon.
    if (writable(stateDir(env)) || !existsSync(defaultSocketPath(env))) {
      return { type: 'stdio', storeUri: query ? `local?${query}` : 'local', env }
    }
    return { type: 'socket', path: defaultSocketPath(env) }
  }
  throw new HoldError('store', `cannot hold roots in the store "${chosen}": only a local store or a Nix daemon (daemon, unix://…, local, auto) keeps temporary roots`)
}
