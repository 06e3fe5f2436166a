// serve() on its own: the caller's requests in, events out, over plain streams, with a stand-in for
// the hold whose answers each test settles when it chooses. What a real daemon does with the paths
// is the integration tests' business; here it is the order, the stores and the kinds of answer.

import { createInterface } from 'node:readline'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { Channel } from '../src/channel/channel.js'
import { HoldError } from '../src/errors.js'
import type { Hold, StoreOption } from '../src/hold/types.js'
import { serve } from '../src/serve.js'
import { collectGarbage } from './helpers/gc.js'

const P = (n: number) => `/nix/store/${String(n).padStart(32, '0')}-p`

interface Call {
  readonly op: 'keep' | 'expect'
  readonly paths: readonly string[]
  readonly store: string | undefined
  readonly answer: (paths?: readonly string[]) => void
  readonly fail: (err: unknown) => void
}

/** A hold whose every keep and expect waits until the test answers it. */
function standInHold() {
  const calls: Call[] = []
  let arrived: (() => void) | undefined
  let releases = 0
  const op =
    (name: Call['op']) =>
    (paths: readonly string[], options: StoreOption = {}): Promise<readonly string[]> =>
      new Promise((resolve, reject) => {
        calls.push({ op: name, paths, store: options.store, answer: (p = paths) => resolve(p), fail: reject })
        arrived?.()
      })
  const hold: Hold = {
    paths: [P(0)],
    derivations: undefined,
    keep: op('keep'),
    expect: op('expect'),
    release: async () => void releases++,
    [Symbol.asyncDispose]: async () => undefined,
  }
  return {
    hold,
    calls,
    get releases() {
      return releases
    },
    /** The next call the hold receives (or the one already waiting at `index`). */
    async call(index: number): Promise<Call> {
      while (calls.length <= index) await new Promise<void>((resolve) => (arrived = resolve))
      return calls[index]!
    },
  }
}

function setUp(options: { maxHoldMs?: number } = {}) {
  const input = new PassThrough()
  const output = new PassThrough()
  const channel = new Channel(input, output)
  const stand = standInHold()
  const stop = new AbortController()
  const ended = serve(channel, stand.hold, { stopped: stop.signal, ...options })
  const lines = createInterface({ input: output })[Symbol.asyncIterator]()
  return {
    stand,
    stop,
    ended,
    send: (message: object | string) => input.write(`${typeof message === 'string' ? message : JSON.stringify(message)}\n`),
    end: () => input.end(),
    /** Every line still to come, once all that is under way has been written (timers aside). */
    rest: async () => {
      // promise jobs and stream ticks all run before an immediate
      await new Promise((resolve) => setImmediate(resolve))
      output.end()
      const left: unknown[] = []
      for (let l = await lines.next(); !l.done; l = await lines.next()) left.push(JSON.parse(l.value as string))
      return left
    },
    next: async () => JSON.parse((await lines.next()).value as string) as Record<string, unknown>,
  }
}

