// The process a `--for` hold lasts as long as, as /proc shows it. Linux only.

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { HoldError } from '../errors.js'

/**
 * A process, told apart from a later one that reuses its pid by its start time (clock ticks after
 * boot, field 22 of /proc/PID/stat): the pair names one process for as long as the machine runs.
 */
export interface ProcessId {
  readonly pid: number
  readonly start: string
}

interface Stat {
  readonly state: string
  readonly start: string
}

// The command name in parentheses may hold spaces and parentheses itself: the fields after it
// start past the last ")". State is field 3, start time field 22.
function readStat(pid: number): Stat | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  const start = fields[19]
  return state === undefined || start === undefined ? undefined : { state, start }
}

/** The process now running as `pid`; a HoldError of kind `usage` when there is none. */
export function processNow(pid: number): ProcessId {
  const stat = pid > 0 ? readStat(pid) : undefined
  if (!stat || isDead(stat)) throw new HoldError('usage', `--for ${pid}: no process ${pid} is running`)
  return { pid, start: stat.start }
}

// A process that has exited but whose parent has not reaped it yet is a zombie (Z), or on its way
// out (X): its pid and start time still show, but it holds nothing any more.
const isDead = (stat: Stat): boolean => stat.state === 'Z' || stat.state === 'X'

/** Whether `id` is still running: its pid is taken by the same process, not a later one. */
export function isRunning(id: ProcessId): boolean {
  const stat = readStat(id.pid)
  return stat !== undefined && stat.start === id.start && !isDead(stat)
}

/**
 * A secret that only the owner's own user (and root) can work out: a hash of the owner's
 * auxiliary vector. /proc/PID/auxv is readable only with ptrace access to the process, and it
 * holds the addresses that exec randomised for it (its stack's random bytes, its vDSO, its entry
 * point with PIE), so another user can neither read nor guess it. A holder and the holds that join
 * it prove to each other that they know it (owner/handover.ts); a process that cannot read it is
 * of another user, and is refused.
 */
export function ownerSecret(id: ProcessId): Buffer {
  let auxv: Buffer
  try {
    auxv = readFileSync(`/proc/${id.pid}/auxv`)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ESRCH') throw new HoldError('usage', `--for ${id.pid}: process ${id.pid} has exited`, { cause: err })
    throw new HoldError('usage', `--for ${id.pid}: process ${id.pid} is not one of this user's (its /proc/${id.pid}/auxv cannot be read: ${code ?? String(err)}); hold for a process of your own`, { cause: err })
  }
  if (auxv.length === 0) throw new HoldError('usage', `--for ${id.pid}: process ${id.pid} has exited`)
  return createHash('sha256').update(`nix-hold owner ${id.pid} ${id.start}\0`).update(auxv).digest()
}
