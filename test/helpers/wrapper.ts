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

/**
 * One line the wrapper sent on its channel, parsed: the protocol's events (src/channel/messages.ts,
 * schema/*.json) folded into one shape with every field optional, so that a test can read the
 * field it expects without narrowing a union first.
 */
export interface WrapperEvent {
  readonly built?: string[]
  readonly outputs?: { readonly drvPath?: string; readonly outputs: Record<string, string> }[]
  readonly kept?: string[]
  readonly expected?: string[]
  readonly error?: { readonly kind: string; readonly message: string; readonly exitCode?: number }
  readonly released?: true
  readonly lost?: string[]
  readonly expired?: true
  /** The store a kept, expected, error or lost event is about; absent for the hold's own. */
  readonly store?: string
  /** Not a protocol field: a line that was not a JSON object, as it came (next() throws with it). */
  readonly notAnEvent?: string
}

export interface Wrapper {
  readonly child: ChildProcess
  /** The next event line not yet taken by next(), parsed; rejects if the channel ends first. */
  next(): Promise<WrapperEvent>
  /** Writes a raw line (a newline is added) or an object as JSON. */
  send(message: string | object): void
  /** Closes the caller's end of the channel. */
  end(): void
  /** Every line received so far, in order, whether next() took it or not. */
  readonly received: readonly WrapperEvent[]
  /** Settles once the channel has ended: from then on `received` holds every line the wrapper sent. */
  readonly ended: Promise<void>
  /** What the wrapper wrote to stderr so far. */
  stderr(): string
  /** Settles with the exit status once the wrapper has exited (its last lines may still be on their way). */
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

  // Each line is recorded as it arrives, not when a test asks for it: a test can then say that
  // nothing came (or what came) without having asked for it.
  const received: WrapperEvent[] = []
  let taken = 0
  let ended = false
  let failure: Error | undefined
  const waiting: (() => void)[] = []
  const notify = () => {
    for (const resolve of waiting.splice(0)) resolve()
  }
  const lines = createInterface({ input, crlfDelay: Infinity })
  lines.on('line', (line: string) => {
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch {
      value = undefined
    }
    const isObject = typeof value === 'object' && value !== null && !Array.isArray(value)
    received.push(isObject ? (value as WrapperEvent) : { notAnEvent: line })
    notify()
  })
  const channelEnded = new Promise<void>((resolve) => {
    const end = (err?: Error) => {
      ended = true
      failure ??= err
      notify()
      resolve()
    }
    lines.on('close', () => end())
    // a broken channel (the socket reset) ends it as well; without a listener it would crash the run
    lines.on('error', (err: Error) => end(err))
  })
  const exit = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }))
  return {
    child,
    received,
    ended: channelEnded,
    exit,
    stderr: () => stderr,
    async next() {
      while (taken >= received.length) {
        if (failure) throw failure
        if (ended) throw new Error(`the channel ended before the next event; stderr:\n${stderr}`)
        await new Promise<void>((resolve) => waiting.push(resolve))
      }
      const event = received[taken++]!
      if (event.notAnEvent !== undefined) throw new Error(`the wrapper sent a line that is not a JSON object: ${JSON.stringify(event.notAnEvent)}; stderr:\n${stderr}`)
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
