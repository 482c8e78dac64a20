#!/usr/bin/env bash
# Installs the Debian 12 packages that building, running and testing need,
# only those that are missing. Run as root (or through sudo).
set -euo pipefail

PKGS=(build-essential cmake pkg-config
      libmosquitto-dev mosquitto-dev mosquitto mosquitto-clients
      libmicrohttpd-dev libjansson-dev libjwt-dev libssl-dev openssl
      libcmocka-dev python3 curl procps)
[ "${1:-}" = "--test" ] && PKGS+=(clang libclang-rt-14-dev chromium)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
