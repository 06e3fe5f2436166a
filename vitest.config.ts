import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { defineConfig } from 'vitest/config'

// Integration files are those that start an isolated Nix instance (useNix). They run once per Nix
// in the matrix; every other file runs once.
const testFiles = (readdirSync('test', { recursive: true }) as string[])
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => join('test', f))
const integration = testFiles.filter((f) => /\buseNix\(/.test(readFileSync(f, 'utf8')))

// NIX_HOLD_TEST_MATRIX (set by scripts/test.sh): entries "LABEL=DAEMON_BIN:CLIENT_BIN" separated by
// spaces; an empty bin is the Nix on PATH. Unset: the Nix on PATH alone.
const matrix = (process.env.NIX_HOLD_TEST_MATRIX ?? 'nix-on-path=:').trim().split(/\s+/).map((entry) => {
  const [label, bins = ':'] = entry.split('=')
  const [daemon = '', client = ''] = bins.split(':')
  return { label: label!, daemon, client }
})

// NIX_HOLD_TEST_NODE (set by scripts/test.sh for its runs under other Node versions) goes into each
// project's name, so a failure there names the Node as well as the Nix.
const node = process.env.NIX_HOLD_TEST_NODE ? ` (node ${process.versions.node})` : ''

export default defineConfig({
  test: {
    // integration files each start one Nix daemon and spawn real builds: give them room on 2 cores
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: `unit${node}`, include: testFiles.filter((f) => !integration.includes(f)) } },
      ...matrix.map(({ label, daemon, client }) => ({
        extends: true as const,
        test: {
          name: `nix ${label}${node}`,
          include: integration,
          env: { NIX_HOLD_TEST_DAEMON_BIN: daemon, NIX_HOLD_TEST_CLIENT_BIN: client },
        },
      })),
    ],
  },
})
