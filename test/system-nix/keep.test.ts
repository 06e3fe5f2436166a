// --keep behaviour that does not depend on the Nix behind it: many paths at once, and a refusal
// that must win over the caller's EOF.

import { spawnSync } from 'node:child_process'
import { expect, it } from 'vitest'
import { unique, useNix } from '../helpers/nix.js'
import { CLI, startWrapper } from '../helpers/wrapper.js'

const nix = useNix()

it('exits 2, every time, for --keep of a path outside the store when the caller closes stdin at once', async () => {
  // the refusal raced the caller's EOF, and lost it (exit 4) five times in six
  const statuses = Array.from({ length: 20 }, () => spawnSync(process.execPath, [CLI, '--stdio', '--keep', '/etc/passwd'], { env: nix.env, stdio: ['ignore', 'pipe', 'pipe'] }).status)
  expect(statuses).toEqual(Array(20).fill(2))
})

it('holds 10,000 paths given on the command line', async () => {
  const paths = await nix.addFiles(unique('many'), 10_000) // nothing collects in this file meanwhile
  const w = startWrapper(['--keep', ...paths], nix.env)
  const event = await w.next()
  expect(event.kept).toEqual(paths)
  await nix.gc()
  expect(await nix.isValid(paths[0]!)).toBe(true)
  expect(await nix.isValid(paths[9999]!)).toBe(true)
  w.end()
  await w.exit
  await nix.gc()
  expect(await nix.isValid(paths[5000]!)).toBe(false)
})
