#!/usr/bin/env bash
# tools/bench_gpu.sh (make bench-gpu): the check and the benchmark of a machine with a CUDA GPU, in
# one run that never calls apt and needs no network. Stages, in order, each under its own `timeout`
# (and all of them within TIME_BUDGET seconds), every stage running even when an earlier one failed:
#   1. build: build/hafvt (make all), then build/test_hafvt on its own, so a test that does not
#      compile still leaves the program to benchmark
#   2. the CUDA test cases (doctest --test-case=$CUDA_CASES) with REQUIRE_GPU=1 and HAFVT_CUDA_SYNC=1
#   3. compute-sanitizer memcheck and racecheck on the attention, embedding and fused-head cases
#      (skipped with a message when compute-sanitizer is not found)
#   4. with FULL_SUITE=1 only: the rest of the suite (every case but the CUDA ones)
#   5. 20 optimizer steps of `hafvt train --device $DEVICE` (--max-steps 20): every loss must be finite
#   6. timed epochs of the paper-sized synthetic configuration (hafvt synth --size paper: 29,207 /
#      34,886 items, 34,117 training sequences, 512-wide image and text features; q 256, batch 256,
#      all nine encoders, dropout 0.3) for `hafvt train --device cuda` (FP32, then --tf32), the
#      evaluation of the validation split, and the PyTorch peer `tools/peer.py train --device
#      cuda` on the same GPU; seconds per epoch and the ratio
# and prints a table of every stage's status (passed / FAILED / skipped) and figures; the exit status
# is non-zero when a stage failed.
#   OUT: the folder for the logs (the device tool's empty folder that comes back); default
#        runs/bench_gpu. The checkpoints of the timed runs stay in runs/bench_gpu (too big to carry).
#   DOCTEST_DIR: a folder holding doctest/doctest.h (make doctest-dir writes build/doctest, used
#        by default when present); without one and without /usr/include/doctest the tests are not built
#   EPOCHS (2): hafvt epochs per timed run; the first holds the start-up, the others are averaged
#   PEER_STEPS (134 = one epoch at batch 256): the peer's timed steps after 3 warm-up steps
#   SIZE (paper), DEVICE (cuda): SIZE=tiny DEVICE=cpu tries the script on a machine without a GPU
#        (stages 2 and 3 are then skipped, 5 and 6 run on the CPU)
#   FULL_SUITE (0): 1 runs stage 4;  TIME_BUDGET (360): seconds for all stages together
#   PY (python3): a Python with torch >= 2.0 built with CUDA, for the peer (skipped without one)
#   BUILD (build), MAKE_ARGS (''): the build folder and extra make arguments (e.g. USE_CUDA=0)
#   CUDA_CASES ('cuda*': the "cuda:" and "cuda large:" cases), SANITIZE_CASES: doctest filters of
#        stages 2 and 3
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
EPOCHS=${EPOCHS:-2}
PEER_STEPS=${PEER_STEPS:-134}
SIZE=${SIZE:-paper}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
FULL_SUITE=${FULL_SUITE:-0}
TIME_BUDGET=${TIME_BUDGET:-360}
BUILD=${BUILD:-build}
MAKE_ARGS=${MAKE_ARGS:-}
JOBS=$(nproc)
DATA=data/synth-$SIZE
LOG=${OUT:-runs/bench_gpu}  # logs
WORK=runs/bench_gpu         # run folders with checkpoints
mkdir -p "$LOG" "$WORK" || exit 1
if [ -z "${DOCTEST_DIR:-}" ] && [ ! -f /usr/include/doctest/doctest.h ] && [ -f build/doctest/doctest/doctest.h ]; then
  DOCTEST_DIR=build/doctest
fi
DOCTEST_DIR=${DOCTEST_DIR:-}
CUDA_CASES=${CUDA_CASES:-'cuda*'}
SANITIZE_CASES=${SANITIZE_CASES:-'cuda: attention*,cuda: embedding*,cuda: fused*'}

