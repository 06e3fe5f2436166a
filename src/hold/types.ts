// What the library hands out and takes: a hold, and the options that shape one.

import type { BuiltDerivation } from '../runner/run.js'
import type { DaemonTarget } from '../store/resolve.js'

export interface HoldOptions {
  /** The store to build in and hold roots on (a URL as for `nix --store`); default: as Nix picks it from `env`. */
  readonly store?: string
  /** The environment for the build and for finding the store; default `process.env`. */
  readonly env?: NodeJS.ProcessEnv
  /** Aborts connecting and building; an established hold is ended with `release()`, not this. */
  readonly signal?: AbortSignal
  /**
   * Called with paths that disappeared while a daemon connection was being re-established;
   * `store` is the store a `keep` or `expect` named, undefined for the hold's own.
   */
  readonly onLost?: (paths: readonly string[], store?: string) => void
  /** Where notes meant for a person go (a rebuild, a reconnect); default: nowhere. */
  readonly log?: (message: string) => void
  /** Announce at most this protocol minor to the daemon (for testing older protocol paths). */
  readonly protocolMinor?: number
}

/** Which store a `keep` or `expect` is for. */
export interface StoreOption {
  /** A store URL (`ssh-ng://host`, …); absent: the hold's own store. */
  readonly store?: string
}

/** Store paths kept alive against garbage collection until `release()`. */
export interface Hold {
  /** Every path held on the hold's own store: the build's outputs or the kept paths, then any added with `keep`. */
  readonly paths: readonly string[]
  /** For a `nix build`, its outputs per derivation as `--json` reported them. */
  readonly derivations: readonly BuiltDerivation[] | undefined
  /**
   * Adds paths to the hold once they are valid and rooted; returns them as store paths. A path
   * that is not a valid store path fails the whole call (kind `usage`) and adds none. With
   * `store`, they are held on that store, over a connection this hold opens on first use.
   */
  keep(paths: readonly string[], options?: StoreOption): Promise<readonly string[]>
  /**
   * Roots store paths that need not exist yet (a `nix copy` that then makes them valid lands them
   * held); returns them. A later `keep` of the same paths confirms they are valid.
   */
  expect(paths: readonly string[], options?: StoreOption): Promise<readonly string[]>
  /** Drops every root on every store at once by closing the daemon connections. Idempotent. */
  release(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/**
 * Which store a hold's own roots are on, as another process needs it to root the same paths
 * there: the daemon to reach and how, and the store directory paths are checked against.
 */
export interface StoreLocation {
  readonly target: DaemonTarget
  readonly storeDir: string
  /** The store URL the hold was given, for messages; undefined for the store Nix picks. */
  readonly named?: string | undefined
}

/** What `StoreRoots.adopt` took over. */
export interface Adopted {
  /** The paths held now. */
  readonly held: readonly string[]
  /** The paths of the outputs the derivations named. */
  readonly outputs: readonly string[]
  /** How many named outputs could not be found: a derivation not valid, or without that output. */
  readonly unresolved: number
}

/** Roots on one store over one connection, remade (every root with it) when it is lost. */
export interface StoreRoots {
  /** Every path rooted and valid. */
  readonly paths: readonly string[]
  /** Roots `paths` once they are valid; a path that is not valid fails the call and adds none. */
  add(paths: readonly string[]): Promise<readonly string[]>
  /**
   * Roots what another connection to the store roots now: the valid ones of `paths` and of the
   * outputs of `derivations` (`DRV!out1,out2`, `DRV!*`, or a bare `DRV`); returns what it holds,
   * and the paths of the outputs the derivations named.
   */
  adopt(paths: readonly string[], derivations: readonly string[]): Promise<Adopted>
  /** Drops every root by closing the connection. Idempotent. */
  release(): Promise<void>
}
