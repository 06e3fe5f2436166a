#!/usr/bin/env bash
# A nixos-rebuild-style switch: build the system, check it, activate it, and make it the current
# generation of a profile, without a moment where the result is unrooted and without a `result`
# link or temporary file that an interrupted run would leave behind.
#
#   bash examples/deploy/deploy.sh PROFILE [nix-build args...]
#   bash examples/deploy/deploy.sh /nix/var/nix/profiles/system examples/deploy/system.nix
#
# 1. nix-hold builds and holds: a GC from here on cannot take the system.
# 2. checks and activation run against the held path.
# 3. nix-env --set makes it a profile generation: a permanent root.
# 4. only then the hold is released. Killed at any step, nothing is left but what step 3 made.
set -euo pipefail
profile=$1
shift

coproc HOLD { exec nix-hold --stdio -- nix-build "$@"; }
# bash drops HOLD and HOLD_PID the moment the coprocess exits, which nix-hold does right after it
# answers a release: keep copies of its fds and pid
exec {from_hold}<&"${HOLD[0]}" {to_hold}>&"${HOLD[1]}"
hold_pid=$HOLD_PID
read -r event <&"$from_hold"
case $event in
  '{"built":['*) ;;
  *) echo "deploy: nix-hold: $event" >&2; exit 1 ;;
esac
system=$(sed -E 's/^\{"built":\["([^"]+)".*/\1/' <<<"$event")
echo "held $system"

read -r _ # a pause point for the caller: stands in for copying to the target and testing

"$system/bin/switch-to-configuration"
nix-env --profile "$profile" --set "$system"
# Nix 2.3 roots only profiles under /nix/var/nix/profiles; register this generation's link as a
# root itself, as Nix 2.4+ does on its own (where this repeats that, harmlessly)
nix-store --realise "$system" --add-root "$(dirname "$profile")/$(readlink "$profile")" --indirect >/dev/null
echo "profile $profile -> $(readlink -f "$profile")"

echo '{"release":true}' >&"$to_hold"
read -r event <&"$from_hold"
wait "$hold_pid"
echo released
