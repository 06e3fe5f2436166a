import { describe, expect, it } from 'vitest'
import { HoldError } from '../../src/errors.js'
import { tryRead, WireReader, WireWriter } from '../../src/store/wire.js'
import { hex } from '../helpers/bytes.js'

// every split of `bytes` must give "not yet" until the last byte is there
function expectIncompleteUntilWhole<T>(bytes: Buffer, read: (r: WireReader) => T): T {
  for (let cut = 0; cut < bytes.length; cut++) expect(tryRead(bytes.subarray(0, cut), read)).toBeUndefined()
  const whole = tryRead(bytes, read)
  expect(whole?.used).toBe(bytes.length)
  return whole!.value
}

describe('WireReader', () => {
  it('reads a u64 as 8 little-endian bytes', () => {
    const bytes = hex('2201000000000000') // 0x122 = protocol 1.34
    expect(expectIncompleteUntilWhole(bytes, (r) => r.u64())).toBe(0x122)
  })

  it('reads the largest safe integer and refuses anything above 2^53 - 1', () => {
    expect(tryRead(hex('ffffffffffff1f00'), (r) => r.u64())?.value).toBe(Number.MAX_SAFE_INTEGER)
    expect(() => tryRead(hex('0000000000002000'), (r) => r.u64())).toThrow(HoldError)
  })

  it('reads a padded string', () => {
    const bytes = hex(
      '0300000000000000', // length 3
      '6162630000000000', // "abc", then 5 bytes of padding
    )
    expect(expectIncompleteUntilWhole(bytes, (r) => r.string())).toBe('abc')
  })

  it('reads the empty string as one word with no padding', () => {
    expect(tryRead(hex('0000000000000000'), (r) => r.string())).toEqual({ value: '', used: 8 })
  })

  it('reads a string of exactly 8 bytes without padding', () => {
    const bytes = hex('0800000000000000', '3132333435363738')
    expect(tryRead(bytes, (r) => r.string())).toEqual({ value: '12345678', used: 16 })
  })

  it('rejects non-zero padding', () => {
    const bytes = hex('0100000000000000', '6101000000000000')
    expect(() => tryRead(bytes, (r) => r.string())).toThrow(/non-zero padding/)
  })

  it('rejects a string whose length exceeds the limit before its body has arrived', () => {
    const onlyTheLength = hex('0000000001000000') // 2^32 bytes announced, none sent
    expect(() => tryRead(onlyTheLength, (r) => r.string(1024))).toThrow(/more than the 1024 allowed/)
  })

  it('rejects a list whose count exceeds the limit before reading items', () => {
    expect(() => tryRead(hex('0500000000000000'), (r) => r.strings(4))).toThrow(/5 items, more than the 4/)
  })

  it('reads a list of strings split at every offset', () => {
    const bytes = hex(
      '0200000000000000', // two items
      '0100000000000000', // length 1
      '7800000000000000', // "x" + padding
      '0200000000000000', // length 2
      '797a000000000000', // "yz" + padding
    )
    expect(expectIncompleteUntilWhole(bytes, (r) => r.strings())).toEqual(['x', 'yz'])
  })

  it('accepts only 0 and 1 as booleans', () => {
    expect(tryRead(hex('0100000000000000'), (r) => r.bool())?.value).toBe(true)
    expect(tryRead(hex('0000000000000000'), (r) => r.bool())?.value).toBe(false)
    expect(() => tryRead(hex('0200000000000000'), (r) => r.bool())).toThrow(/boolean/)
  })
})

describe('WireWriter', () => {
  it('writes words, padded strings and lists as Nix reads them', () => {
    const bytes = new WireWriter(8).u64(11).bytes('abc').strings(['', 'x']).bool(true).finish()
    expect(bytes.toString('hex')).toBe(
      hex(
        '0b00000000000000', // 11: AddTempRoot
        '0300000000000000', // length 3
        '6162630000000000', // "abc" + padding
        '0200000000000000', // two items
        '0000000000000000', // "" (no padding)
        '0100000000000000', // length 1
        '7800000000000000', // "x" + padding
        '0100000000000000', // true
      ).toString('hex'),
    )
  })

  it('refuses to write a negative or unsafe integer', () => {
    expect(() => new WireWriter().u64(-1)).toThrow(RangeError)
    expect(() => new WireWriter().u64(2 ** 53)).toThrow(RangeError)
  })

  it('writes large values in both halves', () => {
    expect(new WireWriter().u64(0x1_0000_0002).finish().toString('hex')).toBe('0200000001000000')
  })
})
