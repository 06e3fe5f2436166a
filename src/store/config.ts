// One setting as Nix reads it from its configuration: nix.conf in NIX_CONF_DIR, then the user's
// files, then NIX_CONFIG; a later source overrides an earlier one (Nix's loadConfFile in
// src/libstore/globals.cc, and applyConfig in src/libutil/config.cc). nix-hold reads only what
// decides which store a build uses.

import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, join } from 'node:path'

/**
 * The user's configuration files, most important first: NIX_USER_CONF_FILES when set (Nix 2.4+),
 * else nix/nix.conf in XDG_CONFIG_HOME (~/.config) and in each XDG_CONFIG_DIRS entry (/etc/xdg).
 */
export function userConfFiles(env: NodeJS.ProcessEnv): string[] {
  if (env.NIX_USER_CONF_FILES) return env.NIX_USER_CONF_FILES.split(':').filter(Boolean)
  const home = env.XDG_CONFIG_HOME || (env.HOME ? join(env.HOME, '.config') : undefined)
  const dirs = [...(home ? [home] : []), ...(env.XDG_CONFIG_DIRS || '/etc/xdg').split(':').filter(Boolean)]
  return dirs.map((dir) => join(dir, 'nix', 'nix.conf'))
}

// Applies the lines of one configuration text to `into`, following includes. A missing file is
// skipped silently only through `!include`, as Nix does; a missing top-level file is no error.
function apply(text: string, base: string, into: Map<string, string>, depth: number): void {
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') continue
    const include = /^(!?)include\s+(.+)$/.exec(line)
    if (include) {
      const target = include[2]!.trim()
      if (depth < 16) readInto(isAbsolute(target) ? target : join(base, target), into, depth + 1)
      continue
    }
    const eq = line.indexOf('=')
    if (eq < 0) continue // Nix rejects such a line; the build will say so
    const name = line.slice(0, eq).trim()
    // a value is its words, single-spaced
    into.set(name, line.slice(eq + 1).trim().split(/\s+/).filter(Boolean).join(' '))
  }
}

function readInto(file: string, into: Map<string, string>, depth = 0): void {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return
  }
  apply(text, dirname(file), into, depth)
}

/** Every setting Nix would read under `env` (from files and NIX_CONFIG; not its command line). */
export function readNixConfig(env: NodeJS.ProcessEnv): Map<string, string> {
  const settings = new Map<string, string>()
  readInto(join(env.NIX_CONF_DIR || '/etc/nix', 'nix.conf'), settings)
  // the first user file wins, so they are applied last to first
  for (const file of userConfFiles(env).reverse()) readInto(file, settings)
  if (env.NIX_CONFIG) apply(env.NIX_CONFIG, process.cwd(), settings, 0)
  return settings
}
