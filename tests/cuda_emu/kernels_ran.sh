#!/usr/bin/env bash
# tests/cuda_emu/kernels_ran.sh LOG: checks that every __global__ function of cuda/*.cu is named in
# LOG, the list of kernels the emulated test run launched (HAFVT_EMU_KERNELS_LOG, cuda_emu.cpp).
set -euo pipefail
log=$1
defined=$(grep -ho '__global__ void [A-Za-z0-9_]*' cuda/*.cu | sed 's/__global__ void //' | sort -u)
ran=$(sort -u "$log" 2>/dev/null || true)
missing=$(comm -23 <(echo "$defined") <(echo "$ran"))
total=$(echo "$defined" | wc -l)
if [ -n "$missing" ]; then
  echo "kernels of cuda/ that no test launched:"
  echo "$missing" | sed 's/^/  /'
  exit 1
fi
echo "every kernel of cuda/ ran in the emulated suite ($total of $total)"
