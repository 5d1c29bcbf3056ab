#!/usr/bin/env bash
# tools/scaling.sh: the measured share of the MPI collectives in a training step (docs/scaling.md).
# For each synthetic dataset: one process with 2 threads and 2 micro-batches, then 2 ranks x 1
# thread under mpirun (the same computation); prints each side's seconds per step and the ranks' time in the collectives
# (what `hafvt train` prints under mpirun), with the machine and the date.
#   bash tools/scaling.sh                 # small (40 steps) and paper (4 steps)
#   SIZES=small bash tools/scaling.sh
# Needs a build with MPI (mpicxx found by make) and mpirun; run nothing else meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/hafvt}  # the collectives run on the host either way: a CPU build will do
SIZES=${SIZES:-small paper}
OUT=${OUT:-runs/scaling}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
command -v mpirun >/dev/null || { echo "scaling.sh: mpirun not found (apt-get install openmpi-bin libopenmpi-dev, then make)"; exit 2; }
[ -x "$BIN" ] || make -s >/dev/null
echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
for size in $SIZES; do
  data=data/synth-$size
  [ -f "$data/synth.json" ] || "$BIN" synth --out "$data" --size "$size" >/dev/null
  case $size in
    paper) q=256; steps="--max-steps 4" ;;
    *) q=64; steps="--max-steps 40" ;;
  esac
  args="train --data $data --img $data/img.npy --txt $data/txt.npy --q $q --batch 256 $steps --skip-test"
  one=$("$BIN" $args --out "$OUT/$size-one" --threads 2 --micro-batches 2)
  ranks=$(mpirun -np 2 "$BIN" $args --out "$OUT/$size-ranks" --threads 1)
  params=$(echo "$one" | sed -n 's/.*, \([0-9]*\) parameters;.*/\1/p')
  echo "$size: q $q, $params parameters ($((params * 4 / 1000000)) MB of gradient)"
  echo "  one process, 2 threads, 2 micro-batches: $(echo "$one" | grep -E '^throughput|^stopping' | tail -1)"
  echo "  2 ranks x 1 thread:                       $(echo "$ranks" | grep -E '^throughput|^stopping' | tail -1)"
  echo "  $(echo "$ranks" | grep '^MPI: the training steps')"
done
