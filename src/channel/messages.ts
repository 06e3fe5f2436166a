// The channel protocol's messages (PROTOCOL.md), checked against schema/*.json through validators
// that ajv compiled ahead of time (scripts/compile-schemas.mjs).

import type { ValidateFunction } from 'ajv'
import { HoldError, type HoldErrorKind } from '../errors.js'
import * as validators from './validators.generated.js'

/** A caller's request, once it has passed its schema. */
export type Request =
  | { readonly type: 'release' }
  | { readonly type: 'keep' | 'expect'; readonly paths: readonly string[]; readonly store?: string | undefined }

/** One derivation's outputs, as `nix build --json` reports them. */
export interface BuiltDerivation {
  readonly drvPath?: string
  readonly outputs: Readonly<Record<string, string>>
}

/** What the wrapper tells the caller, one per line. */
export type Event =
  | { readonly built: readonly string[]; readonly outputs?: readonly BuiltDerivation[] }
  | { readonly kept: readonly string[]; readonly store?: string }
  | { readonly expected: readonly string[]; readonly store?: string }
  | { readonly error: { readonly kind: HoldErrorKind; readonly message: string; readonly exitCode?: number }; readonly store?: string }
  | { readonly released: true }
  | { readonly lost: readonly string[]; readonly store?: string }
  | { readonly expired: true }

const requestSchemas: Readonly<Record<string, ValidateFunction>> = {
  release: validators.release,
  keep: validators.keep,
  expect: validators.expect,
}

const eventSchemas: Readonly<Record<string, ValidateFunction>> = {
  built: validators.built,
  kept: validators.kept,
  expected: validators.expected,
  error: validators.error,
  released: validators.released,
  lost: validators.lost,
  expired: validators.expired,
}

const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`)

function firstProblem(validate: ValidateFunction): string {
  const e = validate.errors?.[0]
  if (!e) return 'does not match its schema'
  const where = e.instancePath ? `at ${e.instancePath} ` : ''
  const extra = e.keyword === 'additionalProperties' ? ` (${String(e.params.additionalProperty)})` : ''
  return `${where}${e.message ?? 'is invalid'}${extra}`
}

/** Turns one parsed line into a request; anything the protocol does not allow is a HoldError of kind `protocol`. */
export function parseRequest(value: unknown): Request {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HoldError('protocol', `expected a JSON object such as {"release":true}, got ${describe(value)}`)
  }
  const key = Object.keys(value).find((k) => k in requestSchemas)
  if (key === undefined) {
    const keys = Object.keys(value).map((k) => JSON.stringify(k)).join(', ') || 'none'
    throw new HoldError('protocol', `unknown request (keys: ${keys}); expected "release", "keep" or "expect"`)
  }
  const validate = requestSchemas[key]!
  if (!validate(value)) throw new HoldError('protocol', `invalid "${key}" request: ${firstProblem(validate)}`)
  if (key === 'release') return { type: 'release' }
  const { store } = value as { store?: string }
  const paths = (value as Record<string, string[]>)[key]!
  return { type: key as 'keep' | 'expect', paths, ...(store === undefined ? {} : { store }) }
}

/** Checks an outgoing event against its schema; a failure is a bug in nix-hold, not the caller's doing. */
export function checkEvent(event: Event): void {
  const key = Object.keys(event)[0]!
  const validate = eventSchemas[key]
  if (!validate) throw new Error(`nix-hold bug: no schema for event "${key}"`)
  if (!validate(event)) throw new Error(`nix-hold bug: "${key}" event ${firstProblem(validate)}`)
}

/** The `error` event for a HoldError; `store` when it is about a store a request named. */
export function errorEvent(err: HoldError, store?: string): Event {
  return {
    error: {
      kind: err.kind,
      message: err.message,
      ...(err.exitCode === undefined ? {} : { exitCode: err.exitCode }),
    },
    ...(store === undefined ? {} : { store }),
  }
}
