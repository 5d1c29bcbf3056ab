// gemm_cpu.cpp: the project's own SGEMM (row-major), in the GotoBLAS/BLIS layout.
//
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
//
// Blocking (names as in the loops of gemm_blocked below):
//   ic: MC rows of op(A) packed as MR-row micro-panels, k-major  (mc x kc, lives in L3)
//   pc: KC steps of the inner dimension
//   jc: NC columns of op(B) packed as NR-column micro-panels      (kc x nc, lives in L2)
//   ir/jr: one MR x NR tile of C per micro-kernel call; the A micro-panel (MR x kc) stays in L1
//          while the B micro-panels of the block stream past it from L2.
// Parallel: C is cut into one slab per thread, along M or along N (whichever is longer), at
// micro-tile boundaries. Each thread packs its own panels and computes its slab alone, so there
// are no barriers, and every C element is summed over k in the same order (k ascending within a KC
// block, blocks added in pc order) whatever the thread count: the result is bitwise the same with
// 1 or many threads.
#include "math/gemm_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/common.h"
#include "core/parallel.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace hafvt {

namespace {

// Micro-tile and block sizes. MC and NC are multiples of MR and NR so that the micro-tile grid of
// C is the same for every block and every thread slab (edge tiles only at the matrix's end).
#if defined(__AVX512F__)
constexpr int MR = 12, NR = 32;  // 24 zmm accumulators, 2 B loads + 12 broadcasts per k
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int MR = 6, NR = 16;   // 12 ymm accumulators
#elif defined(__aarch64__) && defined(__ARM_NEON)
constexpr int MR = 8, NR = 12;   // 24 of the 32 q registers accumulate, 3 B + 2 A loads per k
#else
constexpr int MR = 4, NR = 16;   // plain loops, vectorized by the compiler as it can
#endif
constexpr int KC = kSgemmKC;
constexpr int NC = NR * 15;       // kc x nc = 720 KB (AVX-512) of packed B: fits a 1 MB L2
constexpr int MC = MR * 128;      // mc x kc = 2.3 MB of packed A per thread
constexpr size_t SMALL_WORK = 32768;          // M*N*K below this: direct loops, no packing
constexpr size_t THREAD_WORK = size_t(1) << 21;  // multiply-adds per thread worth a thread

struct GemmArgs {
    bool ta, tb;
    int M, N, K;
    float alpha, beta;
    const float* A;
    size_t lda;
    const float* B;
    size_t ldb;
    float* C;
    size_t ldc;
    const float* ralpha = nullptr;  // per row of C: row i takes alpha = ralpha[i] (then g.alpha is 1)
    const float* bias = nullptr;    // per column of C, added in the first K block (then g.beta is 0)
};

// op(A)[i][k] and op(B)[k][j] for the direct path.
inline float op_a(const GemmArgs& g, int i, int k) {
    return g.ta ? g.A[(size_t)k * g.lda + i] : g.A[(size_t)i * g.lda + k];
}

// Writes one computed value into C: c = alpha*acc + beta*c, never reading c when beta == 0, or
// c = alpha*acc + bias with a column bias (bias points at the column's; beta is then 0).
// std::fma matches the vector kernels' rounding so edge tiles round like interior tiles.
inline void store_one(float* c, float acc, float alpha, float beta, const float* bias = nullptr) {
    if (bias) *c = std::fma(alpha, acc, *bias);
    else if (beta == 0.0f) *c = alpha * acc;
    else if (beta == 1.0f) *c = std::fma(alpha, acc, *c);
    else *c = std::fma(alpha, acc, beta * *c);
}

// -----------------------------------------------------------------------------------------------
// Direct path for tiny products (attention scores of one sequence, T=15, d=64): no packing.
// NN/TN: a row of C accumulates rows of B scaled by op(A)[i][k] (vectorizes along j).
// NT/TT: each C element is a dot product of two contiguous rows, summed in 16 fixed lanes.
// -----------------------------------------------------------------------------------------------
void gemm_small(const GemmArgs& g) {
    constexpr int JB = 64, L = 16;
    for (int i = 0; i < g.M; i++) {
        float* crow = g.C + (size_t)i * g.ldc;
        const float alpha = g.ralpha ? g.ralpha[i] : g.alpha;
        if (!g.tb) {
            for (int j0 = 0; j0 < g.N; j0 += JB) {
                const int nb = std::min(JB, g.N - j0);
                float acc[JB] = {};
                for (int k = 0; k < g.K; k++) {
                    const float a = op_a(g, i, k);
                    const float* brow = g.B + (size_t)k * g.ldb + j0;
                    for (int j = 0; j < nb; j++) acc[j] += a * brow[j];
                }
                for (int j = 0; j < nb; j++)
                    store_one(crow + j0 + j, acc[j], alpha, g.beta, g.bias ? g.bias + j0 + j : nullptr);
            }
            continue;
        }
        // op(A) row i: contiguous, or every lda-th value when A is stored transposed
        const float* arow = g.ta ? g.A + i : g.A + (size_t)i * g.lda;
        const size_t as = g.ta ? g.lda : 1;
        for (int j = 0; j < g.N; j++) {
            const float* brow = g.B + (size_t)j * g.ldb;
            float part[L] = {};
            int k = 0;
            for (; k + L <= g.K; k += L)
                for (int l = 0; l < L; l++) part[l] += arow[(k + l) * as] * brow[k + l];
            for (int l = 0; k < g.K; k++, l++) part[l] += arow[k * as] * brow[k];
            float s = 0.0f;
            for (int l = 0; l < L; l++) s += part[l];
            store_one(crow + j, s, alpha, g.beta, g.bias ? g.bias + j : nullptr);
        }
    }
}

// -----------------------------------------------------------------------------------------------
// Packing. A block: rows [i0, i0+mc) x k [k0, k0+kc) of op(A) into ceil(mc/MR) micro-panels, each
// (kc, MR) k-major; rows past mc are zero. B block: k [k0, k0+kc) x columns [j0, j0+nc) of op(B)
// into ceil(nc/NR) micro-panels, each (kc, NR); columns past nc are zero. Both are one of two
// cases: the w values of one k are contiguous in memory (pack_rows), or each of the w rows is
// contiguous along k (pack_cols, a transpose).
// -----------------------------------------------------------------------------------------------

// value(k, x) = src[k*ld + x], k < kc, x < w. Eight k at a time, all panels: the reads are
// 8 sequential streams (a row of a large matrix is often a page or more apart from the next).
template <int R>
void pack_rows(const float* src, size_t ld, int kc, int w, float* __restrict dst) {
    for (int k0 = 0; k0 < kc; k0 += 8) {
        const int kb = std::min(8, kc - k0);
        float* dp = dst + (size_t)k0 * R;
        for (int p = 0; p < w; p += R, dp += (size_t)kc * R) {
            const int r = std::min(R, w - p);
            for (int k = 0; k < kb; k++) {
                const float* s = src + (size_t)(k0 + k) * ld + p;
                float* d = dp + (size_t)k * R;
                if (r == R) {
                    std::memcpy(d, s, sizeof(float) * R);
                } else {
                    for (int x = 0; x < r; x++) d[x] = s[x];
                    for (int x = r; x < R; x++) d[x] = 0.0f;
                }
            }
        }
    }
}

// value(k, x) = src[x*ld + k]: R rows at a time, 8 k at a time so the writes stay in few lines.
template <int R>
void pack_cols(const float* src, size_t ld, int kc, int w, float* __restrict dst) {
    for (int p = 0; p < w; p += R, dst += (size_t)kc * R, src += (size_t)R * ld) {
        const int r = std::min(R, w - p);
        int k = 0;
        for (; k + 8 <= kc; k += 8) {
            float* d = dst + (size_t)k * R;
            for (int x = 0; x < r; x++)
                for (int kk = 0; kk < 8; kk++) d[kk * R + x] = src[(size_t)x * ld + k + kk];
            for (int x = r; x < R; x++)
                for (int kk = 0; kk < 8; kk++) d[kk * R + x] = 0.0f;
        }
        for (; k < kc; k++)
            for (int x = 0; x < R; x++) dst[(size_t)k * R + x] = x < r ? src[(size_t)x * ld + k] : 0.0f;
    }
}

void pack_a(const GemmArgs& g, int i0, int mc, int k0, int kc, float* dst) {
    if (g.ta) pack_rows<MR>(g.A + (size_t)k0 * g.lda + i0, g.lda, kc, mc, dst);  // stored [K, M]
    else pack_cols<MR>(g.A + (size_t)i0 * g.lda + k0, g.lda, kc, mc, dst);       // stored [M, K]
}

void pack_b(const GemmArgs& g, int k0, int kc, int j0, int nc, float* dst) {
    if (g.tb) pack_cols<NR>(g.B + (size_t)j0 * g.ldb + k0, g.ldb, kc, nc, dst);  // stored [N, K]
    else pack_rows<NR>(g.B + (size_t)k0 * g.ldb + j0, g.ldb, kc, nc, dst);       // stored [K, N]
}

// -----------------------------------------------------------------------------------------------
// Micro-kernels: C[MR, NR] (row stride ldc) = alpha * a(kc, MR)^T b(kc, NR) + beta * C, or
// + bias (a column bias: then beta is 0); the first mr rows stored only (a tile at the end of M),
// row i scaled by ralpha[i] when given (rows of sets with their own scales).
// Each accumulator sums its k terms in ascending order with one FMA per term.
// -----------------------------------------------------------------------------------------------
#if defined(__AVX512F__)
inline __m512 store_mix(__m512 acc, const float* c, __m512 va, float beta, const float* bias) {
    if (bias) return _mm512_fmadd_ps(va, acc, _mm512_loadu_ps(bias));
    if (beta == 0.0f) return _mm512_mul_ps(va, acc);
    if (beta == 1.0f) return _mm512_fmadd_ps(va, acc, _mm512_loadu_ps(c));
    return _mm512_fmadd_ps(va, acc, _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_loadu_ps(c)));
}

