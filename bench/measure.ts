// Small measuring tools for the benchmarks: timing child processes, resident memory, statistics.

import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'

export const now = (): number => Number(process.hrtime.bigint()) / 1e6 // milliseconds

export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
}

export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b)
  const mid = s.length >> 1
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
  return { median, min: s[0]!, max: s.at(-1)! }
}

/** Wall time of a command run to its exit, in ms; fails on a non-zero status. */
export async function timeCommand(file: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const start = now()
  const child = spawn(file, args, { env, stdio: ['ignore', 'ignore', 'ignore'] })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${code}`)
  return now() - start
}

/** A child with a socketpair on fd 3, as nix-hold's callers start it. */
export function spawnWithChannel(file: string, args: readonly string[], env: NodeJS.ProcessEnv): { child: ChildProcess; channel: Socket } {
  const child = spawn(file, args, { env, stdio: ['ignore', 'ignore', 'inherit', 'pipe'] })
  return { child, channel: child.stdio[3] as Socket }
}

/** The first line the child writes to its channel. */
export async function firstLine(channel: Socket): Promise<string> {
  let text = ''
  while (!text.includes('\n')) {
    const [chunk] = (await once(channel, 'data')) as [Buffer]
    text += chunk.toString()
  }
  return text.slice(0, text.indexOf('\n'))
}

/** Resident memory of a live process, in KiB. */
export const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])

/**
 * Runs the samplers in turn, `rounds` times, so that A and B see the same machine conditions;
 * returns every sample, in round order.
 * `settle` runs before each sample, outside the timing: the work one sample leaves behind (a
 * daemon worker winding down after its client has gone) must not land on the next one.
 */
export async function alternate<K extends string>(
  rounds: number,
  samplers: Record<K, () => Promise<number>>,
  settle: () => Promise<void> = async () => undefined,
): Promise<Record<K, number[]>> {
  const samples = Object.fromEntries(Object.keys(samplers).map((k) => [k, [] as number[]])) as unknown as Record<K, number[]>
  for (let i = 0; i < rounds; i++) {
    for (const [k, sample] of Object.entries(samplers) as Array<[K, () => Promise<number>]>) {
      await settle()
      samples[k].push(await sample())
    }
  }
  return samples
}

/**
 * Round by round, the first sample minus the others of the same round. This VM's speed drifts by
 * tens of milliseconds between rounds; samples taken one after the other share it, so the median
 * of these differences is steadier than a difference of medians.
 */
export const differences = (first: readonly number[], ...others: ReadonlyArray<readonly number[]>): number[] =>
  first.map((x, i) => others.reduce((d, o) => d - o[i]!, x))
