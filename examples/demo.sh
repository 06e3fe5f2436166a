#!/usr/bin/env bash
# A build held across a garbage collection, then released and collected, each step shown.
# Runs on its own isolated Nix instance in a temporary directory; never touches /nix.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/../scripts/setup.sh"
cli="$here/../dist/nix-hold.js"

# --- an isolated Nix: own store, state, config and daemon socket -------------------------------
T=$(mktemp -d)
export NIX_STORE_DIR=$T/store NIX_STATE_DIR=$T/var NIX_LOG_DIR=$T/log NIX_CONF_DIR=$T/etc
export HOME=$T/home XDG_CACHE_HOME=$T/home/.cache
mkdir -p "$NIX_CONF_DIR" "$HOME"
printf 'substituters =\nsandbox = false\nbuild-users-group =\nexperimental-features = nix-command\n' >"$NIX_CONF_DIR/nix.conf"
NIX_REMOTE=local setsid nix-daemon >/dev/null 2>&1 &
daemon=$!
cleanup() {
  kill -- -"$daemon" 2>/dev/null || kill "$daemon" 2>/dev/null || true
  chmod -R u+w "$T" && rm -rf "$T"
}
trap cleanup EXIT
until [[ -S $NIX_STATE_DIR/daemon-socket/socket ]]; do sleep 0.05; done
export NIX_REMOTE=daemon
# bold headings on a terminal only: piped into a file or a log, escapes are noise
if [[ -t 1 ]]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi
valid() { if nix-store --check-validity "$1" 2>/dev/null; then echo "valid: $1"; else echo "gone:  $1"; fi; }

# --- build under nix-hold, talking to it over a coprocess's stdin/stdout ----------------------
step "nix-hold --stdio -- nix build -f demo.nix --argstr n $$"
coproc HOLD { exec node "$cli" --stdio -- nix build -f "$here/../test/fixtures/demo.nix" --argstr n "$$"; }
# bash drops HOLD and HOLD_PID the moment the coprocess exits, which nix-hold does right after it
# answers a release: keep copies of its fds and pid
exec {from_hold}<&"${HOLD[0]}" {to_hold}>&"${HOLD[1]}"
hold_pid=$HOLD_PID
read -r event <&"$from_hold"
echo "nix-hold says: $event"
path=$(sed -E 's/.*"built":\["([^"]+)".*/\1/' <<<"$event")

step "garbage collection while held"
nix-store --gc 2>&1 | tail -n 1
valid "$path"

step 'release: {"release":true}'
echo '{"release":true}' >&"$to_hold"
read -r event <&"$from_hold"
echo "nix-hold says: $event"
wait "$hold_pid" && echo "nix-hold exited 0"

step "garbage collection after the release"
nix-store --gc 2>&1 | tail -n 1
valid "$path"
