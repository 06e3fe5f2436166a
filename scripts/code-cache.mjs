// Makes the V8 code caches that dist/nix-hold.js loads cli.js and build.js with
// (src/startup/code-cache.ts). Run by `npm run build`, after tsup.
//
// Each bundle is compiled and then used the way a run uses it, so that the cache holds the
// functions a run calls and not only the top level: V8 adds a function to a cache once it has
// been compiled. The steps follow the CLI's own order, because V8 accepts a cache only under the
// flags it was made with: cli.js loads under Node's defaults, build.js after the CLI has limited
// the optimiser.

import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const dist = new URL('../dist/', import.meta.url).pathname
const require = createRequire(dist)
const { compileBundle, runBundle, cacheFileOf } = require('./code-cache.js')
// the bundles that load through a cache, as src/startup/bundles.json lists them: each has its
// steps below, and one without them is an error here rather than a slow start later
const bundles = JSON.parse(readFileSync(new URL('../src/startup/bundles.json', import.meta.url), 'utf8'))
const cached = Object.keys(bundles).filter((name) => bundles[name].cached)
const warmed = ['cli', 'build']
if (cached.join() !== warmed.join()) throw new Error(`code-cache.mjs warms ${warmed.join(', ')}, but bundles.json caches ${cached.join(', ')}`)

function cache(file, bundle) {
  const data = bundle.script.createCachedData()
  writeFileSync(cacheFileOf(file), data)
  return `${file.slice(dist.length)} ${(data.length / 1024).toFixed(0)} KiB`
}

const cliFile = `${dist}cli.js`
const cliBundle = compileBundle(cliFile)
const cli = runBundle(cliBundle, cliFile)
for (const argv of [
  ['--fd', '3', '--', 'nix', 'build', '-f', 'default.nix'],
  ['--command-fd', '3', '--status-fd', '4', '--max-hold', '60', '--', 'nix-build', 'default.nix'],
  ['--stdio', '--keep', '/nix/store/00000000000000000000000000000000-x'],
]) {
  cli.parseInvocation(argv)
}
const made = [cache(cliFile, cliBundle)]

cli.keepCompilerMemorySmall()
const buildFile = `${dist}build.js`
const buildBundle = compileBundle(buildFile)
const { runBuild } = runBundle(buildBundle, buildFile)
// a stand-in for `nix build --json` (Node printing what nix would): execa runs it the same way
const out = '/nix/store/00000000000000000000000000000000-x'
const report = JSON.stringify([{ drvPath: `${out}.drv`, outputs: { out } }])
await runBuild(
  { flavor: 'nix build', file: process.execPath, args: ['-e', `process.stdout.write(${JSON.stringify(report)})`], store: undefined },
  { env: process.env },
)
made.push(cache(buildFile, buildBundle))
process.stderr.write(`code caches: ${made.join(', ')}\n`)
