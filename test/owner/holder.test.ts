// The holder's socket as anyone else on the machine sees it: whoever cannot prove it serves the
// owner's user gets no answer, adds no root and cannot make the holder grow. No store is needed
// for that: nothing here gets as far as one.

import { createConnection, createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { afterEach, expect, it } from 'vitest'
import { field, LineSocket, newNonce, proofOf, socketName } from '../../src/owner/handover.js'
import { Holder, LIMITS } from '../../src/owner/holder.js'
import { handOver } from '../../src/owner/join.js'
import { ownerSecret, processNow } from '../../src/owner/process.js'

const me = processNow(process.pid)
const name = () => socketName(me, ownerSecret(me), process.getuid!())

const sockets: Socket[] = []
const connect = async (): Promise<Socket> => {
  const s = createConnection({ path: `\0${name()}` })
  sockets.push(s)
  await once(s, 'connect')
  return s
}
let holder: Holder | undefined
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  await holder?.stop()
  holder = undefined
})

// the handshake time is short here, so the test that waits it out is quick
const limits = { ...LIMITS, handshakeMs: 300 }
const startHolder = async (given = limits): Promise<Holder> => {
  holder = new Holder(me, given)
  expect(await holder.listen()).toBe('ready')
  return holder
}

// what the peer has said by the time it hangs up
const untilClosed = async (s: Socket): Promise<string> => {
  let said = ''
  s.on('error', () => undefined) // a reset is a way of hanging up too
  s.setEncoding('utf8').on('data', (d: string) => (said += d))
  await new Promise((resolve) => s.once('close', resolve))
  return said
}

it('hangs up on a peer whose proof is wrong, without proving itself or reading a hold', async () => {
  await startHolder()
  const s = await connect()
  const line = new LineSocket(s, 'the holder')
  expect(field(await line.next(), 'nonce')).toMatch(/^[0-9a-f]{32}$/)
  const closed = untilClosed(s)
  // a proof made with another secret, and a hold sent right behind it
  line.send({ nonce: newNonce(), proof: proofOf(Buffer.alloc(32), 'hold', 'x') })
  line.send({ hold: { paths: ['/nix/store/00000000000000000000000000000000-x'], location: { storeDir: '/nix/store', target: { type: 'socket', path: '/nonexistent' } } } })
  line.send({ release: true })
  expect(await closed).toBe('')
})

it('hangs up on a peer that says nothing within the handshake time', async () => {
  await startHolder()
  const s = await connect()
  const started = Date.now()
  await untilClosed(s)
  expect(Date.now() - started).toBeGreaterThanOrEqual(limits.handshakeMs - 50)
})

// a peer that knows the secret, as a hold does: the holder's own proof comes back
async function proveTo(socket: Socket): Promise<unknown> {
  const line = new LineSocket(socket, 'the holder')
  const nonce = field(await line.next(), 'nonce') as string
  const mine = newNonce()
  line.send({ nonce: mine, proof: proofOf(ownerSecret(me), 'hold', nonce) })
  return field(await line.next(), 'proof') === proofOf(ownerSecret(me), 'holder', mine)
}

it('lets a proving peer in when every connection is taken by silent ones, dropping the oldest of them', async () => {
  // a long handshake time: silent connections stay until something makes them go
  await startHolder({ ...LIMITS, handshakeMs: 60_000 })
  const silent = await Promise.all(Array.from({ length: LIMITS.connections }, connect))
  const oneGone = Promise.race(silent.map(untilClosed))
  expect(await proveTo(await connect())).toBe(true)
  await oneGone
  expect(silent.filter((s) => s.destroyed)).toHaveLength(1)
})

it('drops a peer that sends a line longer than it takes, as soon as it has', async () => {
  await startHolder({ ...LIMITS, handshakeMs: 60_000 })
  const s = await connect()
  const closed = untilClosed(s)
  const started = Date.now()
  s.write('"'.padEnd(5 * 1024 * 1024, 'x'))
  await closed
  // not merely dropped at the end of the handshake time, with the whole line buffered until then
  expect(Date.now() - started).toBeLessThan(30_000)
})

it('lets only one holder listen per owner', async () => {
  await startHolder()
  expect(await new Holder(me).listen()).toBe('taken')
})

it('hands nothing over to a process that took the name but cannot prove it serves the owner', async () => {
  const heard: string[] = []
  const squatter = createServer((s) => {
    sockets.push(s)
    s.setEncoding('utf8').on('data', (d: string) => {
      heard.push(d)
      // a proof, of the right shape, made without the secret
      s.write(`${JSON.stringify({ proof: proofOf(Buffer.alloc(32), 'holder', 'guess') })}\n`)
    })
    s.write(`${JSON.stringify({ nonce: newNonce() })}\n`)
  })
  squatter.listen({ path: `\0${name()}` })
  await once(squatter, 'listening')
  try {
    const paths = ['/nix/store/00000000000000000000000000000000-secret']
    const location = { storeDir: '/nix/store', target: { type: 'socket' as const, path: '/nonexistent' } }
    await expect(handOver([process.execPath, '-e', ''], me, { paths, location })).rejects.toMatchObject({ kind: 'store', message: expect.stringContaining('cannot prove') })
    expect(heard.join('')).not.toContain('secret')
    expect(heard.join('')).not.toContain('hold')
  } finally {
    squatter.close()
  }
})
