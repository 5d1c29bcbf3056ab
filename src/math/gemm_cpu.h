// gemm_cpu.h: the project's own single-precision matrix product (no BLAS anywhere).
#pragma once

namespace hafvt {

// Row-major SGEMM:  C[M,N] = alpha * op(A) * op(B) + beta * C
//   op(A) is [M,K]: A is stored [M,K] (lda >= K) or, when transA, [K,M] (lda >= M).
//   op(B) is [K,N]: B is stored [K,N] (ldb >= N) or, when transB, [N,K] (ldb >= K).
//   beta == 0 overwrites C without reading it (NaNs in C do not propagate).
// Cache-blocked with packed panels and a register-tiled micro-kernel; parallel with OpenMP.
// Deterministic: the same inputs and thread count give bitwise the same C.
// The depth of the K blocks: C accumulates alpha * (the product over K rows kc) block by block, so a
// product split along K at multiples of kSgemmKC, each part added with beta = 1, gives bitwise the
// C of one call (the row-blocked head relies on it for dE).
constexpr int kSgemmKC = 384;

void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

// The plain triple loop (double accumulation), for tests and as the definition of the product.
void sgemm_naive(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace hafvt
