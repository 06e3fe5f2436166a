// The response buffer on its own: answers arrive in whatever pieces the transport cuts them, and
// each request must be settled with its own answer, whole, whatever the cut.

import { describe, expect, it } from 'vitest'
import { HoldError } from '../../src/errors.js'
import { Responses } from '../../src/store/responses.js'
import { cat, str, strs, word } from '../helpers/bytes.js'

const LAST = word(0x616c7473)
const NEXT = word(0x6f6c6d67)
const ERROR = word(0x63787470)
const START = word(0x53545254)
const STOP = word(0x53544f50)
const READ = word(0x64617461)

// an error as daemons of minor 26 and later send it
const error = (message: string) => cat(ERROR, str('Error'), word(0), str('Error'), str(message), word(0), word(0))
// a log line, an activity (with a string field and a number field) started and stopped, then LAST and the value
const answer = (value: Buffer) => cat(NEXT, str('building…'), START, word(1), word(0), word(105), str('copying'), word(2), word(1), str('x'), word(0), word(9), word(0), STOP, word(1), LAST, value)

/** Queues the requests, feeds `bytes` as the pieces `cuts` make, and gives what each request settled with. */
async function feed(bytes: Buffer, cuts: number[], ask: (r: Responses) => Array<Promise<unknown>>, minor = 38) {
  const malformed: HoldError[] = []
  const r = new Responses(() => minor, (err) => malformed.push(err))
  const asked = ask(r).map((p) => p.then((value) => ({ value }), (error: Error) => ({ error: error.message })))
  let at = 0
  for (const cut of [...cuts, bytes.length]) {
    r.receive(bytes.subarray(at, cut))
    at = cut
  }
  return { settled: await Promise.all(asked), malformed: malformed.map((e) => e.message), waiting: r.waiting }
}

// three pipelined requests: a word, a refused one, a list of strings
const THREE = cat(answer(word(7)), error('path is not valid'), answer(strs(['/nix/store/a', '/nix/store/b'])))
const askThree = (r: Responses) => [r.expect('stderr', (w) => w.u64()), r.expect('stderr', (w) => w.u64()), r.expect('stderr', (w) => w.strings())]
const THREE_SETTLED = [{ value: 7 }, { error: 'path is not valid' }, { value: ['/nix/store/a', '/nix/store/b'] }]

describe('Responses', () => {
  it('settles each request with its own answer whatever the single cut', async () => {
    for (let cut = 0; cut <= THREE.length; cut++) {
      expect(await feed(THREE, [cut], askThree)).toEqual({ settled: THREE_SETTLED, malformed: [], waiting: 0 })
    }
  })

  it('settles them byte by byte', async () => {
    const cuts = Array.from({ length: THREE.length - 1 }, (_, i) => i + 1)
    expect(await feed(THREE, cuts, askThree)).toEqual({ settled: THREE_SETTLED, malformed: [], waiting: 0 })
  })

  it('settles a batch of one kind at once, and a refusal among them fails the batch', async () => {
    const ok = cat(answer(word(1)), answer(word(1)), answer(word(1)))
    const refused = cat(answer(word(1)), error('cannot add root'), answer(word(1)))
    for (let cut = 0; cut <= refused.length; cut += 3) {
      expect((await feed(ok, [Math.min(cut, ok.length)], (r) => [r.expectMany(3, (w) => w.u64())])).settled).toEqual([{ value: undefined }])
      expect((await feed(refused, [cut], (r) => [r.expectMany(3, (w) => w.u64())])).settled).toEqual([{ error: 'cannot add root' }])
    }
  })

  it('holds bytes that came before anyone asked, as a daemon may answer first', async () => {
    const r = new Responses(() => 38, () => undefined)
    r.receive(cat(word(0x6478696f), word(0x126)))
    expect(await r.expect('result', (w) => w.raw(8))).toEqual(word(0x6478696f))
    expect(await r.expect('result', (w) => w.u64())).toBe(0x126)
  })

  it('reads errors in the older layout below minor 26', async () => {
    const old = cat(ERROR, str('no such path'), word(1), LAST, word(1))
    for (let cut = 0; cut <= old.length; cut++) {
      expect((await feed(old, [cut], (r) => [r.expect('stderr', (w) => w.u64()), r.expect('stderr', (w) => w.u64())], 21)).settled).toEqual([{ error: 'no such path' }, { value: 1 }])
    }
  })

  it('reports bytes that can be no answer, once they are whole, and settles nothing with them', async () => {
    const bad = cat(answer(word(1)), READ, word(4096))
    for (let cut = 0; cut <= bad.length; cut++) {
      const r = new Responses(() => 38, (err) => malformed.push(err.message))
      const malformed: string[] = []
      const first = r.expect('stderr', (w) => w.u64())
      void r.expect('stderr', (w) => w.u64()).catch(() => undefined)
      r.receive(bad.subarray(0, cut))
      r.receive(bad.subarray(cut))
      expect(await first).toBe(1)
      expect(malformed).toEqual(['the Nix daemon asked to read data, which no operation nix-hold sends needs'])
    }
  })

  it('remembers the last error until an answer succeeds, and reads one no request waited for', () => {
    const r = new Responses(() => 38, () => undefined)
    void r.expect('stderr', (w) => w.u64()).catch(() => undefined)
    r.receive(error('first'))
    expect(r.lastError()).toBe('first')
    r.receive(error('said on the way out'))
    expect(r.lastError()).toBe('said on the way out')
    const r2 = new Responses(() => 38, () => undefined)
    void r2.expect('stderr', (w) => w.u64()).catch(() => undefined)
    void r2.expect('stderr', (w) => w.u64())
    r2.receive(cat(error('refused'), answer(word(1))))
    expect(r2.lastError()).toBeUndefined()
  })

  it('rejects every waiting request when the connection fails', async () => {
    const r = new Responses(() => 38, () => undefined)
    const waiting = [r.expect('stderr', (w) => w.u64()), r.expectMany(2, (w) => w.u64())]
    r.failAll(new HoldError('store', 'gone'))
    for (const p of waiting) await expect(p).rejects.toThrow('gone')
    expect(r.waiting).toBe(0)
  })
})
