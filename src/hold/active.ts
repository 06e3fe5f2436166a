// A hold in force: its own store's roots, and those on each store a request named.

import { setMaxListeners } from 'node:events'
import { HoldError } from '../errors.js'
import type { BuiltDerivation } from '../runner/run.js'
import { contextFor, type Context } from './context.js'
import { StoreHold } from './store-hold.js'
import type { Hold, HoldOptions, StoreLocation, StoreOption, StoreRoots } from './types.js'

const released = (): HoldError => new HoldError('usage', 'this hold was released')

/** One hold over many stores: its own, and each store a `keep` or `expect` named. */
export class ActiveHold implements Hold {
  readonly #own: StoreHold
  // a store's connection is opened on first use; a failed opening is forgotten, so a later
  // request tries again
  readonly #others = new Map<string, Promise<StoreHold>>()
  #releaseDone: Promise<void> | undefined
  // aborted once the hold is released, which ends connections still being opened; one listener
  // per opening store, and a deployment may open fifty at once
  readonly #releasing = new AbortController()

  constructor(
    own: StoreHold,
    readonly derivations: readonly BuiltDerivation[] | undefined,
  ) {
    this.#own = own
    setMaxListeners(0, this.#releasing.signal)
  }

  get paths(): readonly string[] {
    return this.#own.paths
  }

  get location(): StoreLocation {
    const { target, storeDir, named, options } = this.#own.ctx
    return { target, storeDir, named: named ?? options.store }
  }

  async keep(paths: readonly string[], options: StoreOption = {}): Promise<readonly string[]> {
    return (await this.#storeHold(options.store)).keep(paths)
  }

  async expect(paths: readonly string[], options: StoreOption = {}): Promise<readonly string[]> {
    return (await this.#storeHold(options.store)).expect(paths)
  }

  #storeHold(store: string | undefined): Promise<StoreHold> {
    if (this.#releasing.signal.aborted) return Promise.reject(released())
    if (store === undefined || store === this.#own.ctx.options.store) return Promise.resolve(this.#own)
    let opening = this.#others.get(store)
    if (!opening) {
      let ctx: Context
      try {
        ctx = contextFor(this.#own.ctx.options, store, store) // a refused URL fails here, before any process starts
      } catch (err) {
        return Promise.reject(err)
      }
      opening = StoreHold.open(ctx, this.#releasing.signal)
      this.#others.set(store, opening)
      opening.catch(() => this.#others.get(store) === opening && this.#others.delete(store))
    }
    return opening
  }

  release(): Promise<void> {
    this.#releaseDone ??= this.#release()
    return this.#releaseDone
  }

  async #release(): Promise<void> {
    this.#releasing.abort(released())
    const others = [...this.#others.values()].map((p) => p.then((h) => h.release(), () => undefined))
    await Promise.all([this.#own.release(), ...others])
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release()
  }
}

/** The store `hold`'s own paths are rooted on. */
export function locationOf(hold: Hold): StoreLocation {
  if (!(hold instanceof ActiveHold)) throw new TypeError('locationOf takes a hold made by buildAndHold or holdPaths')
  return hold.location
}

/** Opens a connection to `location`'s store to root paths on, for a process that gathers roots from other holds. */
export async function openRoots(location: StoreLocation, options: Pick<HoldOptions, 'env' | 'log' | 'onLost' | 'protocolMinor' | 'signal'> = {}): Promise<StoreRoots> {
  const ctx: Context = { env: options.env ?? process.env, target: location.target, storeDir: location.storeDir, options, named: location.named }
  const roots = await StoreHold.open(ctx)
  return {
    get paths() {
      return roots.paths
    },
    add: (paths) => roots.keep(paths),
    adopt: (paths, derivations) => roots.adopt(paths, derivations),
    release: () => roots.release(),
  }
}
