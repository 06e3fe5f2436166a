// Builds in-process with the nix-hold library, says what is held, and releases when a line arrives
// on stdin, or stdin ends: leaving the `await using` block drops the roots, whatever way it is left.
//   compile, then run (Node 20 cannot parse `await using`; see the README):
//   npx esbuild examples/node/hold.ts --format=esm --platform=node --target=node20 --outfile=examples/node/hold.mjs
//   node examples/node/hold.mjs nix build -f test/fixtures/demo.nix

import { createInterface } from 'node:readline'
import { buildAndHold } from 'nix-hold'

{
  await using hold = await buildAndHold(process.argv.slice(2))
  console.log(`held ${hold.paths.join(' ')}`)
  // stands in for the work that needs the paths: the first line, or the end of stdin without one
  // (waiting for data alone would wait for ever on a closed stdin, holding all the while)
  const stdin = createInterface({ input: process.stdin })
  for await (const _ of stdin) break
  stdin.close() // lets go of stdin, which would keep this process alive
}
console.log('released')
