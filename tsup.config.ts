import { writeFile } from 'node:fs/promises'
import { defineConfig, type Options } from 'tsup'

const common: Options = {
  platform: 'node',
  target: 'node20',
  bundle: true,
  noExternal: [/.*/],
  shims: false,
  // readable-stream (under ndjson's through2 and split2) is a copy of Node's own streams for old
  // Node versions: on Node 20 the built-in module does the same job without loading a second copy
  esbuildOptions(options) {
    options.alias = { 'readable-stream': 'node:stream' }
  },
}

export default defineConfig([
  {
    // The command is CommonJS: an ES module entry makes Node load its ESM loader and a facade for
    // every built-in module imported, about 3 MiB of resident memory for the whole hold. It is four
    // files: nix-hold.js (the bin) loads cli.js through code-cache.js, and cli.js loads build.js
    // (execa and all) the same way, only when there is a build. scripts/code-cache.mjs then makes
    // the V8 code caches for cli.js and build.js.
    ...common,
    entry: { 'nix-hold': 'src/bin.ts', cli: 'src/cli.ts', build: 'src/runner/run.ts', 'code-cache': 'src/startup/code-cache.ts' },
    format: ['cjs'],
    outExtension: () => ({ js: '.js' }),
    // Whitespace and syntax only: identifiers keep their names, so stack traces read as the
    // source does without esbuild's keepNames, which renames every function again at load time.
    // (With the code cache V8 does not parse the source, so its length costs little.)
    minify: false,
    esbuildOptions(options) {
      common.esbuildOptions?.(options, { format: 'cjs' })
      options.minifyWhitespace = true
      options.minifySyntax = true
    },
    esbuildPlugins: [
      {
        name: 'separate-files',
        // These imports name another file of dist/ at run time instead of a copy in the bundle:
        // import('./runner/run.js') becomes build.js through its code cache (a plain import() of a
        // CommonJS file would go through the ESM loader and its export scanner), and the bin's
        // import of the cache loader becomes a require of code-cache.js.
        setup(build) {
          const files: Record<string, string> = {
            './runner/run.js': "module.exports = require(__dirname + '/code-cache.js').requireBundle(__dirname + '/build.js')",
            './startup/code-cache.js': "module.exports = require(__dirname + '/code-cache.js')",
          }
          build.onResolve({ filter: /^\.\/(runner\/run|startup\/code-cache)\.js$/ }, (args) => ({ path: args.path, namespace: 'separate-file' }))
          build.onLoad({ filter: /.*/, namespace: 'separate-file' }, (args) => ({ contents: files[args.path]!, loader: 'js' }))
        },
      },
    ],
    // dist/ holds CommonJS .js files (the package itself is "type": "module")
    async onSuccess() {
      await writeFile('dist/package.json', '{ "type": "commonjs" }\n')
    },
  },
  {
    // The library is ESM, for `import { buildAndHold } from 'nix-hold'`.
    ...common,
    entry: { index: 'src/index.ts' },
    format: ['esm'],
    outExtension: () => ({ js: '.mjs' }),
    // its declarations come out as index.d.ts; the build script renames them to match (.d.mts)
    splitting: true,
    // bundled CommonJS dependencies (cross-spawn under execa) call require()
    banner: { js: "import { createRequire as __nixHoldRequire } from 'node:module'; const require = __nixHoldRequire(import.meta.url);" },
    dts: { entry: { index: 'src/index.ts' } },
  },
])
