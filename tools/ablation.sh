#!/usr/bin/env bash
# The synthetic ablation table of the README: 6 configurations x 3 seeds on the medium synthetic
# dataset, two single-threaded runs at a time (one per core), then tools/ablation_table.py.
#   bash tools/ablation.sh [EPOCHS]        (results in runs/ablation, table on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-10}
DATA=data/synth-medium
OUT=runs/ablation
make -s build/hafvt >/dev/null
[ -f $DATA/Alist.txt ] || build/hafvt synth --out $DATA --size medium
mkdir -p $OUT
configs=(
  "full|--modalities id,img,txt --views x,y,xy"
  "id|--modalities id --views x,y,xy"
  "id_img|--modalities id,img --views x,y,xy"
  "id_txt|--modalities id,txt --views x,y,xy"
  "xy|--modalities id,img,txt --views xy"
  "xy_id|--modalities id --views xy"
)
jobs_list=()
for seed in 1 2 3; do
  for c in "${configs[@]}"; do
    name=${c%%|*}; flags=${c#*|}
    jobs_list+=("$name|$seed|$flags")
  done
done
run_one() {
  local name=$1 seed=$2 flags=$3
  local dir=$OUT/${name}_s$seed
  [ -f $dir/metrics.jsonl ] && grep -q '"split":"test"' $dir/metrics.jsonl && return 0
  build/hafvt train --data $DATA --img $DATA/img.npy --txt $DATA/txt.npy --img-ids $DATA/img_ids.txt \
    --txt-ids $DATA/txt_ids.txt --q 64 --batch 64 --epochs $EPOCHS --patience 3 --seed $seed --threads 1 \
    --out $dir $flags > $dir.log 2>&1
  echo "$(date +%T) done $name seed $seed: $(grep -m1 'test   full      X' $dir.log || true)"
}
i=0
for j in "${jobs_list[@]}"; do
  IFS='|' read -r name seed flags <<< "$j"
  run_one "$name" "$seed" "$flags" &
  i=$((i + 1))
  if (( i % 2 == 0 )); then wait; fi
done
wait
/usr/bin/python3 tools/ablation_table.py $OUT
