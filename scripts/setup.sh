#!/usr/bin/env bash
# Installs every Debian package openforce needs to build, test and run (DESIGN.md,
# "Dependencies"). Idempotent: packages already present are left alone. Run as root on
# Debian 12; exits non-zero with a message naming what could not be installed.
# --check only reports: exit 0 when everything is installed, 1 otherwise.
set -euo pipefail

readonly PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libtorch-dev libopenblas0-openmp
  libssl-dev openssl libabsl-dev
  libgtest-dev libgmock-dev
  libsqlite3-dev nlohmann-json3-dev libsentencepiece-dev
  libonig-dev libutf8proc-dev libcpp-httplib-dev
  python3 systemd
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "setup: missing packages: ${missing[*]}"
  exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run as root (or with sudo) to install them" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update; then
  echo "setup: apt-get update failed; check the network and /etc/apt/sources.list" >&2
  exit 1
fi
if ! apt-get install -y --no-install-recommends "${missing[@]}" </dev/null; then
  echo "setup: apt-get could not install: ${missing[*]}" >&2
  exit 1
fi

# Check again: apt-get can succeed while a package stays unconfigured.
still_missing=()
for pkg in "${missing[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    still_missing+=("$pkg")
  fi
done
if [ ${#still_missing[@]} -ne 0 ]; then
  echo "setup: still missing after install: ${still_missing[*]}" >&2
  exit 1
fi
echo "setup: done"
