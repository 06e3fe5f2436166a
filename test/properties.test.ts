// Property-based tests: random and hostile bytes give a typed error or a value, never a crash,
// a hang or memory that grows with what the input claims.

import { PassThrough } from 'node:stream'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Channel, type Incoming } from '../src/channel/channel.js'
import { HoldError } from '../src/errors.js'
import { readStderrMessage } from '../src/store/stderr.js'
import { tryRead } from '../src/store/wire.js'

// bytes that look like protocol words more often than uniform noise would: small lengths,
// real message tags, and huge claims
const word = fc.oneof(
  fc.constantFrom(0x616c7473, 0x63787470, 0x6f6c6d67, 0x53545254, 0x53544f50, 0x52534c54, 0x64617461).map(BigInt),
  fc.bigInt({ min: 0n, max: 64n }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
)
const wordBytes = word.map((n) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(n)
  return b
})
const daemonBytes = fc.oneof(
  fc.uint8Array({ maxLength: 512 }).map((a) => Buffer.from(a)),
  fc.array(fc.oneof(wordBytes, fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a))), { maxLength: 40 }).map((parts) => Buffer.concat(parts)),
)

describe('worker-protocol decoder', () => {
  it('returns a message, "not yet", or a HoldError of kind store, for any bytes and any minor', () => {
    fc.assert(
      fc.property(daemonBytes, fc.integer({ min: 21, max: 38 }), (bytes, minor) => {
        try {
          const r = tryRead(bytes, (reader) => readStderrMessage(reader, minor))
          if (r) expect(r.used).toBeLessThanOrEqual(bytes.length)
        } catch (err) {
          expect(err).toBeInstanceOf(HoldError)
          expect((err as HoldError).kind).toBe('store')
        }
      }),
      { numRuns: 5000 },
    )
  })

  // The oracle for valid input: a message built to the protocol's layout decodes, whole, to what
  // was built, whatever its opaque u64 fields hold. Activity ids are (pid << 32) + n in every Nix,
  // so they pass 2^53 on machines with large pids; levels, types and int fields are u64s too.
  it('decodes every well-formed message, whatever its u64 fields hold, and consumes exactly it', () => {
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })
    const w = (n: bigint | number) => {
      const b = Buffer.alloc(8)
      b.writeBigUInt64LE(BigInt(n))
      return b
    }
    const s = (text: string) => {
      const body = Buffer.from(text, 'utf8')
      return Buffer.concat([w(body.length), body, Buffer.alloc((8 - (body.length % 8)) % 8)])
    }
    const field = fc.oneof(u64.map((n) => Buffer.concat([w(0), w(n)])), fc.string({ maxLength: 20 }).map((t) => Buffer.concat([w(1), s(t)])))
    const fields = fc.array(field, { maxLength: 4 }).map((fs) => Buffer.concat([w(fs.length), ...fs]))
    const message = fc.oneof(
      fc.tuple(u64, u64, u64, fc.string({ maxLength: 30 }), fields, u64).map(([id, level, type, text, fs, parent]) => ({
        bytes: Buffer.concat([w(0x53545254), w(id), w(level), w(type), s(text), fs, w(parent)]),
        expected: { type: 'activity' },
      })),
      u64.map((id) => ({ bytes: Buffer.concat([w(0x53544f50), w(id)]), expected: { type: 'activity' } })),
      fc.tuple(u64, u64, fields).map(([id, type, fs]) => ({ bytes: Buffer.concat([w(0x52534c54), w(id), w(type), fs]), expected: { type: 'activity' } })),
      fc.string({ maxLength: 40 }).map((text) => ({ bytes: Buffer.concat([w(0x6f6c6d67), s(text)]), expected: { type: 'log', text } })),
      fc.constant({ bytes: w(0x616c7473), expected: { type: 'last' } }),
    )
    fc.assert(
      fc.property(message, fc.integer({ min: 21, max: 38 }), ({ bytes, expected }, minor) => {
        const r = tryRead(bytes, (reader) => readStderrMessage(reader, minor))
        expect(r).toEqual({ value: expected, used: bytes.length })
      }),
      { numRuns: 3000 },
    )
  })

  it('gives the same answer whether the bytes arrive whole or cut anywhere', () => {
    fc.assert(
      fc.property(daemonBytes, fc.nat(), (bytes, cutAt) => {
        const read = (b: Uint8Array) => {
          try {
            return tryRead(b, (reader) => readStderrMessage(reader, 34))
          } catch (err) {
            return err instanceof HoldError ? 'error' : 'crash'
          }
        }
        const whole = read(bytes)
        const prefix = read(bytes.subarray(0, cutAt % (bytes.length + 1)))
        // a prefix is either still incomplete, or already decides the same way as the whole
        if (prefix !== undefined) expect(prefix).toEqual(whole)
        expect(whole).not.toBe('crash')
      }),
      { numRuns: 3000 },
    )
  })
})

async function feed(chunks: Uint8Array[]): Promise<Incoming[]> {
  const input = new PassThrough()
  const ch = new Channel(input, new PassThrough())
  for (const c of chunks) input.write(c)
  input.end()
  const all: Incoming[] = []
  for (let next = await ch.next(); next; next = await ch.next()) all.push(next)
  return all
}

describe('line reader', () => {
  it('turns any bytes into requests and protocol errors, and ends at EOF', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), async (chunks) => {
        for (const item of await feed(chunks)) {
          if (item.type === 'invalid') expect(item.error.kind).toBe('protocol')
        }
      }),
      { numRuns: 500 },
    )
  })

  it('still reads a release after any garbage lines, however the bytes are cut', async () => {
    const garbageLine = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a.filter((b) => b !== 0x0a)))
    await fc.assert(
      fc.asyncProperty(fc.array(garbageLine, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 5 }), async (lines, cuts) => {
        const text = Buffer.concat([...lines.flatMap((l) => [l, Buffer.from('\n')]), Buffer.from('{"release":true}\n')])
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
        const chunks: Uint8Array[] = []
        let from = 0
        for (const p of [...points, text.length]) {
          chunks.push(text.subarray(from, p))
          from = p
        }
        const items = await feed(chunks)
        const last = items.at(-1)
        expect(last).toEqual({ type: 'request', request: { type: 'release' } })
      }),
      { numRuns: 500 },
    )
  })

  it('reads requests that arrive one byte at a time', async () => {
    const text = Buffer.from('{"keep":["/nix/store/00000000000000000000000000000001-a"]}\n{"release":true}')
    const items = await feed([...text].map((b) => Uint8Array.of(b)))
    expect(items.map((i) => (i.type === 'request' ? i.request.type : 'invalid'))).toEqual(['keep', 'release'])
  })
})