describe('serve', () => {
  it('answers keep with kept and expect with expected, naming the store a request named', async () => {
    const s = setUp()
    s.send({ keep: [P(1)] })
    ;(await s.stand.call(0)).answer()
    expect(await s.next()).toEqual({ kept: [P(1)] })
    s.send({ expect: [P(2)], store: 'ssh-ng://host1' })
    const call = await s.stand.call(1)
    expect(call).toMatchObject({ op: 'expect', paths: [P(2)], store: 'ssh-ng://host1' })
    call.answer()
    expect(await s.next()).toEqual({ expected: [P(2)], store: 'ssh-ng://host1' })
    s.send({ release: true })
    expect(await s.next()).toEqual({ released: true })
    expect(await s.ended).toBe('released')
    expect(s.stand.releases).toBe(1)
  })

  it('answers a request the library calls a usage error as the caller\'s protocol error, and holds on', async () => {
    const s = setUp()
    s.send({ keep: ['/tmp/not-a-store-path'], store: 'ssh-ng://host1' })
    ;(await s.stand.call(0)).fail(new HoldError('usage', 'not a store path: "/tmp/not-a-store-path"'))
    expect(await s.next()).toEqual({ error: { kind: 'protocol', message: 'not a store path: "/tmp/not-a-store-path"' }, store: 'ssh-ng://host1' })
    // a store's own refusal keeps its kind
    s.send({ keep: [P(1)] })
    ;(await s.stand.call(1)).fail(new HoldError('store', 'cannot connect'))
    expect(await s.next()).toEqual({ error: { kind: 'store', message: 'cannot connect' } })
    expect(s.stand.releases).toBe(0)
    s.send({ keep: [P(2)] })
    ;(await s.stand.call(2)).answer()
    expect(await s.next()).toEqual({ kept: [P(2)] })
    s.end()
    expect(await s.ended).toBe('ended')
  })

  it('answers a fault that is no HoldError as a store error rather than dropping the hold', async () => {
    const s = setUp()
    s.send({ keep: [P(1)] })
    ;(await s.stand.call(0)).fail(new TypeError('x is undefined'))
    expect(await s.next()).toEqual({ error: { kind: 'store', message: 'nix-hold failed: TypeError: x is undefined' } })
    expect(s.stand.releases).toBe(0)
    s.end()
    await s.ended
  })

  it('answers a line that is no request with a protocol error and reads on', async () => {
    const s = setUp()
    s.send('{"keep":')
    expect(await s.next()).toEqual({ error: { kind: 'protocol', message: 'a line that is not JSON' } })
    s.send({ keep: [] })
    expect(await s.next()).toMatchObject({ error: { kind: 'protocol' } })
    expect(s.stand.calls).toHaveLength(0)
    s.send({ release: true })
    expect(await s.next()).toEqual({ released: true })
  })

  it('answers one store\'s requests in order, and lets another store\'s go ahead of a slow one', async () => {
    const s = setUp()
    s.send({ keep: [P(1)], store: 'ssh-ng://slow' })
    s.send({ keep: [P(2)], store: 'ssh-ng://slow' })
    s.send({ keep: [P(3)], store: 'ssh-ng://fast' })
    const slow = await s.stand.call(0)
    const fast = await s.stand.call(1)
    // the second request for the slow store waits for the first to be answered
    expect(fast).toMatchObject({ store: 'ssh-ng://fast', paths: [P(3)] })
    expect(s.stand.calls).toHaveLength(2)
    fast.answer()
    expect(await s.next()).toEqual({ kept: [P(3)], store: 'ssh-ng://fast' })
    slow.answer()
    expect(await s.next()).toEqual({ kept: [P(1)], store: 'ssh-ng://slow' })
    ;(await s.stand.call(2)).answer()
    expect(await s.next()).toEqual({ kept: [P(2)], store: 'ssh-ng://slow' })
    s.end()
    await s.ended
  })

  it('answers every request sent before a release before it releases', async () => {
    const s = setUp()
    s.send({ keep: [P(1)], store: 'ssh-ng://host1' })
    s.send({ release: true })
    const call = await s.stand.call(0)
    expect(s.stand.releases).toBe(0)
    call.answer()
    expect(await s.next()).toEqual({ kept: [P(1)], store: 'ssh-ng://host1' })
    expect(await s.next()).toEqual({ released: true })
    expect(await s.ended).toBe('released')
    expect(s.stand.releases).toBe(1)
  })

  it('releases on EOF, and tells no one of an answer that comes after', async () => {
    const s = setUp()
    s.send({ keep: [P(1)] })
    const call = await s.stand.call(0)
    s.end()
    expect(await s.ended).toBe('ended')
    expect(s.stand.releases).toBe(1)
    call.answer()
    expect(await s.rest()).toEqual([])
  })

  it('releases when stopped (a signal), and says so', async () => {
    const s = setUp()
    s.stop.abort()
    expect(await s.next()).toEqual({ released: true })
    expect(await s.ended).toBe('released')
    expect(s.stand.releases).toBe(1)
  })

  it('ends with expired once --max-hold has passed, a garbage collection or not', async () => {
    const s = setUp({ maxHoldMs: 50 })
    await collectGarbage()
    expect(await s.next()).toEqual({ expired: true })
    expect(await s.ended).toBe('expired')
    expect(s.stand.releases).toBe(1)
  })
})
