// A `--for` hold's side of the hand-over: find the owner's holder (starting it if there is none),
// prove to each other that both serve the owner's user, and hand the rooted paths over.

import { spawn } from 'node:child_process'
import { createConnection, type Socket } from 'node:net'
import { deadline } from '../deadline.js'
import { HoldError, type HoldErrorKind } from '../errors.js'
import { field, isNonce, LineSocket, newNonce, proofOf, proves, socketName, type HandOver } from './handover.js'
import { ownerSecret, type ProcessId } from './process.js'

const HANDSHAKE_MS = 10_000
// a holder may go away between being found and answering (its owner exited, or two started at
// once and one stepped back): find or start one again, a few times
const ATTEMPTS = 3

/** The holder's socket, or undefined when no holder listens on it. */
function connectTo(name: string): Promise<Socket | undefined> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: `\0${name}` })
    socket.once('connect', () => {
      socket.removeAllListeners('error')
      resolve(socket)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve(undefined) : reject(err)))
  })
}

/**
 * Starts a holder for `owner` with `command` (this program, as the holder's argv begins) and
 * waits until it listens, or says another one does.
 */
async function startHolder(command: readonly string[], owner: ProcessId): Promise<void> {
  const [file, ...args] = command
  // its own session, no terminal, none of the caller's descriptors: a `$(…)` or a Python
  // capture_output that waits for the hold's output ends when the hold exits, not the holder
  const child = spawn(file!, [...args, '--serve-holder', String(owner.pid), owner.start], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore'],
    cwd: '/',
  })
  let said = ''
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (said += s))
  const status = await new Promise<string>((resolve) => {
    child.stdout!.on('data', () => said.includes('\n') && resolve(said))
    child.once('error', (err) => resolve(`error ${err.message}`))
    // 'close', not 'exit': a holder that steps back for another says so and exits at once, and
    // its exit can come before its last words have been read
    child.once('close', (code, signal) => resolve(said.includes('\n') ? said : `error it exited (${signal ?? `code ${code}`}) before it listened`))
  })
  child.stdout!.destroy()
  child.unref()
  const line = status.split('\n')[0]!
  if (line !== 'ready' && line !== 'taken') {
    throw new HoldError('store', `could not start the holder for process ${owner.pid}: ${line.replace(/^error /, '')}`)
  }
}

async function exchange(socket: Socket, secret: Buffer, owner: ProcessId, handOver: HandOver, signal?: AbortSignal): Promise<readonly string[]> {
  const line = new LineSocket(socket, `the holder for process ${owner.pid}`)
  const timeout = deadline(HANDSHAKE_MS)
  try {
    const handshake = AbortSignal.any([timeout.signal, ...(signal ? [signal] : [])])
    const theirs = field(await line.next(handshake), 'nonce')
    if (!isNonce(theirs)) throw new HoldError('store', `something that is not a nix-hold holder listens where the holder for process ${owner.pid} would`)
    const mine = newNonce()
    line.send({ nonce: mine, proof: proofOf(secret, 'hold', theirs) })
    const answer = await line.next(handshake)
    // anyone may take a free abstract socket name: paths go only to a holder that knows the secret
    if (!proves(secret, 'holder', mine, field(answer, 'proof'))) {
      throw new HoldError('store', `the process listening as the holder for process ${owner.pid} cannot prove it is one of this user's; nothing was handed over`)
    }
    line.send({ hold: handOver })
    // no time limit here: a root may wait for a garbage collection to end
    const reply = await line.next(signal)
    const held = field(reply, 'held')
    if (Array.isArray(held)) return held as string[]
    const error = field(reply, 'error')
    throw new HoldError((field(error, 'kind') as HoldErrorKind | undefined) ?? 'store', String(field(error, 'message') ?? 'the holder gave no answer'))
  } catch (err) {
    if (err !== timeout.signal.reason) throw err
    throw new HoldError('store', `the process listening as the holder for process ${owner.pid} did not prove itself within ${HANDSHAKE_MS / 1000} s; nothing was handed over`)
  } finally {
    timeout.clear()
    line.destroy()
  }
}

/**
 * Hands `handOver`'s paths (rooted by the caller, which keeps them rooted until this settles) to
 * the holder for `owner`, starting one with `command` if none runs; returns the paths as held.
 */
export async function handOver(command: readonly string[], owner: ProcessId, request: HandOver, signal?: AbortSignal): Promise<readonly string[]> {
  const secret = ownerSecret(owner)
  const name = socketName(owner, secret, process.getuid!())
  for (let attempt = 1; ; attempt++) {
    const socket = await connectTo(name)
    if (!socket) {
      if (attempt === ATTEMPTS) throw new HoldError('store', `the holder for process ${owner.pid} did not start listening`)
      await startHolder(command, owner)
      continue
    }
    try {
      return await exchange(socket, secret, owner, request, signal)
    } catch (err) {
      // hung up before proving itself: it stopped (its owner is gone, or it lost a race to start)
      const early = err instanceof HoldError && err.kind === 'store' && / hung up$/.test(err.message)
      if (!early || attempt === ATTEMPTS || signal?.aborted) throw err
    }
  }
}
