#!/usr/bin/env bash
# Install the Debian packages the tests need, only when missing. Safe to run any number of times.
set -euo pipefail
missing=()
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends: the server binaries are enough; their packaged services stay stopped
# where there is no init system, and the sandbox runs its own instances on other ports anyway.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged services where it can; the sandbox never uses them.
for svc in postgresql; do
  if command -v service >/dev/null && service "$svc" status >/dev/null 2>&1; then
    $sudo service "$svc" stop >/dev/null 2>&1 || true
  fi
done
