// nix-build, run as nix-instantiate and then nix-store --realise (nix-build-args.ts says why), with
// the derivations rooted on nix-hold's connection in between: once nix-instantiate exits nothing
// else holds them, and a collection in that gap would leave nix-store nothing to build.

import { realpathSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { execa } from 'execa'
import { HoldError } from '../errors.js'
import { storeDirFromEnv, storePathProblem } from '../store/path.js'
import type { BuildCommand } from './command.js'
import { type Arity, scanNixBuildArgs, splitNixBuild } from './nix-build-args.js'
import { cannotRun, runStep, type RunOptions } from './step.js'

/** How often an evaluation is run again when a collection takes its derivations before they are rooted. */
const EVALUATION_ATTEMPTS = 3

/** Runs nix-build's work and returns the output paths nix-build would have printed, in its order. */
export async function runNixBuild(command: BuildCommand, options: RunOptions): Promise<string[]> {
  // nix-build's siblings: the same directory when it was named by path, else PATH, as for it
  const sibling = (name: string): string => (command.file.includes('/') ? join(dirname(command.file), name) : name)
  const instantiate = sibling('nix-instantiate')
  const arities = await lookUpArities(instantiate, command.args, options)
  const scan = scanNixBuildArgs(command.args, (option) => arities.get(option) ?? 0)
  const storeDir = storeDirFromEnv(options.env)
  const split = splitNixBuild(scan, (target) => derivationOf(target, storeDir))

  let targets: string[] = [...split.derivations]
  if (split.instantiate !== undefined) {
    for (let attempt = 1; ; attempt++) {
      const stdout = await runStep('nix-build', instantiate, ['--no-gc-warning', ...split.instantiate], options, SIBLINGS)
      const evaluated = parseDerivations(stdout)
      const gone = (await options.root?.(evaluated.map(drvPathOf))) ?? []
      if (gone.length === 0) {
        targets = [...targets, ...evaluated]
        break
      }
      if (attempt === EVALUATION_ATTEMPTS) {
        throw new HoldError('store', `${gone.join(', ')} was not in the store after each of ${EVALUATION_ATTEMPTS} evaluations: a garbage collection took it each time, or nix-instantiate did not write it (as with --readonly-mode)`)
      }
      options.log?.(`${gone.join(', ')} was collected before it could be built; evaluating again`)
    }
  }
  // the targets named as store derivations are rooted as well; one that is gone is nix-store's to report
  if (split.derivations.length > 0) await options.root?.(split.derivations.map(drvPathOf))
  // an expression with no derivation in it: nix-build prints nothing, and runBuild says so
  if (targets.length === 0) return []

  // `--` keeps the targets from being read as an option's values, however the options were read
  const stdout = await runStep('nix-build', sibling('nix-store'), ['--realise', '--no-gc-warning', ...split.realise, '--', ...targets], options, SIBLINGS)
  // each output once, in the order first printed: one derivation may be named twice
  return [...new Set(stdout.split('\n').filter((line) => line.length > 0))]
}

// what a step that cannot start adds: which program was looked for, and why that one
const SIBLINGS = 'nix-hold runs nix-build as nix-instantiate and nix-store --realise, taken from nix-build\'s directory when it is named by path, else from PATH'

/**
 * Asks the user's nix-instantiate how many values each option unknown to nix-hold takes: every
 * setting is an option, and the value count decides which of the following words are files.
 * Nix parses the whole command line first; what comes after (opening a store that holds nothing,
 * which 2.3 does not have and says so, and parsing `0`) touches nothing. An answer that is none
 * of those is a usage error, not a guess.
 */
async function lookUpArities(instantiate: string, args: readonly string[], options: RunOptions): Promise<Map<string, Arity>> {
  const unknown = new Set<string>()
  scanNixBuildArgs(args, (option) => {
    unknown.add(option)
    return 0
  })
  const arities = new Map<string, Arity>()
  await Promise.all(
    [...unknown].map(async (option) => {
      const r = await execa(instantiate, ['--store', 'dummy://', '--parse', '--expr', '0', option], {
        env: options.env,
        extendEnv: false,
        stdin: 'ignore',
        reject: false,
        timeout: 30_000,
        ...(options.signal ? { cancelSignal: options.signal } : {}),
      })
      options.signal?.throwIfAborted()
      const stderr = String(r.stderr ?? '')
      const needs = /flag '[^']*' requires (\d+) argument/.exec(stderr)
      if (needs) arities.set(option, Number(needs[1]))
      else if (/unrecognised flag/.test(stderr)) arities.set(option, 'unrecognised')
      else if (r.exitCode === 0 || /don't know how to open Nix store/.test(stderr)) arities.set(option, 0)
      else if (r.exitCode === undefined && r.signal === undefined) throw cannotRun(instantiate, String(r.originalMessage ?? r.shortMessage), SIBLINGS, r)
      else {
        const said = stderr.trim().split('\n')[0] || (r.timedOut ? 'nothing before timing out' : `nothing (exit ${r.exitCode ?? r.signal})`)
        throw new HoldError('usage', `cannot tell how many values ${option} takes: nix-instantiate said ${said}; a setting can be given as --option NAME VALUE instead`)
      }
    }),
  )
  return arities
}

// A target that names a store derivation, directly or through a link (as `nix-build DRV` takes
// it), as DRV!OUTPUTS. For a bare DRV nix-build builds `out` (or the output a derivation's own
// `outputName` variable names, which no derivation made by `derivation` has). It is a little
// more lenient than nix-build: `LINK!out`, and several outputs, are built rather than refused.
function derivationOf(target: string, storeDir: string): string | undefined {
  const bang = target.indexOf('!')
  const named = bang < 0 ? target : target.slice(0, bang)
  let path = resolve(named)
  try {
    path = realpathSync(path)
  } catch {
    // not there (or inside a store this machine cannot see): judged by its name alone
  }
  if (!path.endsWith('.drv') || storePathProblem(path, storeDir) !== undefined) return undefined
  return `${path}!${bang < 0 ? 'out' : target.slice(bang + 1)}`
}

const drvPathOf = (target: string): string => target.slice(0, target.indexOf('!'))

// nix-instantiate prints DRV, or DRV!OUTPUT for a derivation whose selected output is not `out`.
// nix-store --realise of a bare DRV would build every output; nix-build builds the selected one.
function parseDerivations(stdout: string): string[] {
  const lines = stdout.split('\n').filter((line) => line.length > 0)
  return lines.map((line) => {
    const target = line.includes('!') ? line : `${line}!out`
    const drv = drvPathOf(target)
    const problem = drv.endsWith('.drv') ? storePathProblem(drv, dirname(drv)) : 'is not a derivation'
    if (problem) throw new HoldError('build', `nix-instantiate printed "${line}", which ${problem}`, { exitCode: 0 })
    return target
  })
}
