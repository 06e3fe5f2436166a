#!/usr/bin/env bash
# Deploy one system to many hosts, as nixos-rebuild --target-host, colmena or deploy-rs do, with no
# moment at which the system is unrooted anywhere, and nothing left behind when interrupted:
#
#   bash examples/deploy/fleet.sh PROFILE HOST... -- [nix-build args...]
#   bash examples/deploy/fleet.sh /nix/var/nix/profiles/system web1 web2 db1 -- examples/deploy/system.nix
#
# PROFILE is the profile on each host; a "{host}" in it is replaced by the host's name. Hosts are
# reached as ssh-ng://HOST, with NIX_SSHOPTS as Nix itself uses it.
#
# 1. nix-hold builds the system here and holds it: no local GC can take it.
# 2. per host, one nix-hold request each way:
#    expect  roots the system's path on the host before it exists there;
#    nix copy lands it there already held (also safe against a collection running there);
#    keep    confirms that it arrived;
#    nix-env --set makes it a generation of the host's profile: a permanent root there.
# 3. the release drops every hold (here and on every host) at once.
# Killed at any step, nix-hold's connections close and every temporary root goes with them.
set -euo pipefail
profile=$1
shift
hosts=()
while (($#)) && [[ $1 != -- ]]; do hosts+=("$1"); shift; done
shift # the --

coproc HOLD { exec nix-hold --stdio -- nix-build "$@"; }
# bash drops HOLD and HOLD_PID the moment the coprocess exits, which nix-hold does right after it
# answers a release: keep copies of its fds and pid
exec {from_hold}<&"${HOLD[0]}" {to_hold}>&"${HOLD[1]}"
hold_pid=$HOLD_PID

# sends one request line and reads its answer; stops on an error, and on a "lost" (a host's
# connection dropped and a path was gone when it came back: the deployment is not what it seems)
ask() {
  echo "$1" >&"$to_hold"
  read -r answer <&"$from_hold"
  case $answer in
    *'"error"'* | '{"lost"'*) echo "fleet: nix-hold: $answer" >&2; exit 1 ;;
  esac
}

read -r event <&"$from_hold"
case $event in
  '{"built":['*) ;;
  *) echo "fleet: nix-hold: $event" >&2; exit 1 ;;
esac
system=$(sed -E 's/^\{"built":\["([^"]+)".*/\1/' <<<"$event")
echo "built $system"

for host in "${hosts[@]}"; do
  store="ssh-ng://$host"
  ask "{\"expect\":[\"$system\"],\"store\":\"$store\"}"
  nix copy --no-check-sigs --to "$store" "$system"
  ask "{\"keep\":[\"$system\"],\"store\":\"$store\"}"
  target=${profile//\{host\}/$host}
  # NIX_SSHOPTS is split into words here as Nix splits it. The --add-root registers the new
  # generation as a root for Nix 2.3, which roots only profiles under /nix/var/nix/profiles
  # (2.4+ does it on its own).
  # shellcheck disable=SC2086
  ssh $NIX_SSHOPTS -- "$host" "nix-env --profile '$target' --set '$system' && nix-store --realise '$system' --add-root \"\$(dirname '$target')/\$(readlink '$target')\" --indirect >/dev/null"
  echo "$host: profile $target -> $system"
done

echo '{"release":true}' >&"$to_hold"
read -r event <&"$from_hold"
wait "$hold_pid"
echo released
