// Builds in-process with the nix-hold library, says what is held, and releases when a line arrives
// on stdin: leaving the `await using` block drops the roots, whatever way it is left.
//   node --import ... examples/node/hold.ts nix build -f test/fixtures/demo.nix   (see README)

import { once } from 'node:events'
import { buildAndHold } from 'nix-hold'

{
  await using hold = await buildAndHold(process.argv.slice(2))
  console.log(`held ${hold.paths.join(' ')}`)
  await once(process.stdin, 'data') // stands in for the work that needs the paths
  process.stdin.pause()
}
console.log('released')
