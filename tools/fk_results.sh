#!/usr/bin/env bash
# docs/results.md's real-data tables: configurations x seeds on a C2DSR scenario of ../shared,
# two single-threaded runs at a time (one per core), then tools/ablation_table.py.
#   bash tools/fk_results.sh            Food-Kitchen: the 5,731-sequence training subset, the
#                                       full validation and test splits (runs in runs/fk)
#   SCENARIO=mb bash tools/fk_results.sh
#                                       Movie-Book, which has no training file: `hafvt fold-valid`
#                                       moves 80% of its validation lines (seed 1) into training
#                                       (runs/mb/data); text = the Movie titles (none for Book)
#   SCENARIO=fkfold bash tools/fk_results.sh
#                                       Food-Kitchen, the training subset plus 80% of the
#                                       validation lines (`hafvt fold-valid`, seed 1, runs/fkfold/data);
#                                       the rest of the validation lines validate, the test split as is
# Configurations (CONFIGS): orig (--views xy --modalities id), otext (--views xy, id + text),
# hier (--views x,y,xy --modalities id), text (--views x,y,xy, id + text), mtext (as text, with
# the MiniLM title features of tools/clip_features.py --encoder minilm in $MINILM/txt.npy).
# TUNE=1 trains with --tune (the mixture and score weights chosen on the validation split).
# Settings: LR, L2 (chosen on the validation split, see docs/results.md), Q, EPOCHS, PATIENCE,
# SEEDS, TXT_DIM; a finished run (metrics.jsonl with its test rows) is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${SCENARIO:-fk}
case $SCENARIO in
  fk) SRC=../shared/data/c2dsr/Food-Kitchen TITLES=../shared/data/llmcdsr-titles/Food-Kitchen
      TITLE_FILES="titles_A.tsv titles_B.tsv" OUT=${OUT:-runs/fk} DATA=$SRC TRAIN_FILE=traindata_subset.txt ;;
  mb) SRC=../shared/data/c2dsr/Movie-Book TITLES=../shared/data/llmcdsr-titles/Movie-Book
      TITLE_FILES="titles_A.tsv" OUT=${OUT:-runs/mb} DATA=${OUT:-runs/mb}/data TRAIN_FILE=traindata_new.txt ;;
  fkfold) SRC=../shared/data/c2dsr/Food-Kitchen TITLES=../shared/data/llmcdsr-titles/Food-Kitchen
      TITLE_FILES="titles_A.tsv titles_B.tsv" OUT=${OUT:-runs/fkfold} DATA=${OUT:-runs/fkfold}/data TRAIN_FILE=traindata_new.txt ;;
  *) echo "fk_results.sh: SCENARIO must be fk, fkfold or mb, not $SCENARIO"; exit 2 ;;
esac
LR=${LR:-1e-3}
L2=${L2:-1e-5}
Q=${Q:-64}
EPOCHS=${EPOCHS:-10}
PATIENCE=${PATIENCE:-3}
TXT_DIM=${TXT_DIM:-64}
SEEDS=${SEEDS:-1 2 3}
CONFIGS=${CONFIGS:-orig hier text}
TUNE=${TUNE:-0}
MINILM=${MINILM:-runs/fk-minilm}
case " $CONFIGS " in *" mtext "*) [ -f "$MINILM/txt.npy" ] || {
  echo "fk_results.sh: $MINILM/txt.npy not found: make minilm-venv, then tools/clip_features.py --encoder minilm (docs/results.md)"; exit 2; } ;; esac
[ -f "$SRC/Alist.txt" ] || { echo "fk_results.sh: $SRC/Alist.txt not found (needs ../shared)"; exit 2; }
make -s build/hafvt >/dev/null
mkdir -p "$OUT"
if [ "$SCENARIO" = mb ] && [ ! -f "$DATA/fold.json" ]; then
  build/hafvt fold-valid --data "$SRC" --out "$DATA" --fraction 0.8 --seed 1
