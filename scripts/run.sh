#!/usr/bin/env bash
# The main job: set up (idempotent), then train the built-in default, the
# pytorch/examples MNIST VAE, on real MNIST. Extra arguments go to
# `vae-worker train` (e.g. --config configs/mnist_conv_vae.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec "$VAE_WORKER" train "$@"