// Named accumulators (see the AVX2 kernel below for why not an array): row i of the tile is
// (ci0, ci1), 16 columns each.
#define HAFVT_ROW(r, i)                                 \
    {                                                   \
        const __m512 ai = _mm512_set1_ps(a[i]);         \
        c##r##0 = _mm512_fmadd_ps(ai, b0, c##r##0);     \
        c##r##1 = _mm512_fmadd_ps(ai, b1, c##r##1);     \
    }
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* c,
                  size_t ldc, float alpha, float beta, const float* bias = nullptr, const float* ralpha = nullptr,
                  int mr = MR) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
    __m512 c90 = c00, c91 = c00, cA0 = c00, cA1 = c00, cB0 = c00, cB1 = c00;
    for (int i = 0; i < MR; i++) _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        HAFVT_ROW(0, 0) HAFVT_ROW(1, 1) HAFVT_ROW(2, 2) HAFVT_ROW(3, 3) HAFVT_ROW(4, 4) HAFVT_ROW(5, 5)
        HAFVT_ROW(6, 6) HAFVT_ROW(7, 7) HAFVT_ROW(8, 8) HAFVT_ROW(9, 9) HAFVT_ROW(A, 10) HAFVT_ROW(B, 11)
    }
    const __m512 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51},
                                {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {cA0, cA1}, {cB0, cB1}};
    for (int i = 0; i < mr; i++, c += ldc) {
        const __m512 va = _mm512_set1_ps(ralpha ? ralpha[i] : alpha);
        _mm512_storeu_ps(c, store_mix(rows[i][0], c, va, beta, bias));
        _mm512_storeu_ps(c + 16, store_mix(rows[i][1], c + 16, va, beta, bias ? bias + 16 : nullptr));
    }
}
#undef HAFVT_ROW
#elif defined(__AVX2__) && defined(__FMA__)
inline __m256 store_mix(__m256 acc, const float* c, __m256 va, float beta, const float* bias) {
    if (bias) return _mm256_fmadd_ps(va, acc, _mm256_loadu_ps(bias));
    if (beta == 0.0f) return _mm256_mul_ps(va, acc);
    if (beta == 1.0f) return _mm256_fmadd_ps(va, acc, _mm256_loadu_ps(c));
    return _mm256_fmadd_ps(va, acc, _mm256_mul_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c)));
}

