// A `--for` hold's side of the hand-over: find the owner's holder (starting it if there is none)
// and hand the rooted paths over.

import { spawn } from 'node:child_process'
import { createConnection, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { HoldError, type HoldErrorKind } from '../errors.js'
import { field, holderSocketPath, LineSocket, requestLines, type HandOver } from './handover.js'
import { holderEnvironment, type HolderStartup } from './holder-env.js'
import type { ProcessId } from './process.js'
import { runtimeDir } from '../rendezvous/runtime-dir.js'

// How long a hold tries to reach a holder whose socket is busy (a full listen backlog answers a
// connect with EAGAIN) before it gives up
const CONNECT_MS = 10_000
// a holder may go away between being found and answering (its owner exited, or two started at
// once and one stepped back): find or start one again, a few times
const ATTEMPTS = 3

/** A connection to the holder's socket, or undefined when no holder listens there. */
async function connectTo(path: string, signal?: AbortSignal): Promise<Socket | undefined> {
  const giveUp = Date.now() + CONNECT_MS
  for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
    const result = await new Promise<Socket | NodeJS.ErrnoException>((resolve) => {
      const socket = createConnection({ path })
      socket.once('connect', () => {
        socket.removeAllListeners('error')
        resolve(socket)
      })
      socket.once('error', resolve)
    })
    if (!(result instanceof Error)) return result
    // no socket, or one that nothing listens on any more (its holder was killed)
    if (result.code === 'ENOENT' || result.code === 'ECONNREFUSED') return undefined
    if (result.code !== 'EAGAIN' || Date.now() + wait > giveUp) {
      throw new HoldError('store', `cannot reach the holder's socket ${path}: ${result.message}`, { cause: result })
    }
    await sleep(wait, undefined, signal ? { signal } : {})
  }
}

/**
 * Starts a holder for `owner` with `command` (this program, as the holder's argv begins) and
 * waits until it listens, or says another one does. It starts with an empty environment (a store
 * path in a process's environment is a root, and the hold's may hold tokens): what it needs comes
 * on its standard input.
 */
async function startHolder(command: readonly string[], owner: ProcessId, startup: HolderStartup): Promise<void> {
  const [file, ...args] = command
  // its own session, no terminal, none of the caller's descriptors: a `$(…)` or a Python
  // capture_output that waits for the hold's output ends when the hold exits, not the holder
  const child = spawn(file!, [...args, '--serve-holder', String(owner.pid), owner.start], {
    detached: true,
    stdio: ['pipe', 'pipe', 'ignore'],
    cwd: '/',
    env: {},
  })
  child.stdin!.on('error', () => undefined) // a holder that failed at once; its stdout says why
  child.stdin!.end(`${JSON.stringify(startup)}\n`)
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

// Sends `lines` and reads the one answer; no time limit: a root may wait for a collection to end.
async function exchange(socket: Socket, owner: ProcessId, lines: readonly unknown[], signal?: AbortSignal): Promise<unknown> {
  const line = new LineSocket(socket, `the holder for process ${owner.pid}`)
  try {
    for (const l of lines) line.send(l)
    return await line.next(signal)
  } finally {
    line.destroy()
  }
}

// The holder's answer as a value, or its error as a HoldError
function answerOf(reply: unknown, key: string): unknown {
  const value = field(reply, key)
  if (value !== undefined) return value
  const error = field(reply, 'error')
  throw new HoldError((field(error, 'kind') as HoldErrorKind | undefined) ?? 'store', String(field(error, 'message') ?? 'the holder gave no answer'))
}

/** Where a hold finds the holder, and what it starts one with. */
export interface JoinOptions {
  /** This program, as the holder's argv begins. */
  readonly command: readonly string[]
  /** The hold's environment: the holder's is taken from it (holder-env.ts). */
  readonly env: NodeJS.ProcessEnv
  readonly signal?: AbortSignal | undefined
}

// Sends `lines` to the holder for `owner`, starting one if none runs; returns its answer.
async function ask(owner: ProcessId, lines: readonly unknown[], options: JoinOptions): Promise<unknown> {
  const dir = runtimeDir(options.env)
  const path = holderSocketPath(dir, owner)
  for (let attempt = 1; ; attempt++) {
    const socket = await connectTo(path, options.signal)
    if (!socket) {
      if (attempt === ATTEMPTS) throw new HoldError('store', `the holder for process ${owner.pid} did not start listening`)
      await startHolder(options.command, owner, { dir, env: holderEnvironment(options.env) })
      continue
    }
    try {
      return await exchange(socket, owner, lines, options.signal)
    } catch (err) {
      // hung up before answering: it stopped (its owner is gone, or it lost a race to start)
      const early = err instanceof HoldError && err.kind === 'store' && / hung up$/.test(err.message)
      if (!early || attempt === ATTEMPTS || options.signal?.aborted) throw err
    }
  }
}

/**
 * Hands `handOver`'s paths (rooted by the caller, which keeps them rooted until this settles) to
 * the holder for `owner`, starting one if none runs; returns how many it holds.
 */
export async function handOver(owner: ProcessId, request: HandOver, options: JoinOptions): Promise<number> {
  const held = answerOf(await ask(owner, requestLines(request), options), 'held')
  if (typeof held !== 'number') throw new HoldError('store', `the holder for process ${owner.pid} answered something other than how many paths it holds`)
  return held
}

/** The URI of the proxy for `store` that the holder for `owner` serves, started if need be. */
export async function proxyFor(owner: ProcessId, store: string, options: JoinOptions): Promise<string> {
  const uri = answerOf(await ask(owner, [{ proxy: { store } }], options), 'proxy')
  if (typeof uri !== 'string') throw new HoldError('store', `the holder for process ${owner.pid} answered something other than a store URI`)
  return uri
}
