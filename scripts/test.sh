#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs every test except those labelled
# gpu. Exits non-zero on any failure. BUILD_DIR overrides the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages
configure_and_build
ensure_node_packages
cd "$BUILD_DIR"
ctest --output-on-failure --label-exclude gpu --timeout 1200 -j "$(nproc)"
