#!/usr/bin/env node
// The nix-hold command. Everything it does is in cli.ts; this file checks the Node it runs under,
// then loads that bundle through its build-time code cache (startup/code-cache.ts), which is most
// of a fast start.
//
// The check comes before anything is loaded, with require() rather than import (imports would run
// first): on an older Node the bundles fail in ways that do not say why (Node 18's V8 prints
// "unrecognized flag --max-opt=1" on every build). The lowest major is package.json's "engines".
// The code up to the check is plain enough for any Node to parse.

const MIN_NODE_MAJOR = 20

const nodeMajor = Number(process.versions.node.split('.')[0])
if (!(nodeMajor >= MIN_NODE_MAJOR)) {
  process.stderr.write(
    `nix-hold: needs Node.js ${MIN_NODE_MAJOR} or later; this is Node ${process.versions.node} (${process.execPath}). ` +
      `Install a newer Node.js and run nix-hold with it.\n`,
  )
  process.exit(2)
}

// cli.js, loaded through its code cache: the build makes this require name that file (src/startup/bundles.json)
const { main } = require('./cli.js') as typeof import('./cli.js')
void main(process.argv.slice(2)).then((code) => process.exit(code))
