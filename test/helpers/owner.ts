// Programs that hold with --for: a script is the owner, and the tests watch its holder.

import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { afterEach } from 'vitest'
import { eventually, processesWith } from './proc.js'
import { CLI } from './wrapper.js'

export interface Owner {
  readonly child: ChildProcess
  readonly pid: number
  /** The next line the owner prints. */
  line(): Promise<string>
  /** Lets the owner run to its end (it waits for a line on its stdin). */
  finish(): void
  readonly exit: Promise<number | null>
  stderr(): string
}

const owners: Owner[] = []
// an owner a test left running is killed after it (its holder then ends by itself)
afterEach(() => {
  for (const o of owners.splice(0)) o.child.kill('SIGKILL')
})

// Starts a program that holds with nix-hold, prints, and waits for its stdin to close; it runs
// nix-hold as "$NODE" "$CLI": the built CLI under the Node running the tests.
export function startOwner(program: string, args: readonly string[], env: NodeJS.ProcessEnv): Owner {
  const child = spawn(program, args, { env: { ...env, NODE: process.execPath, CLI }, stdio: ['pipe', 'pipe', 'pipe'] })
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s))
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const owner: Owner = {
    child,
    pid: child.pid!,
    line: async () => {
      const next = await lines.next()
      if (next.done) throw new Error(`the owner ended without printing a line; its stderr: ${stderr}`)
      return next.value
    },
    finish: () => child.stdin!.end(),
    exit,
    stderr: () => stderr,
  }
  owners.push(owner)
  return owner
}

/** The holders serving process `pid`. */
export const holdersFor = (pid: number): number[] =>
  processesWith((arg) => arg === '--serve-holder').filter((h) => {
    const argv = readFileSync(`/proc/${h}/cmdline`, 'utf8').split('\0')
    return argv[argv.indexOf('--serve-holder') + 1] === String(pid)
  })

/** Whether every holder for `pid` is gone within two seconds (it looks for its owner every 250 ms). */
export const noHolderFor = (pid: number): Promise<boolean> => eventually(() => holdersFor(pid).length === 0, 2000)
