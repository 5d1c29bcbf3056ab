// gemm_cpu.h: the project's own single-precision matrix product (no BLAS anywhere).
#pragma once
#include <cstddef>

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

// C = alpha op(A) op(B) + bias (bias: N floats, added to every row of C), bitwise the C of filling
// each row of C with bias and sgemm with beta = 1, without the pass that fills it (the bias joins
// each element in the product's first K block).
void sgemm_bias(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                int ldb, const float* bias, float* C, int ldc);

// op(B) packed once for several products against it (the heads' item tables: every row block of a
// head, and every view of an evaluation batch, multiplies the same table): all the micro-panels
// that sgemm packs block by block. sgemm_packed(..., B, ...) gives bitwise the C of
// sgemm(transA, B's transB, ..., B's source, ldb, ...) without packing B. The source must stay
// alive and unchanged while the packing is used (small products read it directly). The memory
// grows only and is kept for the next pack.
class PackedB {
public:
    PackedB() = default;
    ~PackedB();
    PackedB(const PackedB&) = delete;
    PackedB& operator=(const PackedB&) = delete;
    // op(B) is [K,N]: B stored [K,N] (ldb >= N) or, when transB, [N,K] (ldb >= K); in parallel
    void pack(bool transB, int K, int N, const float* B, int ldb);
    int K() const { return K_; }
    int N() const { return N_; }
    bool transposed() const { return tb_; }
    const float* source() const { return B_; }
    int ldb() const { return ldb_; }
    const float* panels() const { return data_; }
    void release();  // frees the packing (the next pack allocates again)
    static size_t bytes_for(int K, int N);  // the packing of a K x N op(B)

private:
    float* data_ = nullptr;
    size_t cap_ = 0;
    bool tb_ = false;
    int K_ = 0, N_ = 0, ldb_ = 1;
    const float* B_ = nullptr;
};
void sgemm_packed(bool transA, int M, int N, int K, float alpha, const float* A, int lda, const PackedB& B,
                  float beta, float* C, int ldc);

// C = diag(alpha_rows) op(A) B + beta C: row i of C as sgemm_packed with alpha = alpha_rows[i],
// bitwise, for every row at once (row sets with their own scales in one product: the views of an
// evaluation batch against one item table).
void sgemm_packed_rows(bool transA, int M, int N, int K, const float* alpha_rows, const float* A, int lda,
                       const PackedB& B, float beta, float* C, int ldc);

// The plain triple loop (double accumulation), for tests and as the definition of the product.
void sgemm_naive(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace hafvt
