#!/usr/bin/env bash
# Installs what the tests need, then runs every test once (unit and integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-examples
npx tsc --noEmit -p .
npx vitest run
