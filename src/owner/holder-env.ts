import { existsSync } from 'node:fs'
import { join } from 'node:path'

// What a holder is told when it starts, on its standard input: where to listen, and the
// environment it reaches stores with. It runs with an empty environment of its own.

/** The one line a holder reads on its standard input. */
export interface HolderStartup {
  /** The user's private directory (runtime-dir.ts), as the hold that started it found it. */
  readonly dir: string
  /** The environment for reaching stores: resolving a store, nix-daemon --stdio, ssh. */
  readonly env: Readonly<Record<string, string>>
}

// What finding and reaching a store reads: Nix's own settings and locations, where nix.conf and a
// user's ssh keys are, the programs (nix-daemon, ssh) and ssh's agent. Nothing else is taken: a
// holder outlives the hold that started it by as long as the owner runs, and so do the
// `nix-daemon --stdio` and ssh it starts with this environment, and a store path in the
// environment of a process is a garbage-collection root for that long. (In a nix-shell, NIX_CC,
// NIX_LDFLAGS, NIX_PATH and most of PATH name store paths; none of them is needed here.)
const KEPT = new Set(['HOME', 'USER', 'LOGNAME', 'TMPDIR', 'SSH_AUTH_SOCK', 'XDG_RUNTIME_DIR', 'XDG_CONFIG_HOME', 'XDG_CONFIG_DIRS', 'XDG_DATA_HOME', 'XDG_CACHE_HOME', 'XDG_STATE_HOME'])
const NIX_KEPT = new Set([
  'NIX_REMOTE',
  'NIX_STORE_DIR',
  'NIX_STORE',
  'NIX_STATE_DIR',
  'NIX_LOG_DIR',
  'NIX_CONF_DIR',
  'NIX_USER_CONF_FILES',
  'NIX_CONFIG',
  'NIX_DAEMON_SOCKET_PATH',
  'NIX_SSHOPTS',
  'NIX_DATA_DIR',
  'NIX_LIBEXEC_DIR',
  'NIX_BIN_DIR',
  'NIX_DATA_HOME',
  'NIX_CONFIG_HOME',
  'NIX_STATE_HOME',
  'NIX_CACHE_HOME',
])

// The programs a holder runs, found on PATH
const PROGRAMS = ['nix-daemon', 'ssh']

// PATH without the store directories that hold none of the programs a holder runs
function pathFor(env: NodeJS.ProcessEnv): string | undefined {
  if (env.PATH === undefined) return undefined
  const store = `${(env.NIX_STORE_DIR || '/nix/store').replace(/\/+$/, '')}/`
  return env.PATH.split(':')
    .filter((dir) => !dir.startsWith(store) || PROGRAMS.some((p) => existsSync(join(dir, p))))
    .join(':')
}

/** The part of `env` a holder keeps. */
export function holderEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  const kept: Record<string, string> = {}
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && (KEPT.has(name) || NIX_KEPT.has(name))) kept[name] = value
  }
  const path = pathFor(env)
  if (path !== undefined) kept.PATH = path
  return kept
}

/** Reads a holder's startup line; undefined when it is not one. */
export function parseStartup(text: string): HolderStartup | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  const { dir, env } = (value ?? {}) as { dir?: unknown; env?: unknown }
  if (typeof dir !== 'string' || typeof env !== 'object' || env === null) return undefined
  if (!Object.values(env).every((v) => typeof v === 'string')) return undefined
  return { dir, env: env as Record<string, string> }
}
