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
  prometheus-cpp-dev libpq-dev postgresql-15
  python3 systemd
)

# PostgreSQL refuses to run as root: the tests start their own server in a temporary
# directory as this unprivileged system user.
readonly PG_TEST_USER=openforce-pg

ensure_pg_test_user() {
  if id -u "$PG_TEST_USER" >/dev/null 2>&1; then
    return 0
  fi
  if [ "${1:-}" = "--check" ]; then
    echo "setup: missing the unprivileged user $PG_TEST_USER"
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (or with sudo) to create the user $PG_TEST_USER" >&2
    return 1
  fi
  if ! useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_TEST_USER"; then
    echo "setup: could not create the user $PG_TEST_USER" >&2
    return 1
  fi
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  ensure_pg_test_user "${1:-}"
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
ensure_pg_test_user
echo "setup: done"
