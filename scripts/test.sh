#!/usr/bin/env bash
# The tests: set up (idempotent), then formatting, lints and every test.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Set-up is idempotent: a second run must find everything in place.
second=$(bash scripts/setup.sh 2>&1)
if [ "$second" != "setup: building (cargo build --release)
setup: ready" ]; then
  echo "scripts/setup.sh did work on its second run:"; echo "$second"; exit 1
fi
source scripts/env.sh
cargo fmt --all --check
# The tests run the binaries built with test-only fault injection
# (worker/src/train/faults.rs); lint both builds.
TEST_FEATURES=(--features vae-worker/fault-injection)
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
cargo clippy --release --workspace --all-targets --quiet "${TEST_FEATURES[@]}" -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --release --workspace "${TEST_FEATURES[@]}" 2>&1 | tee "$log"
# One closing line over every test binary: N passed, N failed.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
