// A root that reaches a garbage collection already on its way to deleting the path. Nix 2.5 to
// 2.34 acknowledge such a root and delete the path anyway (fixed in Nix 2.35.0); nix-hold must not
// report a path held that the collection then deletes. Nix 2.3 makes the root wait for the
// collection instead, which this test accepts as well: what it checks is the promise, not the
// mechanism.

import { existsSync, renameSync } from 'node:fs'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import { execa } from 'execa'
import { expect, it } from 'vitest'
import { holdPaths } from '../src/index.js'
import { nixLabel, nixVersions, unique, useNix } from './helpers/nix.js'

const nix = useNix()

const FAN = 1500

/**
 * A path P that refers to FAN garbage paths and is referred to by FAN more, all garbage. A
 * collection that reaches P from one of its references visits P and all its referrers first, then
 * deletes the referrers one by one before P: the window in which P still exists but is doomed.
 */
async function fixture(): Promise<{ p: string; referrers: string[] }> {
  const salt = unique('race')
  const expr = `let
    deps = builtins.genList (i: builtins.toFile "dep-\${toString i}" "dep \${toString i} ${salt}") ${FAN};
    p = builtins.toFile "p-${salt}" (builtins.concatStringsSep "\\n" deps);
    refs = builtins.genList (i: builtins.toFile "ref-\${toString i}" "\${p} \${toString i}") ${FAN};
  in [ p (builtins.head deps) ] ++ refs`
  const { stdout } = await execa('nix-instantiate', ['--eval', '--strict', '--read-write-mode', '-E', expr], { env: nix.env, extendEnv: false, stdin: 'ignore' })
  const [p, dep, ...referrers] = [...stdout.matchAll(/"([^"]+)"/g)].map((m) => m[1]!)
  // A collection visits the store directory's entries in the order readdir gives them: on tmpfs,
  // newest first, so it would reach each referrer on its own (deleting it alone) before P. Moving
  // one reference out and back makes it the newest entry: the collection then starts from it,
  // visits it, P and every referrer as one garbage closure, and deletes them referrers first.
  // (On a disk file system the order is a hash's; the window then opens in some runs only.)
  renameSync(dep!, `${dep}.moving`)
  renameSync(`${dep}.moving`, dep!)
  return { p: p!, referrers }
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

it(`never reports a path held that a running collection then deletes (Nix ${nixLabel()})`, async () => {
  let raced = 0
  for (let attempt = 0; attempt < 6 && raced < 2; attempt++) {
    const { p, referrers } = await fixture()
    const gc = execa('nix-store', ['--gc'], { env: nix.env, extendEnv: false, stdin: 'ignore' })
    let gcDone = false
    void gc.finally(() => (gcDone = true)).catch(() => undefined)
    // watch the store itself: the moment the first referrer is gone, P is doomed but still there
    while (!gcDone && referrers.every((r) => existsSync(r))) await turn()
    if (gcDone || !existsSync(p)) {
      await gc
      continue // the collection was too quick to catch this time
    }
    const messages: string[] = []
    const outcome = await holdPaths([p], { env: nix.env, log: (m) => messages.push(m) }).then(
      (hold) => ({ hold }),
      (error: unknown) => ({ error }),
    )
    await gc
    if ('hold' in outcome) {
      // held means held: the collection that was running must not have taken it
      expect(await nix.isValid(p)).toBe(true)
      await outcome.hold.release()
    } else {
      expect(outcome.error).toMatchObject({ kind: 'usage', message: expect.stringContaining('not valid in the store') })
      expect(await nix.isValid(p)).toBe(false)
    }
    raced++
  }
  // the race must have been run for real at least once, or this test showed nothing
  expect(raced).toBeGreaterThan(0)
})

// Nix 2.3 has no collector socket to wait on
it.skipIf(nixVersions().daemon.legacy)(`ends a keep that waits for a running collection when the hold is released, without a crash (Nix ${nixLabel()})`, async () => {
  const [held, extra] = await nix.addFiles(unique('released-wait'), 2)
  let waiting!: () => void
  const waits = new Promise<void>((resolve) => (waiting = resolve))
  const log = (m: string) => /garbage collection is running/.test(m) && waiting()
  const hold = await holdPaths([held!], { env: nix.env, log })
  await fixture() // garbage enough for the collection to take a while
  const gc = execa('nix-store', ['--gc'], { env: nix.env, extendEnv: false, stdin: 'ignore' })
  // the collection is running once its socket accepts a connection
  const socket = join(nix.stateDir, 'gc-socket', 'socket')
  const accepts = () => new Promise<boolean>((resolve) => {
    const s = createConnection({ path: socket }).once('connect', () => (s.destroy(), resolve(true))).once('error', () => resolve(false))
  })
  while (!(await accepts())) await turn()
  const keeping = hold.keep([extra!]).then(() => 'kept', (err: unknown) => err)
  await waits // the keep is waiting for the collection to end
  await hold.release()
  expect(await keeping).toMatchObject({ kind: 'usage', message: 'this hold was released' })
  await gc
})
