#!/usr/bin/env bash
# Builds under nix-hold as a coprocess (--stdio), says what is held, and releases when a line
# arrives on stdin. If this script dies, the coprocess sees EOF and releases on its own.
#   bash examples/bash/coproc.sh nix build -f test/fixtures/demo.nix
set -euo pipefail

coproc HOLD { exec nix-hold --stdio -- "$@"; }
read -r event <&"${HOLD[0]}"
case $event in
  '{"built":'*) ;;
  *) echo "nix-hold: $event" >&2; exit 1 ;;
esac
paths=$(sed -E 's/^\{"built":\[([^]]*)\].*/\1/; s/"//g; s/,/ /g' <<<"$event")
echo "held $paths"

read -r _ # stands in for the work that needs the paths

echo '{"release":true}' >&"${HOLD[1]}"
read -r event <&"${HOLD[0]}" # {"released":true}
wait "$HOLD_PID"
echo released
