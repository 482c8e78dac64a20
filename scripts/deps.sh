#!/usr/bin/env bash
# Installs the Debian 12 packages that building, running and testing need,
# only those that are missing. Run as root (or through sudo).
set -euo pipefail

PKGS=(build-essential cmake pkg-config
      libmosquitto-dev mosquitto-dev mosquitto mosquitto-clients
      libmicrohttpd-dev libgnutls28-dev libjansson-dev libjwt-dev libssl-dev openssl
      libcmocka-dev python3 curl procps)
# rabbitmq-server: test_fault_scale runs the daemon against a private
# RabbitMQ node (its MQTT plugin) that the test starts and stops itself.
# lintian, dpkg-dev (dpkg-shlibdeps), file (CPack's ELF detection), man-db
# (man -w) and adduser (the package's Depends): tests/package builds the .deb
# with cpack, checks it and installs it. python3-paho-mqtt, python3-venv,
# python3-pip and python3-mypy: the Python client library's tests (Debian's
# /usr/bin/python3), its offline install and its strict type check.
[ "${1:-}" = "--test" ] && PKGS+=(clang libclang-rt-14-dev chromium rabbitmq-server
                                  lintian dpkg-dev file man-db adduser
                                  python3-paho-mqtt python3-venv python3-pip python3-mypy)

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
  # Installing a package with a service (rabbitmq-server) would start it as
  # a system service: the tests start their own nodes, so none may be left
  # running. A policy-rc.d answering 101 tells invoke-rc.d and
  # deb-systemd-invoke not to start anything while we install (a container
  # may already have one; ours is removed again afterwards).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Where rabbitmq-server is installed its service stays off (the tests run
# private nodes on free ports); disabled so it does not come up at boot.
if dpkg-query -W -f='${Status}' rabbitmq-server 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now rabbitmq-server.service >/dev/null 2>&1 || true
  elif pgrep -u rabbitmq -f rabbit >/dev/null 2>&1; then
    $SUDO service rabbitmq-server stop >/dev/null 2>&1 || true
  fi
fi
