#!/usr/bin/env python3
"""bench_gemm.py: times numpy's matmul (its BLAS, normally OpenBLAS) on the SGEMM shapes of HAF-VT.

Prints one line per shape in the same format as `hafvt bench-gemm`, so the two can be put side by
side, and first says which BLAS library numpy loaded, its core type and its thread count.

    /usr/bin/python3 tools/bench_gemm.py                 # the model's shapes
    /usr/bin/python3 tools/bench_gemm.py M N K tA tB [reps]
    /usr/bin/python3 tools/bench_gemm.py --info          # the BLAS library, its core and threads

OpenBLAS honours OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE; unset them for a fair comparison:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 tools/bench_gemm.py
"""
import ctypes
import os
import sys
import time

import numpy as np

# (M, N, K, transA, transB): the products of one training step of the model (see src/cli/bench_gemm.cpp).
SHAPES = [
    (2048, 2048, 2048, 0, 0),   # square reference
    (3840, 29207, 256, 0, 1),   # head forward, Food-Kitchen X: logits = h W^T
    (2560, 64093, 512, 0, 1),   # head forward, Movie-Book Y, feature width 512
    (3840, 256, 29207, 0, 0),   # head backward dA = dlogits W
    (29207, 256, 3840, 1, 0),   # head backward dB = dlogits^T h
    (3840, 768, 256, 0, 0),     # encoder qkv projection (256 sequences x 15 positions)
    (3840, 256, 256, 0, 0),     # encoder output projection / FFN
    (256, 768, 3840, 1, 0),     # weight gradient of qkv
    (256, 256, 3840, 1, 0),     # weight gradient of a 256x256 layer
]


def blas_info():
    """Names the BLAS shared library numpy loaded and, for OpenBLAS, its core and thread count."""
    libs = sorted({ln.split()[-1] for ln in open("/proc/self/maps") if "blas" in ln.split()[-1]})
    lines = ["numpy " + np.__version__ + ", loaded: " + ", ".join(libs)]
    for path in libs:
        if "openblas" not in os.path.basename(path):
            continue
        lib = ctypes.CDLL(path)
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lines.append("OpenBLAS config: %s; core: %s; threads: %d" % (
            lib.openblas_get_config().decode(), lib.openblas_get_corename().decode(),
            lib.openblas_get_num_threads()))
        break
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if var in os.environ:
            lines.append("env %s=%s" % (var, os.environ[var]))
    return lines


def operand(rows, cols, trans, rng):
    """op(X) of shape [rows, cols]; when trans, a .T view of a [cols, rows] array (as BLAS sees it)."""
    if trans:
        return rng.standard_normal((cols, rows), dtype=np.float32).T
    return rng.standard_normal((rows, cols), dtype=np.float32)


def bench(M, N, K, tA, tB, reps):
    rng = np.random.default_rng(1)
    a = operand(M, K, tA, rng)
    b = operand(K, N, tB, rng)
    c = np.empty((M, N), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm-up: thread start, page faults of c
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return best


def default_reps(M, N, K):
    flops = 2.0 * M * N * K
    return max(2, min(10, int(2e11 / flops)))


def main(argv):
    print("\n".join(blas_info()))
    if argv[:1] == ["--info"]:  # the library, its core and threads only
        return
    if len(argv) >= 5:
        M, N, K, tA, tB = (int(x) for x in argv[:5])
        shapes = [(M, N, K, tA, tB)]
        reps = int(argv[5]) if len(argv) > 5 else None
    else:
        shapes, reps = SHAPES, None
    for M, N, K, tA, tB in shapes:
        r = reps or default_reps(M, N, K)
        sec = bench(M, N, K, tA, tB, r)
        gflops = 2.0 * M * N * K / sec * 1e-9
        print("gemm %6d x %6d x %6d  %s%s  best of %2d  %10.3f ms  %8.1f GFLOPS" % (
            M, N, K, "T" if tA else "N", "T" if tB else "N", r, sec * 1e3, gflops))


if __name__ == "__main__":
    main(sys.argv[1:])