// The twelve accumulators are named variables: with an array, GCC keeps a copy of every
// accumulator on the stack and stores it on each k (12 stores per 12 FMAs), which halves the speed.
// Row i of the tile is (ci0, ci1), 8 columns each.
#define HAFVT_ROW(i)                                    \
    {                                                   \
        const __m256 ai = _mm256_broadcast_ss(a + i);   \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);     \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);     \
    }
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* c,
                  size_t ldc, float alpha, float beta, const float* bias = nullptr, const float* ralpha = nullptr,
                  int mr = MR) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        HAFVT_ROW(0) HAFVT_ROW(1) HAFVT_ROW(2) HAFVT_ROW(3) HAFVT_ROW(4) HAFVT_ROW(5)
    }
    const __m256 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < mr; i++, c += ldc) {
        const __m256 va = _mm256_set1_ps(ralpha ? ralpha[i] : alpha);
        _mm256_storeu_ps(c, store_mix(rows[i][0], c, va, beta, bias));
        _mm256_storeu_ps(c + 8, store_mix(rows[i][1], c + 8, va, beta, bias ? bias + 8 : nullptr));
    }
}
#undef HAFVT_ROW
#elif defined(__aarch64__) && defined(__ARM_NEON)
// ARM64: NEON is part of the architecture. Row i of the tile is (ci0, ci1, ci2), 4 columns each;
// a[i] is taken by lane from the two A registers (fmla by element), so no broadcast is needed.
// vfmaq rounds once, as std::fma and the x86 kernels do.
inline float32x4_t store_mix(float32x4_t acc, const float* c, float32x4_t va, float beta, const float* bias) {
    if (bias) return vfmaq_f32(vld1q_f32(bias), va, acc);
    if (beta == 0.0f) return vmulq_f32(va, acc);
    if (beta == 1.0f) return vfmaq_f32(vld1q_f32(c), va, acc);
    return vfmaq_f32(vmulq_n_f32(vld1q_f32(c), beta), va, acc);
}
#define HAFVT_ROW(i, areg, lane)                             \
    {                                                        \
        c##i##0 = vfmaq_laneq_f32(c##i##0, b0, areg, lane);  \
        c##i##1 = vfmaq_laneq_f32(c##i##1, b1, areg, lane);  \
        c##i##2 = vfmaq_laneq_f32(c##i##2, b2, areg, lane);  \
    }
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* c,
                  size_t ldc, float alpha, float beta, const float* bias = nullptr, const float* ralpha = nullptr,
                  int mr = MR) {
    float32x4_t c00 = vdupq_n_f32(0.0f), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    float32x4_t c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    float32x4_t c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00, c52 = c00;
    float32x4_t c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
        const float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        HAFVT_ROW(0, a0, 0) HAFVT_ROW(1, a0, 1) HAFVT_ROW(2, a0, 2) HAFVT_ROW(3, a0, 3)
        HAFVT_ROW(4, a1, 0) HAFVT_ROW(5, a1, 1) HAFVT_ROW(6, a1, 2) HAFVT_ROW(7, a1, 3)
    }
    const float32x4_t rows[MR][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32},
                                     {c40, c41, c42}, {c50, c51, c52}, {c60, c61, c62}, {c70, c71, c72}};
    for (int i = 0; i < mr; i++, c += ldc) {
        const float32x4_t va = vdupq_n_f32(ralpha ? ralpha[i] : alpha);
        for (int q = 0; q < 3; q++)
            vst1q_f32(c + 4 * q, store_mix(rows[i][q], c + 4 * q, va, beta, bias ? bias + 4 * q : nullptr));
    }
}
#undef HAFVT_ROW
#else
// Portable fallback: fixed-size accumulator array; std::fma keeps the rounding of the other paths.
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* c,
                  size_t ldc, float alpha, float beta, const float* bias = nullptr, const float* ralpha = nullptr,
                  int mr = MR) {
    float acc[MR][NR] = {};
    for (int k = 0; k < kc; k++, a += MR, b += NR)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) acc[i][j] = std::fma(a[i], b[j], acc[i][j]);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < NR; j++)
            store_one(c + i * ldc + j, acc[i][j], ralpha ? ralpha[i] : alpha, beta, bias ? bias + j : nullptr);
}
#endif

