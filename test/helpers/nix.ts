// One isolated Nix instance per test file, started and stopped around its tests.

import { afterAll, beforeAll } from 'vitest'
import { startNix, type NixInstance } from './nix-instance.js'

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
