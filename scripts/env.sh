# Sourced by the other scripts: where the caches live (outside the repo, so
# fresh clones reuse them) and how the build finds libtorch.
VAE_CACHE="${VAE_CACHE:-$HOME/.cache/vaedp}"
VAE_VENV="$VAE_CACHE/torch-venv"
export VAE_CACHE VAE_VENV
export VAE_PYTHON="$VAE_VENV/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$VAE_CACHE/target}"
export LIBTORCH_USE_PYTORCH=1
# tch's zip reader links Debian's libzstd (apt libzstd-dev) instead of
# compiling zstd from source in every fresh build.
export ZSTD_SYS_USE_PKG_CONFIG=1
export PATH="$VAE_VENV/bin:$HOME/.cargo/bin:$PATH"
export VAE_WORKER="$CARGO_TARGET_DIR/release/vae-worker"
