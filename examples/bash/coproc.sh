#!/usr/bin/env bash
# Builds under nix-hold as a coprocess (--stdio), says what is held, and releases when a line
# arrives on stdin. If this script dies, the coprocess sees EOF and releases on its own.
#   bash examples/bash/coproc.sh nix build -f test/fixtures/demo.nix
set -euo pipefail

coproc HOLD { exec nix-hold --stdio -- "$@"; }
# bash drops HOLD and HOLD_PID the moment the coprocess exits, which nix-hold does right after it
# answers a release: keep copies of its fds and pid
exec {from_hold}<&"${HOLD[0]}" {to_hold}>&"${HOLD[1]}"
hold_pid=$HOLD_PID
read -r event <&"$from_hold"
case $event in
  '{"built":'*) ;;
  *) echo "nix-hold: $event" >&2; exit 1 ;;
esac
paths=$(sed -E 's/^\{"built":\[([^]]*)\].*/\1/; s/"//g; s/,/ /g' <<<"$event")
echo "held $paths"

read -r _ # stands in for the work that needs the paths

echo '{"release":true}' >&"$to_hold"
read -r event <&"$from_hold" # {"released":true}
wait "$hold_pid"
echo released
