#!/usr/bin/env bash
# Builds and runs the benchmarks under tests/bench/, printing their figures. Not part of
# the test suite: this machine is shared and timings are noisy; compare ratios measured in
# one run (achieved vs this machine's own GEMM peak and copy bandwidth).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages
configure_and_build
"$BUILD_DIR"/tests/bench/lora_bench "$@"
