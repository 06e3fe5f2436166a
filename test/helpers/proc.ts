// Processes as /proc shows them, and waiting for a condition on them. Used by the tests, their
// helpers and the benchmarks, so it imports nothing from vitest.

import { readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

const pids = (): number[] => readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number)

/** The parent of `pid`, or undefined once it is gone. */
export function parentOf(pid: number): number | undefined {
  try {
    // the command name in parentheses may itself hold spaces and parentheses: match up to the last ")"
    const ppid = /^\d+ \(.*\) \S (\d+)/s.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1]
    return ppid === undefined ? undefined : Number(ppid)
  } catch {
    return undefined
  }
}

/** The parent of every process now (processes that vanish as we look are left out). */
export function parents(): Map<number, number> {
  const map = new Map<number, number>()
  for (const pid of pids()) {
    const ppid = parentOf(pid)
    if (ppid !== undefined) map.set(pid, ppid)
  }
  return map
}

/** The pids whose parent is `pid`: a daemon's workers, sshd's sessions, nix-hold's ssh children. */
export const childrenOf = (pid: number, tree = parents()): number[] => [...tree].filter(([, ppid]) => ppid === pid).map(([child]) => child)

/** Every process below `pid`, children first. */
export function descendantsOf(pid: number): number[] {
  const tree = parents()
  const found: number[] = []
  for (let queue = [pid]; queue.length > 0; ) {
    const children = childrenOf(queue.shift()!, tree)
    found.push(...children)
    queue.push(...children)
  }
  return found
}

/** Processes with a command-line argument that `match` accepts. */
export const processesWith = (match: (arg: string) => boolean): number[] =>
  pids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some(match)
    } catch {
      return false
    }
  })

/** Whether `pid` has exited (a zombie waiting for its parent counts as exited). */
export const exited = (pid: number): boolean => {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}

/** Polls `condition` every 10 ms until it holds or `ms` pass; returns whether it held. */
export async function eventually(condition: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (await condition()) return true
    if (Date.now() > deadline) return false
    await sleep(10)
  }
}
