#!/usr/bin/env bash
# objectives.sh: the objective variants of SPEC §3.5 on the medium synthetic data
# (docs/synthetic-results.md): six configurations x three seeds, each trained with --tune (the
# weights chosen on valid, the test split scored with the trained and the tuned weights), one
# thread per run, two runs at a time; then the table of tools/objective_table.py.
#   bash tools/objectives.sh            # runs/objectives/<config>_s<seed>
# With FK=1, instead the Food-Kitchen subset with title features (docs/results.md's `text`
# configuration): the paper's objective against --lambda-h 1, three seeds (runs/objectives-fk).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/hafvt >/dev/null
SEEDS=${SEEDS:-1 2 3}
if [ "${FK:-0}" = 1 ]; then
  DATA=${DATA:-../shared/data/c2dsr/Food-Kitchen}
  TITLES=${TITLES:-../shared/data/llmcdsr-titles/Food-Kitchen}
  OUT=${OUT:-runs/objectives-fk}
  [ -f "$DATA/traindata_subset.txt" ] || { echo "objectives.sh: $DATA/traindata_subset.txt not found (needs ../shared)"; exit 2; }
  mkdir -p "$OUT"
  [ -f "$OUT/txt.npy" ] || build/hafvt text-features --data "$DATA" --titles "$TITLES/titles_A.tsv" \
    --titles "$TITLES/titles_B.tsv" --out "$OUT/txt.npy" --dim 64
  common="--data $DATA --train-file traindata_subset.txt --views x,y,xy --modalities id,txt --txt $OUT/txt.npy --txt-ids $OUT/txt_ids.txt"
  configs=("text|" "text_lh1|--lambda-h 1")
  BATCH=256  # as tools/fk_results.sh
else
  DATA=${DATA:-data/synth-medium}
  OUT=${OUT:-runs/objectives}
  [ -f "$DATA/Alist.txt" ] || build/hafvt synth --out "$DATA" --size medium
  mkdir -p "$OUT"
  common="--data $DATA --img $DATA/img.npy --txt $DATA/txt.npy --img-ids $DATA/img_ids.txt --txt-ids $DATA/txt_ids.txt"
  BATCH=64  # as tools/ablation.sh
  configs=("paper|" "lh1|--lambda-h 1" "lh1a6|--lambda-h 1 --alpha 0.6 --beta 0.2" "wu3|--id-warmup 3"
           "id|--modalities id" "xy|--views xy")
fi
run_one() {
  local name=$1 seed=$2 flags=$3 dir=$OUT/$1_s$2
  [ -f "$dir/tuned.json" ] && return 0
  # shellcheck disable=SC2086
  build/hafvt train $common --q 64 --batch $BATCH --epochs 10 --patience 3 --seed "$seed" --threads 1 --tune \
    --out "$dir" $flags > "$dir.log" 2>&1 || { echo "$name seed $seed failed: see $dir.log"; return 1; }
  echo "$(date +%T) done $name seed $seed"
}
i=0
for seed in $SEEDS; do
  for c in "${configs[@]}"; do
    run_one "${c%%|*}" "$seed" "${c#*|}" &
    i=$((i + 1))
    if (( i % 2 == 0 )); then wait; fi
  done
done
wait
if [ "${FK:-0}" = 1 ]; then
  python3 tools/objective_table.py "$OUT" "text=--modalities id,txt (paper's objective)" "text_lh1=--modalities id,txt --lambda-h 1"
else
  python3 tools/objective_table.py "$OUT" "paper=full model, the paper's objective" "lh1=full model, --lambda-h 1" \
    "lh1a6=full model, --lambda-h 1 --alpha 0.6 --beta 0.2" "wu3=full model, --id-warmup 3" \
    "id=--modalities id" "xy=--views xy"
fi
