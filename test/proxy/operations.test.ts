// The relay's reading of a session between a Nix client and its daemon: whether an operation is
// under way, and what the worker rooted, at every point where the bytes can be cut. The sessions
// are written out word by word here from the protocol's layout (../shared/nix-worker-protocol.md),
// not by nix-hold's own client.

import { expect, it } from 'vitest'
import { OperationTracker } from '../../src/proxy/operations.js'

const STORE = '/nix/store'
const path = (name: string) => `${STORE}/${'a'.repeat(32)}-${name}`

// little-endian words and padded strings, as the protocol has them
const word = (n: number): Buffer => {
  const b = Buffer.alloc(8)
  b.writeUInt32LE(n % 2 ** 32, 0)
  b.writeUInt32LE(Math.floor(n / 2 ** 32), 4)
  return b
}
const str = (s: string | Buffer): Buffer => {
  const body = Buffer.from(s)
  return Buffer.concat([word(body.length), body, Buffer.alloc((8 - (body.length % 8)) % 8)])
}
const list = (items: string[]): Buffer => Buffer.concat([word(items.length), ...items.map(str)])
const bytes = (...parts: Buffer[]) => Buffer.concat(parts)

const LAST = word(0x616c7473)
const NEXT = (text: string) => bytes(word(0x6f6c6d67), str(text))
const START = bytes(word(0x53545254), word(2 ** 40 + 7), word(3), word(105), str('building x'), word(2), word(0), word(5), word(1), str('field'), word(0))
const STOP = bytes(word(0x53544f50), word(2 ** 40 + 7))
// the structured error of 1.26 and later
const ERROR = bytes(word(0x63787470), str('Error'), word(0), str('Error'), str('build of x failed'), word(0), word(0))

type Step = { readonly from: 'client' | 'daemon'; readonly data: Buffer; readonly busyAfter: boolean }

// A 2.8 daemon (1.34), a client that offers 1.38: the session negotiates 1.34
const hello: Step[] = [
  { from: 'client', data: bytes(word(0x6e697863), word(0x126)), busyAfter: true },
  { from: 'daemon', data: bytes(word(0x6478696f), word(0x122)), busyAfter: true },
  { from: 'client', data: bytes(word(0), word(0)), busyAfter: true }, // no CPU affinity, reserveSpace
  { from: 'daemon', data: bytes(str('2.8.0'), LAST), busyAfter: false },
]

// Feeds every step in pieces of `size` bytes (1: every cut there is), checking `busy` after each step
function replay(steps: readonly Step[], size: number): OperationTracker {
  const t = new OperationTracker()
  for (const [i, step] of steps.entries()) {
    for (let at = 0; at < step.data.length; at += size) {
      const piece = step.data.subarray(at, at + size)
      if (step.from === 'client') t.fromClient(piece)
      else t.fromDaemon(piece)
    }
    expect({ step: i, busy: t.busy }).toEqual({ step: i, busy: step.busyAfter })
  }
  return t
}

const SIZES = [1, 3, 8, 13, 100_000]

it('is busy through the handshake, and idle once its stderr loop ends', () => {
  for (const size of SIZES) expect(replay(hello, size).rooted).toEqual({ paths: [], derivations: [] })
})

it('is busy from a request to the end of its stderr loop, through logs and activities, and not while the result arrives', () => {
  const steps: Step[] = [
    ...hello,
    { from: 'client', data: bytes(word(11), str(path('root'))), busyAfter: true }, // AddTempRoot
    { from: 'daemon', data: bytes(START, NEXT('a log line\n'), STOP), busyAfter: true },
    { from: 'daemon', data: LAST, busyAfter: false },
    { from: 'daemon', data: word(1), busyAfter: false }, // the result
    { from: 'client', data: bytes(word(9), list([`${path('x.drv')}!out`, path('plain')]), word(0)), busyAfter: true }, // BuildPaths
    { from: 'daemon', data: ERROR, busyAfter: false }, // failed: no result follows
    { from: 'client', data: bytes(word(1), str(path('q'))), busyAfter: true }, // IsValidPath: roots nothing
    { from: 'daemon', data: bytes(LAST, word(1)), busyAfter: false },
  ]
  for (const size of SIZES) {
    expect(replay(steps, size).rooted).toEqual({ paths: [path('root'), path('plain')], derivations: [path('x.drv')] })
  }
})

