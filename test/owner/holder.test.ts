// The holder's socket as a broken or hostile process of the owner's own user sees it (no one else
// can reach it: runtime-dir.test.ts). No store is needed: nothing here gets as far as one.

import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createConnection, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { field, holderSocketPath, LineSocket, MAX_FIRST_LINE } from '../../src/owner/handover.js'
import { Holder, LIMITS } from '../../src/owner/holder.js'
import { processNow } from '../../src/owner/process.js'

const me = processNow(process.pid)
let dir: string
const path = () => holderSocketPath(dir, me)
const startup = () => ({ dir, env: {} })

const sockets: Socket[] = []
const connect = async (): Promise<Socket> => {
  const s = createConnection({ path: path() })
  sockets.push(s)
  await once(s, 'connect')
  return s
}
const holders: Holder[] = []
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nix-hold-holder-test-')) // mode 0700
})
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  await Promise.all(holders.splice(0).map((h) => h.stop()))
  rmSync(dir, { recursive: true, force: true })
})

// the handshake time is short here, so the test that waits it out is quick
const limits = { ...LIMITS, handshakeMs: 300 }
const startHolder = async (given = limits): Promise<Holder> => {
  const holder = new Holder(me, startup(), given)
  holders.push(holder)
  expect(await holder.listen()).toBe('ready')
  return holder
}

// what the peer has said by the time it hangs up
const untilClosed = async (s: Socket): Promise<string> => {
  let said = ''
  s.on('error', () => undefined) // a reset is a way of hanging up too
  s.setEncoding('utf8').on('data', (d: string) => (said += d))
  if (!s.closed) await new Promise((resolve) => s.once('close', resolve))
  return said
}

const header = (paths: number, extra: object = {}) => ({ hold: { store: 'unix:///nonexistent', storeDir: '/nix/store', paths, ...extra } })

it('answers a request it cannot read with a protocol error, and adds no root', async () => {
  await startHolder()
  const s = await connect()
  const closed = untilClosed(s)
  new LineSocket(s, 'the holder').send({ hold: { paths: ['/nix/store/00000000000000000000000000000000-x'] } })
  expect(JSON.parse(await closed)).toEqual({ error: { kind: 'protocol', message: 'the holder did not understand the hand-over' } })
})

it('refuses at once a request for more paths than it takes, before reading them', async () => {
  await startHolder({ ...limits, paths: 10 })
  const s = await connect()
  const closed = untilClosed(s)
  new LineSocket(s, 'the holder').send(header(11))
  expect(JSON.parse(await closed)).toMatchObject({ error: { kind: 'store', message: expect.stringContaining('takes at most 10') } })
})

it('refuses a request whose path lines say more than its header did', async () => {
  await startHolder()
  const s = await connect()
  const closed = untilClosed(s)
  const line = new LineSocket(s, 'the holder')
  line.send(header(1))
  line.send({ paths: ['/nix/store/00000000000000000000000000000000-a', '/nix/store/00000000000000000000000000000000-b'] })
  expect(JSON.parse(await closed)).toMatchObject({ error: { kind: 'protocol' } })
})

it('hangs up on a peer that says nothing within the handshake time', async () => {
  await startHolder()
  const s = await connect()
  const started = Date.now()
  await untilClosed(s)
  expect(Date.now() - started).toBeGreaterThanOrEqual(limits.handshakeMs - 50)
})

it('drops a peer whose first line grows past a few kilobytes without parsing any of it, and stays responsive', async () => {
  await startHolder({ ...LIMITS, handshakeMs: 60_000 })
  const s = await connect()
  const closed = untilClosed(s)
  // deeply nested JSON: costly to parse were it ever parsed
  s.write('['.repeat(MAX_FIRST_LINE + 1))
  expect(await closed).toBe('')
  // the next peer is answered as usual
  const t = await connect()
  const answered = untilClosed(t)
  new LineSocket(t, 'the holder').send({ nonsense: true })
  expect(JSON.parse(await answered)).toMatchObject({ error: { kind: 'protocol' } })
})

it('lets a newcomer in when every connection is taken by silent ones, dropping the oldest of them', async () => {
  // a long handshake time: silent connections stay until something makes them go
  await startHolder({ ...LIMITS, handshakeMs: 60_000 })
  const silent: Socket[] = []
  for (let i = 0; i < LIMITS.connections; i++) silent.push(await connect())
  const oneGone = Promise.race(silent.map(untilClosed))
  const s = await connect()
  const answered = untilClosed(s)
  new LineSocket(s, 'the holder').send({ nonsense: true })
  expect(JSON.parse(await answered)).toMatchObject({ error: { kind: 'protocol' } })
  await oneGone
  expect(silent[0]!.destroyed).toBe(true)
  expect(silent.filter((x) => x.destroyed)).toHaveLength(1)
})

it('lets only one holder listen per owner', async () => {
  await startHolder()
  const second = new Holder(me, startup())
  expect(await second.listen()).toBe('taken')
  expect(existsSync(path())).toBe(true) // stepping back leaves the first one's socket alone
})

it('takes over a name a killed holder left behind, and removes it when it stops', async () => {
  // a socket file with nothing listening on it, as a holder killed by SIGKILL leaves it
  const bound = spawnSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path()])
  expect(bound.status).toBe(0)
  expect(existsSync(path())).toBe(true)
  const holder = await startHolder()
  const s = await connect()
  const answered = untilClosed(s)
  new LineSocket(s, 'the holder').send({ nonsense: true })
  expect(field(JSON.parse(await answered), 'error')).toMatchObject({ kind: 'protocol' })
  await holder.stop()
  expect(existsSync(path())).toBe(false)
})
