// Loads one of nix-hold's CommonJS bundles with the V8 code cache made for it when it was built
// (scripts/code-cache.mjs writes dist/<name>.cache beside dist/<name>.js).
//
// Why: V8 pre-parses a whole file before running it, and compiles each function the first time it
// is called. For execa and its dependencies that is most of what loading them costs, paid again by
// every run of a command that lives for a few hundred milliseconds. A cache made at build time
// skips both, and reading it creates nothing at run time (a cache written on first use, as Node
// 22's module.enableCompileCache() does, would leave files behind, which nix-hold never does).
//
// V8 accepts a cache only for the same source, V8 version and V8 flags; anything else, or no cache
// at all, compiles the file as Node's own loader would. A rejected cache costs one file read.

import { readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { Script } from 'node:vm'

// the parameters Node's CommonJS loader gives a module; the bundles use module, exports, require
// and __dirname
const wrap = (source: string): string => `(function (exports, require, module, __filename, __dirname) {${source}\n})`

export const cacheFileOf = (file: string): string => file.replace(/\.js$/, '.cache')

export interface CompiledBundle {
  readonly script: Script
  /** True when V8 compiled from source: no cache file, or one made by another Node or V8 flags. */
  readonly compiledFromSource: boolean
}

export function compileBundle(file: string): CompiledBundle {
  const source = readFileSync(file, 'utf8')
  let cachedData: Buffer | undefined
  try {
    cachedData = readFileSync(cacheFileOf(file))
  } catch {
    // no cache (a build that skipped it): compile from source
  }
  const script = new Script(wrap(source), { filename: file, ...(cachedData ? { cachedData } : {}) })
  return { script, compiledFromSource: cachedData === undefined || script.cachedDataRejected === true }
}

/**
 * Runs a compiled bundle as a CommonJS module and returns its exports. The bundles require only
 * Node's modules and absolute paths, so this module's own `require` serves them (a fresh
 * createRequire(file) would cost about a millisecond at start-up).
 */
export function runBundle(bundle: CompiledBundle, file: string): unknown {
  const module = { exports: {} }
  const body = bundle.script.runInThisContext() as (...args: unknown[]) => void
  body(module.exports, require, module, file, dirname(file))
  return module.exports
}

/** require(file), through its code cache when V8 accepts it. */
export const requireBundle = (file: string): unknown => runBundle(compileBundle(file), file)
