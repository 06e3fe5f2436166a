// Runs the wrapped build (execa) and reads the output paths it reports on stdout.

import { constants } from 'node:os'
import { dirname } from 'node:path'
import { execa } from 'execa'
import { HoldError } from '../errors.js'
import type { BuiltDerivation } from '../channel/messages.js'
import { storePathProblem } from '../store/path.js'
import type { BuildCommand } from './command.js'

export interface BuildResult {
  /** Every output path, in the order the build reported them. */
  readonly paths: readonly string[]
  /** Per derivation, for `nix build` (whose --json reports them); undefined for nix-build. */
  readonly derivations: readonly BuiltDerivation[] | undefined
}

export interface RunOptions {
  readonly env: NodeJS.ProcessEnv
  readonly signal?: AbortSignal | undefined
}

const exitCodeOf = (signal: string | undefined, exitCode: number | undefined): number =>
  signal ? 128 + (constants.signals[signal as keyof typeof constants.signals] ?? 0) : (exitCode ?? 1)

/**
 * Runs the build with its stderr passed through (Nix's progress shows as usual) and stdout
 * captured. A failure to start, a non-zero exit or a signal is a HoldError of kind `build`
 * carrying the exit code (128 + N for signal N); aborting `signal` stops the build first.
 */
export async function runBuild(command: BuildCommand, { env, signal }: RunOptions): Promise<BuildResult> {
  signal?.throwIfAborted()
  const result = await execa(command.file, command.args, {
    env,
    extendEnv: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'inherit',
    reject: false,
    stripFinalNewline: false,
    maxBuffer: 64 * 1024 * 1024,
    ...(signal ? { cancelSignal: signal } : {}),
    // nix asked to stop (SIGTERM) cancels its builds with the daemon; SIGKILL only if it hangs
    forceKillAfterDelay: 5000,
  })
  if (result.isCanceled) throw signal?.reason ?? new HoldError('build', `${command.flavor} was stopped`)
  if (result.failed) {
    if (result.exitCode === undefined && result.signal === undefined) {
      throw new HoldError('build', `cannot run ${command.file}: ${result.originalMessage ?? result.shortMessage}`, { exitCode: 127, cause: result })
    }
    const code = exitCodeOf(result.signal, result.exitCode)
    if (command.flavor === 'nix build' && code === 1) await refuseOldNixBuild(command, env)
    const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${code}`
    throw new HoldError('build', `${command.flavor} ${how}`, { exitCode: code })
  }
  const stdout = String(result.stdout)
  const parsed = command.flavor === 'nix build' ? parseJsonOutputs(stdout) : { paths: parseLines(stdout), derivations: undefined }
  if (parsed.paths.length === 0) throw new HoldError('build', `${command.flavor} succeeded but reported no output paths`, { exitCode: 0 })
  for (const path of parsed.paths) {
    const problem = storePathProblem(path, dirname(path))
    if (problem) throw new HoldError('build', `${command.flavor} reported "${path}", which ${problem}`, { exitCode: 0 })
  }
  return parsed
}

/**
 * Nix 2.3's `nix build` has no --json (it came in 2.4), so it fails at once on the flag nix-hold
 * added. Asked only after a `nix build` exits 1, so a working build pays nothing for it.
 */
async function refuseOldNixBuild(command: BuildCommand, env: NodeJS.ProcessEnv): Promise<void> {
  const r = await execa(command.file, ['--version'], { env, extendEnv: false, stdin: 'ignore', reject: false })
  const m = /(\d+)\.(\d+)/.exec(String(r.stdout))
  if (!m || Number(m[1]) > 2 || (Number(m[1]) === 2 && Number(m[2]) >= 4)) return
  throw new HoldError('usage', `Nix ${m[0]}'s "nix build" cannot report what it built (it has no --json, which came in Nix 2.4); wrap nix-build instead, e.g. nix-hold ... -- nix-build FILE -A ATTR`, { exitCode: 1 })
}

// Each path once, in the order first reported: Nix 2.24's `nix build -f FILE out lib` reports the
// derivation once per attribute named, outputs and all.
const parseLines = (stdout: string): string[] => [...new Set(stdout.split('\n').filter((line) => line.length > 0))]

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
