// Sorts nix-build's arguments between the two commands nix-hold runs in its place.
//
// nix-build links each output from a temporary directory and registers that link with the store
// as a GC root (nix-build.cc, addPermRoot on any local or daemon store, in every release from 2.3
// to 2.24). The directory goes when it exits; the entry in gcroots/auto stays until a collection
// finds it dangling. nix-instantiate and nix-store --realise, which do the same work between them,
// add no root unless asked to, so nix-hold runs those and roots the derivations itself in between.
//
// Nix parses these command lines itself (src/libutil/args.cc, src/nix-build/nix-build.cc): compound
// short flags are split (`-Kj4` is `-K -j 4`), every setting is also a flag (`--sandbox`,
// `--max-silent-time N`), and anything not starting with a dash is an expression file. How many
// values a flag takes decides which words are files, so a flag missing from the table below is
// looked up in the user's own Nix (see `nix-build.ts`) rather than guessed.

import { HoldError } from '../errors.js'

/** How many values an option takes, as the user's nix-instantiate parses it, or that it knows no such option. */
export type Arity = number | 'unrecognised'

type Route =
  | 'eval' // nix-instantiate only: what to evaluate and how
  | 'expressions' // -E: the positional arguments are Nix expressions, not files
  | 'build' // nix-store --realise only
  | 'both' // settings and logging, which every Nix command accepts
  | 'drop' // nix-build's no-ops, and the out-link it is told to skip
  | 'impure' // nix-build accepts --impure in every release, nix-instantiate only from 2.4
  | { readonly refuse: string }

interface Option {
  readonly route: Route
  readonly values: number
}

const OUT_LINK = { refuse: 'nix-hold holds outputs without any link, so an out-link is not allowed' }

const OPTIONS: Readonly<Record<string, Option>> = {
  ...spread(['-A', '--attr', '-I', '--include'], 'eval', 1),
  ...spread(['--arg', '--argstr', '--arg-from-file', '--override-flake'], 'eval', 2),
  ...spread(['--help', '--version'], 'eval', 0),
  ...spread(['-E', '--expr'], 'expressions', 0),
  '--impure': { route: 'impure', values: 0 },
  '--check': { route: 'build', values: 0 },
  ...spread(['--repair', '-v', '--verbose', '--quiet', '--debug', '-Q', '--no-build-output', '-K', '--keep-failed', '-k', '--keep-going', '--fallback', '--readonly-mode', '--no-gc-warning', '--show-trace', '--sandbox', '--no-sandbox'], 'both', 0),
  ...spread(['-j', '--max-jobs', '--cores', '--max-silent-time', '--timeout', '--store', '--log-format', '--builders', '--system', '--substituters', '--extra-substituters', '--experimental-features', '--extra-experimental-features'], 'both', 1),
  '--option': { route: 'both', values: 2 },
  ...spread(['--no-out-link', '--no-link', '--add-drv-link', '--indirect', '--pure'], 'drop', 0),
  ...spread(['--drv-link', '--exclude', '--keep'], 'drop', 1),
  ...spread(['-o', '--out-link', '--add-root'], OUT_LINK, 1),
  '--dry-run': { route: { refuse: 'a dry run builds nothing, so there is nothing to hold' }, values: 0 },
  ...spread(['--run-env', '-p', '--packages'], { refuse: 'that is nix-shell\'s, which nix-hold does not wrap' }, 0),
  // nix-shell's too; Nix 2.3's nix-build accepts them and does nothing with them, later ones refuse
  ...spread(['--command', '--run'], 'drop', 1),
  // the build gets no standard input: nix-hold's own may be the caller's channel
  ...spread(['-', '--arg-from-stdin'], { refuse: 'nix-hold gives the build no standard input (it may be the channel to the caller)' }, 0),
  '--eval-store': { route: { refuse: 'nix-store --realise, which builds for nix-hold, cannot take derivations from another store' }, values: 1 },
}

function spread(names: readonly string[], route: Route, values: number): Record<string, Option> {
  return Object.fromEntries(names.map((name) => [name, { route, values }]))
}

// A word the caller wrote in nix-build's argument list, as one of the commands will get it.
type Word = { readonly to: 'eval' | 'build' | 'both'; readonly text: string } | { readonly to: 'target'; readonly text: string }

