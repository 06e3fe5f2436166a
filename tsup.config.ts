import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { defineConfig, type Options } from 'tsup'

// the command's files, and which entry of src/ each is made from (src/startup/bundles.json)
const bundles = JSON.parse(readFileSync('src/startup/bundles.json', 'utf8')) as Record<string, { entry: string; cached?: boolean }>
delete bundles['//']

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
    // every built-in module imported, about 3 MiB of resident memory for the whole hold. It is the
    // files src/startup/bundles.json lists: nix-hold.js (the bin) loads cli.js through
    // code-cache.js, and cli.js loads build.js (execa and all) the same way, only when there is a
    // build. scripts/code-cache.mjs then makes the V8 code caches for the cached ones.
    ...common,
    entry: Object.fromEntries(Object.entries(bundles).map(([name, bundle]) => [name, bundle.entry])),
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
        // An import of another bundle's entry names that file of dist/ at run time instead of a
        // copy in this bundle: the runner becomes build.js through its code cache (a plain
        // import() of a CommonJS file would go through the ESM loader and its export scanner).
        setup(build) {
          build.onResolve({ filter: /^\.\.?\// }, (args) => {
            if (args.kind === 'entry-point') return undefined
            const target = resolve(args.resolveDir, args.path.replace(/\.js$/, '.ts'))
            const name = Object.keys(bundles).find((n) => resolve(bundles[n]!.entry) === target)
            // the bundle's own entry, or a plain module of it
            if (name === undefined || resolve(bundles[name]!.entry) === resolve(args.importer)) return undefined
            return { path: name, namespace: 'separate-file' }
          })
          build.onLoad({ filter: /.*/, namespace: 'separate-file' }, (args) => ({
            contents: bundles[args.path]!.cached
              ? `module.exports = require(__dirname + '/code-cache.js').requireBundle(__dirname + '/${args.path}.js')`
              : `module.exports = require(__dirname + '/${args.path}.js')`,
            loader: 'js',
          }))
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
