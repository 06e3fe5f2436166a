// Many builds held while garbage collections run back to back: no path may be lost.

import { execa } from 'execa'
import { expect, it } from 'vitest'
import { demoCommand, unique, useNix } from '../helpers/nix.js'
import { startWrapper } from '../helpers/wrapper.js'

const nix = useNix()

it('loses no path while a GC loop runs during many concurrent builds', async () => {
  const WRAPPERS = 12
  let collecting = true
  let collections = 0
  const gcLoop = (async () => {
    while (collecting) {
      await execa('nix-store', ['--gc'], { env: nix.env, extendEnv: false, stdin: 'ignore' })
      collections++
    }
  })()

  const wrappers = Array.from({ length: WRAPPERS }, (_, i) =>
    startWrapper(['--', ...demoCommand(unique(`race-${i}`))], nix.env),
  )
  const built = await Promise.all(wrappers.map(async (w) => (await w.next()).built![0]!))
  // every path reported was valid and rooted when reported: collections since then took none
  const before = collections
  while (collections < before + 2) await new Promise((r) => setImmediate(r))
  collecting = false
  await gcLoop
  for (const path of built) expect(await nix.isValid(path)).toBe(true)
  expect(collections).toBeGreaterThanOrEqual(2)

  for (const w of wrappers) w.send({ release: true })
  for (const w of wrappers) expect((await w.exit).code).toBe(0)
  await nix.gc()
  for (const path of built) expect(await nix.isValid(path)).toBe(false)
})
