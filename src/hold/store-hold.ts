// What one hold holds on one store: the paths rooted and valid, and those expected to arrive, over
// a connection that is replaced (and every root put back) when it is lost.

import { HoldError } from '../errors.js'
import type { DaemonConnection } from '../store/daemon.js'
import { ReconnectingConnection, tell, type Restore } from '../store/reconnecting.js'
import { rootAndCheck } from '../store/rooting.js'
import { connect, labelOf, reconnectOptions, resolvePaths, type Context } from './context.js'
import type { Adopted } from './types.js'

const released = (cause?: unknown): HoldError => new HoldError('usage', 'this hold was released', { cause })

export class StoreHold {
  readonly #conn: ReconnectingConnection
  // valid and rooted
  #paths: string[]
  // rooted, validity not asked for (expect): not reported lost when they are not valid
  readonly #expected = new Set<string>()

  /** Takes over `conn`, on which `paths` are rooted and valid already. */
  constructor(
    readonly ctx: Context,
    conn: ReconnectingConnection,
    paths: readonly string[] = [],
  ) {
    this.#conn = conn
    this.#paths = [...paths]
    conn.retryUntilClosed(this.#restore)
  }

  /** Opens a connection to the context's store for a new StoreHold. */
  static async open(ctx: Context, signal?: AbortSignal): Promise<StoreHold> {
    const conn = await connect(ctx, signal)
    return new StoreHold(ctx, new ReconnectingConnection(conn, reconnectOptions(ctx)))
  }

  get paths(): readonly string[] {
    return this.#paths
  }

  /**
   * The first paths of a hold that holds nothing yet: rooted and checked in one go, since a
   * refusal ends the connection, and what it rooted with it.
   */
  holdFirst(args: readonly string[]): Promise<readonly string[]> {
    return this.#run(args, async (conn, unique) => this.#confirm(unique, await rootAndCheck(conn, unique, this.#rooting)))
  }

  /**
   * Paths added to a hold that holds others: checked before they are rooted as well, so that a
   * refused request roots nothing (a path not valid before would otherwise stay rooted).
   */
  keep(args: readonly string[]): Promise<readonly string[]> {
    return this.#run(args, async (conn, unique) => {
      const before = await conn.queryValidPaths(unique)
      const invalid = unique.filter((p) => !before.has(p))
      if (invalid.length > 0) {
        const expected = invalid.some((p) => this.#expected.has(p)) ? ' (expected there: has the copy happened?)' : ''
        throw new HoldError('usage', `not valid in ${this.#where}: ${invalid.join(', ')}${expected}`)
      }
      // valid a moment ago: any gone now were taken by a collection before the roots went in
      this.#confirm(unique, await rootAndCheck(conn, unique, this.#rooting))
    })
  }

