// Runs the wrapped build and reads the output paths it reports on stdout.

import { dirname } from 'node:path'
import { execa } from 'execa'
import { HoldError, isHoldError } from '../errors.js'
import { storePathProblem } from '../store/path.js'
import type { BuildCommand } from './command.js'
import { runNixBuild } from './nix-build.js'
import { runStep, type RunOptions } from './step.js'

export interface BuildResult {
  /** Every output path, in the order the build reported them. */
  readonly paths: readonly string[]
  /** Per derivation, for `nix build` (whose --json reports them); undefined for nix-build. */
  readonly derivations: readonly BuiltDerivation[] | undefined
}

/** One derivation's outputs, as `nix build --json` reports them. */
export interface BuiltDerivation {
  readonly drvPath?: string
  readonly outputs: Readonly<Record<string, string>>
}

/**
 * Runs the build with its stderr passed through (Nix's progress shows as usual) and stdout
 * captured. A failure to start, a non-zero exit or a signal is a HoldError of kind `build`
 * carrying the exit code (128 + N for signal N); aborting `signal` stops the build first.
 */
export async function runBuild(command: BuildCommand, options: RunOptions): Promise<BuildResult> {
  if (command.flavor === 'nix-build') {
    const paths = await runNixBuild(command, options)
    checkPaths('nix-build', paths)
    return { paths, derivations: undefined }
  }
  let stdout: string
  try {
    stdout = await runStep('nix build', command.file, command.args, options)
  } catch (err) {
    if (isHoldError(err) && err.exitCode === 1) await refuseOldNixBuild(command, options.env)
    throw err
  }
  const parsed = parseJsonOutputs(stdout)
  checkPaths('nix build', parsed.paths)
  return parsed
}

// Every output a build reports must be a store path before it goes near the daemon.
function checkPaths(name: string, paths: readonly string[]): void {
  if (paths.length === 0) throw new HoldError('build', `${name} succeeded but reported no output paths`, { exitCode: 0 })
  for (const path of paths) {
    const problem = storePathProblem(path, dirname(path))
    if (problem) throw new HoldError('build', `${name} reported "${path}", which ${problem}`, { exitCode: 0 })
  }
}

/**
 * Nix 2.3's `nix build` has no --json (it came in 2.4), so it fails at once on the flag nix-hold
 * added. Asked only after a `nix build` exits 1, so a working build pays nothing for it.
 */
async function refuseOldNixBuild(command: BuildCommand, env: NodeJS.ProcessEnv): Promise<void> {
  const r = await execa(command.file, ['--version'], { env, extendEnv: false, stdin: 'ignore', reject: false })
  const m = /(\d+)\.(\d+)/.exec(String(r.stdout))
  if (!m || Number(m[1]) > 2 || (Number(m[1]) === 2 && Number(m[2]) >= 4)) return
  throw new HoldError('usage', `Nix ${m[0]}'s "nix build" cannot report what it built (it has no --json, which came in Nix 2.4); wrap nix-build instead, e.g. nix-hold ... -- nix-build FILE -A ATTR`)
}

// `nix build --json`: [{"drvPath": ..., "outputs": {"out": ...}}], or {"path": ...} for a store path given as such.
function parseJsonOutputs(stdout: string): BuildResult {
  let entries: unknown
  try {
    entries = JSON.parse(stdout)
  } catch (err) {
    throw new HoldError('build', `nix build --json printed something that is not JSON: ${stdout.slice(0, 200)}`, { exitCode: 0, cause: err })
  }
  if (!Array.isArray(entries)) throw new HoldError('build', 'nix build --json printed something other than a list', { exitCode: 0 })
  const derivations: BuiltDerivation[] = []
  const paths: string[] = []
  const seen = new Set<string>() // an entry as it will be reported, to drop repeats
  const add = (derivation: BuiltDerivation): void => {
    const key = JSON.stringify(derivation)
    if (seen.has(key)) return
    seen.add(key)
    derivations.push(derivation)
    for (const path of Object.values(derivation.outputs)) if (!paths.includes(path)) paths.push(path)
  }
  for (const entry of entries as Array<Record<string, unknown>>) {
    if (typeof entry?.path === 'string') {
      add({ outputs: { out: entry.path } })
    } else if (typeof entry?.outputs === 'object' && entry.outputs !== null) {
      const outputs = entry.outputs as Record<string, unknown>
      const kept: Record<string, string> = {}
      for (const [name, path] of Object.entries(outputs)) if (typeof path === 'string') kept[name] = path
      add(typeof entry.drvPath === 'string' ? { drvPath: entry.drvPath, outputs: kept } : { outputs: kept })
    } else {
      throw new HoldError('build', `nix build --json printed an entry nix-hold does not understand: ${JSON.stringify(entry).slice(0, 200)}`, { exitCode: 0 })
    }
  }
  return { paths, derivations }
}