T0=$SECONDS
NAMES=() STATUS=() SECS=() INFO=()
record() {  # NAME STATUS SECONDS INFO
  NAMES+=("$1") STATUS+=("$2") SECS+=("$3") INFO+=("$4")
  echo "$1: $2${4:+ ($4)}"
}
# step CAP LOGFILE CMD...: CMD with its output in LOGFILE under `timeout`, for CAP seconds or what is
# left of TIME_BUDGET; sets RC (0 ok, 124 timed out or killed, 200 not run: no time left) and DT
step() {
  local cap=$1 log=$2 t=$SECONDS lim
  shift 2
  lim=$((TIME_BUDGET - (SECONDS - T0)))
  ((lim > cap)) && lim=$cap
  if ((lim < 5)); then
    echo "not run: the time budget (TIME_BUDGET=$TIME_BUDGET s) is spent" >"$log"
    RC=200 DT=0
    return
  fi
  timeout -k 10 "$lim" "$@" >"$log" 2>&1
  RC=$?
  ((RC == 137)) && RC=124
  DT=$((SECONDS - t))
  ((RC == 124)) && echo "[bench_gpu.sh: killed after $lim s]" >>"$log"
}
# verdict [INFO]: the stage status of RC; INFO (figures) when it passed, the reason otherwise
verdict() {
  case $RC in
    0) V=passed VI=${1:-} ;;
    124) V=FAILED VI="timed out after $DT s${1:+, $1}" ;;
    200) V=skipped VI="time budget spent" ;;
    *) V=FAILED VI="exit $RC${1:+, $1}" ;;
  esac
}
# doctest's counts: "N cases, M assertions" of a log, or "" when no case ran
doctest_counts() {
  awk -F'|' '/^\[doctest\] test cases:/ { split($1, a, ":"); c = a[2] + 0 }
    /^\[doctest\] assertions:/ { split($1, a, ":"); n = a[2] + 0 }
    END { if (c > 0) printf "%d cases, %d assertions", c, n }' "$1"
}
# a doctest stage: NAME CAP LOG [doctest args]; passes when the binary exits 0 and ran at least one case
doctest_stage() {
  local name=$1 cap=$2 log=$3
  shift 3
  step "$cap" "$log" "$@"
  local counts
  counts=$(doctest_counts "$log")
  [ "$RC" = 0 ] && [ -z "$counts" ] && RC=1 counts="no test case ran"
  verdict "$counts"
  record "$name" "$V" "$DT" "$VI"
  # on a failure: doctest's errors and the sanitizer's findings, each distinct line once
  [ "$V" = FAILED ] && { grep -E '^\[doctest\] (test cases|assertions)|ERROR|FAILED|^========= [A-Z]' "$log" | awk '!seen[$0]++' |
                          head -20; echo "  (log: $LOG/${log##*/})"; }
  return 0
}

