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
    // The CLI is CommonJS: an ES module entry makes Node load its ESM loader and a facade for
    // every built-in module imported, about 3 MiB of resident memory for the whole hold. The
    // build runner (execa and all) is a file of its own, required only when there is a build.
    ...common,
    entry: { cli: 'src/cli.ts', build: 'src/build/run.ts' },
    format: ['cjs'],
    outExtension: () => ({ js: '.js' }),
    // less source to parse at every start; names are kept for readable stack traces
    minify: true,
    keepNames: true,
    esbuildPlugins: [
      {
        name: 'build-runner-on-demand',
        // import('./build/run.js') becomes a plain require of dist/build.js at run time: an
        // import() of a CommonJS file would go through the ESM loader and its export scanner
        setup(build) {
          build.onResolve({ filter: /^\.\/build\/run\.js$/ }, () => ({ path: 'build.js', namespace: 'on-demand' }))
          build.onLoad({ filter: /.*/, namespace: 'on-demand' }, () => ({ contents: "module.exports = require(__dirname + '/build.js')", loader: 'js' }))
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
