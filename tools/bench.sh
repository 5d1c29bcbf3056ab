#!/usr/bin/env bash
# make bench: our SGEMM against numpy on OpenBLAS on the model's shapes, then training and
# evaluation throughput of `hafvt train` / `hafvt eval` against the PyTorch peer
# (tools/peer.py train) on the same data, configuration, batch and thread count, with the
# machine and the date, and the matmul lower bound of a paper-sized step. OpenBLAS is installed
# for this measurement only (apt-get install libopenblas0-pthread); numpy and torch are Debian's,
# run with /usr/bin/python3. About 10-15 minutes on 2 cores.
#   THREADS (default: all cores); SMALL_STEPS (48), PAPER_STEPS (3): timed steps after one warm-up;
#   ROUNDS (3): alternating SGEMM rounds of ours and numpy, best per shape and side;
#   TRAIN=0 skips the training pairs and the lower bound (SGEMM and evaluation only; the evaluation
#   then needs runs/bench/small/last.safetensors from an earlier full run)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${HAFVT_BIN:-build/hafvt}
PY=/usr/bin/python3
THREADS=${THREADS:-$(nproc)}
SMALL_STEPS=${SMALL_STEPS:-48}
PAPER_STEPS=${PAPER_STEPS:-3}
SMALL_SIZE=${SMALL_SIZE:-small}  # `hafvt synth --size` of the two datasets (tiny: a quick try of the script)
PAPER_SIZE=${PAPER_SIZE:-paper}
tmp=$(mktemp -d /tmp/hafvt_bench_XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo "compiler: $(${CXX:-g++} --version | head -1)"
echo
if ! "$PY" -c "import numpy" 2>/dev/null; then
  echo "== SGEMM, ours (build/hafvt bench-gemm) =="
  "$BIN" bench-gemm
  echo "numpy not found: apt-get install python3-numpy libopenblas0-pthread for the OpenBLAS column"
  exit 0
fi
# ROUNDS alternating rounds of ours and numpy (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for
# numpy's command only); each side keeps its best GFLOPS per shape over the rounds, so a slow spell
# of the machine does not land on one side only
ROUNDS=${ROUNDS:-3}
for r in $(seq "$ROUNDS"); do
  "$BIN" bench-gemm >"$tmp/gemm_ours_$r.txt"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" tools/bench_gemm.py >"$tmp/gemm_numpy_$r.txt"
done
# the best line per shape (same format as one run: the flops tool below reads it)
best_lines() { awk '/^gemm / { k = $2 " " $4 " " $6 " " $7; if ($(NF-1) + 0 > best[k] + 0) { best[k] = $(NF-1); line[k] = $0 }
                               if (!(k in seen)) { seen[k] = 1; order[++n] = k } }
                    END { for (i = 1; i <= n; i++) print line[order[i]] }' "$@"; }
echo "== SGEMM, ours (build/hafvt bench-gemm), best of $ROUNDS rounds =="
head -1 "$tmp/gemm_ours_1.txt"
best_lines "$tmp"/gemm_ours_*.txt | tee "$tmp/gemm_ours.txt"
echo
echo "== SGEMM, numpy, best of $ROUNDS rounds (alternating with ours) =="
grep -v '^gemm ' "$tmp/gemm_numpy_1.txt"
best_lines "$tmp"/gemm_numpy_*.txt | tee "$tmp/gemm_numpy.txt"
echo
echo "== SGEMM ratio per shape: ours / OpenBLAS GFLOPS =="
paste -d' ' <(awk '{print $2 "x" $4 "x" $6, $7, $(NF-1)}' "$tmp/gemm_ours.txt") <(awk '{print $(NF-1)}' "$tmp/gemm_numpy.txt") |
  awk '{ printf "%-22s %-3s %8.1f %8.1f   %.2f\n", $1, $2, $3, $4, $3 / $4 }'
echo

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "torch not found: apt-get install python3-torch for the PyTorch comparison"
  exit 0
fi
# ---- training and evaluation throughput: hafvt against tools/peer.py train ----
py() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" tools/peer.py "$@"; }
# the synthetic datasets, generated once (data/synth-* is ignored by git)
synth() {
  [ -f "data/synth-$1/synth.json" ] && grep -q "\"size\": \"$1\"" "data/synth-$1/synth.json" ||
    "$BIN" synth --out "data/synth-$1" --size "$1" >/dev/null
}
features() { echo "--img $1/img.npy --txt $1/txt.npy --img-ids $1/img_ids.txt --txt-ids $1/txt_ids.txt"; }
# "throughput: S steps after ...: R seq/s (X s/step)" is printed by both sides: R and X
rate() { [ -f "$1" ] && awk '/^throughput:/ {gsub(/\(/, "", $9); print $7, $9}' "$1"; }
lines_per_s() { sed -n 's/.*(\([0-9.]*\) lines\/s).*/\1/p' "$@"; }
best() { sort -g | tail -1; }
# "q 64, e 64, 1500 / 1800 items" of a dataset folder and a q
desc() { echo "q $2, e $(sed -n 's/.*"E": \([0-9]*\).*/\1/p' "$1/synth.json"), $(grep -c . "$1/Alist.txt") / $(grep -c . "$1/Blist.txt") items"; }

# one configuration on both sides: NAME DIR Q STEPS; the run folder is runs/bench/NAME
train_pair() {
  local name=$1 dir=$2 q=$3 steps=$4
  echo "-- train $name: $dir, q $q, batch 256, $THREADS threads, $steps steps after 1 warm-up"
  rm -rf "runs/bench/$name"
  # --epochs/--eval-every high: no validation pass interrupts the steps
  # a side that fails (e.g. out of memory) shows its last lines and gets n/a in the table
  "$BIN" train --data "$dir" $(features "$dir") --q "$q" --batch 256 --threads "$THREADS" --epochs 1000 \
    --eval-every 1000 --max-steps $((steps + 1)) --skip-test --out "runs/bench/$name" >"$tmp/ours_$name.log" 2>&1 ||
    tail -3 "$tmp/ours_$name.log"
  grep -E '^(model|throughput)' "$tmp/ours_$name.log" | sed 's/^/hafvt: /' || true
  py train --data "$dir" $(features "$dir") --q "$q" --batch 256 --threads "$THREADS" --warmup 1 \
    --steps "$steps" ${5:-} >"$tmp/py_$name.log" 2>&1 || tail -3 "$tmp/py_$name.log"
  grep -E '^(peer|throughput|eval)' "$tmp/py_$name.log" | sed 's/^/torch: /' || true
}

echo "== training and evaluation throughput: hafvt against tools/peer.py train (PyTorch $("$PY" -c 'import torch; print(torch.__version__)'), float32) =="
synth "$SMALL_SIZE"
synth "$PAPER_SIZE"
if [ "${TRAIN:-1}" != 0 ]; then
  train_pair small "data/synth-$SMALL_SIZE" 64 "$SMALL_STEPS"
  train_pair paper "data/synth-$PAPER_SIZE" 256 "$PAPER_STEPS"
fi
# evaluation of the valid split with the small run's last checkpoint: each side at 64 and 256
# lines per batch, its better figure; hafvt best of 3 fresh processes per batch size
for proto in c2dsr full; do
  for eb in 64 256; do
    for i in 1 2 3; do
      "$BIN" eval --ckpt runs/bench/small/last.safetensors --split valid --protocol "$proto" --threads "$THREADS" \
        --eval-batch "$eb" >"$tmp/eval_${proto}_${eb}_$i.log"
    done
  done
  cat "$tmp"/eval_${proto}_*.log | lines_per_s | best >"$tmp/eval_$proto"
done
# the peer's evaluation (untrained parameters: the speed does not depend on them)
# (its first pass in each of 3 fresh processes per batch size, like hafvt's fresh processes)
for eb in 64 256; do
  for i in 1 2 3; do
    py train --data "data/synth-$SMALL_SIZE" $(features "data/synth-$SMALL_SIZE") --q 64 --threads "$THREADS" --warmup 0 \
      --steps 0 --eval --eval-batch "$eb" >"$tmp/py_eval${eb}_$i.log" 2>&1 || tail -3 "$tmp/py_eval${eb}_$i.log"
    grep -E '^eval' "$tmp/py_eval${eb}_$i.log" | sed "s/^/torch ($eb lines per batch, process $i): /" || true
  done
done
echo

read -r s_ours s_ours_step < <(rate "$tmp/ours_small.log") || true
read -r s_py s_py_step < <(rate "$tmp/py_small.log") || true
read -r p_ours p_ours_step < <(rate "$tmp/ours_paper.log") || true
read -r p_py p_py_step < <(rate "$tmp/py_paper.log") || true
e_py=$(lines_per_s "$tmp"/py_eval*_*.log | best)
echo "== summary ($(date -u '+%Y-%m-%d'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads each side) =="
awk -v OFS= \
  -v s1="$s_ours" -v s2="$s_py" -v p1="$p_ours" -v p2="$p_py" -v sa="$s_ours_step" -v sb="$s_py_step" \
  -v pa="$p_ours_step" -v pb="$p_py_step" -v ec="$(cat "$tmp/eval_c2dsr")" -v ef="$(cat "$tmp/eval_full")" -v ep="$e_py" \
  -v ss="$SMALL_STEPS" -v ps="$PAPER_STEPS" -v ds="$(desc "data/synth-$SMALL_SIZE" 64)" \
  -v dp="$(desc "data/synth-$PAPER_SIZE" 256)" -v nv="$(grep -c . "data/synth-$SMALL_SIZE/validdata_new.txt")" 'function r(a, b) { return a > 0 && b > 0 ? sprintf("%.2f", a / b) : "n/a" }
BEGIN {
  printf "%-58s %-8s %10s %10s %8s\n", "benchmark", "unit", "hafvt", "PyTorch", "ratio"
  printf "%-58s %-8s %10.1f %10.1f %8s\n", "train small: " ds ", " ss " steps", "seq/s", s1, s2, r(s1, s2)
  printf "%-58s %-8s %10.3f %10.3f\n", "", "s/step", sa, sb
  printf "%-58s %-8s %10.1f %10.1f %8s\n", "train paper: " dp ", " ps " steps", "seq/s", p1, p2, r(p1, p2)
  printf "%-58s %-8s %10.3f %10.3f\n", "", "s/step", pa, pb
  printf "%-58s %-8s %10.0f %10.0f %8s\n", "eval small, valid split (" nv " lines), protocol c2dsr", "lines/s", ec, ep, r(ec, ep)
  printf "%-58s %-8s %10.0f %10.0f %8s\n", "eval small, valid split (" nv " lines), protocol full", "lines/s", ef, ep, r(ef, ep)
  print "ratio = hafvt / PyTorch (above 1: hafvt is faster). Training: steps after the first, batch 256,"
  print "dropout 0.3, all nine encoders. Evaluation: both sides score every item of the target domain"
  print "and rank under both protocols in one pass (hafvt eval prints one protocol), at 64 and 256 lines"
  print "per batch, the better of the two; each side: best of 3 fresh processes per batch size (PyTorch: the"
  print "first pass of each process; its warm passes are in its eval lines above)."
}'
echo
[ "${TRAIN:-1}" != 0 ] || exit 0
echo "== lower bound of a paper-sized training step: its matmul FLOPs at OpenBLAS's rates above =="
py flops --data "data/synth-$PAPER_SIZE" --q 256 --batch 256 --gemm "$tmp/gemm_numpy.txt" \
  --step "hafvt=${p_ours_step:-0}" --step "PyTorch=${p_py_step:-0}"