main() {
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $JOBS cores"
  if command -v nvidia-smi >/dev/null; then
    echo "gpu: $(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
  fi
  local nvcc
  nvcc=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
  if [ -n "$nvcc" ]; then echo "nvcc: $nvcc, $("$nvcc" --version | tail -1)"; else echo "nvcc: not found"; fi
  local san
  san=$(command -v compute-sanitizer || for d in ${nvcc:+"$(dirname "$nvcc")"} /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
    [ -x "$d/compute-sanitizer" ] && { echo "$d/compute-sanitizer"; break; }; done)
  echo "compute-sanitizer: ${san:-not found}"
  local doctest=/usr/include/doctest/doctest.h
  [ -n "$DOCTEST_DIR" ] && doctest=$DOCTEST_DIR/doctest/doctest.h
  echo "doctest: $doctest$([ -f "$doctest" ] || echo ' (not found)')"
  echo "logs: $LOG; device $DEVICE, $SIZE data, EPOCHS=$EPOCHS, FULL_SUITE=$FULL_SUITE, TIME_BUDGET=$TIME_BUDGET s"
  echo

  echo "== build =="
  local extra make_cmd
  read -ra extra <<<"$MAKE_ARGS"
  make_cmd=(make -j"$JOBS" BUILD="$BUILD" ${DOCTEST_DIR:+DOCTEST_DIR="$DOCTEST_DIR"} "${extra[@]}")
  step 300 "$LOG/build.log" "${make_cmd[@]}" all
  grep -m1 '^CUDA' "$LOG/build.log"
  [ "$RC" = 0 ] && [ ! -x "$BUILD/hafvt" ] && RC=1
  verdict
  [ "$V" = passed ] && VI=$BUILD/hafvt
  record "build hafvt" "$V" "$DT" "$VI"
  [ "$V" = passed ] || grep -E 'error|Error' "$LOG/build.log" | head -20
  local have_tests=0
  if [ -z "$DOCTEST_DIR" ] && [ ! -f /usr/include/doctest/doctest.h ]; then
    record "build tests" FAILED 0 "no doctest.h: run make doctest-dir where doctest-dev is installable, carry build/doctest"
  else
    step 240 "$LOG/build_tests.log" "${make_cmd[@]}" "$BUILD/test_hafvt"
    [ "$RC" = 0 ] && [ ! -x "$BUILD/test_hafvt" ] && RC=1
    verdict
    [ "$V" = passed ] && VI=$BUILD/test_hafvt
    record "build tests" "$V" "$DT" "$VI"
    [ "$V" = passed ] && have_tests=1 || grep -E 'error|Error|doctest\.h' "$LOG/build_tests.log" | head -20
  fi
  grep -hE 'warning:' "$LOG/build.log" "$LOG/build_tests.log" 2>/dev/null | head -10
  echo

  local test_env=(env REQUIRE_GPU=1 HAFVT_CUDA_SYNC=1 HAFVT_BIN="$BUILD/hafvt")
  echo "== CUDA test cases, then compute-sanitizer =="
  if [ "$DEVICE" != cuda ]; then
    echo "DEVICE=$DEVICE: the CUDA test cases and compute-sanitizer need DEVICE=cuda"
    record "CUDA test cases" skipped 0 "DEVICE=$DEVICE"
    record "memcheck" skipped 0 "DEVICE=$DEVICE"
    record "racecheck" skipped 0 "DEVICE=$DEVICE"
  elif [ "$have_tests" = 0 ]; then
    record "CUDA test cases" FAILED 0 "no test binary"
    record "memcheck" skipped 0 "no test binary"
    record "racecheck" skipped 0 "no test binary"
  else
    doctest_stage "CUDA test cases" 120 "$LOG/test_cuda.log" "${test_env[@]}" "$BUILD/test_hafvt" --test-case="$CUDA_CASES"
    if [ -z "$san" ]; then
      echo "compute-sanitizer not found (PATH, next to nvcc, /usr/local/cuda/bin): memcheck and racecheck skipped"
      record "memcheck" skipped 0 "no compute-sanitizer"
      record "racecheck" skipped 0 "no compute-sanitizer"
    else
      local tool
      for tool in memcheck racecheck; do
        doctest_stage "$tool" 90 "$LOG/$tool.log" "${test_env[@]}" "$san" --tool "$tool" --error-exitcode 1 \
          "$BUILD/test_hafvt" --test-case="$SANITIZE_CASES"
        [ "$V" = passed ] && grep -m2 -E '^=+ (ERROR SUMMARY|RACECHECK SUMMARY)' "$LOG/$tool.log" | sed 's/^/  /'
      done
    fi
  fi
  if [ "$FULL_SUITE" = 1 ] && [ "$have_tests" = 1 ]; then
    echo "-- the rest of the suite (FULL_SUITE=1)"
    doctest_stage "rest of the suite" 300 "$LOG/test_rest.log" env HAFVT_BIN="$BUILD/hafvt" "$BUILD/test_hafvt" \
      --test-case-exclude="$CUDA_CASES"
  else
    record "rest of the suite" skipped 0 "$([ "$FULL_SUITE" = 1 ] && echo "no test binary" || echo "FULL_SUITE=0")"
  fi
  echo

  # without the program nothing below can run
  if [ ! -x "$BUILD/hafvt" ]; then
    for s in "data" "train 20 steps" "epochs FP32" "epochs TF32" "eval valid" "PyTorch peer"; do record "$s" skipped 0 "no $BUILD/hafvt"; done
    echo
    summary
    return 1
  fi

  echo "== data: $SIZE synthetic =="
  if [ -f "$DATA/synth.json" ] && grep -q "\"size\": \"$SIZE\"" "$DATA/synth.json"; then
    RC=0 DT=0
  else
    step 60 "$LOG/synth.log" "$BUILD/hafvt" synth --out "$DATA" --size "$SIZE"
  fi
  verdict "$DATA"
  record "data" "$V" "$DT" "$VI"
  if [ "$V" != passed ]; then
    for s in "train 20 steps" "epochs FP32" "epochs TF32" "eval valid" "PyTorch peer"; do record "$s" skipped 0 "no data"; done
    echo
    summary
    return 1
  fi
  local features=(--img "$DATA/img.npy" --txt "$DATA/txt.npy" --img-ids "$DATA/img_ids.txt" --txt-ids "$DATA/txt_ids.txt")
  ntrain=$(grep -c . "$DATA/traindata_new.txt")
  echo

  echo "== 20 training steps, --device $DEVICE, HAFVT_CUDA_SYNC=1 =="
  rm -rf "$WORK/steps20"
  step 90 "$LOG/train20.log" env HAFVT_CUDA_SYNC=1 "$BUILD/hafvt" train --data "$DATA" "${features[@]}" --q 256 --batch 256 \
    --device "$DEVICE" --epochs 20 --max-steps 20 --log-every 1 --eval-every 1000 --skip-test --threads "$JOBS" \
    --out "$WORK/steps20"
  # every logged loss must be a finite number, and there must be 20 of them
  local losses nsteps bad
  losses=$(sed -n 's/^epoch [0-9]*\/[0-9]* step .* | loss \([^ ]*\) .*/\1/p' "$LOG/train20.log")
  nsteps=$(grep -c . <<<"$losses")
  bad=$(grep . <<<"$losses" | grep -cvE '^[0-9]+(\.[0-9]+)?$')
  if [ "$RC" = 0 ] && { [ "$nsteps" != 20 ] || [ "$bad" != 0 ]; }; then RC=1; fi
  local figures="no loss logged"
  [ "$nsteps" -gt 0 ] && figures="mean loss $(head -1 <<<"$losses") -> $(tail -1 <<<"$losses") ($nsteps steps, $bad not finite)"
  figures="$figures$(sed -n 's/^throughput: .*: \([0-9]*\)[0-9.]* seq\/s.*/, \1 seq\/s/p' "$LOG/train20.log")"
  verdict "$figures"
  record "train 20 steps" "$V" "$DT" "$VI"
  [ "$V" = FAILED ] && tail -5 "$LOG/train20.log"
  echo

  echo "== epochs: $SIZE synthetic ($ntrain training sequences), q 256, batch 256, $EPOCHS epochs =="
  hafvt_fp32=n/a hafvt_tf32=n/a
  run_hafvt "epochs FP32" fp32 240
  hafvt_fp32=$(epoch_s "$LOG/fp32.log")
  if [ "$DEVICE" = cuda ]; then
    run_hafvt "epochs TF32" tf32 150 --tf32
    hafvt_tf32=$(epoch_s "$LOG/tf32.log")
  else
    record "epochs TF32" skipped 0 "DEVICE=$DEVICE"
  fi

  # evaluation of the validation split with the FP32 run's checkpoint, each protocol in a fresh process
  local proto ok=0 n=0 worst=0 why=""
  eval_c2dsr="" eval_full=""
  if [ -f "$WORK/fp32/last.safetensors" ]; then
    for proto in c2dsr full; do
      step 60 "$LOG/eval_$proto.log" "$BUILD/hafvt" eval --ckpt "$WORK/fp32/last.safetensors" --split valid \
        --protocol "$proto" --device "$DEVICE" --threads "$JOBS"
      n=$((n + DT))
      [ "$RC" = 0 ] && ok=$((ok + 1)) || { worst=$RC; why="$proto: $(tail -1 "$LOG/eval_$proto.log")"; }
    done
    eval_c2dsr=$(sed -n 's/.*(\([0-9.]*\) lines\/s).*/\1/p' "$LOG/eval_c2dsr.log")
    eval_full=$(sed -n 's/.*(\([0-9.]*\) lines\/s).*/\1/p' "$LOG/eval_full.log")
    RC=$worst DT=$n
    verdict "lines/s: c2dsr ${eval_c2dsr:-n/a}, full ${eval_full:-n/a}"
    [ "$V" = FAILED ] && VI="$VI; $why"
    record "eval valid" "$V" "$DT" "$VI"
  else
    record "eval valid" skipped 0 "no FP32 checkpoint"
  fi

  peer=n/a
  if timeout 60 "$PY" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or (hasattr(torch, 'set_default_device') and torch.cuda.is_available()) else 1)" 2>/dev/null; then
    echo "-- PyTorch peer --device $DEVICE: $PEER_STEPS steps after 3 warm-up steps"
    step 180 "$LOG/peer.log" "$PY" tools/peer.py train --data "$DATA" "${features[@]}" --q 256 --batch 256 \
      --device "$DEVICE" --threads "$JOBS" --warmup 3 --steps "$PEER_STEPS"
    grep -E '^(peer|throughput)' "$LOG/peer.log" | sed 's/^/  /'
    local rate
    rate=$(awk '/^throughput:/ {print $7}' "$LOG/peer.log")
    [ -n "$rate" ] && peer=$(awk -v n="$ntrain" -v r="$rate" 'BEGIN { printf "%.3f", n / r }')
    [ "$RC" = 0 ] && [ "$peer" = n/a ] && RC=1
    verdict "$peer s/epoch"
    record "PyTorch peer" "$V" "$DT" "$VI"
    [ "$V" = FAILED ] && tail -5 "$LOG/peer.log"
  else
    record "PyTorch peer" skipped 0 "$PY has no torch >= 2.0$([ "$DEVICE" = cuda ] && echo " with CUDA")"
  fi
  echo
  summary
}

