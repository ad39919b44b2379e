#!/usr/bin/env bash
# Installs what building and testing agentd needs on Debian 12 (run as root).
# Does nothing when everything is already there.
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config libcurl4-openssl-dev libcjson-dev libsystemd-dev libssl-dev
      doctest-dev libcpp-httplib-dev python3 binutils curl openssl busybox-static rpm faketime groff-base)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
