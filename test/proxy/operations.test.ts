// The relay's reading of a session between a Nix client and its daemon: whether an operation is
// under way, and what the worker rooted, at every point where the bytes can be cut. The sessions
// are written out word by word here from the protocol's layout (../shared/nix-worker-protocol.md),
// not by nix-hold's own client.

import { expect, it } from 'vitest'
import { OperationTracker } from '../../src/proxy/operations.js'
import { bytes, ERROR, LAST, list, NEXT, path, START, STOP, str, word } from '../helpers/wire-bytes.js'

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
    expect(replay(steps, size).rooted).toEqual({ paths: [path('root'), path('plain')], derivations: [`${path('x.drv')}!out`] })
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
  // nothing can be told any more: a client that leaves now leaves its daemon connection open,
  // since dropping it could drop a root
  expect(t.busy).toBe(false)
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

// Feeds the daemon's bytes in pieces of `size`; returns what went on to the client
function fromDaemon(t: OperationTracker, data: Buffer, size: number): Buffer {
  const out: Buffer[] = []
  for (let at = 0; at < data.length; at += size) out.push(t.fromDaemon(data.subarray(at, at + size)))
  return Buffer.concat(out)
}

const atMinor34 = (): OperationTracker => replay(hello, 8)

it("holds back an added path's end from STDERR_LAST on, passes nothing of it early, and lets it go whole", () => {
  const log = NEXT('adding\n')
  const end = bytes(LAST, str(path('added')))
  for (const size of SIZES) {
    const t = atMinor34()
    t.fromClient(bytes(word(8), str('added'), str('text'), list([])))
    // a log line cut anywhere goes on only once whole, and the end not at all
    expect(fromDaemon(t, bytes(log, end), size)).toEqual(log)
    expect(t.pending).toEqual({ paths: [path('added')], derivations: [], rerunnable: false })
    expect(t.busy).toBe(false) // a client that leaves now has had its operation done
    expect(t.release()).toEqual(end)
    expect(t.pending).toBeUndefined()
    expect(t.phase).toBe('between')
  }
})

it('gives a build request back whole to be run again, and holds the end of the run again', () => {
  const request = bytes(word(9), list([`${path('x.drv')}!out`]), word(0))
  for (const size of SIZES) {
    const t = atMinor34()
    t.fromClient(request.subarray(0, 5))
    t.fromClient(request.subarray(5))
    expect(fromDaemon(t, bytes(START, LAST, word(1)), size)).toEqual(START)
    expect(t.pending).toEqual({ paths: [], derivations: [`${path('x.drv')}!out`], rerunnable: true })
    expect(t.rerun()).toEqual(request)
    expect(t.busy).toBe(true)
    expect(fromDaemon(t, bytes(STOP, LAST, word(1)), size)).toEqual(STOP)
    expect(t.pending?.derivations).toEqual([`${path('x.drv')}!out`])
    expect(t.release()).toEqual(bytes(LAST, word(1)))
  }
})

it('expects only the outputs of the builds a BuildPathsWithResults result says succeeded', () => {
  // 1.37: CPU times in each BuildResult
  const t = new OperationTracker()
  t.fromClient(bytes(word(0x6e697863), word(0x125), word(0), word(0)))
  t.fromDaemon(bytes(word(0x6478696f), word(0x125), str('2.20.0'), word(1), LAST))
  const [ok, failed] = [`${path('ok.drv')}!out`, `${path('bad.drv')}!out`]
  t.fromClient(bytes(word(46), list([ok, failed]), word(0)))
  const result = (derived: string, status: number) =>
    bytes(str(derived), word(status), str(status === 0 ? '' : 'builder failed'), word(1), word(0), word(10), word(20), word(1), word(1234), word(0), word(status === 0 ? 1 : 0), ...(status === 0 ? [str('sha256:x!out'), str('{}')] : []))
  expect(fromDaemon(t, bytes(LAST, word(2), result(ok, 0), result(failed, 3)), 7)).toEqual(Buffer.alloc(0))
  expect(t.pending).toEqual({ paths: [], derivations: [ok], rerunnable: true })
})

it('passes an error on at once: a failed operation made nothing to hold', () => {
  const t = atMinor34()
  t.fromClient(bytes(word(9), list([`${path('x.drv')}!out`]), word(0)))
  expect(fromDaemon(t, ERROR, 3)).toEqual(ERROR)
  expect(t.pending).toBeUndefined()
  expect(t.phase).toBe('between')
})

it("reads Nix 2.35's build results, whose outputs carry a path and signatures once both sides offer the feature", () => {
  const feature = 'realisation-with-path-not-hash'
  for (const [offered, signatures] of [[true, ['cache.example.org-1:c2ln']], [false, []]] as const) {
    const t = new OperationTracker()
    t.fromClient(bytes(word(0x6e697863), word(0x126)))
    t.fromDaemon(bytes(word(0x6478696f), word(0x126)))
    t.fromClient(bytes(list(offered ? [feature] : []), word(0), word(0)))
    t.fromDaemon(bytes(list(['delete-dead-specific-referrers', feature]), str('2.35.2'), word(1), LAST))
    const [a, b] = [`${path('a.drv')}!out,lib`, `${path('b.drv')}!out`]
    t.fromClient(bytes(word(46), list([a, b]), word(0)))
    const output = (name: string) => (offered ? bytes(str(name), str(path(name)), list([...signatures])) : bytes(str(`sha256:x!${name}`), str('{}')))
    const result = (derived: string, names: string[]) =>
      bytes(str(derived), word(0), str(''), word(1), word(0), word(10), word(20), word(0), word(0), word(names.length), ...names.map(output))
    fromDaemon(t, bytes(LAST, word(2), result(a, ['out', 'lib']), result(b, ['out'])), 5)
    expect(t.pending).toEqual({ paths: [], derivations: [a, b], rerunnable: true })
  }
})

it('lets the end of an operation go whole when its result is not what its layout says, and keeps the connection', () => {
  const t = atMinor34()
  t.fromClient(bytes(word(8), str('added'), str('text'), list([])))
  // a result that cannot be a path: a length far beyond any string
  const end = bytes(LAST, word(2 ** 40))
  expect(fromDaemon(t, end, 4)).toEqual(end)
  expect(t.pending).toBeUndefined()
  expect(t.busy).toBe(false)
  expect(t.rooted).toBeUndefined()
})

it('passes a request a client sends before the held end on, and its answer after that end, in order', () => {
  const t = atMinor34()
  t.fromClient(bytes(word(9), list([`${path('x.drv')}!out`]), word(0)))
  expect(fromDaemon(t, bytes(LAST, word(1)), 8)).toEqual(Buffer.alloc(0))
  t.fromClient(bytes(word(1), str(path('q')))) // pipelined
  expect(fromDaemon(t, bytes(LAST, word(0)), 8)).toEqual(Buffer.alloc(0))
  expect(t.release()).toEqual(bytes(LAST, word(1), LAST, word(0)))
  expect(t.rooted).toBeUndefined() // what the pipelined request rooted cannot be told
})