// A tile at the end of N (nr < NR; mr <= MR rows, row i scaled by ralpha[i] when given): the
// kernel writes a full tile to a scratch buffer, then the valid part is merged into C with the
// same rounding as store_mix.
void edge_tile(int kc, const float* a, const float* b, float* c, size_t ldc, int mr, int nr, const float* ralpha,
               float alpha, float beta, const float* bias) {
    alignas(64) float tile[MR * NR];
    micro_kernel(kc, a, b, tile, NR, 1.0f, 0.0f);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            store_one(c + i * ldc + j, tile[i * NR + j], ralpha ? ralpha[i] : alpha, beta, bias ? bias + j : nullptr);
}

// Per-thread packing buffers, kept between calls (OpenMP reuses its threads) so that repeated calls
// do not page-fault fresh memory.
struct PackBuffers {
    float* a = nullptr;
    float* b = nullptr;
    ~PackBuffers() {
        aligned_free(a);
        aligned_free(b);
    }
    void ensure() {
        if (a) return;
        a = static_cast<float*>(aligned_calloc(sizeof(float) * (size_t)MC * KC));
        b = static_cast<float*>(aligned_calloc(sizeof(float) * (size_t)KC * NC));
    }
};
thread_local PackBuffers tls_pack;

// The number of columns of op(B) with its last micro-panel padded: a packed B of K rows holds
// K x padded_n(N) floats (PackedB).
size_t padded_n(int N) { return (size_t)(N + NR - 1) / NR * NR; }

