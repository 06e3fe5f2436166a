#!/usr/bin/env node
// The nix-hold command. Everything it does is in cli.ts; this file only loads that bundle through
// its build-time code cache (startup/code-cache.ts), which is most of a fast start.

import { join } from 'node:path'
import { requireBundle } from './startup/code-cache.js'

const { main } = requireBundle(join(__dirname, 'cli.js')) as typeof import('./cli.js')
void main(process.argv.slice(2)).then((code) => process.exit(code))
