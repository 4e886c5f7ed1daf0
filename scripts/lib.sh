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

# The Node packages tests drive the server with (OpenAI's official client), from the
# npm registry into the build tree.
ensure_node_packages() {
  local prefix="$BUILD_DIR/node"
  if [ -d "$prefix/node_modules/openai" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "test: npm is missing: install Node.js and npm (the server test uses OpenAI's Node client)" >&2
    return 1
  fi
  mkdir -p "$prefix"
  if ! (cd "$prefix" && npm install --silent --no-audit --no-fund openai@4 </dev/null >/dev/null); then
    echo "test: npm could not install the openai package into $prefix" >&2
    return 1
  fi
}
