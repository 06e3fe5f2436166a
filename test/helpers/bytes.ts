// A test-only byte builder, independent of src/store/wire.ts, so expected bytes are not produced
// by the code under test.

/** One little-endian 8-byte word. */
export function word(n: number | bigint): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(n))
  return b
}

/** A length word, the UTF-8 bytes, zero padding to a multiple of 8. */
export function str(s: string | Buffer): Buffer {
  const body = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  return Buffer.concat([word(body.length), body, Buffer.alloc((8 - (body.length % 8)) % 8)])
}

export function strs(items: string[]): Buffer {
  return Buffer.concat([word(items.length), ...items.map((s) => str(s))])
}

/** Hex words, one per argument, spaces ignored: hex('0300000000000000', '6162630000000000'). */
export function hex(...words: string[]): Buffer {
  return Buffer.from(words.join('').replace(/\s+/g, ''), 'hex')
}

export const cat = (...parts: Buffer[]): Buffer => Buffer.concat(parts)
