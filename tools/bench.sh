#!/usr/bin/env bash
# make bench: our SGEMM against numpy on OpenBLAS on the model's shapes, side by side in one run,
# with the machine and the date. OpenBLAS is installed for this measurement only
# (apt-get install libopenblas0-pthread); numpy is Debian's, run with /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo "compiler: $(${CXX:-g++} --version | head -1)"
echo
echo "== SGEMM, ours (build/hafvt bench-gemm) =="
build/hafvt bench-gemm
echo
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  echo "== SGEMM, numpy (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this command only) =="
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 tools/bench_gemm.py
else
  echo "numpy not found: apt-get install python3-numpy libopenblas0-pthread for the OpenBLAS column"
fi
