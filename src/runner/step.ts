// Runs one command of a build (execa): stderr passed through, stdout captured, failures typed.

import { constants } from 'node:os'
import { execa } from 'execa'
import { HoldError } from '../errors.js'

export interface StepOptions {
  readonly env: NodeJS.ProcessEnv
  readonly signal?: AbortSignal | undefined
}

/** A command that could not be started (exit code 127, as a shell gives); `note` says where it was looked for. */
export const cannotRun = (file: string, why: string, note?: string, cause?: unknown): HoldError =>
  new HoldError('build', `cannot run ${file}: ${why}${note ? ` (${note})` : ''}`, { exitCode: 127, cause })

const exitCodeOf = (signal: string | undefined, exitCode: number | undefined): number =>
  signal ? 128 + (constants.signals[signal as keyof typeof constants.signals] ?? 0) : (exitCode ?? 1)

/**
 * Runs one command of a build and returns its stdout; `name` is what messages call it, and `note`
 * is added when it cannot start. Its stderr is the user's to see, as when they run it themselves.
 */
export async function runStep(name: string, file: string, args: readonly string[], { env, signal }: StepOptions, note?: string): Promise<string> {
  signal?.throwIfAborted()
  const result = await execa(file, args, {
    env,
    extendEnv: false,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'inherit',
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
    const code = exitCodeOf(result.signal, result.exitCode)
    const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${code}`
    throw new HoldError('build', `${name} ${how}`, { exitCode: code })
  }
  return String(result.stdout)
}

