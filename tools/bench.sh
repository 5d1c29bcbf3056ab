#!/usr/bin/env bash
# make bench: our SGEMM against numpy on OpenBLAS on the model's shapes; training throughput and peak
# memory of `hafvt train` against the PyTorch peers (tools/peer.py train: Debian's PyTorch 1.13
# eager, and the current PyTorch 2.x from the Python package registry eager and torch.compile'd)
# on the same data, configuration, batch and thread count; evaluation of the Food-Kitchen
# validation split at q = 256 against the same peers; the matmul lower bound of a paper-sized step.
# OpenBLAS, numpy and torch 1.13 are Debian's, installed for this measurement only (make bench-deps,
# which `make bench` runs first) and run with /usr/bin/python3; PyTorch 2.x is TORCH2_PY (make
# torch2-venv, which `make bench` runs next). About 25-30 minutes on 2 cores.
#   THREADS (default: all cores); SMALL_STEPS (48), PAPER_STEPS (3): timed steps after the warm-up
#   (hafvt: 1 step, the peers: PEER_WARMUP = 3, which covers torch.compile's compilations);
#   ROUNDS (3): alternating SGEMM rounds of ours and numpy, best per shape and side;
#   EVAL_REPS (3): fresh processes per side for the Food-Kitchen evaluation (median and range);
#   TRAIN=0 skips the training pairs and the lower bound; EVAL=0 skips the evaluation;
#   PEERS: a subset of "t113 t2 t2c" (default: those installed)
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
  echo "numpy not found: make bench-deps (or apt-get install python3-numpy libopenblas0-pthread) for the OpenBLAS column"
  exit 0
fi
# OpenBLAS picks its kernels from the CPU's identification; on some virtual machines it finds no
# match and falls back to a generic x86-64 core (Prescott: SSE3, a sixth of the AVX-512 rate).
# Then numpy and PyTorch 1.13 (on the same OpenBLAS) get the core that the CPU's flags name.
BLAS_CORE=
blas_core=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" tools/bench_gemm.py --info | sed -n 's/.*; core: \([^;]*\);.*/\1/p')
case "$blas_core" in
  Prescott|Core2|Penryn|Dunnington|Nehalem|Atom|Katmai|Coppermine|Northwood|Banias)
    if grep -qw avx512f /proc/cpuinfo; then BLAS_CORE=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then BLAS_CORE=Haswell; fi
    [ -n "$BLAS_CORE" ] && echo "OpenBLAS detects core $blas_core on this CPU, whose flags name $(grep -qw avx512f /proc/cpuinfo && echo AVX-512 || echo AVX2):" \
      "numpy and PyTorch 1.13 run with OPENBLAS_CORETYPE=$BLAS_CORE" ;;
esac
# ROUNDS alternating rounds of ours and numpy (OPENBLAS_L2_SIZE unset, OPENBLAS_CORETYPE unset or
# BLAS_CORE, for numpy's command only); each side keeps its best GFLOPS per shape over the rounds, so
# a slow spell of the machine does not land on one side only
ROUNDS=${ROUNDS:-3}
for r in $(seq "$ROUNDS"); do
  "$BIN" bench-gemm >"$tmp/gemm_ours_$r.txt"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${BLAS_CORE:+OPENBLAS_CORETYPE=$BLAS_CORE} "$PY" tools/bench_gemm.py >"$tmp/gemm_numpy_$r.txt"
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