// The serial blocked product of the slab C[m0:m1, n0:n1] (m0 and n0 on the micro-tile grid).
// `bpre`: op(B) packed whole (PackedB's layout: KC block pc at pc x padded_n(N), its NR-column
// panels one after another), or null to pack each block here.
void gemm_blocked(const GemmArgs& g, int m0, int m1, int n0, int n1, const float* bpre = nullptr) {
    tls_pack.ensure();
    float* apack = tls_pack.a;  // (mc/MR) micro-panels of (kc, MR)
    float* bpack = tls_pack.b;  // (nc/NR) micro-panels of (kc, NR), when B is packed here
    const size_t npad = padded_n(g.N);
    for (int ic = m0; ic < m1; ic += MC) {
        const int mc = std::min(MC, m1 - ic);
        for (int pc = 0; pc < g.K; pc += KC) {
            const int kc = std::min(KC, g.K - pc);
            const float beta = pc == 0 ? g.beta : 1.0f;  // later K blocks accumulate
            pack_a(g, ic, mc, pc, kc, apack);
            for (int jc = n0; jc < n1; jc += NC) {
                const int nc = std::min(NC, n1 - jc);
                const float* bblock = bpack;
                if (bpre) bblock = bpre + (size_t)pc * npad + (size_t)(jc / NR) * kc * NR;
                else pack_b(g, pc, kc, jc, nc, bpack);
                for (int ir = 0; ir < mc; ir += MR) {
                    const int mr = std::min(MR, mc - ir);
                    const float* a = apack + (size_t)ir * kc;
                    const float* ra = g.ralpha ? g.ralpha + ic + ir : nullptr;
                    for (int jr = 0; jr < nc; jr += NR) {
                        const int nr = std::min(NR, nc - jr);
                        const float* b = bblock + (size_t)jr * kc;
                        float* c = g.C + (size_t)(ic + ir) * g.ldc + jc + jr;
                        const float* bias = g.bias && pc == 0 ? g.bias + jc + jr : nullptr;
                        if (nr == NR) micro_kernel(kc, a, b, c, g.ldc, g.alpha, beta, bias, ra, mr);
                        else edge_tile(kc, a, b, c, g.ldc, mr, nr, ra, g.alpha, beta, bias);
                    }
                }
            }
        }
    }
}

