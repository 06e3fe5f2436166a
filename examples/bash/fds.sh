#!/usr/bin/env bash
# The same as coproc.sh with plain `exec {fd}` redirections: requests go to nix-hold's stdin through
# a pipe only this script writes (so its exit is nix-hold's EOF), and events come back through an
# anonymous pipe opened both ways. Needs no coproc and no named pipe on disk.
#   bash examples/bash/fds.sh nix-build test/fixtures/demo.nix
set -euo pipefail

exec {events}<> <(:)                                          # an anonymous pipe, kept open
exec {requests}> >(exec nix-hold --stdio -- "$@" >&"$events") # nix-hold's stdin is our {requests}

# nix-hold writes exactly one line before a release; a timeout guards against it dying first,
# since this script holds the events pipe open itself
read -r -t 600 event <&"$events"
case $event in
  '{"built":'*) ;;
  *) echo "nix-hold: $event" >&2; exit 1 ;;
esac
paths=$(sed -E 's/^\{"built":\[([^]]*)\].*/\1/; s/"//g; s/,/ /g' <<<"$event")
echo "held $paths"

read -r _ # stands in for the work that needs the paths

echo '{"release":true}' >&"$requests"
read -r -t 60 event <&"$events" # {"released":true}
exec {requests}>&-
echo released
