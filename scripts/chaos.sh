#!/usr/bin/env bash
# Faults survived, as a figure: N trials (default 20), each a 2-rank run with
# data and checkpoints in an S3 emulator bucket under `vae-launch
# --max-restarts`, with one fault at a random moment (kill -9 of a worker,
# kill -STOP of one, the storage server frozen past a request timeout, or a
# signal to the launcher's process group followed by --resume). Each trial
# must end with parameters bit-identical to an uninterrupted run and no
# process left. The trials are the test `faults::chaos_trials_…` of the
# launch test binary (CI runs it with its default, 2 trials).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
n="${1:-20}"
VAE_CHAOS_TRIALS="$n" cargo test --release --features vae-worker/fault-injection \
  --test launch chaos_trials -- --nocapture 2>&1 | grep -E "^(chaos:|trial |test result)"
