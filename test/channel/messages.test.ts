import { describe, expect, it } from 'vitest'
import { checkEvent, errorEvent, parseRequest } from '../../src/channel/messages.js'
import { HoldError } from '../../src/errors.js'

const P = '/nix/store/00000000000000000000000000000001-a'

describe('parseRequest', () => {
  it('accepts release and keep', () => {
    expect(parseRequest({ release: true })).toEqual({ type: 'release' })
    expect(parseRequest({ keep: [P, './result'] })).toEqual({ type: 'keep', paths: [P, './result'] })
  })

  it.each([
    ['a number', 1, /got a number/],
    ['null', null, /got null/],
    ['an array', [{ release: true }], /got an array/],
    ['release false', { release: false }, /^invalid "release" request: "release" must be true$/],
    ['release with an extra key', { release: true, now: 1 }, /^invalid "release" request: "now" is not a field it takes$/],
    ['an unknown request', { frobnicate: true }, /unknown request \(keys: "frobnicate"\)/],
    ['an empty keep', { keep: [] }, /^invalid "keep" request: "keep" must list at least 1 item$/],
    ['keep of a non-string', { keep: [1] }, /^invalid "keep" request: item 1 of "keep" must be a string$/],
    ['keep of a string', { keep: P }, /^invalid "keep" request: "keep" must be an array$/],
    ['expect of too many paths', { expect: Array(100_001).fill(P) }, /^invalid "expect" request: "expect" must list at most 100000 items$/],
    ['an empty store', { keep: [P], store: '' }, /^invalid "keep" request: "store" must be 1 to 4096 characters long$/],
    ['a store that is not a string', { expect: [P], store: 1 }, /^invalid "expect" request: "store" must be a string$/],
  ])('refuses %s with a protocol error in plain words', (_, value, message) => {
    let caught: unknown
    try {
      parseRequest(value)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(HoldError)
    expect(caught).toMatchObject({ kind: 'protocol', message: expect.stringMatching(message) })
  })
})

describe('checkEvent', () => {
  it('passes the events the wrapper sends', () => {
    expect(() => checkEvent({ built: [P], outputs: [{ drvPath: `${P}.drv`, outputs: { out: P } }] })).not.toThrow()
    expect(() => checkEvent({ released: true })).not.toThrow()
    expect(() => checkEvent(errorEvent(new HoldError('build', 'failed', { exitCode: 1 })))).not.toThrow()
  })

  it('catches an event that breaks its own schema', () => {
    expect(() => checkEvent({ built: ['relative/path'] })).toThrow(/^nix-hold bug: "built" event: item 1 of "built" must match \^\//)
    // (casts: these break the event types on purpose)
    expect(() => checkEvent({ error: { kind: 'build' } } as never)).toThrow('nix-hold bug: "error" event: "message" is missing in "error"')
    expect(() => checkEvent({ error: { kind: 'oops', message: 'x' } } as never)).toThrow('nix-hold bug: "error" event: "kind" in "error" must be one of "build", "protocol", "store", "usage"')
    expect(() => checkEvent(errorEvent(new HoldError('build', 'x', { exitCode: -1 })))).toThrow('nix-hold bug: "error" event: "exitCode" in "error" must be at least 0')
  })

  it('puts the exit code into a build error and leaves it out otherwise', () => {
    expect(errorEvent(new HoldError('build', 'x', { exitCode: 3 }))).toEqual({ error: { kind: 'build', message: 'x', exitCode: 3 } })
    expect(errorEvent(new HoldError('store', 'y'))).toEqual({ error: { kind: 'store', message: 'y' } })
  })
})