// C = beta * C for the degenerate K == 0 or alpha == 0 products.
// With a column bias, C = bias in every row (a product of zero added to it).
void scale_c(const GemmArgs& g) {
    for (int i = 0; i < g.M; i++) {
        float* crow = g.C + (size_t)i * g.ldc;
        for (int j = 0; j < g.N; j++) crow[j] = g.bias ? g.bias[j] : g.beta == 0.0f ? 0.0f : g.beta * crow[j];
    }
}

// The product of sgemm and sgemm_packed (bpre: op(B) packed whole, or null).
void gemm_run(const GemmArgs& g, const float* bpre) {
    const int M = g.M, N = g.N, K = g.K;
    if (M == 0 || N == 0) return;
    if (K == 0 || (!g.ralpha && g.alpha == 0.0f)) return scale_c(g);
    const size_t work = (size_t)M * N * K;
    if (work < SMALL_WORK) return gemm_small(g);

    // One slab per thread along the longer of M and N, cut at micro-tile boundaries. A thread of
    // an N split packs every row of A; with op(B) packed already and K much deeper than N (the
    // head's G = dZ En: K the items, N the width) that packing costs more than each thread
    // streaming all of the packed B, so such a product splits M when M has the tiles for it.
    int nthreads = 1;
#ifdef _OPENMP
    if (!omp_in_parallel()) nthreads = omp_get_max_threads();
#endif
    const bool split_m = M >= N || (bpre && K >= 4 * N && M >= 8 * MR * nthreads);
    const int tile = split_m ? MR : NR;
    const int ntiles = ((split_m ? M : N) + tile - 1) / tile;
    nthreads = (int)std::min<size_t>({(size_t)nthreads, (size_t)ntiles, std::max<size_t>(1, work / THREAD_WORK)});
    if (nthreads <= 1) return gemm_blocked(g, 0, M, 0, N, bpre);
#pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int t = 0, nt = 1;
#endif
        const int lo = (int)((size_t)ntiles * t / nt) * tile, hi = (int)((size_t)ntiles * (t + 1) / nt) * tile;
        if (split_m) gemm_blocked(g, lo, std::min(hi, M), 0, N, bpre);
        else gemm_blocked(g, 0, M, lo, std::min(hi, N), bpre);
    }
}

void check_dims(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc) {
    HAFVT_CHECK(M >= 0 && N >= 0 && K >= 0, "sgemm dims M=", M, " N=", N, " K=", K);
    HAFVT_CHECK(lda >= std::max(1, transA ? M : K), "sgemm lda=", lda, " too small");
    HAFVT_CHECK(ldb >= std::max(1, transB ? K : N), "sgemm ldb=", ldb, " too small");
    HAFVT_CHECK(ldc >= std::max(1, N), "sgemm ldc=", ldc, " too small for N=", N);
}

}  // namespace

void sgemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
    check_dims(transA, transB, M, N, K, lda, ldb, ldc);
    gemm_run({transA, transB, M, N, K, alpha, beta, A, (size_t)lda, B, (size_t)ldb, C, (size_t)ldc}, nullptr);
}

