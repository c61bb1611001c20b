#!/usr/bin/env bash
# The tests: set up (idempotent), then formatting, lints and every test.
set -euo pipefail
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
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
cargo test --release --workspace
