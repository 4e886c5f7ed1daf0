#!/usr/bin/env bash
# Server benchmark on the demo's tiny model (with a minimal chat template):
# streamed chat completions from 1 client, then from 4 concurrent clients.
# Usage: scripts/bench_serve.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
build="${OPENFORCE_BUILD_DIR:-build}"
cmake --build "$build" --target openforce-worker openforce-demo-data serve_bench -j2 >/dev/null
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$build/tests/lora/openforce-demo-data" --out "$dir" >/dev/null
printf '%s' '{% for m in messages %}[{{ m.role }}]{{ m.content }}
{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}' >"$dir/model/chat_template.jinja"
for _ in $(seq "$runs"); do
  "$build/tests/bench/serve_bench" --worker "$build/worker/openforce-worker" \
    --model "$dir/model" --clients 4 --requests 6 --max-tokens 64
done