it("reads an added path from the start of AddTextToStore's result", () => {
  const steps: Step[] = [
    ...hello,
    { from: 'client', data: bytes(word(8), str('name'), str('contents'), list([])), busyAfter: true },
    { from: 'daemon', data: bytes(LAST, str(path('name'))), busyAfter: false },
  ]
  for (const size of SIZES) expect(replay(steps, size).rooted?.paths).toEqual([path('name')])
})

// path info at 1.16, then its NAR of `narSize` bytes
const item = (name: string, nar: Buffer) =>
  bytes(str(path(name)), str(''), str('0'.repeat(64)), list([]), word(0), word(nar.length), word(0), list([]), str(''), nar)

it('reads the paths of AddMultipleToStore out of its framed data, skipping the NARs whatever the frames', () => {
  const nar = (n: number) => Buffer.alloc(n, 0x5a)
  const data = bytes(word(2), item('one', nar(1000)), item('two', nar(24)))
  // frames of 7 bytes, then the rest, then the end
  const framed = bytes(word(7), data.subarray(0, 7), word(data.length - 7), data.subarray(7), word(0))
  const steps: Step[] = [
    ...hello,
    { from: 'client', data: bytes(word(44), word(0), word(0), framed), busyAfter: true },
    { from: 'daemon', data: LAST, busyAfter: false },
  ]
  for (const size of SIZES) expect(replay(steps, size).rooted?.paths).toEqual([path('one'), path('two')])
})

it('can tell nothing after a request it does not know, or a daemon message it does not know', () => {
  const unknownOp: Step[] = [...hello, { from: 'client', data: bytes(word(27), word(0)), busyAfter: true }, { from: 'daemon', data: bytes(LAST, word(1)), busyAfter: false }]
  expect(replay(unknownOp, 1).rooted).toBeUndefined()
  const t = replay(hello, 8)
  t.fromClient(bytes(word(11), str(path('r'))))
  t.fromDaemon(word(0x12345678))
  // busy for good: a client that leaves now takes its daemon connection with it
  expect(t.busy).toBe(true)
  expect(t.rooted).toBeUndefined()
})

it('reads the handshake at every minor where it changes, the old error form included', () => {
  // 1.21 (Nix 2.3): no version string, errors as a message and a status
  const old: Step[] = [
    { from: 'client', data: bytes(word(0x6e697863), word(0x126), word(0), word(0)), busyAfter: true },
    { from: 'daemon', data: bytes(word(0x6478696f), word(0x115), LAST), busyAfter: false },
    { from: 'client', data: bytes(word(10), str(path('ensure'))), busyAfter: true }, // EnsurePath
    { from: 'daemon', data: bytes(word(0x63787470), str('error: no'), word(1)), busyAfter: false },
  ]
  for (const size of SIZES) expect(replay(old, size).rooted?.paths).toEqual([path('ensure')])
  // 1.38 (Nix 2.24 and later): features both ways, version, trust
  const newest: Step[] = [
    { from: 'client', data: bytes(word(0x6e697863), word(0x126)), busyAfter: true },
    { from: 'daemon', data: bytes(word(0x6478696f), word(0x126)), busyAfter: true },
    { from: 'client', data: bytes(list([]), word(0), word(0)), busyAfter: true },
    { from: 'daemon', data: bytes(list(['a-feature']), str('2.24.15'), word(1), LAST), busyAfter: false },
  ]
  for (const size of SIZES) expect(replay(newest, size).busy).toBe(false)
})
