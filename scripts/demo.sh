#!/usr/bin/env bash
# The demo: installs what is missing, builds, and shows what this machine can donate
# (hardware profile, tier, and which model classes it can run and fine-tune).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages
configure_and_build
echo
"$BUILD_DIR"/worker/openforce-worker probe
