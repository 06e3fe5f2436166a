// Runs the built CLI (dist/nix-hold.js) as a caller would, and talks to it over its channel.

import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'

export const CLI = new URL('../../dist/nix-hold.js', import.meta.url).pathname
export const PIPES_HELPER = new URL('./pipes.py', import.meta.url).pathname

/**
 * fd: --fd 3 on a socketpair; stdio: --stdio; pipes: two real pipes; std-pipes: --command-fd 0
 * --status-fd 1, the wrapper's own stdin and stdout; raw: a socketpair on fd 3 and the caller's
 * own channel flags
 */
export type Mode = 'fd' | 'stdio' | 'pipes' | 'std-pipes' | 'raw'

export interface Wrapper {
  readonly child: ChildProcess
  /** The next event line, parsed; rejects if the channel ends first. */
  next(): Promise<Record<string, unknown>>
  /** Writes a raw line (a newline is added) or an object as JSON. */
  send(message: string | object): void
  /** Closes the caller's end of the channel. */
  end(): void
  /** Every line received so far, in order. */
  readonly received: Record<string, unknown>[]
  /** What the wrapper wrote to stderr so far. */
  stderr(): string
  /** Settles with the exit status once the wrapper has exited. */
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts `nix-hold <channel flags> ...args` with its channel on a socketpair (fd 3), stdio, or two real pipes. */
export function startWrapper(args: readonly string[], env: NodeJS.ProcessEnv, mode: Mode = 'fd'): Wrapper {
  let child: ChildProcess
  let input: Readable
  let output: Writable
  if (mode === 'fd' || mode === 'raw') {
    const channel = mode === 'fd' ? ['--fd', '3'] : []
    child = spawn(process.execPath, [CLI, ...channel, ...args], { env, stdio: ['ignore', 'ignore', 'pipe', 'pipe'] })
    input = child.stdio[3] as Readable
    output = child.stdio[3] as Writable
  } else if (mode === 'stdio' || mode === 'std-pipes') {
    const channel = mode === 'stdio' ? ['--stdio'] : ['--command-fd', '0', '--status-fd', '1']
    child = spawn(process.execPath, [CLI, ...channel, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    input = child.stdout!
    output = child.stdin!
  } else {
    // pipes.py makes two os.pipe()s, so the wrapper sees real FIFOs, and relays them to its stdio
    child = spawn('python3', [PIPES_HELPER, process.execPath, CLI, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    input = child.stdout!
    output = child.stdin!
  }
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s))
  output.on('error', () => undefined) // writing after the wrapper exited is part of some tests

  const received: Record<string, unknown>[] = []
  const lines = createInterface({ input, crlfDelay: Infinity })[Symbol.asyncIterator]()
  const exit = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }))
  return {
    child,
    received,
    exit,
    stderr: () => stderr,
    async next() {
      const { value, done } = await lines.next()
      if (done) throw new Error(`the channel ended before the next event; stderr:\n${stderr}`)
      const event = JSON.parse(value) as Record<string, unknown>
      received.push(event)
      return event
    },
    send(message) {
      output.write(`${typeof message === 'string' ? message : JSON.stringify(message)}\n`)
    },
    end() {
      output.end()
    },
  }
}
