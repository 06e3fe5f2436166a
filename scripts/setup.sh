#!/usr/bin/env bash
# Installs what nix-hold's tests, demo and benchmarks need, and builds dist/. Safe to run again.
#   Nix (Debian's nix-bin) when nix-daemon is missing; as root only, otherwise says what to install.
#   Go and Python 3 for the examples in those languages, and openssh-server for the loopback hosts
#   of the remote-store tests, the same way (tests only: --with-examples).
#   npm packages exactly as package-lock.json pins them.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v nix-daemon >/dev/null || apt_packages+=(nix-bin)
if [[ "${1:-}" == --with-examples ]]; then
  command -v go >/dev/null || apt_packages+=(golang-go)
  command -v python3 >/dev/null || apt_packages+=(python3)
  # loopback ssh "hosts" for the remote-store tests: sshd, and ssh and ssh-keygen
  [[ -x /usr/sbin/sshd ]] || apt_packages+=(openssh-server)
  command -v ssh >/dev/null || apt_packages+=(openssh-client)
fi
if ((${#apt_packages[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing ${apt_packages[*]}; install them (on Debian: sudo apt-get install -y ${apt_packages[*]}) and run this again" >&2
    exit 1
  fi
  echo "setup: installing ${apt_packages[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build >/dev/null
