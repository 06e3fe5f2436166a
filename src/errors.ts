/**
 * What went wrong, in the four ways a caller acts on differently.
 *
 * - `build`: the wrapped build command failed or could not run; nothing is held.
 * - `protocol`: the caller sent something the channel protocol does not allow; any hold is unchanged.
 *   Only the command's side of the channel (serve.ts) decides this: the library says `usage`.
 * - `store`: the Nix store could not be reached, spoke garbage, or refused a root.
 * - `usage`: the command line or the library call itself is wrong; nothing was built or held.
 */
export type HoldErrorKind = 'build' | 'protocol' | 'store' | 'usage'

const brand = Symbol.for('nix-hold.HoldError')

/** The one error class nix-hold throws; `kind` says what a caller should do about it. */
export class HoldError extends Error {
  override readonly name = 'HoldError'
  readonly [brand] = true
  /** The build command's exit code (128 + N for a signal), for kind `build`. */
  readonly exitCode: number | undefined

  constructor(
    readonly kind: HoldErrorKind,
    message: string,
    options?: ErrorOptions & { exitCode?: number },
  ) {
    super(message, options)
    this.exitCode = options?.exitCode
  }
}

/** Tells a HoldError from any other value, across module copies (checks a registered symbol, not `instanceof`). */
export const isHoldError = (value: unknown): value is HoldError =>
  typeof value === 'object' && value !== null && (value as { [brand]?: boolean })[brand] === true
