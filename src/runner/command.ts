// Recognises the wrapped build command and adds what nix-hold needs: no out-link, and output
// paths on stdout in a form that can be parsed. nix-build is run as two other commands
// (nix-build-args.ts says why); its arguments are only checked here.

import { basename } from 'node:path'
import { HoldError } from '../errors.js'
import { scanNixBuildArgs } from './nix-build-args.js'

export type Flavor = 'nix build' | 'nix-build'

/**
 * The build command as it will run, and the store it names. For `nix build`, `args` are what it
 * runs with; for nix-build, they are its own arguments plus nix-hold's `--store`, still to be
 * split between nix-instantiate and nix-store --realise.
 */
export interface BuildCommand {
  readonly flavor: Flavor
  readonly file: string
  readonly args: readonly string[]
  /** The store URL the command uses, from `--store` or `--option store` in its arguments or from nix-hold's own `--store`. */
  readonly store: string | undefined
}

// `nix build`'s options whose values could look like flags; their values are skipped when
// scanning. (nix-build's own arity has its home in nix-build-args.ts.)
const VALUE_COUNT: Readonly<Record<string, number>> = {
  '--arg': 2,
  '--argstr': 2,
  '--option': 2,
  '--override-input': 2,
  '--override-flake': 2,
  '--expr': 1,
  '--file': 1,
  '-f': 1,
  '-I': 1,
  '--include': 1,
  '-A': 1,
  '--attr': 1,
  '--store': 1,
  '--eval-store': 1,
  '--log-format': 1,
  '--experimental-features': 1,
  '--extra-experimental-features': 1,
  '--max-jobs': 1,
  '-j': 1,
  '--cores': 1,
  '--profile': 1,
  '--reference-lock-file': 1,
  '--output-lock-file': 1,
  '--inputs-from': 1,
  '--update-input': 1,
}

// not "nix-hold wraps …": on stderr every message already follows "nix-hold: "
const notABuild = (command: string): HoldError => new HoldError('usage', `the build command must be "nix build" or "nix-build", not "${command}"`)

const isOutLink = (arg: string): boolean => arg === '--out-link' || arg === '-o' || /^-[A-Za-z]*o[A-Za-z]*$/.test(arg)

/**
 * Prepares `command` (["nix", ..., "build", ...] or ["nix-build", ...]) to run under nix-hold.
 * Throws a HoldError of kind `usage` for another command, an out-link option, or a store that
 * disagrees with `store`.
 */
export function prepareBuild(command: readonly string[], store?: string): BuildCommand {
  const [file, ...args] = command
  if (file === undefined) throw new HoldError('usage', 'no build command given after --')
  const name = basename(file)
  let flavor: Flavor
  let insertAt: number
  if (name === 'nix-build') {
    flavor = 'nix-build'
    insertAt = 0
  } else if (name === 'nix') {
    const sub = findSubcommand(args)
    if (sub === undefined || args[sub] !== 'build') {
      throw notABuild(sub === undefined ? 'nix' : `nix ${args[sub]}`)
    }
    flavor = 'nix build'
    insertAt = sub + 1
  } else {
    throw notABuild(name)
  }

  // an option nix-build has and nix-hold cannot honour (an out-link among them) is refused before
  // anything runs; options it does not know are looked up only when it runs (nix-build.ts)
  const named = flavor === 'nix-build' ? scanNixBuildArgs(args, () => 0).store : scanNixArgs(args)
  if (named !== undefined && store !== undefined && named !== store) {
    throw new HoldError('usage', `--store ${store}, given to nix-hold, disagrees with --store ${named} in the build command`)
  }

  const added = flavor === 'nix build' ? ['--no-link', '--json'] : []
  if (named === undefined && store !== undefined) added.push('--store', store)
  const rest = [...args.slice(0, insertAt), ...added, ...args.slice(insertAt)]
  return { flavor, file, args: rest, store: named ?? store }
}

// `nix build`'s arguments: refuses an out-link, and returns the store they name, if any.
function scanNixArgs(args: readonly string[]): string | undefined {
  let named: string | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '--') break
    if (isOutLink(arg)) throw new HoldError('usage', `${arg} in the build command: nix-hold holds outputs without any link, so an out-link is not allowed`)
    if (arg === '--store') named = args[i + 1]
    if (arg === '--option' && args[i + 1] === 'store') named = args[i + 2]
    i += VALUE_COUNT[arg] ?? 0
  }
  return named
}

// The first argument that is neither an option nor an option's value: nix's subcommand.
function findSubcommand(args: readonly string[]): number | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (!arg.startsWith('-')) return i
    i += VALUE_COUNT[arg] ?? 0
  }
  return undefined
}