/** nix-build's arguments as read: refused options have thrown, unknown ones were asked about. */
export interface NixBuildScan {
  readonly words: readonly Word[]
  /** `-E` was given: every target is an expression. */
  readonly expressions: boolean
  /** The store named by `--store S` or `--option store S`, if any. */
  readonly store: string | undefined
}

/** nix-build's work as the two commands that do it. */
export interface NixBuildSplit {
  /** Arguments for nix-instantiate, or undefined when every target is a store derivation already. */
  readonly instantiate: readonly string[] | undefined
  /** Options for nix-store --realise (no paths). */
  readonly realise: readonly string[]
  /** Store derivations named as targets, as DRV!OUTPUT, built ahead of the evaluated ones (as nix-build does). */
  readonly derivations: readonly string[]
}

/**
 * Reads nix-build's arguments as Nix would. `arityOf` answers for options the table does not know;
 * it is asked about every such option, so a first pass with `() => 0` lists what to look up.
 * Throws a HoldError of kind `usage` for an option nix-hold cannot honour.
 */
export function scanNixBuildArgs(args: readonly string[], arityOf: (option: string) => Arity): NixBuildScan {
  const words: Word[] = []
  const rest = [...args]
  let expressions = false
  let store: string | undefined
  let dashDash = false
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (dashDash || arg === '' || !arg.startsWith('-')) {
      words.push({ to: 'target', text: arg })
      continue
    }
    if (arg === '--') {
      // kept for nix-instantiate, which reads what follows as files as nix-build would
      dashDash = true
      words.push({ to: 'eval', text: arg })
      continue
    }
    if (arg.length > 2 && arg[1] !== '-' && /[A-Za-z]/.test(arg[1]!)) {
      // -Kj4 is -K -j 4: each letter a flag, and whatever follows the last letter a word of its own
      const split = compound(arg)
      rest.splice(i, 1, ...split)
      i--
      continue
    }
    let option = OPTIONS[arg]
    if (option === undefined) {
      const arity = arityOf(arg)
      // an option this Nix does not know goes to the first command run, which says so
      option = { route: 'both', values: arity === 'unrecognised' ? 0 : arity }
    }
    const values = rest.slice(i + 1, i + 1 + option.values)
    i += values.length
    const { route } = option
    if (typeof route === 'object') throw new HoldError('usage', `${arg} in the build command: ${route.refuse}`)
    if (route === 'drop') continue
    if (route === 'impure' && arityOf(arg) === 'unrecognised') continue
    if (route === 'expressions') expressions = true
    if (arg === '--store') store = values[0]
    if (arg === '--option' && values[0] === 'store') store = values[1]
    const to = route === 'build' || route === 'both' ? route : 'eval'
    for (const text of [arg, ...values]) words.push({ to, text })
  }
  return { words, expressions, store }
}

function compound(arg: string): string[] {
  const out: string[] = []
  for (let j = 1; j < arg.length; j++) {
    if (!/[A-Za-z]/.test(arg[j]!)) {
      out.push(arg.slice(j))
      break
    }
    out.push(`-${arg[j]}`)
  }
  return out
}

/**
 * Splits a scan between nix-instantiate and nix-store --realise. `derivationOf` says whether a
 * target names a store derivation (a .drv path, or a link to one), and gives it as nix-build
 * would build it; anything else is an expression file for nix-instantiate.
 */
export function splitNixBuild(scan: NixBuildScan, derivationOf: (target: string) => string | undefined): NixBuildSplit {
  const instantiate: string[] = []
  const realise: string[] = []
  const derivations: string[] = []
  let files = 0
  for (const word of scan.words) {
    if (word.to === 'target') {
      // after -E every target is an expression
      const drv = scan.expressions ? undefined : derivationOf(word.text)
      if (drv === undefined) {
        instantiate.push(word.text)
        files++
      } else {
        derivations.push(drv)
      }
      continue
    }
    if (word.to !== 'build') instantiate.push(word.text)
    if (word.to !== 'eval') realise.push(word.text)
  }
  // with no target at all nix-build reads default.nix, and so does nix-instantiate
  const evaluates = files > 0 || derivations.length === 0 || scan.expressions
  return { instantiate: evaluates ? instantiate : undefined, realise, derivations }
}
