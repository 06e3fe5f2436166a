// The process a `--for` hold lasts as long as, as /proc shows it. Linux only.

import { readdirSync, readFileSync } from 'node:fs'
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
function readStat(path: string): Stat | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  const start = fields[19]
  return state === undefined || start === undefined ? undefined : { state, start }
}

// A thread that has exited but is not reaped yet is a zombie (Z), or on its way out (X).
const isDead = (stat: Stat): boolean => stat.state === 'Z' || stat.state === 'X'

// Whether any thread of process `pid` still runs. The process's own stat is its first thread's:
// that thread may end (pthread_exit) and show Z while the others, and so the process, run on.
function anyThreadAlive(pid: number, main: Stat): boolean {
  if (!isDead(main)) return true
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return false
  }
  return tids.some((tid) => {
    const stat = readStat(`/proc/${pid}/task/${tid}/stat`)
    return stat !== undefined && !isDead(stat)
  })
}

/** The process now running as `pid`; a HoldError of kind `usage` when there is none. */
export function processNow(pid: number): ProcessId {
  const stat = pid > 0 ? readStat(`/proc/${pid}/stat`) : undefined
  if (!stat || !anyThreadAlive(pid, stat)) throw new HoldError('usage', `--for ${pid}: no process ${pid} is running`)
  return { pid, start: stat.start }
}

/** Whether `id` is still running: its pid is taken by the same process, not a later one, and one of its threads lives. */
export function isRunning(id: ProcessId): boolean {
  const stat = readStat(`/proc/${id.pid}/stat`)
  return stat !== undefined && stat.start === id.start && anyThreadAlive(id.pid, stat)
}

/**
 * Refuses (kind `usage`) an owner that is not wholly a process of user `uid`: its real, effective
 * and saved user ids must all be `uid`. A hold for another user's process would serve that user's
 * life with this user's rights (root's, under sudo); a setuid program may run as someone else.
 */
export function checkOwnedBy(id: ProcessId, uid: number): void {
  let status: string
  try {
    status = readFileSync(`/proc/${id.pid}/status`, 'utf8')
  } catch {
    throw new HoldError('usage', `--for ${id.pid}: process ${id.pid} has exited`)
  }
  const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)?.slice(1).map(Number)
  if (!ids) throw new HoldError('usage', `--for ${id.pid}: cannot tell which user process ${id.pid} runs as`)
  const [real, effective, saved] = ids as [number, number, number]
  if (real === uid && effective === uid && saved === uid) return
  const yours = `--for holds only for a process of the user nix-hold runs as (uid ${uid})`
  if (real === uid) throw new HoldError('usage', `--for ${id.pid}: process ${id.pid} runs a program with another user's rights (effective uid ${effective}, saved uid ${saved}, as a setuid program does); ${yours}`)
  throw new HoldError('usage', `--for ${id.pid}: process ${id.pid} belongs to uid ${real}; ${yours}`)
}
