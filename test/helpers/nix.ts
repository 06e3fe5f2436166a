// One isolated Nix instance per test file, started and stopped around its tests.

import { afterAll, beforeAll, expect } from 'vitest'
import { startNix, type NixInstance } from './nix-instance.js'
import { startWrapper, type Mode } from './wrapper.js'

export { FIXTURES, demoCommand, failedBuildCode, scriptCommand, stepsOf, nixEnv, nixLabel, nixVersions, startNix, type NixInstance } from './nix-instance.js'

/**
 * One isolated instance for the calling test file: started before its first test, stopped after
 * its last. The returned object forwards to the running instance.
 */
export function useNix(): NixInstance {
  let current: NixInstance | undefined
  beforeAll(async () => {
    current = await startNix()
  })
  afterAll(async () => {
    await current?.stop()
  })
  return new Proxy({} as NixInstance, {
    get(_, key) {
      if (!current) throw new Error('the Nix instance is used before beforeAll started it')
      return current[key as keyof NixInstance]
    },
  })
}

let counter = 0
/** A name no other test in this run uses, for a derivation argument or a file. */
export const unique = (label: string): string => `${label}-${process.pid}-${++counter}`

/**
 * Runs `command` under nix-hold with its channel on `mode`, checks that a collection spares what
 * it built while held, then ends the hold (`release`: {"release":true}; `eof`: the caller closes
 * the channel) and checks that nix-hold exits 0 and a collection takes it.
 */
export async function holdsUntilEnded(nix: NixInstance, command: readonly string[], mode: Mode = 'fd', end: 'release' | 'eof' = 'release'): Promise<void> {
  const w = startWrapper(['--', ...command], nix.env, mode)
  const built = (await w.next()).built!
  expect(built).toHaveLength(1)
  await nix.gc()
  expect(await nix.isValid(built[0]!)).toBe(true)
  if (end === 'release') {
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
  } else {
    w.end()
  }
  expect((await w.exit).code).toBe(0)
  await nix.gc()
  expect(await nix.isValid(built[0]!)).toBe(false)
}