PackedB::~PackedB() { aligned_free(data_); }

void PackedB::release() {
    aligned_free(data_);
    data_ = nullptr, cap_ = 0, K_ = N_ = 0, B_ = nullptr;
}

void PackedB::pack(bool transB, int K, int N, const float* B, int ldb) {
    check_dims(false, transB, 0, N, K, std::max(1, K), ldb, std::max(1, N));
    tb_ = transB, K_ = K, N_ = N, B_ = B, ldb_ = ldb;
    const size_t npad = padded_n(N), n = (size_t)K * npad;
    if (n > cap_) {
        aligned_free(data_);
        data_ = nullptr, cap_ = 0;
        // 4 KB pages: evaluation packs its tables inside the timed pass (at the first batch of each
        // domain), where a fresh huge page zeroed whole costs more than its TLB entries save
        // (docs/performance.md)
        data_ = static_cast<float*>(aligned_calloc(sizeof(float) * n, false));
        cap_ = n;
    }
    // the blocks of sgemm's packing (KC rows x NC columns), in parallel: block (pc, jc) lands at
    // pc x npad + jc x kc, where gemm_blocked reads it
    const GemmArgs g{false, transB, 0, N, K, 1.0f, 0.0f, nullptr, 1, B, (size_t)ldb, nullptr, 1};
    const int nj = (N + NC - 1) / NC, nk = (K + KC - 1) / KC;
#pragma omp parallel for schedule(static) if ((size_t)K * N > SMALL_WORK)
    for (int t = 0; t < nk * nj; t++) {
        const int pc = (t / nj) * KC, jc = (t % nj) * NC;
        const int kc = std::min(KC, K - pc), nc = std::min(NC, N - jc);
        pack_b(g, pc, kc, jc, nc, data_ + (size_t)pc * npad + (size_t)jc * kc);
    }
}

size_t PackedB::bytes_for(int K, int N) { return sizeof(float) * (size_t)K * padded_n(N); }

void sgemm_bias(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                int ldb, const float* bias, float* C, int ldc) {
    check_dims(transA, transB, M, N, K, lda, ldb, ldc);
    gemm_run({transA, transB, M, N, K, alpha, 0.0f, A, (size_t)lda, B, (size_t)ldb, C, (size_t)ldc, nullptr, bias},
             nullptr);
}

void sgemm_packed(bool transA, int M, int N, int K, float alpha, const float* A, int lda, const PackedB& B,
                  float beta, float* C, int ldc) {
    HAFVT_CHECK(B.K() == K && B.N() == N, "sgemm_packed: B packed as ", B.K(), " x ", B.N(), ", the product needs ",
                K, " x ", N);
    check_dims(transA, B.transposed(), M, N, K, lda, B.ldb(), ldc);
    gemm_run({transA, B.transposed(), M, N, K, alpha, beta, A, (size_t)lda, B.source(), (size_t)B.ldb(), C,
              (size_t)ldc},
             B.panels());
}

void sgemm_packed_rows(bool transA, int M, int N, int K, const float* alpha_rows, const float* A, int lda,
                       const PackedB& B, float beta, float* C, int ldc) {
    HAFVT_CHECK(B.K() == K && B.N() == N, "sgemm_packed_rows: B packed as ", B.K(), " x ", B.N(),
                ", the product needs ", K, " x ", N);
    check_dims(transA, B.transposed(), M, N, K, lda, B.ldb(), ldc);
    gemm_run({transA, B.transposed(), M, N, K, 1.0f, beta, A, (size_t)lda, B.source(), (size_t)B.ldb(), C,
              (size_t)ldc, alpha_rows},
             B.panels());
}

void sgemm_naive(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                const float a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                const float b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += (double)a * (double)b;
            }
            float* c = C + (size_t)i * ldc + j;
            const double r = (double)alpha * s;
            *c = (float)(beta == 0.0f ? r : r + (double)beta * (double)*c);
        }
}

}  // namespace hafvt
