#!/usr/bin/env bash
# docs/results.md's Food-Kitchen table: the real C2DSR Food-Kitchen data of ../shared (the
# 5,731-sequence training subset, the full validation and test splits), three configurations x
# three seeds, two single-threaded runs at a time (one per core), then tools/ablation_table.py.
#   bash tools/fk_results.sh            (runs in runs/fk, table on stdout)
# Settings: LR, L2 (chosen on the validation split, see docs/results.md), Q, EPOCHS, PATIENCE,
# SEEDS; a finished run (metrics.jsonl with its test rows) is not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/c2dsr/Food-Kitchen}
TITLES=${TITLES:-../shared/data/llmcdsr-titles/Food-Kitchen}
OUT=${OUT:-runs/fk}
LR=${LR:-1e-3}
L2=${L2:-1e-5}
Q=${Q:-64}
EPOCHS=${EPOCHS:-10}
PATIENCE=${PATIENCE:-3}
TXT_DIM=${TXT_DIM:-64}
SEEDS=${SEEDS:-1 2 3}
CONFIGS=${CONFIGS:-orig hier text}
[ -f "$DATA/traindata_subset.txt" ] || { echo "fk_results.sh: $DATA/traindata_subset.txt not found (needs ../shared)"; exit 2; }
make -s build/hafvt >/dev/null
mkdir -p "$OUT"
# the text modality: hashed n-gram TF-IDF of the titles (hafvt text-features), TXT_DIM columns
if [ ! -f "$OUT/txt.npy" ]; then
  build/hafvt text-features --data "$DATA" --titles "$TITLES/titles_A.tsv" --titles "$TITLES/titles_B.tsv" \
    --out "$OUT/txt.npy" --dim "$TXT_DIM"
fi
flags_of() {
  case $1 in
    orig) echo "--views xy --modalities id" ;;
    hier) echo "--views x,y,xy --modalities id" ;;
    text) echo "--views x,y,xy --modalities id,txt --txt $OUT/txt.npy --txt-ids $OUT/txt_ids.txt" ;;
  esac
}
# a run is skipped when it has finished (test rows in its metrics.jsonl) or when its lock folder
# exists (another invocation is running it; remove RUN.lock by hand after a crash)
run_one() {
  local name=$1 seed=$2 dir=$OUT/$1_s$2
  [ -f "$dir/metrics.jsonl" ] && grep -q '"split":"test"' "$dir/metrics.jsonl" && return 0
  mkdir "$dir.lock" 2>/dev/null || { echo "$name seed $seed: $dir.lock exists, skipped (running elsewhere?)"; return 0; }
  trap 'rmdir "$dir.lock"' RETURN
  local t0=$SECONDS
  build/hafvt train --data "$DATA" --train-file traindata_subset.txt --q "$Q" --lr "$LR" --l2 "$L2" \
    --epochs "$EPOCHS" --patience "$PATIENCE" --seed "$seed" --threads 1 --out "$dir" $(flags_of "$name") \
    > "$dir.log" 2>&1 || { echo "$name seed $seed failed: see $dir.log"; return 1; }
  echo "$(date +%T) done $name seed $seed in $((SECONDS - t0)) s: $(grep -m1 'test   full      X' "$dir.log" || true)"
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
