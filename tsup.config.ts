import { defineConfig } from 'tsup'

// One bundle per entry, dependencies included, so start-up reads a few files rather than
// hundreds; the build-only modules (and execa with them) land in a chunk loaded on demand.
export default defineConfig({
  entry: { cli: 'src/cli.ts', index: 'src/index.ts' },
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  bundle: true,
  splitting: true,
  noExternal: [/.*/],
  dts: { entry: { index: 'src/index.ts' } },
  clean: true,
  shims: false,
  banner: { js: "import { createRequire as __nixHoldRequire } from 'node:module'; const require = __nixHoldRequire(import.meta.url);" },
})
