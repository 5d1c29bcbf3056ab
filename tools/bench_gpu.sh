#!/usr/bin/env bash
# tools/bench_gpu.sh (make bench-gpu): the check and the benchmark of a machine with a CUDA GPU,
# in one run. It builds with nvcc, runs make test-gpu (every CUDA case must run and pass), then
# times training epochs of the paper-sized synthetic configuration (hafvt synth --size paper:
# 29,207 / 34,886 items, 34,117 training sequences, 512-wide image and text features; q 256,
# batch 256, all nine encoders, dropout 0.3) for `hafvt train --device cuda` (FP32, then --tf32)
# and for the PyTorch peer `tools/reference.py train --device cuda` on the same GPU, and prints
# seconds per epoch and the ratio, with the machine and the date.
#   EPOCHS (3): hafvt epochs per run; the first holds the start-up, the others are averaged
#   PEER_STEPS (134 = one epoch at batch 256): the peer's timed steps after 3 warm-up steps
#   SIZE (paper), DEVICE (cuda): SIZE=tiny DEVICE=cpu tries the script on a machine without a GPU
#   PY (python3): a Python with torch >= 2.0 built with CUDA, for the peer (skipped without one)
#   DOCTEST_DIR: passed to make when doctest-dev is not installed (see the Makefile)
set -uo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
PEER_STEPS=${PEER_STEPS:-134}
SIZE=${SIZE:-paper}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
JOBS=$(nproc)
DATA=data/synth-$SIZE
OUT=runs/bench_gpu
mkdir -p "$OUT"

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $JOBS cores"
if command -v nvidia-smi >/dev/null; then
  echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
fi
echo "nvcc: $(command -v nvcc >/dev/null && nvcc --version | tail -1 || echo 'not found')"
echo

echo "== build =="
make -j"$JOBS" ${DOCTEST_DIR:+DOCTEST_DIR=$DOCTEST_DIR} all build/test_hafvt 2>&1 | grep -E '^CUDA|error|warning' || true
[ -x build/hafvt ] || { echo "the build failed"; exit 1; }
echo
test_status=skipped
if [ "$DEVICE" = cuda ]; then
  echo "== make test-gpu =="
  if make ${DOCTEST_DIR:+DOCTEST_DIR=$DOCTEST_DIR} test-gpu >"$OUT/test_gpu.log" 2>&1; then test_status=passed; else test_status=FAILED; fi
  grep -E '^\[doctest\] (test cases|assertions)|ERROR|FAILED' "$OUT/test_gpu.log" | head -40
  echo "make test-gpu: $test_status (full log: $OUT/test_gpu.log)"
  echo
fi

[ -f "$DATA/synth.json" ] && grep -q "\"size\": \"$SIZE\"" "$DATA/synth.json" ||
  build/hafvt synth --out "$DATA" --size "$SIZE" >/dev/null
features="--img $DATA/img.npy --txt $DATA/txt.npy --img-ids $DATA/img_ids.txt --txt-ids $DATA/txt_ids.txt"
ntrain=$(grep -c . "$DATA/traindata_new.txt")

# seconds per epoch of a hafvt log: the last progress line of each epoch after the first gives
# the epoch's rate (sequences / seconds of its steps, without the validation pass)
epoch_s() {
  awk -v n="$ntrain" '/^epoch [0-9]+\/[0-9]+ step / {
      split($2, e, "/"); split($4, k, "/");
      if (k[1] == k[2] && e[1] > 1) { for (i = 1; i <= NF; i++) if ($(i+1) == "seq/s") { s += n / $i; c++ } } }
    END { if (c) printf "%.3f", s / c; else print "n/a" }' "$1"
}

run_hafvt() {  # NAME [extra flags]
  local name=$1; shift
  echo "-- hafvt --device $DEVICE $* : $EPOCHS epochs"
  rm -rf "$OUT/$name"
  build/hafvt train --data "$DATA" $features --q 256 --batch 256 --device "$DEVICE" --epochs "$EPOCHS" \
    --eval-every 1000 --skip-test --threads "$JOBS" --out "$OUT/$name" "$@" >"$OUT/$name.log" 2>&1 ||
    { echo "hafvt failed:"; tail -5 "$OUT/$name.log"; }
  grep -E '^(device|model|epoch [0-9]+ valid)' "$OUT/$name.log" | sed 's/^/  /'
}

echo "== epochs: $SIZE synthetic ($ntrain training sequences), q 256, batch 256 =="
run_hafvt fp32
hafvt_fp32=$(epoch_s "$OUT/fp32.log")
hafvt_tf32=n/a
if [ "$DEVICE" = cuda ]; then
  run_hafvt tf32 --tf32
  hafvt_tf32=$(epoch_s "$OUT/tf32.log")
fi

# evaluation of the validation split with the FP32 run's checkpoint, each protocol in a fresh process
for proto in c2dsr full; do
  build/hafvt eval --ckpt "$OUT/fp32/last.safetensors" --split valid --protocol "$proto" --device "$DEVICE" \
    --threads "$JOBS" >"$OUT/eval_$proto.log" 2>&1 || { echo "hafvt eval failed:"; tail -3 "$OUT/eval_$proto.log"; }
done
eval_c2dsr=$(sed -n 's/.*(\([0-9.]*\) lines\/s).*/\1/p' "$OUT/eval_c2dsr.log")
eval_full=$(sed -n 's/.*(\([0-9.]*\) lines\/s).*/\1/p' "$OUT/eval_full.log")

peer=n/a
if "$PY" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or (hasattr(torch, 'set_default_device') and torch.cuda.is_available()) else 1)" 2>/dev/null; then
  echo "-- PyTorch peer --device $DEVICE: $PEER_STEPS steps after 3 warm-up steps"
  "$PY" tools/reference.py train --data "$DATA" $features --q 256 --batch 256 --device "$DEVICE" --threads "$JOBS" \
    --warmup 3 --steps "$PEER_STEPS" >"$OUT/peer.log" 2>&1 || { echo "the peer failed:"; tail -5 "$OUT/peer.log"; }
  grep -E '^(peer|throughput)' "$OUT/peer.log" | sed 's/^/  /'
  rate=$(awk '/^throughput:/ {print $7}' "$OUT/peer.log")
  [ -n "$rate" ] && peer=$(awk -v n="$ntrain" -v r="$rate" 'BEGIN { printf "%.3f", n / r }')
else
  echo "-- PyTorch peer: skipped ($PY has no torch >= 2.0 with CUDA)"
fi
echo

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", b / a; else print "n/a" }'; }
echo "== summary ($(date -u '+%Y-%m-%d'), $(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | head -1 || echo "$DEVICE")) =="
printf "%-44s %12s %18s\n" "training, $SIZE synthetic, batch 256" "s/epoch" "PyTorch / hafvt"
printf "%-44s %12s %18s\n" "hafvt --device $DEVICE (FP32)" "$hafvt_fp32" "$(ratio "$hafvt_fp32" "$peer")"
printf "%-44s %12s %18s\n" "hafvt --device $DEVICE --tf32" "$hafvt_tf32" "$(ratio "$hafvt_tf32" "$peer")"
printf "%-44s %12s\n" "PyTorch peer (FP32)" "$peer"
echo "hafvt eval --device $DEVICE, valid split, lines/s (fresh process, start-up included): c2dsr ${eval_c2dsr:-n/a}, full ${eval_full:-n/a}"
echo "make test-gpu: $test_status"
echo "goals (issue): an epoch in at most 3 s on one H100 in FP32, and at least 3x faster than PyTorch"
[ "$test_status" != FAILED ]
