#!/usr/bin/env bash
# The GPU checks in one command, for a lent GPU machine (the `device` tool):
# torch in python3, no Rust, no OpenMPI, no network there.
#
#   here:      bash scripts/gpu_check.sh pack
#              builds (scripts/setup.sh) and fills gpu-bundle/ (git-ignored,
#              < 64 MiB): vae-worker, vae-launch, OpenMPI's programs, libraries
#              and plugins. Carry it: run(carry=["gpu-bundle"], ...).
#              (`bundle` alone skips the set-up and build: tests use it.)
#   there:     bash scripts/gpu_check.sh [--quick]
#              points LD_LIBRARY_PATH at that machine's torch/lib, generates
#              dSprites, runs every check and prints one table: check, result
#              (PASS / FAIL / SKIP), figures. Exit status 1 when any check
#              fails. Run on a machine without CUDA, the GPU rows say SKIP
#              (tests/accel.rs does that here, so the script itself is tested).
#
# Outputs (run dirs, logs, bench JSON) go to $OUT when set (the device tool
# brings it back), else to a temporary directory.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUNDLE=${GPU_BUNDLE:-$REPO/gpu-bundle}

# Fills $BUNDLE from the binaries in $VAE_BIN_DIR (default: the release
# target directory).
bundle() {
  local target=${VAE_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/vaedp/target}/release}
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/bin" "$BUNDLE/mpi/lib" "$BUNDLE/mpi/bin"
  cp "$target/vae-worker" "$BUNDLE/bin/" || exit 1
  [ -x "$target/vae-launch" ] && cp "$target/vae-launch" "$BUNDLE/bin/"
  strip "$BUNDLE/bin/"* 2>/dev/null || true
  # OpenMPI: the launcher programs, their libraries and the MCA plugins
  # (Debian's layout: plugins in openmpi/lib/openmpi3, PMIx's in pmix2).
  local mpirun ompi
  mpirun=$(readlink -f "$(command -v mpirun)")
  cp "$mpirun" "$BUNDLE/mpi/bin/mpirun"
  cp "$(readlink -f "$(command -v orted)")" "$BUNDLE/mpi/bin/orted"
  ompi=$(dirname "$(readlink -f /usr/lib/x86_64-linux-gnu/openmpi/lib/libmpi.so)")
  cp -rL /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3 "$BUNDLE/mpi/lib/openmpi3"
  [ -d /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix ] &&
    cp -rL /usr/lib/x86_64-linux-gnu/pmix2/lib/pmix "$BUNDLE/mpi/lib/pmix"
  cp -rL /usr/share/openmpi "$BUNDLE/mpi/share-openmpi"
  [ -d /usr/share/pmix ] && cp -rL /usr/share/pmix "$BUNDLE/mpi/share-pmix"
  # Every library the programs and plugins need that is not glibc's or torch's.
  {
    ldd "$BUNDLE/bin/vae-worker" "$mpirun" "$BUNDLE/mpi/lib/openmpi3"/*.so \
      "$BUNDLE/mpi/lib/pmix"/*.so 2>/dev/null
  } | awk '/=> \//{print $3}' | sort -u |
    grep -Ev 'torch-venv|/(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+)\.so' |
    while read -r lib; do cp -L "$lib" "$BUNDLE/mpi/lib/"; done
  echo "$ompi" >"$BUNDLE/mpi/built-from"
  cp scripts/bench_gpu.py "$BUNDLE/"
  du -sh "$BUNDLE" | awk '{print "gpu-bundle: " $1 " (carry limit 64 MiB)"}'
}

case "${1:-}" in
  pack)
    bash scripts/setup.sh >&2 || exit 1
    bundle
    exit 0
    ;;
  bundle)
    bundle
    exit 0
    ;;
esac
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1

PY=${VAE_PYTHON:-python3}
[ -x /opt/torch/.venv/bin/python ] && [ -z "${VAE_PYTHON:-}" ] && PY=/opt/torch/.venv/bin/python
W=$BUNDLE/bin/vae-worker
L=$BUNDLE/bin/vae-launch
[ -x "$W" ] || { echo "gpu_check: $W missing: run 'bash scripts/gpu_check.sh pack' where Rust is and carry gpu-bundle" >&2; exit 2; }
TORCH_LIBS=$("$PY" - <<'EOF'
import os, torch
d = [os.path.join(os.path.dirname(torch.__file__), "lib")]
try:
    import nvidia
    for p in nvidia.__path__:
        for sub in sorted(os.listdir(p)):
            lib = os.path.join(p, sub, "lib")
            if os.path.isdir(lib):
                d.append(lib)
except ImportError:
    pass
print(":".join(d))
EOF
) || { echo "gpu_check: $PY cannot import torch" >&2; exit 2; }
export LD_LIBRARY_PATH=$TORCH_LIBS:$BUNDLE/mpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OPAL_PREFIX=$BUNDLE/mpi
export OMPI_MCA_mca_base_component_path=$BUNDLE/mpi/lib/openmpi3
export PMIX_MCA_mca_base_component_path=$BUNDLE/mpi/lib/pmix
export OPAL_PKGDATADIR=$BUNDLE/mpi/share-openmpi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PATH=$BUNDLE/mpi/bin:$BUNDLE/bin:$PATH
WORK=${OUT:-$(mktemp -d)}
mkdir -p "$WORK"
ROWS=()
FAILS=0
row() { # check result figures
  ROWS+=("$(printf '%-44s %-5s %s' "$1" "$2" "$3")")
  [ "$2" = FAIL ] && FAILS=$((FAILS + 1))
  printf '%-44s %-5s %s\n' "$1" "$2" "$3" >&2
}
jq_py() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$2"; }
log() { echo "$WORK/$1.log"; }
ok_run() { # name command...: runs, logs; status 0 on success
  local name=$1; shift
  "$@" >"$(log "$name")" 2>&1
}

# 1. Libraries: libtorch_cuda and exactly one NCCL, resolved.
LDD=$(ldd "$W")
if grep -q "not found" <<<"$LDD"; then
  row "ldd: every library resolved" FAIL "$(grep "not found" <<<"$LDD" | tr -s ' \t\n' ' ')"
else
  n=$(grep -c "libnccl" <<<"$LDD"); c=$(grep -c "libtorch_cuda" <<<"$LDD")
  [ "$n" = 1 ] && [ "$c" = 1 ] && r=PASS || r=FAIL
  row "ldd: libtorch_cuda, one libnccl" $r "libnccl x$n, libtorch_cuda x$c"
fi
"$W" info --json >"$WORK/info.json" 2>"$(log info)"
GPUS=$(jq_py 'd["cuda_devices"]' "$WORK/info.json" 2>/dev/null || echo 0)
NCCL=$(jq_py 'd["nccl"].get("Ok", {}).get("version", "none")' "$WORK/info.json" 2>/dev/null || echo none)
TNCCL=$("$PY" -c 'import torch; print(".".join(map(str, torch.cuda.nccl.version())))' 2>/dev/null || echo none)
COPIES=$(jq_py 'd["nccl_copies"]' "$WORK/info.json" 2>/dev/null || echo 0)
[ "$NCCL" = "$TNCCL" ] && [ "$COPIES" = 1 ] && r=PASS || r=FAIL
row "info: NCCL = torch's NCCL, one copy" $r "NCCL $NCCL (torch $TNCCL), copies $COPIES, GPUs $GPUS"

# Data: dSprites generated here (no network there).
D=$WORK/dsprites
if ! ok_run prepare "$W" data prepare dsprites --out "$D" --scales 2 --orientations 10 --positions 16; then
  row "data: dSprites generated" FAIL "$(tail -1 "$(log prepare)")"
fi
TRAIN=(--set "data.url=$D" --set train.progress=false --set log.every_steps=50)
MLP=(--set model.kind=mlp --set model.latent_dim=10 --set train.batch_size=128)
sps() { jq_py 'd["samples_per_sec"]' "$1/summary.json" 2>/dev/null || echo 0; }

if [ "$GPUS" -lt 1 ]; then
  for c in "train: device auto on Cuda(0)" "nccl: world 1 = no communication" \
    "factor, btcvae, metrics, traversals on CUDA" "checkpoint: CUDA -> CPU resume" \
    "launcher: --nproc-per-node auto finds GPUs" "bf16 on CUDA" "CUDA OOM: one line" \
    "compute-sanitizer" "bench: MLP VAE vs PyTorch" "bench: FactorVAE vs PyTorch"; do
    row "$c" SKIP "no CUDA device"
  done
else
  # 2. device auto trains on Cuda(0).
  R=$WORK/auto
  if ok_run auto "$W" train --run-dir "$R" "${TRAIN[@]}" "${MLP[@]}" --set train.max_steps=200 &&
    grep -q "Cuda(0)" "$(log auto)"; then
    row "train: device auto on Cuda(0)" PASS "$(sps "$R") samples/s"
  else
    row "train: device auto on Cuda(0)" FAIL "$(tail -1 "$(log auto)")"
  fi
  # 3. NCCL world 1 equals no communication (float64), export compared.
  common=("${TRAIN[@]}" "${MLP[@]}" --set train.max_steps=30 --set train.dtype=float64)
  ok_run plain "$W" train --run-dir "$WORK/plain" "${common[@]}" --set dist.backend=mpi
  ok_run nccl1 mpirun -np 1 "$W" train --run-dir "$WORK/nccl1" "${common[@]}" --set dist.backend=nccl
  if grep -q "gradients over nccl" "$(log nccl1)"; then
    "$W" export --checkpoint "$WORK/plain/checkpoints/latest" --out "$WORK/plain.st" >/dev/null 2>&1
    "$W" export --checkpoint "$WORK/nccl1/checkpoints/latest" --out "$WORK/nccl1.st" >/dev/null 2>&1
    d=$("$PY" -c 'import sys; from safetensors.torch import load_file as l; a, b = l(sys.argv[1]), l(sys.argv[2]); print(max((a[k] - b[k]).abs().max().item() for k in a))' "$WORK/plain.st" "$WORK/nccl1.st" 2>&1)
    awk -v d="$d" 'BEGIN{exit !(d+0 <= 1e-6)}' && r=PASS || r=FAIL
    row "nccl: world 1 = no communication" $r "max|diff| $d"
  else
    row "nccl: world 1 = no communication" FAIL "$(tail -1 "$(log nccl1)")"
  fi
  # 4. FactorVAE, beta-TCVAE, metrics and traversals on CUDA.
  conv=(--set model.kind=conv --set "model.conv_channels=[32,32,64,64]" --set model.hidden_dim=128 --set model.latent_dim=10 --set train.batch_size=64)
  if ok_run factor "$W" train --run-dir "$WORK/factor" "${TRAIN[@]}" "${conv[@]}" --set model.objective=factor --set model.tc_weight=35 --set train.max_steps=200 --set 'eval.metrics=["factorvae","mig","betavae"]' --set eval.scale=0.05 &&
    ok_run btcvae "$W" train --run-dir "$WORK/btcvae" "${TRAIN[@]}" "${conv[@]}" --set model.objective=btcvae --set train.max_steps=100 &&
    ls "$WORK/factor/images/"*travers* >/dev/null 2>&1; then
    row "factor, btcvae, metrics, traversals on CUDA" PASS "factor $(sps "$WORK/factor") samples/s; $(jq_py '", ".join(f"{k} {v:.3f}" for k, v in d.items() if isinstance(v, float))' "$WORK/factor/metrics.json" 2>/dev/null | head -c 120)"
  else
    row "factor, btcvae, metrics, traversals on CUDA" FAIL "see $(log factor) / $(log btcvae)"
  fi
  # 5. A CUDA checkpoint resumes on the CPU and continues.
  if ok_run cpu_resume "$W" train --run-dir "$WORK/auto" --resume "${TRAIN[@]}" "${MLP[@]}" --set train.max_steps=220 --set train.device=cpu &&
    grep -q "resumed from" "$(log cpu_resume)"; then
    row "checkpoint: CUDA -> CPU resume" PASS "step $(jq_py 'd["step"]' "$WORK/auto/summary.json")"
  else
    row "checkpoint: CUDA -> CPU resume" FAIL "$(tail -1 "$(log cpu_resume)")"
  fi
  # 6. vae-launch finds the GPU(s).
  if ok_run launch "$L" --nproc-per-node auto -- train --run-dir "$WORK/launch" "${TRAIN[@]}" "${MLP[@]}" --set train.max_steps=100; then
    row "launcher: --nproc-per-node auto finds GPUs" PASS "$(grep -m1 -o '[0-9]* GPU worker[s]*' "$(log launch)" || echo started)"
  else
    row "launcher: --nproc-per-node auto finds GPUs" FAIL "$(tail -1 "$(log launch)")"
  fi
  # 7. bf16 on CUDA: finite, and its test loss near fp32's.
  if ok_run bf16 "$W" train --run-dir "$WORK/bf16" "${TRAIN[@]}" "${MLP[@]}" --set train.max_steps=200 --set train.precision=bf16; then
    row "bf16 on CUDA" PASS "test loss bf16 $(jq_py 'round(d["test_loss"], 2)' "$WORK/bf16/summary.json") vs fp32 $(jq_py 'round(d["test_loss"], 2)' "$WORK/auto/summary.json" 2>/dev/null)"
  else
    row "bf16 on CUDA" FAIL "$(tail -1 "$(log bf16)")"
  fi
  # 8. CUDA out of memory is one line naming the key.
  "$W" train --run-dir "$WORK/oom" "${TRAIN[@]}" "${MLP[@]}" --set model.hidden_dim=100000000 --set train.max_steps=5 >"$(log oom)" 2>&1
  if grep -q "out of memory" "$(log oom)" && ! grep -q panicked "$(log oom)"; then
    row "CUDA OOM: one line" PASS "$(grep -m1 "out of memory" "$(log oom)" | cut -c1-100)"
  else
    row "CUDA OOM: one line" FAIL "$(tail -1 "$(log oom)")"
  fi
  # 9. compute-sanitizer over a few steps with NCCL.
  CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  if [ -n "$CS" ] && [ $QUICK = 0 ]; then
    "$CS" --tool memcheck --error-exitcode 9 mpirun -np 1 "$W" train --run-dir "$WORK/sanitized" "${TRAIN[@]}" "${MLP[@]}" --set train.max_steps=5 --set dist.backend=nccl >"$(log sanitizer)" 2>&1
    [ $? = 0 ] && r=PASS || r=FAIL
    row "compute-sanitizer" $r "$(grep -m1 "ERROR SUMMARY" "$(log sanitizer)")"
  else
    row "compute-sanitizer" SKIP "not installed (or --quick)"
  fi
  # 10. Benchmarks side by side on this GPU: steps/s.
  steps=$([ $QUICK = 1 ] && echo 200 || echo 2000)
  for prec in fp32 bf16; do
    ok_run bench_mlp_$prec "$W" train --run-dir "$WORK/bench_mlp_$prec" "${TRAIN[@]}" "${MLP[@]}" --set "train.max_steps=$steps" --set train.precision=$prec --set eval.every_steps=0
    ours=$("$PY" -c "print(round($(sps "$WORK/bench_mlp_$prec") / 128, 1))")
    flag=$([ $prec = bf16 ] && echo --bf16)
    eager=$("$PY" "$BUNDLE/bench_gpu.py" mlp --steps "$steps" $flag 2>>"$(log bench_py)" | jq_py 'round(d["steps_per_sec"], 1)' /dev/stdin)
    comp=$("$PY" "$BUNDLE/bench_gpu.py" mlp --steps "$steps" --compile $flag 2>>"$(log bench_py)" | jq_py 'round(d["steps_per_sec"], 1)' /dev/stdin)
    row "bench: MLP VAE vs PyTorch ($prec)" INFO "vae-worker $ours, eager $eager, compile $comp steps/s"
  done
  ok_run bench_factor "$W" train --run-dir "$WORK/bench_factor" "${TRAIN[@]}" "${conv[@]}" --set model.objective=factor --set model.tc_weight=35 --set "train.max_steps=$((steps / 4))" --set eval.every_steps=0
  ours=$("$PY" -c "print(round($(sps "$WORK/bench_factor") / 64, 1))")
  eager=$("$PY" "$BUNDLE/bench_gpu.py" factor --steps $((steps / 4)) 2>>"$(log bench_py)" | jq_py 'round(d["steps_per_sec"], 1)' /dev/stdin)
  row "bench: FactorVAE vs PyTorch (fp32)" INFO "vae-worker $ours, eager $eager steps/s"
fi

echo
printf '%-44s %-5s %s\n' check result figures
printf '%s\n' "${ROWS[@]}"
echo "outputs: $WORK"
[ $FAILS = 0 ]