  /**
   * Takes over what another connection to this store roots, while that one still does: the
   * `paths` that are valid, and the outputs `derivations` name (`DRV!out1,out2`, `DRV!*`, or a
   * bare `DRV` for all) that are. One that is not valid (an output never built, a failed build's)
   * is not held, and no error. Returns what it holds; the paths of the outputs named; and how many
   * of those outputs could not be found (a derivation that is not valid, or has no such output),
   * so that a caller can tell whether all it expected is held.
   */
  async adopt(paths: readonly string[], derivations: readonly string[]): Promise<Adopted> {
    const specs = derivations.map((spec) => {
      const bang = spec.indexOf('!')
      return bang < 0 ? { drv: spec, names: '*' } : { drv: spec.slice(0, bang), names: spec.slice(bang + 1) }
    })
    const adopted: { held: string[]; outputs: string[]; unresolved: number } = { held: [], outputs: [], unresolved: 0 }
    // every one is checked to be a store path first: a malformed path would end the connection
    await this.#run([...paths, ...specs.map((s) => s.drv)], async (conn, unique) => {
      adopted.outputs = []
      adopted.unresolved = 0
      for (const spec of specs) {
        const outputs = await conn.derivationOutputs(spec.drv).catch(() => undefined)
        const wanted = spec.names === '*' ? undefined : spec.names.split(',')
        if (!outputs) {
          adopted.unresolved += wanted?.length ?? 1
          continue
        }
        // before 1.22 outputs come without their names: all of them, then
        const named = outputs.filter((o) => !wanted || o.name === '*' || wanted.includes(o.name))
        if (wanted && !outputs.some((o) => o.name === '*')) adopted.unresolved += wanted.filter((w) => !outputs.some((o) => o.name === w)).length
        adopted.outputs.push(...named.map((o) => o.path))
      }
      const all = [...new Set([...unique, ...adopted.outputs])]
      const valid = await conn.queryValidPaths(all)
      const candidates = all.filter((p) => valid.has(p))
      // the other connection still roots them: none can be gone unless a collection that was
      // already running took it (Nix 2.5-2.34, Lix), and then it is not held
      const gone = new Set(await rootAndCheck(conn, candidates, this.#rooting))
      adopted.held = candidates.filter((p) => !gone.has(p))
      this.#confirm(adopted.held, [])
    })
    return adopted
  }

  /** Roots paths that need not be valid yet, without asking. */
  expect(args: readonly string[]): Promise<readonly string[]> {
    return this.#run(args, async (conn, unique) => {
      await conn.addTempRoots(unique)
      const held = new Set(this.#paths)
      for (const p of unique) if (!held.has(p)) this.#expected.add(p)
    })
  }

  /** Drops every root on this store by closing its connection. Idempotent. */
  release(): Promise<void> {
    return this.#conn.close()
  }

  get #where(): string {
    return this.ctx.named === undefined ? 'the store' : `the store ${this.ctx.named}`
  }

  get #rooting() {
    return { signal: this.#conn.closed, log: this.ctx.options.log }
  }

  // Resolves the arguments and runs `operation` on the current connection (again on a new one
  // if it is lost meanwhile); returns the paths as the arguments named them.
  async #run(args: readonly string[], operation: (conn: DaemonConnection, unique: string[]) => Promise<void>): Promise<readonly string[]> {
    const resolved = resolvePaths(this.ctx, args)
    const unique = [...new Set(resolved)]
    try {
      await this.#conn.use((conn) => operation(conn, unique))
    } catch (err) {
      // released meanwhile: whatever broke off (a wait for a collection, the request) broke off because of that
      if (this.#conn.closed.aborted) throw released(err)
      throw err
    }
    return resolved
  }

  // Records `unique` as held, or refuses the lot if any of them is `gone`.
  #confirm(unique: readonly string[], gone: readonly string[]): void {
    if (gone.length > 0) throw new HoldError('usage', `not valid in ${this.#where}: ${gone.join(', ')}`)
    const held = new Set(this.#paths)
    for (const p of unique) {
      this.#expected.delete(p)
      if (!held.has(p)) this.#paths.push(p)
    }
  }

  // The roots went with the lost connection: put them back on its replacement, and say which
  // paths a collection took in between rather than pretend they are still held. Expected paths
  // are rooted again too; one that is still not valid was never there, so it is not lost.
  readonly #restore: Restore = async (conn, signal) => {
    const lost = await rootAndCheck(conn, this.#paths, { signal, log: this.ctx.options.log })
    if (this.#expected.size > 0) await conn.addTempRoots([...this.#expected])
    return () => {
      const gone = new Set(lost)
      this.#paths = this.#paths.filter((p) => !gone.has(p))
      const { log, onLost } = this.ctx.options
      tell(() => log?.(`reconnected${labelOf(this.ctx)}; ${this.#paths.length + this.#expected.size} paths held again`))
      if (lost.length > 0) tell(() => onLost?.(lost, this.ctx.named))
    }
  }
}
