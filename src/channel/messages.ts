// The channel protocol's messages (PROTOCOL.md), checked against schema/*.json through validators
// that ajv compiled ahead of time (scripts/compile-schemas.mjs).

import type { ValidateFunction } from 'ajv'
import { HoldError, type HoldErrorKind } from '../errors.js'
import type { BuiltDerivation } from '../runner/run.js'
import * as validators from './validators.generated.js'

/** A caller's request, once it has passed its schema. */
export type ChannelRequest =
  | { readonly type: 'release' }
  | { readonly type: 'keep' | 'expect'; readonly paths: readonly string[]; readonly store?: string | undefined }

/** What the wrapper tells the caller, one per line. */
export type ChannelEvent =
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

// A field as a caller would name it: "/keep/0" is item 1 of "keep"
function fieldAt(instancePath: string): string {
  const [first, ...rest] = instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
  if (first === undefined) return 'the message'
  return rest.reduce((named, s) => (/^\d+$/.test(s) ? `item ${Number(s) + 1} of ${named}` : `${JSON.stringify(s)} in ${named}`), JSON.stringify(first))
}

const TYPE_NAMES: Readonly<Record<string, string>> = { object: 'an object', array: 'an array', string: 'a string', boolean: 'true or false', number: 'a number', integer: 'a whole number', null: 'null' }

// a pattern that only bounds the length, as the store URL's
const LENGTH_ONLY = /^\^\[\\s\\S\]\{(\d+),(\d+)\}\$$/

// The first thing wrong with a message, in plain words rather than ajv's ("must be equal to
// constant" at a JSON pointer), one phrasing for each keyword the schemas use.
function firstProblem(validate: ValidateFunction): string {
  const e = validate.errors?.[0]
  if (!e) return 'it does not match its schema'
  const field = fieldAt(e.instancePath)
  const within = e.instancePath ? ` in ${field}` : ''
  const p = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'required':
      return `${JSON.stringify(p.missingProperty)} is missing${within}`
    case 'additionalProperties':
      return `${JSON.stringify(p.additionalProperty)} is not a field it takes${within}`
    case 'type':
      return `${field} must be ${String(p.type).split(',').map((t) => TYPE_NAMES[t] ?? t).join(' or ')}`
    case 'const':
      return `${field} must be ${JSON.stringify(p.allowedValue)}`
    case 'enum':
      return `${field} must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`
    case 'minItems':
      return `${field} must list at least ${String(p.limit)} ${p.limit === 1 ? 'item' : 'items'}`
    case 'maxItems':
      return `${field} must list at most ${String(p.limit)} items`
    case 'minimum':
      return `${field} must be at least ${String(p.limit)}`
    case 'pattern': {
      const length = LENGTH_ONLY.exec(String(p.pattern))
      return length ? `${field} must be ${length[1]} to ${length[2]} characters long` : `${field} must match ${String(p.pattern)}`
    }
    default:
      return `${field} ${e.message ?? 'is invalid'}`
  }
}

/** Turns one parsed line into a request; anything the protocol does not allow is a HoldError of kind `protocol`. */
export function parseRequest(value: unknown): ChannelRequest {
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
export function checkEvent(event: ChannelEvent): void {
  const key = Object.keys(event)[0]!
  const validate = eventSchemas[key]
  if (!validate) throw new Error(`nix-hold bug: no schema for event "${key}"`)
  if (!validate(event)) throw new Error(`nix-hold bug: "${key}" event: ${firstProblem(validate)}`)
}

/** The `error` event for a HoldError; `store` when it is about a store a request named. */
export function errorEvent(err: HoldError, store?: string): ChannelEvent {
  return {
    error: {
      kind: err.kind,
      message: err.message,
      ...(err.exitCode === undefined ? {} : { exitCode: err.exitCode }),
    },
    ...(store === undefined ? {} : { store }),
  }
}
