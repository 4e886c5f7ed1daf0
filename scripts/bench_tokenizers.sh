#!/usr/bin/env bash
# Tokenizer throughput against Hugging Face's Rust tokenizers on this machine.
# Builds a mixed corpus (the fixtures' multilingual texts, this project's prose
# and C++ sources; documents separated by blank lines, repeated to ~4 MB),
# then runs tests/bench/tokenizer_bench and the peer (the official Node
# binding of the Rust crate, npm package "tokenizers", installed into
# build/bench-node) on the same files, one thread each.
# Usage: scripts/bench_tokenizers.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
fixtures="../shared/fixtures/tokenizers"
build="${OPENFORCE_BUILD_DIR:-build}"
corpus="$build/tokenizer_corpus.txt"

cmake --build "$build" --target tokenizer_bench -j2 >/dev/null
python3 - "$corpus" "$fixtures" <<'PY'
import glob, json, os, sys
out, fixtures = sys.argv[1], sys.argv[2]
multilingual = []
for path in sorted(glob.glob(os.path.join(fixtures, "*", "encode.json"))):
    for row in json.load(open(path, encoding="utf-8")):
        if row["text"] and row["text"] not in multilingual:
            multilingual.append(row["text"])
prose = [p for f in ["README.md", "../shared/DESIGN.md"] if os.path.exists(f)
         for p in open(f, encoding="utf-8").read().split("\n\n") if p.strip()]
code = [p for f in sorted(glob.glob("lora/*.cc")) + sorted(glob.glob("coordinator/*.cc"))
        for p in open(f, encoding="utf-8").read().split("\n\n") if p.strip()]
documents, i = [], 0
size = 0
while size < 4_000_000:
    for group in (prose, code, multilingual):
        document = group[i % len(group)]
        documents.append(document)
        size += len(document.encode("utf-8"))
    i += 1
open(out, "w", encoding="utf-8").write("\n\n".join(documents))
PY
dirs=()
for dir in "$fixtures"/*/; do
  [ -f "$dir/tokenizer.json" ] && dirs+=("${dir%/}")
done
OMP_NUM_THREADS=1 "$build/tests/bench/tokenizer_bench" --corpus "$corpus" --runs "$runs" "${dirs[@]}"

if ! command -v npm >/dev/null; then
  echo "peer: npm not found; install nodejs and npm to compare with Hugging Face tokenizers"
  exit 0
fi
peer="$build/bench-node"
if [ ! -d "$peer/node_modules/tokenizers" ]; then
  mkdir -p "$peer"
  (cd "$peer" && npm install --silent --no-audit --no-fund tokenizers@0.23 >/dev/null) ||
    { echo "peer: npm could not install tokenizers"; exit 0; }
fi
NODE_PATH="$peer/node_modules" RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \
  node tests/bench/tokenizer_peer.js "$corpus" "$runs" "${dirs[@]}"
