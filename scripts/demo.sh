#!/usr/bin/env bash
# The demo: a community fine-tune on this machine. Installs what is missing,
# builds, makes a tiny Llama base model and a deterministic synthetic dataset
# (a key -> value lookup), starts a coordinator (embedded SQLite, loopback,
# enrollment token) and three workers (two capped to the cpu tier's memory),
# runs a three-round federated LoRA fine-tune printing each round's loss
# (each round's candidate scored on held-out records by a validation unit),
# pulls the signed adapter, and shows what the model answers with and without
# it. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages
configure_and_build

COORDINATOR_BIN="$BUILD_DIR/coordinator/openforce-coordinator"
WORKER_BIN="$BUILD_DIR/worker/openforce-worker"
DATA_BIN="$BUILD_DIR/tests/lora/openforce-demo-data"
DEMO="$BUILD_DIR/demo"
ROUNDS=3
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$DEMO"
mkdir -p "$DEMO"
echo
echo "== base model and dataset"
"$DATA_BIN" --out "$DEMO/data"

echo
echo "== coordinator"
"$COORDINATOR_BIN" keygen --data "$DEMO/coordinator"
"$COORDINATOR_BIN" serve --data "$DEMO/coordinator" --listen 127.0.0.1:0 \
  --heartbeat-interval-ms 1000 --lease-retry-ms 500 \
  >"$DEMO/coordinator.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  [[ -s "$DEMO/coordinator/coordinator.address" ]] && break
  sleep 0.1
done
ADDRESS="$(cat "$DEMO/coordinator/coordinator.address")"
cat "$DEMO/coordinator.log"
ADMIN=(--coordinator "$ADDRESS" --admin-token-file "$DEMO/coordinator/admin.token")

echo
echo "== job"
JOB="$("$COORDINATOR_BIN" job submit "${ADMIN[@]}" --name demo-lookup \
  --model "$DEMO/data/model" --dataset "$DEMO/data/train.jsonl" \
  --rounds $ROUNDS --shards 3 --steps 40 --batch 16 --seq-len 12 \
  --learning-rate 1e-2 --warmup-steps 5 --lora-rank 8 --lora-alpha 16 \
  --lora-dropout 0.05 \
  --lora-targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj \
  --seed 7 --unit-deadline-s 300 --max-norm 50 --validation-fraction 0.1)"
echo "submitted $JOB: $ROUNDS rounds x 3 shards, LoRA r=8 on every projection;" \
  "10% of the records held out: each round's candidate is scored on them by a" \
  "validation unit a volunteer runs before it is published"

echo
echo "== workers"
for i in 1 2 3; do
  limit=()
  # Two volunteers offer no more than a cpu-tier machine's memory. The three
  # share two cores, so each sees the others as load: the idle-only policy
  # (the default) is switched off here.
  [[ $i -le 2 ]] && limit=(--max-memory 8GiB)
  "$WORKER_BIN" run --coordinator "$ADDRESS" --data "$DEMO/worker$i" \
    --name "volunteer-$i" --enrollment-token-file "$DEMO/coordinator/enrollment.token" \
    --threads 1 --measure=false --max-other-cpu 1 --idle-for 0s \
    "${limit[@]}" >"$DEMO/worker$i.log" 2>&1 &
  PIDS+=($!)
done
sleep 3
"$COORDINATOR_BIN" workers "${ADMIN[@]}"

echo
echo "== training"
reported=0
for _ in $(seq 480); do
  status="$("$COORDINATOR_BIN" job status "$JOB" "${ADMIN[@]}")"
  while read -r round pending leased accepted rejected loss version validation _; do
    if [[ "$version" =~ ^[0-9]+$ && $round -gt $reported ]]; then
      echo "round $round: $accepted deltas accepted, $rejected rejected," \
        "mean train loss $loss, held-out loss $validation -> adapter version" \
        "$version published"
      reported=$round
    fi
  done < <(echo "$status" | awk '$1 ~ /^[0-9]+$/')
  if echo "$status" | head -1 | grep -qE ': (succeeded|failed|cancelled),'; then
    break
  fi
  sleep 1
done
echo "$status"
echo "$status" | head -1 | grep -q ': succeeded,' || {
  echo "demo: the job did not succeed; logs are in $DEMO" >&2
  exit 1
}

echo
echo "== volunteers: credit for accepted work (FLOP-equivalents), counts"
"$COORDINATOR_BIN" workers "${ADMIN[@]}"
"$WORKER_BIN" status --data "$DEMO/worker1"
echo
echo "== the coordinator's blob store (refused deltas and stale partial uploads leave nothing)"
"$COORDINATOR_BIN" store "${ADMIN[@]}"

echo
echo "== pull (signature checked against the pinned coordinator key)"
"$WORKER_BIN" pull --coordinator "$ADDRESS" --job "$JOB" \
  --coordinator-key "$DEMO/coordinator/coordinator.pub" --out "$DEMO/adapter"

echo
echo "== local inference, no network: held-out prompts"
printf '%-8s %-9s %-12s %-12s\n' prompt expected "base model" "with adapter"
correct=0
total=0
while IFS= read -r line; do
  prompt="$(echo "$line" | sed -E 's/.*"prompt":"([^"]*)".*/\1/')"
  expected="$(echo "$line" | sed -E 's/.*"completion":"([^"]*)".*/\1/')"
  base="$("$WORKER_BIN" infer --model "$DEMO/data/model" --prompt "$prompt" \
    --max-new-tokens 2 --greedy --threads 1 | tail -1 | tr -dc '[:print:]')"
  tuned="$("$WORKER_BIN" infer --model "$DEMO/data/model" --adapter "$DEMO/adapter" \
    --prompt "$prompt" --max-new-tokens 2 --greedy --threads 1 | tail -1 | tr -dc '[:print:]')"
  printf '%-8s %-9s %-12s %-12s\n' "$prompt" "$expected" "${base:-(no text)}" "${tuned:-(no text)}"
  total=$((total + 1))
  [[ "$tuned" == "$expected" ]] && correct=$((correct + 1))
done < <(head -8 "$DEMO/data/held_out.jsonl")
echo "with the community adapter: $correct of $total held-out answers right"
echo
echo "logs and files: $DEMO"
