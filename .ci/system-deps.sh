#!/usr/bin/env bash
# Install the Debian packages listed in .ci/apt-packages.txt when any is missing.
# Needs root (CI and these machines run as root); prints what it does.
set -euo pipefail
cd "$(dirname "$0")"
mapfile -t pkgs < <(grep -vE '^\s*(#|$)' apt-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: need root to install: ${missing[*]}" >&2; exit 1
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
