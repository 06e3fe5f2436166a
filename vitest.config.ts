import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { defineConfig } from 'vitest/config'

// Three kinds of test file, by folder:
// - test/nix/: integration tests whose outcome depends on the Nix they run against (build, keep,
//   nix-build, the collection races, faults, remote stores, the protocol at each minor). They run
//   once per Nix in the matrix.
// - test/system-nix/: integration tests of what does not (the channel in all its kinds, the
//   examples, hostile callers and fake daemons, the library's own API, --for, ssh's own part).
//   They run once, on the first Nix in the matrix.
// - everything else: unit tests, run once.
const testFiles = (readdirSync('test', { recursive: true }) as string[])
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => join('test', f))
const perNix = testFiles.filter((f) => f.startsWith(join('test', 'nix') + '/'))
const onceOnNix = testFiles.filter((f) => f.startsWith(join('test', 'system-nix') + '/'))
const unit = testFiles.filter((f) => !perNix.includes(f) && !onceOnNix.includes(f))

// NIX_HOLD_TEST_MATRIX (set by scripts/test.sh): entries "LABEL=DAEMON_BIN:CLIENT_BIN[:FILES]"
// separated by spaces; an empty bin is the Nix on PATH, and FILES (comma-separated, relative to
// test/) limits that entry to those files of test/nix/. Unset: the Nix on PATH alone.
const matrix = (process.env.NIX_HOLD_TEST_MATRIX ?? 'nix-on-path=:').trim().split(/\s+/).map((entry) => {
  const [label, bins = ':'] = entry.split('=')
  const [daemon = '', client = '', files] = bins.split(':')
  const only = files?.split(',').map((f) => join('test', f))
  return { label: label!, daemon, client, files: only ? perNix.filter((f) => only.includes(f)) : perNix }
})

// NIX_HOLD_TEST_ONLY (set by scripts/test.sh for its runs under other Node versions): only these
// integration files (space-separated, relative to test/); unset, all of them.
const only = process.env.NIX_HOLD_TEST_ONLY?.trim().split(/\s+/).map((f) => join('test', f))
const chosen = (files: string[]) => (only ? files.filter((f) => only.includes(f)) : files)

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
      { extends: true, test: { name: `unit${node}`, include: unit } },
      ...matrix.map(({ label, daemon, client, files }, i) => ({
        extends: true as const,
        test: {
          name: `nix ${label}${node}`,
          include: chosen(i === 0 ? [...files, ...onceOnNix] : files),
          env: { NIX_HOLD_TEST_DAEMON_BIN: daemon, NIX_HOLD_TEST_CLIENT_BIN: client },
        },
      })),
    ],
  },
})
