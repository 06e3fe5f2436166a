// The relay between a client's socket and a daemon connection (here two plain streams that the
// test speaks for the daemon): what the client sees of an operation whose end is held back, run
// again or replaced, and what becomes of the daemon connection when the client leaves.

import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { afterEach, expect, it } from 'vitest'
import type { Pending } from '../../src/proxy/operations.js'
import { Relay } from '../../src/proxy/relay.js'
import type { Transport } from '../../src/store/transport.js'
import { bytes, HELLO_1_34, LAST, list, NEXT, path, str, word } from '../helpers/wire-bytes.js'

const cleanups: Array<() => void> = []
afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

// A relay over a real socket pair; the daemon's side is two streams the test writes and reads.
async function relayed(confirm: (p: Pending) => Promise<'held' | 'gone'>) {
  const dir = mkdtempSync(join(tmpdir(), 'nix-hold-relay-'))
  const server = createServer()
  server.listen(join(dir, 's'))
  await once(server, 'listening')
  const accepted = once(server, 'connection') as Promise<[Socket]>
  const client = createConnection(join(dir, 's'))
  const [inner] = await accepted
  let destroyed = false
  const fromDaemon = new PassThrough()
  const toDaemon = new PassThrough()
  const upstream: Transport = { input: fromDaemon, output: toDaemon, destroy: () => void (destroyed = true), end: async () => undefined }
  const relay = new Relay(inner, upstream, confirm)
  cleanups.push(() => (client.destroy(), server.close(), rmSync(dir, { recursive: true, force: true })))
  let seen = Buffer.alloc(0)
  client.on('data', (d: Buffer) => (seen = Buffer.concat([seen, d])))
  let sent = Buffer.alloc(0)
  toDaemon.on('data', (d: Buffer) => (sent = Buffer.concat([sent, d])))
  // the client's view and the daemon's, once some bytes have come through
  const until = async (what: () => Buffer, n: number) => {
    while (what().length < n) await new Promise((r) => setImmediate(r))
    return what()
  }
  client.write(HELLO_1_34.client)
  await until(() => sent, HELLO_1_34.client.length)
  fromDaemon.write(HELLO_1_34.daemon)
  await until(() => seen, HELLO_1_34.daemon.length)
  seen = Buffer.alloc(0)
  sent = Buffer.alloc(0)
  return {
    relay,
    client,
    daemon: fromDaemon,
    clientSees: (n: number) => until(() => seen, n),
    daemonGets: (n: number) => until(() => sent, n),
    seen: () => seen,
    destroyed: () => destroyed,
  }
}

const build = bytes(word(9), list([`${path('x.drv')}!out`]), word(0))

it('tells the client a build ended only once its outputs are held, and runs it again when they are gone', async () => {
  const answers: Array<(v: 'held' | 'gone') => void> = []
  const r = await relayed(() => new Promise((resolve) => answers.push(resolve)))
  r.client.write(build)
  expect(await r.daemonGets(build.length)).toEqual(build)
  r.daemon.write(bytes(NEXT('building\n'), LAST, word(1)))
  expect(await r.clientSees(NEXT('building\n').length)).toEqual(NEXT('building\n'))
  while (answers.length === 0) await new Promise((res) => setImmediate(res))
  // gone: the same request goes to the daemon again, and the client hears nothing of the first end
  answers[0]!('gone')
  expect(await r.daemonGets(build.length * 2)).toEqual(bytes(build, build))
  r.daemon.write(bytes(LAST, word(1)))
  while (answers.length === 1) await new Promise((res) => setImmediate(res))
  answers[1]!('held')
  expect(await r.clientSees(NEXT('building\n').length + 16)).toEqual(bytes(NEXT('building\n'), LAST, word(1)))
})

it("replaces an added path's end by an error in the daemon's form when the path is gone", async () => {
  const r = await relayed(async () => 'gone')
  const add = bytes(word(8), str('added'), str('text'), list([]))
  r.client.write(add)
  await r.daemonGets(add.length)
  r.daemon.write(bytes(LAST, str(path('added'))))
  // STDERR_ERROR in its structured form (1.26 on), saying what happened; never LAST
  const message = `nix-hold: a garbage collection that was already running took ${path('added')} as this operation ended; run it again`
  const error = bytes(word(0x63787470), str('Error'), word(0), str('Error'), str(message), word(0), word(0))
  expect(await r.clientSees(error.length)).toEqual(error)
})

it('closes the daemon connection when the client leaves in the middle of an operation, and keeps it when it leaves between two', async () => {
  const busy = await relayed(async () => 'held')
  busy.client.write(build)
  await busy.daemonGets(build.length)
  busy.client.destroy()
  expect(await busy.relay.ended).toBe('closed')
  expect(busy.destroyed()).toBe(true)

  const idle = await relayed(async () => 'held')
  idle.client.end()
  expect(await idle.relay.ended).toBe('held')
  expect(idle.destroyed()).toBe(false)
})
