#!/usr/bin/env bash
# Benchmark: samples/s of the MLP VAE (pytorch/examples layout, batch 128)
# trained for a fixed number of steps by vae-worker and by PyTorch eager
# (tests/python/pytorch_vae.py: the example's model and loop, data preloaded
# as tensors, so no DataLoader cost is counted against PyTorch), on the same
# machine with the same number of threads. Prints both and their ratio.
# Usage: scripts/bench.sh [STEPS] [THREADS]   (defaults: 936 = 2 epochs, nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh 2>/dev/null
source scripts/env.sh
STEPS="${1:-936}"
THREADS="${2:-$(nproc)}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$VAE_WORKER" train --run-dir "$tmp/run" --set train.max_steps="$STEPS" \
  --set train.threads="$THREADS" --set train.progress=false --set checkpoint.every_epochs=0 \
  --set log.histograms=false >/dev/null
ours=$("$VAE_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["samples_per_sec"])' "$tmp/run/summary.json")
theirs=$("$VAE_PYTHON" tests/python/pytorch_vae.py train data/mnist 100 --threads "$THREADS" --steps "$STEPS" |
  "$VAE_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["samples_per_sec"])')
"$VAE_PYTHON" - "$ours" "$theirs" "$STEPS" "$THREADS" <<'PY'
import sys
ours, theirs, steps, threads = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"MLP VAE, batch 128, {steps} steps, {threads} threads (CPU)")
print(f"  vae-worker      {ours:10.0f} samples/s")
print(f"  PyTorch eager   {theirs:10.0f} samples/s")
print(f"  ratio           {ours / theirs:10.2f}x")
PY
