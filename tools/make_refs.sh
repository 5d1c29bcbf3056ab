#!/usr/bin/env bash
# make_refs.sh: regenerates tests/ref/hafvt_tiny.safetensors, the PyTorch fixture of
# tests/test_reference.cpp: build/hafvt_fixture (tests/fixture) writes the tiny world (config, parameters,
# frozen tables, batches), tools/reference.py adds what PyTorch computes from it in float64.
# Needs Debian's python3-torch and python3-numpy (apt-get install python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${HAFVT_FIXTURE_BIN:-build/hafvt_fixture}
PYTHON=/usr/bin/python3
OUT=tests/ref/hafvt_tiny.safetensors

"$PYTHON" -c "import torch, numpy" 2>/dev/null || {
    echo "make_refs.sh: $PYTHON cannot import torch and numpy; run: apt-get install python3-torch" >&2
    exit 1
}
# build the binary unless the caller (make refs) just did
[ -x "$BIN" ] || make "$BIN"

tmp=$(mktemp -d /tmp/hafvt_refs_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$BIN" --out "$tmp/input.safetensors"
"$PYTHON" tools/reference.py fixture "$tmp/input.safetensors" "$tmp/fixture.safetensors"
mkdir -p tests/ref
mv "$tmp/fixture.safetensors" "$OUT"
echo "make_refs.sh: wrote $OUT ($(stat -c %s "$OUT") bytes)"
