// The results of the operations whose end the proxy holds back (operations.ts): read to their
// last byte, so that the whole answer can be passed on, or replaced, at once. Layouts from Nix's
// worker-protocol.cc, by negotiated minor.

import type { WireReader } from '../store/wire.js'

/**
 * What a result says of the paths: the path it added, or of the derived paths a build was asked
 * for, those it built (or found built); undefined: nothing beyond the request.
 */
export type ResultFacts = { readonly added: string } | { readonly built: readonly string[] } | undefined

/** Consumes one result. */
export type ResultReader = (r: WireReader) => ResultFacts

const word: ResultReader = (r) => void r.u64()
const nothing: ResultReader = () => undefined
const path: ResultReader = (r) => ({ added: r.string() })

// BuildResult statuses that mean the outputs are there: Built, Substituted, AlreadyValid,
// ResolvesToAlreadyValid (Nix's BuildResult::Status)
const SUCCESS = new Set([0, 1, 2, 13])

// ValidPathInfo as AddToStore answers from 1.25: the path, then its info
const pathInfo: ResultReader = (r) => {
  const added = r.string()
  r.string() // deriver
  r.string() // NAR hash
  r.strings() // references
  r.u64() // registration time
  r.u64() // NAR size
  r.bool() // ultimate
  r.strings() // signatures
  r.string() // content address
  return { added }
}

// BuildPathsWithResults (1.34 on): for each derived path asked for, that path and its BuildResult.
// Its built outputs are realisations: an id and a JSON text each, or, where client and daemon both
// offered the feature `realisation-with-path-not-hash` (Nix 2.35), an output name, its path and
// its signatures.
const keyedBuildResults =
  (minor: number, features: ReadonlySet<string>): ResultReader =>
  (r) => {
    const n = r.u64()
    const built: string[] = []
    for (let i = 0; i < n; i++) {
      const derived = r.string()
      if (SUCCESS.has(r.u64())) built.push(derived)
      r.string() // error message
      r.u64() // times built
      r.bool() // non-deterministic
      r.u64() // start time
      r.u64() // stop time
      if (minor >= 37) {
        // CPU time, user and system: each an optional count of microseconds
        for (let k = 0; k < 2; k++) if (r.u64() === 1) r.raw(8)
      }
      const outputs = r.u64()
      const byPath = features.has(REALISATION_WITH_PATH)
      for (let k = 0; k < outputs; k++) {
        r.string() // the output's id, or its name
        r.string() // the realisation as JSON, or the output's path
        if (byPath) r.strings() // its signatures
      }
    }
    return { built }
  }

/** The protocol feature (1.38) that changes how a build result's outputs are sent. */
export const REALISATION_WITH_PATH = 'realisation-with-path-not-hash'

/**
 * How the result of `op` is read at `minor`, with the protocol features both sides offered;
 * undefined for an op whose end is not held back.
 */
export function resultReader(op: number, minor: number, features: ReadonlySet<string> = new Set()): ResultReader | undefined {
  switch (op) {
    case 7: // AddToStore
      return minor >= 25 ? pathInfo : path
    case 8: // AddTextToStore
      return path
    case 9: // BuildPaths
    case 10: // EnsurePath
      return word
    case 39: // AddToStoreNar
    case 44: // AddMultipleToStore
      return nothing
    case 46: // BuildPathsWithResults
      return minor >= 34 ? keyedBuildResults(minor, features) : undefined
    default:
      return undefined
  }
}
