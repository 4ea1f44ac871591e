#!/usr/bin/env bash
# Installs what Strata needs to build, test and run on Debian 12, with
# apt-get, only when something is missing (a quick no-op otherwise).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libpqxx-dev libpq-dev libabsl-dev libssl-dev libfmt-dev catch2 libcli11-dev libevent-dev
  libcurl4-openssl-dev nginx libre2-dev
  postgresql-15 postgresql-client-15 openssl procps bc clang-format time tzdata
  dpkg-dev systemd prometheus-cpp-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "bootstrap: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package creates a default cluster we do not use; Strata's scripts
# start their own throwaway servers.
# Likewise nginx: each distribution point runs and supervises its own, so the
# package's default server (port 80), where a service manager started it, is
# stopped and disabled.
if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null &&
  systemctl is-enabled nginx >/dev/null 2>&1; then
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