# ---- the PyTorch peers: name, python, flags ----
TORCH2_PY=${TORCH2_PY:-build/venv-torch2/bin/python}
peer_names=() peer_py=() peer_flags=()
add_peer() {  # KEY PYTHON FLAGS...
  local key=$1 py=$2; shift 2
  case " ${PEERS:-t113 t2 t2c} " in *" $key "*) ;; *) return 0 ;; esac
  local v
  v=$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null) || return 0
  peer_names+=("PyTorch $v $([ $# -gt 0 ] && echo compiled || echo eager)")
  peer_py+=("$py") peer_flags+=("$*")
}
add_peer t113 "$PY"
[ -x "$TORCH2_PY" ] && add_peer t2 "$TORCH2_PY"
[ -x "$TORCH2_PY" ] && add_peer t2c "$TORCH2_PY" --compile
if [ ${#peer_names[@]} = 0 ]; then
  echo "no PyTorch found: make bench-deps (1.13), make torch2-venv (2.x) for the peers"
  exit 0
fi
[ -x "$TORCH2_PY" ] || echo "(no PyTorch 2.x at $TORCH2_PY: make torch2-venv; the table has the 1.13 peer only)"
PEER_WARMUP=${PEER_WARMUP:-3}
# the peak resident memory of a command (GNU time's %M, KiB) into FILE; `peak FILE py I ARGS...` runs
# tools/peer.py ARGS under peer I's python and flags (OpenBLAS as numpy's above)
peak() {
  local f=$1; shift
  if [ "$1" = py ]; then
    local i=$2; shift 2
    set -- env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ${BLAS_CORE:+OPENBLAS_CORETYPE=$BLAS_CORE} "${peer_py[$i]}" tools/peer.py "$@" ${peer_flags[$i]}
  fi
  /usr/bin/time -f "%M" -o "$f" "$@"
}
gib() { [ -s "$1" ] && awk '{printf "%.2f", $1 / 1048576}' "$1" || echo n/a; }
# the synthetic datasets, generated once (data/synth-* is ignored by git)
synth() {
  [ -f "data/synth-$1/synth.json" ] && grep -q "\"size\": \"$1\"" "data/synth-$1/synth.json" ||
    "$BIN" synth --out "data/synth-$1" --size "$1" >/dev/null
}
features() { echo "--img $1/img.npy --txt $1/txt.npy --img-ids $1/img_ids.txt --txt-ids $1/txt_ids.txt"; }
# "throughput: S steps after ...: R seq/s (X s/step)" is printed by both sides: R and X
rate() { [ -f "$1" ] && awk '/^throughput:/ {gsub(/\(/, "", $9); print $7, $9}' "$1"; }
# "q 64, e 64, 1500 / 1800 items" of a dataset folder and a q
desc() { echo "q $2, e $(sed -n 's/.*"E": \([0-9]*\).*/\1/p' "$1/synth.json"), $(grep -c . "$1/Alist.txt") / $(grep -c . "$1/Blist.txt") items"; }

# one configuration on every side: NAME DIR Q STEPS; the run folder is runs/bench/NAME
train_all() {
  local name=$1 dir=$2 q=$3 steps=$4
  echo "-- train $name: $dir, q $q, batch 256, $THREADS threads, $steps steps after the warm-up"
  rm -rf "runs/bench/$name"
  # --epochs/--eval-every high: no validation pass interrupts the steps
  # a side that fails (e.g. out of memory) shows its last lines and gets n/a in the table
  peak "$tmp/peak_ours_$name" "$BIN" train --data "$dir" $(features "$dir") --q "$q" --batch 256 --threads "$THREADS" \
    --epochs 1000 --eval-every 1000 --max-steps $((steps + 1)) --skip-test --out "runs/bench/$name" >"$tmp/ours_$name.log" 2>&1 ||
    tail -3 "$tmp/ours_$name.log"
  grep -E '^(model|throughput)' "$tmp/ours_$name.log" | sed 's/^/hafvt: /' || true
  for i in "${!peer_names[@]}"; do
    peak "$tmp/peak_py${i}_$name" py "$i" train --data "$dir" $(features "$dir") --q "$q" --batch 256 --threads "$THREADS" \
      --warmup "$PEER_WARMUP" --steps "$steps" >"$tmp/py${i}_$name.log" 2>&1 || tail -3 "$tmp/py${i}_$name.log"
    grep -E '^(throughput)' "$tmp/py${i}_$name.log" | sed "s/^/${peer_names[$i]}: /" || true
  done
}

echo "== training: hafvt against tools/peer.py train (${peer_names[*]}; float32) =="
synth "$SMALL_SIZE"
synth "$PAPER_SIZE"
if [ "${TRAIN:-1}" != 0 ]; then
  train_all small "data/synth-$SMALL_SIZE" 64 "$SMALL_STEPS"
  train_all paper "data/synth-$PAPER_SIZE" 256 "$PAPER_STEPS"
fi
echo

# ---- evaluation at the Food-Kitchen size: the validation split (8,173 lines), every item of the
# target's domain (29,207 / 34,886) scored by the x, y, xy views with the id and title modalities
# at q = 256 and e = 512, ranks under both protocols in the pass ----
FK=${FK:-../shared/data/c2dsr/Food-Kitchen}
TITLES=${TITLES:-../shared/data/llmcdsr-titles/Food-Kitchen}
EVAL_REPS=${EVAL_REPS:-3}
# median and range of a list of numbers: "median (min-max)"
stats() { sort -g | awk '{v[NR] = $1} END { if (NR == 0) { print "n/a"; exit }
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f (%.0f-%.0f)\n", m, v[1], v[NR] }'; }
median() { awk '{print $1}' | sort -g | awk '{v[NR] = $1} END { if (NR) print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
eval_ours=() eval_py=()
if [ "${EVAL:-1}" != 0 ] && [ -f "$FK/validdata_new.txt" ]; then
  fk=runs/bench/fk
  mkdir -p "$fk"
  [ -f "$fk/txt.npy" ] || "$BIN" text-features --data "$FK" --titles "$TITLES/titles_A.tsv" --titles "$TITLES/titles_B.tsv" \
    --out "$fk/txt.npy" --dim 512 >/dev/null
  fkflags=(--data "$FK" --txt "$fk/txt.npy" --txt-ids "$fk/txt_ids.txt" --q 256)
  # a checkpoint to score (one step of training: the speed does not depend on the parameters)
  [ -f "$fk/run/last.safetensors" ] || "$BIN" train "${fkflags[@]}" --train-file traindata_subset.txt --modalities id,txt \
    --batch 256 --threads "$THREADS" --epochs 1000 --eval-every 1000 --max-steps 1 --skip-test --out "$fk/run" >"$tmp/fk_train.log" 2>&1 ||
    tail -3 "$tmp/fk_train.log"
  echo "== evaluation: Food-Kitchen validation split, q 256, e 512 (title features), modalities id,txt, views x,y,xy, 256 lines per batch =="
  for proto in c2dsr full; do
    for i in $(seq "$EVAL_REPS"); do
      peak "$tmp/peak_eval_ours_$proto$i" "$BIN" eval --ckpt "$fk/run/last.safetensors" --split valid --protocol "$proto" \
        --threads "$THREADS" --eval-batch 256 >"$tmp/eval_ours_${proto}_$i.log" 2>&1 || tail -3 "$tmp/eval_ours_${proto}_$i.log"
    done
    eval_ours+=("$(sed -n 's/.*(\([0-9.]*\) lines\/s).*/\1/p' "$tmp"/eval_ours_${proto}_*.log | stats)")
    echo "hafvt eval --protocol $proto, lines/s in $EVAL_REPS fresh processes: $(sed -n 's/.*(\([0-9.]*\) lines\/s).*/\1/p' "$tmp"/eval_ours_${proto}_*.log | tr '\n' ' ')"
  done
  # each peer: EVAL_REPS fresh processes, each its first pass (eager) or its second (compiled: the
  # first one compiles), 256 lines per batch, both protocols' ranks in the pass
  for i in "${!peer_names[@]}"; do
    reps=1; [ -n "${peer_flags[$i]}" ] && reps=2
    for k in $(seq "$EVAL_REPS"); do
      peak "$tmp/peak_eval_py${i}_$k" py "$i" train "${fkflags[@]}" --train-file traindata_subset.txt --modalities id,txt \
        --threads "$THREADS" --warmup 0 --steps 0 --eval --eval-batch 256 --eval-repeats "$reps" >"$tmp/eval_py${i}_$k.log" 2>&1 ||
        tail -3 "$tmp/eval_py${i}_$k.log"
      if [ "$reps" = 1 ]; then
        sed -n 's/.*(\([0-9.]*\) lines\/s) on the first pass.*/\1/p' "$tmp/eval_py${i}_$k.log"
      else
        sed -n 's/.*best of [0-9]* \([0-9.]*\) lines\/s.*/\1/p' "$tmp/eval_py${i}_$k.log"
      fi >>"$tmp/eval_py${i}.txt"
    done
    eval_py+=("$(stats <"$tmp/eval_py${i}.txt")")
    echo "${peer_names[$i]}, lines/s in $EVAL_REPS fresh processes: $(tr '\n' ' ' <"$tmp/eval_py${i}.txt")"
  done
  echo
fi

# ---- the summary table ----
echo "== summary ($(date -u '+%Y-%m-%d'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads each side) =="
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'; }
row() { printf "%-44s %-40s %16s %9s %8s\n" "$@"; }
row "benchmark" "side" "figure" "peak GiB" "hafvt/x"
if [ "${TRAIN:-1}" != 0 ]; then
  for name in small paper; do
    d="data/synth-$SMALL_SIZE" q=64 st=$SMALL_STEPS
    [ $name = paper ] && d="data/synth-$PAPER_SIZE" q=256 st=$PAPER_STEPS
    read -r r_ours s_ours < <(rate "$tmp/ours_$name.log") || true
    label="train $name: $(desc "$d" $q)"
    row "$label" "hafvt (s/step)" "${s_ours:-n/a}" "$(gib "$tmp/peak_ours_$name")" ""
    best=
    for i in "${!peer_names[@]}"; do
      read -r r_py s_py < <(rate "$tmp/py${i}_$name.log") || true
      row "" "${peer_names[$i]} (s/step)" "${s_py:-n/a}" "$(gib "$tmp/peak_py${i}_$name")" "$(ratio "${s_py:-0}" "${s_ours:-0}")"
      if [ -n "${s_py:-}" ] && { [ -z "$best" ] || awk -v a="$s_py" -v b="$best" 'BEGIN { exit !(a < b) }'; }; then best=$s_py; fi
      s_py=
    done
    row "" "the faster peer" "${best:-n/a}" "" "$(ratio "${best:-0}" "${s_ours:-0}")"
    s_ours=
  done
fi
if [ ${#eval_ours[@]} -gt 0 ]; then
  k=0
  for proto in c2dsr full; do
    m_ours=$(sed -n 's/.*(\([0-9.]*\) lines\/s).*/\1/p' "$tmp"/eval_ours_${proto}_*.log | median)
    row "eval FK valid, $proto" "hafvt (lines/s)" "${eval_ours[$k]}" "$(cat "$tmp"/peak_eval_ours_$proto* | sort -g | tail -1 | awk '{printf "%.2f", $1 / 1048576}')" ""
    best=0
    for i in "${!peer_names[@]}"; do
      m_py=$(median <"$tmp/eval_py${i}.txt")
      row "" "${peer_names[$i]} (lines/s)" "${eval_py[$i]}" "$(cat "$tmp"/peak_eval_py${i}_* | sort -g | tail -1 | awk '{printf "%.2f", $1 / 1048576}')" "$(ratio "$m_ours" "$m_py")"
      awk -v a="${m_py:-0}" -v b="$best" 'BEGIN { exit !(a > b) }' && best=$m_py
    done
    row "" "the faster peer" "$best" "" "$(ratio "$m_ours" "$best")"
    k=$((k + 1))
  done
fi
echo "hafvt/x: for training the peer's s/step over hafvt's, for evaluation hafvt's median lines/s over the"
echo "peer's (above 1: hafvt is faster). Training: steps after the warm-up, batch 256, dropout 0.3, all nine"
echo "encoders. Evaluation: median (range) of $EVAL_REPS fresh processes, each side's pass scores every item of the"
echo "target's domain and ranks under both protocols (hafvt eval prints one; the peer's pass is its first,"
echo "or its second when compiled); 256 lines per batch on every side. Peak GiB: the"
echo "process's peak resident memory (GNU time %M), start-up, data and interpreter included."
echo
[ "${TRAIN:-1}" != 0 ] || exit 0
echo "== lower bound of a paper-sized training step: its matmul FLOPs at OpenBLAS's rates above =="
steps=()
read -r _ s < <(rate "$tmp/ours_paper.log") && steps+=(--step "hafvt=$s")
for i in "${!peer_names[@]}"; do
  read -r _ s < <(rate "$tmp/py${i}_paper.log") && steps+=(--step "${peer_names[$i]}=$s")
done
env -u OPENBLAS_CORETYPE "$PY" tools/peer.py flops --data "data/synth-$PAPER_SIZE" --q 256 --batch 256 --gemm "$tmp/gemm_numpy.txt" "${steps[@]}"
