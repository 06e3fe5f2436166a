// What the proxy costs, on Debian's Nix (test/nix/proxy.test.ts has what depends on the Nix).

import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { unique, useNix } from '../helpers/nix.js'
import { proxied, q, run } from '../helpers/proxied.js'
import { eventually } from '../helpers/proc.js'

const nix = useNix()

it('leaves at most two daemon workers after thirty commands, and a collection run through it takes nothing held', async () => {
  const owner = proxied(nix.env)
  await owner.line()
  const dir = join(nix.root, unique('px-thirty'))
  mkdirSync(dir)
  const files = Array.from({ length: 30 }, (_, i) => join(dir, `f${i}`))
  for (const f of files) writeFileSync(f, `${f}\n`)
  const added = await run(owner, `for f in ${files.map(q).join(' ')}; do nix-store --add "$f"; done`)
  expect(added.lines).toHaveLength(30)
  expect(await eventually(() => nix.workerPids().length <= 2, 10_000)).toBe(true)
  // a collection run through the proxy itself takes none of them
  expect((await run(owner, 'nix-store --gc 2>/dev/null')).status).toBe(0)
  expect(await Promise.all(added.lines.map((p) => nix.isValid(p)))).toEqual(added.lines.map(() => true))
})

