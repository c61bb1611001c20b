#!/usr/bin/env bash
# The tests: set up with the test lab (idempotent), then formatting, lints
# and every test, ending with one "N passed, N failed" line. CI runs this.
#   --quick   the tier to run while working: formatting, one clippy build,
#             every unit test, the layer check and a handful of end-to-end
#             smoke tests (train, resume, 2-rank equivalence, an import, an
#             evaluation).
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac
bash scripts/setup.sh --tests
if [ "$QUICK" = 0 ]; then
  # Set-up is idempotent: a second run must find everything in place.
  second=$(bash scripts/setup.sh --tests 2>&1)
  if [ "$second" != "setup: building (cargo build --release)
setup: ready" ]; then
    echo "scripts/setup.sh did work on its second run:"; echo "$second"; exit 1
  fi
fi
source scripts/env.sh
cargo fmt --all --check
# The tests run the binaries built with test-only fault injection
# (worker/src/faults.rs); the full run lints the build without it too.
TEST_FEATURES=(--features vae-worker/fault-injection)
cargo clippy --release --workspace --all-targets --quiet "${TEST_FEATURES[@]}" -- -D warnings
if [ "$QUICK" = 0 ]; then
  cargo clippy --release --workspace --all-targets --quiet -- -D warnings
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
if [ "$QUICK" = 1 ]; then
  # Every unit test, then the smoke tests by name (each binary's filters).
  cargo test --release --workspace "${TEST_FEATURES[@]}" --lib 2>&1 | tee "$log" || status=1
  cargo test --release -p vae-proto --test layers 2>&1 | tee -a "$log" || status=1
  cargo test --release --workspace "${TEST_FEATURES[@]}" --test cli --test launch -- \
    without_a_terminal_each_logging_window_is_a_line \
    resume_equals_an_uninterrupted_run_bit_for_bit \
    the_real_dsprites_npz_imports_as_the_generated_dataset_shard_for_shard \
    eval_names_both_shapes_and_points_into_a_sweep_s_folder \
    two_ranks_train_what_one_rank_with_the_same_global_batch_trains \
    console::mistakes_are_one_line_before_any_worker_starts 2>&1 | tee -a "$log" || status=1
else
  cargo test --release --workspace --no-fail-fast "${TEST_FEATURES[@]}" 2>&1 | tee "$log" || status=1
fi
# One closing line over every test binary: N passed, N failed.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