fi
if [ "$SCENARIO" = fkfold ] && [ ! -f "$DATA/fold.json" ]; then
  build/hafvt fold-valid --data "$SRC" --train-file traindata_subset.txt --out "$DATA" --fraction 0.8 --seed 1
fi
# the text modality: hashed n-gram TF-IDF of the titles (hafvt text-features), TXT_DIM columns
if [ ! -f "$OUT/txt.npy" ]; then
  build/hafvt text-features --data "$DATA" $(for t in $TITLE_FILES; do echo --titles "$TITLES/$t"; done) \
    --out "$OUT/txt.npy" --dim "$TXT_DIM"
fi
txt_flags="--txt $OUT/txt.npy --txt-ids $OUT/txt_ids.txt"
flags_of() {
  case $1 in
    orig) echo "--views xy --modalities id" ;;
    otext) echo "--views xy --modalities id,txt $txt_flags" ;;
    hier) echo "--views x,y,xy --modalities id" ;;
    text) echo "--views x,y,xy --modalities id,txt $txt_flags" ;;
    mtext) echo "--views x,y,xy --modalities id,txt --txt $MINILM/txt.npy --txt-ids $MINILM/txt_ids.txt" ;;
    *) echo "fk_results.sh: unknown configuration $1" >&2; exit 2 ;;
  esac
}
# a run is skipped when it has finished (test rows in its metrics.jsonl, and with TUNE=1 its
# tuned.json and the tuned weights' c2dsr test record) or when its lock folder exists (another
# invocation is running it; remove RUN.lock by hand after a crash)
run_one() {
  local name=$1 seed=$2 dir=$OUT/$1_s$2 trained=0
  [ -f "$dir/metrics.jsonl" ] && grep -q '"split":"test"' "$dir/metrics.jsonl" &&
    { [ "$TUNE" = 0 ] || [ -f "$dir/tuned.json" ]; } && trained=1
  [ $trained = 1 ] && { [ "$TUNE" = 0 ] || [ -f "$dir/tuned_test_c2dsr.json" ]; } && return 0
  mkdir "$dir.lock" 2>/dev/null || { echo "$name seed $seed: $dir.lock exists, skipped (running elsewhere?)"; return 0; }
  trap 'rmdir "$dir.lock"' RETURN
  local t0=$SECONDS
  if [ $trained = 0 ]; then
    build/hafvt train --data "$DATA" --train-file "$TRAIN_FILE" --q "$Q" --lr "$LR" --l2 "$L2" \
      --epochs "$EPOCHS" --patience "$PATIENCE" --seed "$seed" --threads 1 --out "$dir" $(flags_of "$name") \
      $([ "$TUNE" = 0 ] || echo --tune) > "$dir.log" 2>&1 || { echo "$name seed $seed failed: see $dir.log"; return 1; }
    echo "$(date +%T) done $name seed $seed in $((SECONDS - t0)) s: $(grep -m1 'test   full      X' "$dir.log" || true)"
  fi
  # tune scores the test split with the tuned weights under the protocol it chose by (full); the
  # c2dsr record of the same weights, for the tables
  if [ "$TUNE" = 1 ]; then
    build/hafvt eval --ckpt "$dir/best.safetensors" --split test --protocol c2dsr --threads 1 \
      --json "$dir/tuned_test_c2dsr.json" >> "$dir.log" 2>&1 || { echo "$name seed $seed: eval failed: see $dir.log"; return 1; }
  fi
}
jobs_list=()
for seed in $SEEDS; do for c in $CONFIGS; do jobs_list+=("$c $seed"); done; done
PARALLEL=${PARALLEL:-$(nproc)}
for j in "${jobs_list[@]}"; do
  while (( $(jobs -rp | wc -l) >= PARALLEL )); do wait -n || true; done
  run_one $j &
done
wait
/usr/bin/python3 tools/ablation_table.py "$OUT" fk
