# Shared by scripts/*.sh: package check and the CMake build. Source it from the repo root.
BUILD_DIR="${BUILD_DIR:-build}"

# Runs setup.sh only when a required package is missing, so repeated runs stay fast.
ensure_packages() {
  if ! ./scripts/setup.sh --check >/dev/null 2>&1; then
    ./scripts/setup.sh
  fi
}

configure_and_build() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}
