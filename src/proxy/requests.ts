// What a client's request makes the daemon's worker root, read from the request's first words
// (opcodes and layouts from Nix's worker-protocol.hh and daemon.cc). A worker roots the
// derivations and outputs it builds, the paths it adds, the paths it is asked to make valid, and
// explicit temp roots; queries root nothing.

import type { WireReader } from '../store/wire.js'

export type RequestHead = { readonly op: number } & (
  /** roots nothing */
  | { readonly kind: 'none' }
  /**
   * roots these paths, and outputs of these derivations (`DRV!out1,out2`, `DRV!*`, or a bare `DRV`
   * for all of them)
   */
  | { readonly kind: 'roots'; readonly paths: readonly string[]; readonly derivations: readonly string[] }
  /** roots the path its result starts with (the path it added) */
  | { readonly kind: 'result-path' }
  /** roots the paths in the framed data that follows the head (multiple.ts) */
  | { readonly kind: 'multiple' }
  /** an op not known here, whose roots cannot be told */
  | { readonly kind: 'unknown' }
)

// Ops that only ask, change settings or roots of another kind (permanent ones, which outlive the
// connection anyway): IsValidPath, HasSubstitutes, QueryPathHash, QueryReferences,
// QueryReferrers, AddIndirectRoot, SyncWithGC, FindRoots, QueryDeriver, SetOptions,
// CollectGarbage, QuerySubstitutablePathInfo, QueryDerivationOutputs, QueryAllValidPaths,
// QueryFailedPaths, ClearFailedPaths, QueryPathInfo, QueryDerivationOutputNames,
// QueryPathFromHashPart, QuerySubstitutablePathInfos, QuerySubstitutablePaths,
// QueryValidDerivers, OptimiseStore, AddSignatures, NarFromPath, QueryMissing,
// QueryDerivationOutputMap, RegisterDrvOutput, QueryRealisation, AddBuildLog, AddPermRoot.
const ROOTS_NOTHING = new Set([1, 3, 4, 5, 6, 12, 13, 14, 18, 19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 32, 33, 34, 37, 38, 40, 41, 42, 43, 45, 47])

const AddToStore = 7
const AddTextToStore = 8
const BuildPaths = 9
const EnsurePath = 10
const AddTempRoot = 11
const QueryValidPaths = 31
const BuildDerivation = 36
const AddToStoreNar = 39
const AddMultipleToStore = 44
const BuildPathsWithResults = 46

// A derived path: `DRV!out1,out2` or `DRV!*` (the derivation's outputs), or a plain store path. A
// plain .drv path asked to be built meant all its outputs before 1.30; from 1.30 it is the file.
function addDerived(spec: string, minor: number, paths: string[], derivations: string[]): void {
  if (spec.includes('!')) {
    derivations.push(spec)
    return
  }
  paths.push(spec)
  if (minor < 30 && spec.endsWith('.drv')) derivations.push(spec)
}

/** Reads the head of one request (its opcode and as much after it as its roots need). */
export function readRequestHead(r: WireReader, minor: number): RequestHead {
  const op = r.u64()
  const head = readHeadOf(op, r, minor)
  return { op, ...head } as RequestHead
}

type Unkeyed<T> = T extends unknown ? Omit<T, 'op'> : never

function readHeadOf(op: number, r: WireReader, minor: number): Unkeyed<RequestHead> {
  if (ROOTS_NOTHING.has(op)) return { kind: 'none' }
  switch (op) {
    case AddToStore:
    case AddTextToStore:
      return { kind: 'result-path' }
    case EnsurePath:
    case AddTempRoot:
    case AddToStoreNar:
      return { kind: 'roots', paths: [r.string()], derivations: [] }
    case BuildPaths:
    case BuildPathsWithResults: {
      const paths: string[] = []
      const derivations: string[] = []
      for (const spec of r.strings()) addDerived(spec, minor, paths, derivations)
      return { kind: 'roots', paths, derivations }
    }
    case QueryValidPaths: {
      const paths = r.strings()
      // from 1.27 the client may ask for missing paths to be substituted, which roots them
      const substitute = minor >= 27 && r.bool()
      return substitute ? { kind: 'roots', paths, derivations: [] } : { kind: 'none' }
    }
    case BuildDerivation: {
      const drv = r.string()
      const outputs: string[] = []
      const n = r.u64()
      for (let i = 0; i < n; i++) {
        r.string() // name
        const path = r.string()
        r.string() // hash algorithm
        r.string() // hash
        if (path !== '') outputs.push(path)
      }
      return { kind: 'roots', paths: [drv, ...outputs], derivations: [] }
    }
    case AddMultipleToStore:
      r.bool() // repair
      r.bool() // dontCheckSigs
      return { kind: 'multiple' }
    default:
      return { kind: 'unknown' }
  }
}
