#!/usr/bin/env bash
# Benchmarks on CPU, all on the same machine with the same thread budget.
#
#   scripts/bench.sh [single|dist|all] [STEPS]     (default: all, 936 steps = 2 epochs)
#
# single: samples/s of the MLP VAE (pytorch/examples layout, batch 128) in
#   vae-worker and in PyTorch eager (tests/python/pytorch_vae.py: the
#   example's model, loss and loop, data preloaded as tensors), $(nproc) threads.
# dist: global batch 128 over 2 workers of 1 thread each: vae-launch (MPI
#   all-reduce) next to PyTorch DDP under torchrun with gloo
#   (tests/python/ddp_vae.py); and the data-parallel overhead: time per step
#   of 2 workers at 64 samples each vs 1 worker at 64 samples.
# storage: loader throughput (`vae-worker data read`, shard order) from
#   file:// and from s3:// (moto on loopback) next to what training consumes;
#   training samples/s from file:// vs s3:// (shard order: shards stream in
#   during training); the training stall per checkpoint, synchronous vs
#   asynchronous, to disk and to the bucket.
# import: images/s importing a folder of 30,000 CelebA-sized JPEGs
#   (IMPORT_IMAGES=N for another count; 178×218, crop 148, resize 64, write
#   shards), start-up included, with `vae-worker data prepare images`
#   (every core) vs scripts/import_baseline.py (PIL + NumPy, one process);
#   and MB/s importing an MPI3D-layout .npz of 796 MB stored uncompressed.
# metrics: wall time of each disentanglement metric at scale 1 (the
#   published counts) on one trained encoder (an MLP β-VAE on a dSprites
#   subset), disentanglement_lib's own function alone on the same draws and
#   weights (tests/python/dlib_served.py) vs vae-worker's metric alone and
#   its whole `vae-worker eval --metrics M` command (medians of 3); then all
#   seven together.
# factorvae: steps/s of configs/dsprites_factorvae.toml's conv FactorVAE
#   (64×64, batch 64, the VAE's update then the discriminator's) in
#   vae-worker and in `scripts/pytorch_step.py factorvae` (PyTorch eager, the
#   loop 1Konny/FactorVAE's solver.py runs, the same modules), 200 steps on a
#   24,576-image dSprites subset, 3 rounds side by side.
# convvae: steps/s of seed 002's conv VAE (configs/celeba_conv_vae.toml,
#   3×64×64 RGB, batch 128) in vae-worker and in `scripts/pytorch_step.py
#   convvae` (seed 002's own modules and loop, PyTorch eager) on 2,000
#   CelebA-sized JPEGs imported at 64×64, 3 rounds side by side. PyTorch:
#   100 steps after 5 of warm-up; vae-worker: 8 epochs of 14 steps, the
#   rate over the last 7 (98 steps: its summary's figure is the last
#   epoch's alone, and the evaluation between epochs is not training).
# fuzz (not part of `all`): the property tests over every parser of
#   untrusted bytes (issue 31: `.npy`/`.npz`, tar shards, brace patterns,
#   dataset manifests, config TOML with --set, host lists and discovery
#   output, redaction) with FUZZ_CASES mutated inputs each (default 20,000,
#   CI runs 256): inputs tried, panics, aborts, hangs (10 min per crate) and
#   the test process's peak memory.
# study (not part of `all`): a sweep of STUDY_POINTS points (default "100
#   1000") of STUDY_STEPS steps each (default 5) as one job on 2 ranks (configs/study/beta_vae.toml's
#   grid at one setting, the seeds as the axis, an MLP on a 768-image
#   dSprites subset): the job's wall time, each group's busy time (the sum
#   of its points' wall times in study.csv) and the hand-out and results
#   overhead per point, (wall × groups − busy) / points.
# stream (not part of `all`): WebDataset tars read as they are (issue 33):
#   samples/s `vae-worker data read` delivers from STREAM_SHARDS tars
#   (default 8) of 250 CelebA-sized JPEGs each in a moto bucket, decoded
#   as they stream (crop 148, size 64; 3 epochs after the scan), next to what
#   seed 002's model (configs/celeba_conv_vae.toml) consumes training on 2
#   ranks under vae-launch (the same samples converted, on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh 2>/dev/null
source scripts/env.sh
WHAT="${1:-all}"
case "$WHAT" in single|dist|storage|import|metrics|factorvae|convvae|fuzz|study|stream|all) ;; *) echo "usage: scripts/bench.sh [single|dist|storage|import|metrics|factorvae|convvae|fuzz|study|stream|all] [STEPS]" >&2; exit 2 ;; esac
STEPS="${2:-936}"
THREADS="$(nproc)"
LAUNCH="$CARGO_TARGET_DIR/release/vae-launch"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
COMMON=(--set train.max_steps="$STEPS" --set train.progress=false --set checkpoint.every_epochs=0 --set log.histograms=false)
sps() { "$VAE_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["samples_per_sec"])' "$1/summary.json"; }
json_sps() { "$VAE_PYTHON" -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["samples_per_sec"])'; }
# Samples/s over the epochs from $2 on, from vae-worker's per-epoch lines in
# the log $1 (all samples over all seconds: the harmonic mean of the rates).
epochs_sps() {
  "$VAE_PYTHON" -c 'import re,sys
rates = [float(m.group(2)) for m in re.finditer(r"^epoch +(\d+) +step +\d+ +train loss .* (\d+) samples/s$", open(sys.argv[1]).read(), re.M) if int(m.group(1)) >= int(sys.argv[2])]
print(len(rates) / sum(1 / r for r in rates))' "$1" "$2"
}
# moto (S3) on a free loopback port, stopped on exit, with bucket `bench`.
start_moto() {
  port=$("$VAE_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$VAE_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  moto=$!
  trap 'kill $moto 2>/dev/null; rm -rf "$tmp"' EXIT
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
  "$VAE_PYTHON" -c "import boto3; boto3.client('s3', endpoint_url='$AWS_ENDPOINT_URL').create_bucket(Bucket='bench')"
}
row() { printf '  %-44s %10.0f samples/s\n' "$1" "$2"; }
ratio() { "$VAE_PYTHON" -c "print(f'{$1 / $2:.2f}')"; }

if [ "$WHAT" = single ] || [ "$WHAT" = all ]; then
  "$VAE_WORKER" train --run-dir "$tmp/single" "${COMMON[@]}" --set train.threads="$THREADS" >/dev/null
  ours=$(sps "$tmp/single")
  theirs=$("$VAE_PYTHON" tests/python/pytorch_vae.py train data/mnist 100 --threads "$THREADS" --steps "$STEPS" | json_sps)
  echo "MLP VAE, batch 128, $STEPS steps, 1 process, $THREADS threads"
  row "vae-worker" "$ours"
  row "PyTorch eager" "$theirs"
  echo "  ratio vae-worker / PyTorch: $(ratio "$ours" "$theirs")x"
fi

if [ "$WHAT" = dist ] || [ "$WHAT" = all ]; then
  "$LAUNCH" --nproc-per-node 2 -- train --run-dir "$tmp/two" "${COMMON[@]}" --set train.threads=1 >/dev/null 2>&1
  two=$(sps "$tmp/two")
  "$VAE_WORKER" train --run-dir "$tmp/one64" "${COMMON[@]}" --set train.threads=1 --set train.batch_size=64 >/dev/null
  one64=$(sps "$tmp/one64")
  ddp=$(cd tests/python && torchrun --nproc-per-node 2 ddp_vae.py ../../data/mnist 128 "$STEPS" 1 2>/dev/null | json_sps)
  echo "MLP VAE, global batch 128 over 2 workers x 1 thread, $STEPS steps"
  row "vae-launch, 2 workers (MPI all-reduce)" "$two"
  row "PyTorch DDP, torchrun 2 workers (gloo)" "$ddp"
  echo "  ratio vae-launch / DDP: $(ratio "$two" "$ddp")x"
  row "vae-worker, 1 worker, batch 64" "$one64"
  # Control: two independent 1-worker runs at once (no communication at all)
  # shows what merely sharing the machine between two processes costs.
  OMP_NUM_THREADS=1 "$VAE_WORKER" train --run-dir "$tmp/solo-a" "${COMMON[@]}" --set train.threads=1 --set train.batch_size=64 >/dev/null &
  OMP_NUM_THREADS=1 "$VAE_WORKER" train --run-dir "$tmp/solo-b" "${COMMON[@]}" --set train.threads=1 --set train.batch_size=64 >/dev/null
  wait
  solo=$("$VAE_PYTHON" -c "print(($(sps "$tmp/solo-a")+$(sps "$tmp/solo-b"))/2)")
  row "vae-worker, 2 independent runs at once, each" "$solo"
  # time per step: 2 workers x 64 = 128/two; 1 worker x 64 = 64/one64
  echo "  data-parallel overhead (step time, 2x64 vs 1x64):         $("$VAE_PYTHON" -c "print(f'{(128/$two)/(64/$one64)*100-100:+.1f}%')")"
  echo "  of which communication (2x64 vs 2 independent runs of 64): $("$VAE_PYTHON" -c "print(f'{(128/$two)/(64/$solo)*100-100:+.1f}%')")"
fi

if [ "$WHAT" = storage ] || [ "$WHAT" = all ]; then
  start_moto
  "$VAE_WORKER" data prepare mnist --idx-dir "$VAE_CACHE/mnist-idx" --out s3://bench/mnist >/dev/null
  read_sps() { "$VAE_WORKER" data read --epochs 3 --set data.url="$1" --set data.order=shard | json_sps; }
  echo "Loader throughput (vae-worker data read, shard order, 3 epochs of MNIST), samples/s"
  for i in 1 2 3; do
    printf '  run %d: file:// %10.0f   s3:// (moto) %10.0f\n' "$i" "$(read_sps data/mnist)" "$(read_sps s3://bench/mnist)"
  done
  SHARD=(--set data.order=shard --set train.threads="$THREADS")
  echo "Training, shard order, $STEPS steps, 1 process, $THREADS threads, samples/s"
  for i in 1 2 3; do
    "$VAE_WORKER" train --run-dir "$tmp/f$i" "${COMMON[@]}" "${SHARD[@]}" >/dev/null
    "$VAE_WORKER" train --run-dir "$tmp/s$i" "${COMMON[@]}" "${SHARD[@]}" --set data.url=s3://bench/mnist >/dev/null
    f=$(sps "$tmp/f$i"); s=$(sps "$tmp/s$i")
    printf '  run %d: file:// %8.0f   s3:// %8.0f   ratio %s\n' "$i" "$f" "$s" "$(ratio "$s" "$f")"
  done
  stall() { "$VAE_PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); k=("checkpoint_stall_ms","checkpoint_write_ms"); print("stall %.1f ms, write %.1f ms, one step %.1f ms" % (d[k[0]], d[k[1]], 1000*128/d["samples_per_sec"]))' "$1/summary.json"; }
  echo "Checkpoints every 20 steps of 300 (MNIST VAE): mean stall per checkpoint vs one step"
  for mode in true false; do
    for where in disk bucket; do
      url=""; [ "$where" = bucket ] && url="s3://bench/ckpt-$mode"
      "$VAE_WORKER" train --run-dir "$tmp/c-$mode-$where" --set train.max_steps=300 --set train.progress=false \
        --set checkpoint.every_steps=20 --set checkpoint.asynchronous=$mode --set checkpoint.url="$url" \
        --set train.threads="$THREADS" >/dev/null
      printf '  asynchronous=%-5s %-6s %s\n' "$mode" "$where" "$(stall "$tmp/c-$mode-$where")"
    done
  done
fi

if [ "$WHAT" = stream ]; then
  SHARDS="${STREAM_SHARDS:-8}"
  start_moto
  "$VAE_PYTHON" tests/python/make_images.py wds "$tmp/wds" "$SHARDS" 250 178 218
  "$VAE_PYTHON" -c "import boto3, os, sys
s3 = boto3.client('s3', endpoint_url='$AWS_ENDPOINT_URL')
for f in sorted(os.listdir(sys.argv[1])): s3.upload_file(os.path.join(sys.argv[1], f), 'bench', 'wds/' + f)" "$tmp/wds"
  last=$(printf '%06d' $((SHARDS - 1)))
  TARS="s3://bench/wds/shard-{000000..$last}.tar"
  DECODE=(--config configs/celeba_conv_vae.toml --set data.decode.crop=148 --set data.decode.size=64)
  "$VAE_WORKER" data prepare images --from "$tmp/wds/shard-{000000..$last}.tar" --crop 148 --size 64 --out "$tmp/conv" >/dev/null
  echo "WebDataset tars streamed from moto ($SHARDS tars x 250 JPEGs of 178x218, crop 148, size 64), samples/s"
  for i in 1 2 3; do
    delivered=$("$VAE_WORKER" data read --epochs 3 "${DECODE[@]}" --set data.url="$TARS" --set data.order=shard | json_sps)
    "$LAUNCH" --nproc-per-node 2 -- train --config configs/celeba_conv_vae.toml --run-dir "$tmp/consume$i" \
      --set data.url="$tmp/conv" --set train.max_steps=60 --set train.progress=false --set eval.metrics=[] \
      --set log.images=0 --set checkpoint.every_epochs=0 >/dev/null 2>&1
    consumed=$(sps "$tmp/consume$i")
    printf '  run %d: delivered %8.0f   seed 002 on 2 ranks consumes %8.0f   ratio %s\n' "$i" "$delivered" "$consumed" "$(ratio "$delivered" "$consumed")"
  done
fi

if [ "$WHAT" = import ] || [ "$WHAT" = all ]; then
  N="${IMPORT_IMAGES:-30000}"
  "$VAE_PYTHON" tests/python/make_images.py jpg "$tmp/jpg" "$N" 178 218
  rm -f "$tmp/jpg/broken.jpg"
  # Wall time of a command alone (the clock read before and after it, in bash).
  secs() { local s e; s=$EPOCHREALTIME; "$@" >/dev/null 2>&1; e=$EPOCHREALTIME; "$VAE_PYTHON" -c "print($e - $s)"; }
  echo "Import $N JPEGs of 178x218 (crop 148, resize 64, shards), 5 rounds side by side"
  for r in 1 2 3 4 5; do
    rm -rf "$tmp/ours" "$tmp/theirs"
    t_ours=$(secs "$VAE_WORKER" data prepare images --from "$tmp/jpg" --out "$tmp/ours" --crop 148 --size 64)
    t_theirs=$(secs "$VAE_PYTHON" scripts/import_baseline.py "$tmp/jpg" "$tmp/theirs" --crop 148 --size 64)
    printf '  round %d: vae-worker %6.0f images/s   PIL+NumPy %6.0f images/s   ratio %s\n' "$r" \
      "$("$VAE_PYTHON" -c "print($N / $t_ours)")" "$("$VAE_PYTHON" -c "print($N / $t_theirs)")" \
      "$(ratio "$t_theirs" "$t_ours")"
  done
  "$VAE_PYTHON" tests/python/make_factor_files.py mpi3d "$tmp/big.npz" 6,6,2,3,3,10,10 stored
  mb=$("$VAE_PYTHON" -c "import os; print(os.path.getsize('$tmp/big.npz') / 1e6)")
  for r in 1 2 3; do
    rm -rf "$tmp/mpi3d"
    t=$(secs "$VAE_WORKER" data prepare mpi3d --from "$tmp/big.npz" --out "$tmp/mpi3d" --factor-sizes 6,6,2,3,3,10,10)
    printf '  npz round %d: %.0f MB in %.1f s = %.0f MB/s\n' "$r" "$mb" "$t" "$("$VAE_PYTHON" -c "print($mb / $t)")"
  done
fi

if [ "$WHAT" = metrics ] || [ "$WHAT" = all ]; then
  # The draws are recorded by the test build (fault-injection feature).
  cargo build --release --quiet --workspace --bins --features vae-worker/fault-injection
  "$VAE_WORKER" data prepare dsprites --out "$tmp/ds" --scales 2 --orientations 4 --positions 8 --test-samples 300 >/dev/null
  "$VAE_WORKER" train --run-dir "$tmp/enc" --set data.url="$tmp/ds" --set model.hidden_dim=64 --set model.latent_dim=6 \
    --set model.beta=4 --set train.batch_size=64 --set train.max_steps=300 --set log.images=0 --set train.progress=false >/dev/null
  "$VAE_WORKER" export --checkpoint "$tmp/enc" --out "$tmp/enc.safetensors" >/dev/null
  echo "Each metric at scale 1 on one encoder (MLP 4096-64-6): vae-worker vs disentanglement_lib on the same draws"
  all=factorvae,betavae,mig,dci,sap,modularity,unsupervised
  VAE_FAULT_RECORD_DRAWS="$tmp/draws" "$VAE_WORKER" eval --checkpoint "$tmp/enc" --metrics "$all" --scale 1 --out "$tmp/all.json" >/dev/null 2>&1
  s=$(date +%s.%N)
  "$VAE_PYTHON" tests/python/dlib_served.py "$tmp/ds" "$tmp/enc.safetensors" "$tmp/enc/config.toml" "$tmp/draws" 1 "$tmp/dlib.json" 2>"$tmp/dlib.err" >/dev/null
  dlib_all=$("$VAE_PYTHON" -c "import time; print(time.time() - $s)")
  theirs() { "$VAE_PYTHON" -c "import json; d = json.loads(open('$tmp/dlib.err').read().strip().splitlines()[-1]); print(sum(d.values()) if '$1' == 'all' else d['$1'])"; }
  # The median of three runs: the whole command (process start, checkpoint
  # and dataset read, the test split's losses included) and the metrics
  # alone (the worker's "metric M: S s" lines, summed).
  runs() {
    for r in 1 2 3; do
      s=$(date +%s.%N)
      "$VAE_WORKER" eval --checkpoint "$tmp/enc" --metrics "$1" --scale "${2:-1}" --out "$tmp/o.json" >/dev/null 2>"$tmp/o.err"
      "$VAE_PYTHON" -c "import time; print(time.time() - $s, sum(float(l.split()[2]) for l in open('$tmp/o.err') if l.startswith('metric ')))"
    done
  }
  median() { sort -n | sed -n 2p; }
  printf '  %-13s vae-worker %6.2f s (whole command, no metric)\n' "startup" "$(runs mig 0.001 | cut -d' ' -f1 | median)"
  for m in ${all//,/ } all; do
    runs "$([ "$m" = all ] && echo "$all" || echo "$m")" >"$tmp/runs"
    whole=$(cut -d' ' -f1 "$tmp/runs" | median); alone=$(cut -d' ' -f2 "$tmp/runs" | median); t=$(theirs "$m")
    printf '  %-13s disentanglement_lib %6.2f s (its function%s)   vae-worker %6.2f s (metric alone, ratio %s)   %6.2f s (whole command, ratio %s)\n' \
      "$m" "$t" "$([ "$m" = all ] && echo "s, summed")" "$alone" "$(ratio "$t" "$alone")" "$whole" "$(ratio "$t" "$whole")"
  done
  printf '  %-13s disentanglement_lib %.2f s (the whole Python process: imports, reading, all seven)\n' "all" "$dlib_all"
fi

if [ "$WHAT" = factorvae ] || [ "$WHAT" = all ]; then
  "$VAE_WORKER" data prepare dsprites --out "$tmp/dsprites" --scales 2 --orientations 4 --test-samples 500 >/dev/null
  echo "Conv FactorVAE 64x64, batch 64, 200 steps, $THREADS threads, 3 rounds side by side (steps/s)"
  for r in 1 2 3; do
    "$VAE_WORKER" train --config configs/dsprites_factorvae.toml --run-dir "$tmp/fv$r" \
      --set data.url="$tmp/dsprites" --set train.max_steps=200 --set train.progress=false \
      --set checkpoint.every_epochs=0 --set log.histograms=false --set log.images=0 \
      --set 'eval.metrics=[]' --set train.threads="$THREADS" >/dev/null
    ours=$("$VAE_PYTHON" -c "print($(sps "$tmp/fv$r") / 64)")
    theirs_sps=$("$VAE_PYTHON" scripts/pytorch_step.py factorvae "$tmp/dsprites" --steps 200 --threads "$THREADS" | json_sps)
    theirs=$("$VAE_PYTHON" -c "print($theirs_sps / 64)")
    printf '  round %d: vae-worker %6.2f steps/s   PyTorch (1Konny loop) %6.2f steps/s   ratio %s\n' "$r" "$ours" "$theirs" "$(ratio "$ours" "$theirs")"
  done
fi

if [ "$WHAT" = convvae ] || [ "$WHAT" = all ]; then
  "$VAE_PYTHON" tests/python/make_images.py jpg "$tmp/rgbjpg" 2000 178 218 >/dev/null
  "$VAE_WORKER" data prepare images --from "$tmp/rgbjpg" --out "$tmp/rgb" --crop 148 --size 64 >/dev/null 2>&1
  echo "Conv VAE (seed 002), 3x64x64, batch 128, ~100 steps, $THREADS threads, 3 rounds side by side (steps/s)"
  for r in 1 2 3; do
    "$VAE_WORKER" train --config configs/celeba_conv_vae.toml --run-dir "$tmp/cv$r" \
      --set data.url="$tmp/rgb" --set train.max_steps=112 --set train.progress=false \
      --set checkpoint.every_epochs=0 --set checkpoint.every_steps=0 --set log.histograms=false \
      --set log.images=0 --set train.threads="$THREADS" >"$tmp/cv$r.log"
    ours=$(epochs_sps "$tmp/cv$r.log" 2 | "$VAE_PYTHON" -c "import sys; print(float(sys.stdin.read()) / 128)")
    theirs_sps=$("$VAE_PYTHON" scripts/pytorch_step.py convvae "$tmp/rgb" --steps 100 --batch 128 --threads "$THREADS" | json_sps)
    theirs=$("$VAE_PYTHON" -c "print($theirs_sps / 128)")
    printf '  round %d: vae-worker %6.2f steps/s   PyTorch (seed 002 loop) %6.2f steps/s   ratio %s\n' "$r" "$ours" "$theirs" "$(ratio "$ours" "$theirs")"
  done
fi

if [ "$WHAT" = fuzz ]; then
  CASES="${FUZZ_CASES:-20000}"
  echo "Property tests over the parsers of untrusted bytes, $CASES inputs each"
  for pkg in vae-proto vae-launch vae-worker; do
    rc=0; features=()
    [ "$pkg" = vae-worker ] && features=(--features fault-injection)
    PROPTEST_CASES="$CASES" /usr/bin/time -f '%M' -o "$tmp/rss-$pkg" timeout 600 \
      cargo test --release -p "$pkg" "${features[@]}" --lib prop_ \
      >"$tmp/log-$pkg" 2>&1 || rc=$?
    props=$(grep -c '^test .*prop_.* \.\.\. ' "$tmp/log-$pkg" || true)
    panics=$(grep -c '^test .*prop_.* FAILED' "$tmp/log-$pkg" || true)
    aborts=0; hangs=0
    if [ "$rc" = 124 ]; then hangs=1; elif [ "$rc" -gt 128 ]; then aborts=1; fi
    printf '  %-10s %d properties, %d inputs tried: %d panics, %d aborts, %d hangs, peak %d MB\n' \
      "$pkg" "$props" "$((props * CASES))" "$panics" "$aborts" "$hangs" "$(( $(tail -1 "$tmp/rss-$pkg") / 1024 ))"
  done
fi

if [ "$WHAT" = study ]; then
  "$VAE_WORKER" data prepare dsprites --scales 2 --orientations 2 --positions 8 --test-samples 100 --out "$tmp/ds" >/dev/null
  steps="${STUDY_STEPS:-5}"
  echo "A study as one job on 2 ranks: points of $steps steps each (hand-out and results overhead)"
  for n in ${STUDY_POINTS:-100 1000}; do
    start=$(date +%s.%N)
    OMP_NUM_THREADS=1 "$LAUNCH" --nproc-per-node 2 --sweep "train.seed=1..$n" --sweep model.beta=1 \
      -- train --config configs/study/beta_vae.toml --run-dir "$tmp/study-$n" --set data.url="$tmp/ds" \
      --set model.kind=mlp --set model.hidden_dim=64 --set train.max_steps="$steps" --set train.threads=1 \
      --set train.progress=false --set eval.metrics=[] --set log.images=0 --set log.histograms=false \
      --set checkpoint.every_steps=0 --set checkpoint.every_epochs=0 >"$tmp/study-$n.log" 2>&1
    wall=$("$VAE_PYTHON" -c "import time; print(time.time() - $start)")
    "$VAE_PYTHON" - "$tmp/study-$n/study.csv" "$wall" "$n" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
wall, n = float(sys.argv[2]), int(sys.argv[3])
busy = {}
for r in rows:
    busy[r["group"]] = busy.get(r["group"], 0.0) + float(r["wall_s"] or 0)
done = sum(r["status"] == "finished" for r in rows)
over = (wall * len(busy) - sum(busy.values())) / n
per = sum(busy.values()) / n
print(f"  {n:5d} points ({done} finished): wall {wall:7.1f} s, busy " + ", ".join(f"group {g} {b:6.1f} s ({b / wall:.0%})" for g, b in sorted(busy.items()))
      + f"; a point {per:.3f} s, overhead {over:.3f} s per point")
PY
  done
fi