# seconds per epoch of a hafvt log: the last progress line of each epoch after the first gives
# the epoch's rate (sequences / seconds of its steps, without the validation pass)
epoch_s() {
  awk -v n="$ntrain" '/^epoch [0-9]+\/[0-9]+ step / {
      split($2, e, "/"); split($4, k, "/");
      if (k[1] == k[2] && e[1] > 1) { for (i = 1; i <= NF; i++) if ($(i+1) == "seq/s") { s += n / $i; c++ } } }
    END { if (c) printf "%.3f", s / c; else print "n/a" }' "$1"
}

run_hafvt() {  # STAGE NAME CAP [extra flags]
  local stage=$1 name=$2 cap=$3
  shift 3
  echo "-- hafvt --device $DEVICE${*:+ $*}: $EPOCHS epochs"
  rm -rf "${WORK:?}/$name"
  step "$cap" "$LOG/$name.log" "$BUILD/hafvt" train --data "$DATA" "${features[@]}" --q 256 --batch 256 --device "$DEVICE" \
    --epochs "$EPOCHS" --eval-every 1000 --skip-test --threads "$JOBS" --out "$WORK/$name" "$@"
  grep -E '^(device|model|epoch [0-9]+ valid)' "$LOG/$name.log" | sed 's/^/  /'
  local s
  s=$(epoch_s "$LOG/$name.log")
  [ "$RC" = 0 ] && [ "$s" = n/a ] && [ "$EPOCHS" -gt 1 ] && RC=1
  verdict "$s s/epoch"
  record "$stage" "$V" "$DT" "$VI"
  [ "$V" = FAILED ] && tail -5 "$LOG/$name.log"
  return 0
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", b / a; else print "n/a" }'; }

summary() {
  local gpu i failed=0
  gpu=$(command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  for i in "${!STATUS[@]}"; do [ "${STATUS[$i]}" = FAILED ] && failed=$((failed + 1)); done
  {
    echo "== summary ($(date -u '+%Y-%m-%d'), ${gpu:-$DEVICE}, $((SECONDS - T0)) s in all) =="
    printf "%-20s %-8s %6s  %s\n" stage status seconds figures
    for i in "${!NAMES[@]}"; do
      printf "%-20s %-8s %6s  %s\n" "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${INFO[$i]}"
    done
    if [ -n "${ntrain:-}" ]; then
      echo
      printf "%-44s %12s %18s\n" "training, $SIZE synthetic, batch 256" "s/epoch" "PyTorch / hafvt"
      printf "%-44s %12s %18s\n" "hafvt --device $DEVICE (FP32)" "$hafvt_fp32" "$(ratio "$hafvt_fp32" "$peer")"
      printf "%-44s %12s %18s\n" "hafvt --device $DEVICE --tf32" "$hafvt_tf32" "$(ratio "$hafvt_tf32" "$peer")"
      printf "%-44s %12s\n" "PyTorch peer (FP32)" "$peer"
      echo "hafvt eval --device $DEVICE, valid split, lines/s (fresh process, start-up included): c2dsr ${eval_c2dsr:-n/a}, full ${eval_full:-n/a}"
      echo "goals (issue): an epoch in at most 3 s on one H100 in FP32, and at least 3x faster than PyTorch"
    fi
    echo "$failed stage(s) FAILED; logs in $LOG"
  } | tee "$LOG/summary.txt"
  [ "$failed" = 0 ]
}

main 2>&1 | tee "$LOG/bench_gpu.log"
exit "${PIPESTATUS[0]}"
