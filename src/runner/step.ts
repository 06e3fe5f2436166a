// Runs one command of a build (execa): stderr passed through, stdout captured, failures typed.

import { constants } from 'node:os'
import { isatty } from 'node:tty'
import { execa } from 'execa'
import { HoldError } from '../errors.js'
import { nixErrorOf, OutputTail } from './nix-error.js'

export interface StepOptions {
  readonly env: NodeJS.ProcessEnv
  readonly signal?: AbortSignal | undefined
}

/** What a whole build runs with: each step's options, and the hold's part in between. */
export interface RunOptions extends StepOptions {
  /**
   * Roots store paths on the hold's connection and returns those that are not valid once rooted.
   * nix-build's derivations are rooted with it between evaluating and building them.
   */
  readonly root?: ((paths: readonly string[]) => Promise<readonly string[]>) | undefined
  /** Where a note meant for a person goes (an evaluation run again). */
  readonly log?: ((message: string) => void) | undefined
}

/** A command that could not be started (exit code 127, as a shell gives); `note` says where it was looked for. */
export const cannotRun = (file: string, why: string, note?: string, cause?: unknown): HoldError =>
  new HoldError('build', `cannot run ${file}: ${why}${note ? ` (${note})` : ''}`, { exitCode: 127, cause })

// the status a shell would report: 128 + N for signal N
const shellStatus = (signal: string | undefined, exitCode: number | undefined): number =>
  signal ? 128 + (constants.signals[signal as keyof typeof constants.signals] ?? 0) : (exitCode ?? 1)

/**
 * Runs one command of a build and returns its stdout; `name` is what messages call it (the
 * command the user ran), and `note` is added when it cannot start. Its stderr is the user's to
 * see, as when they run it themselves; a failure's message ends with Nix's error from it.
 */
export async function runStep(name: string, file: string, args: readonly string[], { env, signal }: StepOptions, note?: string): Promise<string> {
  signal?.throwIfAborted()
  // Nix draws its progress bar only on a terminal, so there its stderr stays the terminal and the
  // message points to it; anywhere else nix-hold passes it on and keeps the end of it
  const tail = isatty(2) ? undefined : new OutputTail()
  const result = await execa(file, args, {
    env,
    extendEnv: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: tail ? ['inherit', tail] : 'inherit',
    buffer: { stdout: true, stderr: false },
    reject: false,
    stripFinalNewline: false,
    maxBuffer: 64 * 1024 * 1024,
    ...(signal ? { cancelSignal: signal } : {}),
    // nix asked to stop (SIGTERM) cancels its builds with the daemon; SIGKILL only if it hangs
    forceKillAfterDelay: 5000,
  })
  if (result.isCanceled) throw signal?.reason ?? new HoldError('build', `${name} was stopped`)
  if (result.failed) {
    if (result.exitCode === undefined && result.signal === undefined) {
      throw cannotRun(file, String(result.originalMessage ?? result.shortMessage), note, result)
    }
    const code = shellStatus(result.signal, result.exitCode)
    const how = result.signal ? `was killed by ${result.signal}` : `failed (exit code ${code})`
    const said = tail ? nixErrorOf(tail.text) : ''
    const why = said ? `: ${said}` : tail ? '' : '; its error output went to the terminal'
    throw new HoldError('build', `${name} ${how}${why}`, { exitCode: code })
  }
  return String(result.stdout)
}

