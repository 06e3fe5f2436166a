// The code caches that `npm run build` makes are what makes nix-hold start fast: these check that
// the Node that built them accepts them in the order the CLI loads them, and that a bundle whose
// cache V8 refuses (another Node, a changed file) still loads and works.

import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'

const DIST = new URL('../../dist/', import.meta.url).pathname

/** Runs `script` in a plain `node` (no flags, as the bin runs) and returns what it printed as JSON. */
const inNode = (script: string): unknown => JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }))

it('accepts the caches of cli.js and of build.js, each under the V8 flags the CLI loads it with', () => {
  const result = inNode(`
    const { compileBundle, runBundle } = require(${JSON.stringify(join(DIST, 'code-cache.js'))})
    const cliFile = ${JSON.stringify(join(DIST, 'cli.js'))}
    const cli = compileBundle(cliFile)
    const { keepCompilerMemorySmall } = runBundle(cli, cliFile)
    keepCompilerMemorySmall()
    const build = compileBundle(${JSON.stringify(join(DIST, 'build.js'))})
    console.log(JSON.stringify({ cli: cli.compiledFromSource, build: build.compiledFromSource }))
  `)
  expect(result).toEqual({ cli: false, build: false })
})

const scratch = mkdtempSync(join(tmpdir(), 'nix-hold-cache-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

it.each([
  ['no cache', () => undefined],
  ['a cache made for other code', () => copyFileSync(join(DIST, 'cli.cache'), join(scratch, 'build.cache'))],
  ['a damaged cache', () => writeFileSync(join(scratch, 'build.cache'), Buffer.alloc(4096, 7))],
])('loads a bundle from source when there is %s, and the bundle works', (_, makeCache) => {
  rmSync(join(scratch, 'build.cache'), { force: true })
  copyFileSync(join(DIST, 'build.js'), join(scratch, 'build.js'))
  makeCache()
  const result = inNode(`
    const { compileBundle, runBundle } = require(${JSON.stringify(join(DIST, 'code-cache.js'))})
    const file = ${JSON.stringify(join(scratch, 'build.js'))}
    const bundle = compileBundle(file)
    const { runBuild } = runBundle(bundle, file)
    const out = '/nix/store/00000000000000000000000000000000-x'
    const report = JSON.stringify([{ outputs: { out } }])
    runBuild({ flavor: 'nix build', file: process.execPath, args: ['-e', 'console.log(' + JSON.stringify(report) + ')'] }, { env: process.env })
      .then((built) => console.log(JSON.stringify({ fromSource: bundle.compiledFromSource, paths: built.paths })))
  `)
  expect(result).toEqual({ fromSource: true, paths: ['/nix/store/00000000000000000000000000000000-x'] })
})
