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
    ['release false', { release: false }, /"release" request: at \/release must be equal to constant/],
    ['release with an extra key', { release: true, now: 1 }, /additional properties \(now\)/],
    ['an unknown request', { frobnicate: true }, /unknown request \(keys: "frobnicate"\)/],
    ['an empty keep', { keep: [] }, /"keep" request/],
    ['keep of a non-string', { keep: [1] }, /"keep" request: at \/keep\/0 must be string/],
  ])('refuses %s with a protocol error', (_, value, message) => {
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
    expect(() => checkEvent({ built: ['relative/path'] })).toThrow(/nix-hold bug: "built" event at \/built\/0 must match pattern/)
  })

  it('puts the exit code into a build error and leaves it out otherwise', () => {
    expect(errorEvent(new HoldError('build', 'x', { exitCode: 3 }))).toEqual({ error: { kind: 'build', message: 'x', exitCode: 3 } })
    expect(errorEvent(new HoldError('store', 'y'))).toEqual({ error: { kind: 'store', message: 'y' } })
  })
})
