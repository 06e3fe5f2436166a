#!/usr/bin/env bash
# Installs what the tests need, then runs every test: unit tests once, and the integration tests
# (every file that starts an isolated Nix instance) once per Nix in the matrix below. Ends with one
# plain summary line over all of them: "Tests: N passed, N failed, N skipped".
#
# The matrix: Debian's nix-bin (2.8.0), the Nix releases in ../shared/nix-versions (2.3.16, 2.18.9,
# 2.24.15, each with its own CLI), and Debian's 2.8 CLI against the 2.24 daemon. Set
# NIX_HOLD_TEST_VERSIONS="" to run against the Nix on PATH alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-examples
npx tsc --noEmit -p .

versions=${NIX_HOLD_TEST_VERSIONS-2.3.16 2.18.9 2.24.15}
fixtures=${NIX_HOLD_TEST_FIXTURES:-${TMPDIR:-/tmp}/nix-hold-nix-versions}
system_nix=$(nix-store --version | awk '{print $NF}')
matrix="$system_nix=:"
for v in $versions; do
  if [[ ! -x ../shared/nix-versions/install.sh ]]; then
    echo "test: ../shared/nix-versions/install.sh is missing; it provides Nix $v for the matrix (or set NIX_HOLD_TEST_VERSIONS=\"\")" >&2
    exit 1
  fi
  bin=$(bash ../shared/nix-versions/install.sh "$v" "$fixtures")
  matrix+=" $v=$bin:$bin"
  # an upgraded daemon with an old client is common: the newest daemon, the system's CLI
  [[ $v == 2.24.15 ]] && matrix+=" $v-daemon,$system_nix-client=$bin:"
done
export NIX_HOLD_TEST_MATRIX=$matrix

report=$(mktemp)
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
  const skipped = r.numPendingTests + r.numTodoTests
  console.log(`Tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`)
' "$report" || true
rm -f "$report"
exit "$status"
