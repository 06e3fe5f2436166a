// Stand-ins for programs that the code under test runs by name: scripts in a directory put first
// on PATH. A shim that wraps the real program finds it through REAL_PATH, the PATH it stands in
// front of.

import { mkdtempSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI } from './wrapper.js'

/** A script running the built nix-hold, as an installed package puts it on PATH. */
export const NIX_HOLD_SCRIPT = `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`

/**
 * `env` with a fresh directory under `parent` (an instance's root, which goes with it) first on
 * PATH, holding each of `scripts` as an executable of that name; REAL_PATH is `env`'s PATH.
 */
export function withShims(parent: string, env: NodeJS.ProcessEnv, scripts: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const dir = mkdtempSync(join(parent, 'shims-'))
  for (const [name, script] of Object.entries(scripts)) writeFileSync(join(dir, name), script, { mode: 0o755 })
  return { ...env, PATH: `${dir}:${env.PATH}`, REAL_PATH: env.PATH }
}
