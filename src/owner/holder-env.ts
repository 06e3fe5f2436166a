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
// holder outlives the hold that started it by as long as the owner runs, and a store path in the
// environment of a process is a garbage-collection root for that long (NIX_PATH names one often,
// and no store needs it).
const KEPT = new Set(['PATH', 'HOME', 'USER', 'LOGNAME', 'TMPDIR', 'SSH_AUTH_SOCK', 'XDG_RUNTIME_DIR', 'XDG_CONFIG_HOME', 'XDG_CONFIG_DIRS', 'XDG_DATA_HOME', 'XDG_CACHE_HOME', 'XDG_STATE_HOME'])
const DROPPED = new Set(['NIX_PATH'])

/** The part of `env` a holder keeps. */
export function holderEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  const kept: Record<string, string> = {}
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && (KEPT.has(name) || (name.startsWith('NIX_') && !DROPPED.has(name)))) kept[name] = value
  }
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
