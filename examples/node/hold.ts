// Builds in-process with the nix-hold library, says what is held, and releases when a line arrives
// on stdin: leaving the `await using` block drops the roots, whatever way it is left.
//   compile, then run (Node 20 cannot parse `await using`; see the README):
//   npx esbuild examples/node/hold.ts --format=esm --platform=node --target=node20 --outfile=examples/node/hold.mjs
//   node examples/node/hold.mjs nix build -f test/fixtures/demo.nix

import { once } from 'node:events'
import { buildAndHold } from 'nix-hold'

{
  await using hold = await buildAndHold(process.argv.slice(2))
  console.log(`held ${hold.paths.join(' ')}`)
  await once(process.stdin, 'data') // stands in for the work that needs the paths
  process.stdin.pause()
}
console.log('released')
