import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { Channel, MAX_LINE, MAX_UNREAD_EVENTS, type Incoming } from '../../src/channel/channel.js'

function channel() {
  const input = new PassThrough()
  const output = new PassThrough()
  return { input, output, ch: new Channel(input, output) }
}

async function drain(ch: Channel): Promise<Incoming[]> {
  const all: Incoming[] = []
  for (let next = await ch.next(); next; next = await ch.next()) all.push(next)
  return all
}

const kinds = (items: Incoming[]) => items.map((i) => (i.type === 'request' ? i.request.type : `invalid: ${i.error.message}`))

describe('Channel', () => {
  it('frames requests split across chunks at every offset', async () => {
    const text = '{"keep":["/nix/store/00000000000000000000000000000001-a"]}\n{"release":true}\n'
    for (let cut = 0; cut <= text.length; cut++) {
      const { input, ch } = channel()
      input.write(text.slice(0, cut))
      input.end(text.slice(cut))
      expect(kinds(await drain(ch))).toEqual(['keep', 'release'])
    }
  })

  it('takes a last line that has no newline before EOF', async () => {
    const { input, ch } = channel()
    input.end('{"release":true}')
    expect(kinds(await drain(ch))).toEqual(['release'])
  })

  it('answers a bad line and goes on reading the lines after it', async () => {
    const { input, ch } = channel()
    input.end('nope\nnull\n\n{"release":1}\n{"release":true}\n')
    const got = kinds(await drain(ch))
    expect(got).toHaveLength(4)
    expect(got.slice(0, 3).every((k) => k.startsWith('invalid'))).toBe(true)
    expect(got[3]).toBe('release')
  })

  it('refuses a line longer than the bound without buffering it, then reads on', async () => {
    const { input, ch } = channel()
    const chunk = 'x'.repeat(64 * 1024)
    for (let sent = 0; sent <= MAX_LINE + chunk.length; sent += chunk.length) input.write(chunk)
    input.end('tail of the long line\n{"release":true}\n')
    const got = kinds(await drain(ch))
    expect(got).toEqual([expect.stringMatching(/invalid: a line longer than 1048576 bytes/), 'release'])
  })

  it('gives each of several waiting callers a line of its own, and the end to all of them', async () => {
    const { input, ch } = channel()
    // all three wait before anything arrives
    const waiting = [ch.next(), ch.next(), ch.next()]
    input.write('{"release":true}\n{"keep":["/nix/store/00000000000000000000000000000001-a"]}\n')
    input.end()
    const got = await Promise.all(waiting)
    expect(got.filter((g) => g !== undefined).map((g) => (g!.type === 'request' ? g!.request.type : 'invalid')).sort()).toEqual(['keep', 'release'])
    expect(got.filter((g) => g === undefined)).toHaveLength(1)
  })

  it('stops waiting for a caller whose signal aborts, and leaves the line for the next', async () => {
    const { input, ch } = channel()
    const stop = new AbortController()
    const first = ch.next(stop.signal)
    stop.abort()
    expect(await first).toBeUndefined()
    input.end('{"release":true}\n')
    expect(kinds(await drain(ch))).toEqual(['release'])
  })

  it('ends after EOF once every line before it was taken', async () => {
    const { input, ch } = channel()
    input.end()
    expect(await ch.next()).toBeUndefined()
    await ch.hangup
  })

  it('handles 100,000 lines in one burst', async () => {
    const { input, ch } = channel()
    input.end('{"release":true}\n'.repeat(100_000))
    expect((await drain(ch)).length).toBe(100_000)
  })

  it('writes one JSON object per line', async () => {
    const { output, ch } = channel()
    ch.send({ released: true })
    await ch.close()
    expect(output.read()?.toString()).toBe('{"released":true}\n')
  })

  it('drops replies rather than buffering without bound when the caller never reads', async () => {
    const { output, ch } = channel()
    const event = { error: { kind: 'protocol' as const, message: 'x'.repeat(1000) } }
    for (let i = 0; i < 20_000; i++) ch.send(event)
    // nobody reads `output`: what it and the encoder hold stays near the bound, not 20,000 events
    await new Promise((r) => setImmediate(r))
    const kept = Math.ceil((output.writableLength + output.readableLength) / 1030)
    expect(kept).toBeGreaterThan(0)
    expect(kept).toBeLessThan(MAX_UNREAD_EVENTS + 64)
    await ch.close(10)
  })
})
