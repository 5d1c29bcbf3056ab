// ops_cuda.h: the CUDA path of HAF-VT, declared in plain C++ (no CUDA types or headers), so that
// src/ can dispatch to it and the tests can compare it with the CPU ops without nvcc.
//
// Every op of ops_cpu.h and heads.h that a Backend holds (backend.h) has a twin here with the
// suffix _cuda and THE SAME parameter list; every pointer is a DEVICE pointer unless its comment
// says "host". The accumulate conventions are the CPU's: backward functions ADD (+=) into their
// gradients and the pad masks zero rows in place. Scalars that are gradients (ds of the cosine
// heads) are device pointers; scalars that are inputs (s, p, scale) are host values.
//
// All work is queued on the default stream in call order; the copies below synchronize. The code
// assumes one host thread drives the device (the cuBLAS handle and the workspace are global).
// Failures throw hafvt::InternalError carrying the file:line of the failing CUDA/cuBLAS call.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "math/adam.h"
#include "math/heads.h"
#include "math/ops_cpu.h"

namespace hafvt {

// ---- device management (cuda/device.cu) ------------------------------------------------------

// True when a usable CUDA device (compute capability >= 7.5, the oldest the build carries code
// for) answers. Never throws and never crashes without a driver; `why` (may be null) receives the
// reason when false, the device's name when true. The answer is computed once and cached.
bool cuda_device_available(std::string* why);
// Before the first cuda_device_available: use device `ordinal` modulo the device count (default 0).
void cuda_use_device(int ordinal);

void* cuda_malloc(size_t bytes);  // nullptr for 0 bytes
void cuda_free(void* ptr);        // nullptr is ignored; never throws
void cuda_memcpy_h2d(void* dst, const void* src, size_t bytes);
void cuda_memcpy_d2h(void* dst, const void* src, size_t bytes);
void cuda_memcpy_d2d(void* dst, const void* src, size_t bytes);
void cuda_memset_zero(void* ptr, size_t bytes);
void cuda_synchronize();  // waits for all queued work and reports any asynchronous error
// Synchronous launches: every kernel launch waits for the kernel and checks it, so that a fault is
// reported at its own launch (with the kernel's name) instead of at a later, unrelated copy.
// Off by default; HAFVT_CUDA_SYNC=1 in the environment turns it on at the first launch.
void cuda_set_sync_launches(bool on);
bool cuda_sync_launches();


// ---- cuBLAS (cuda/device.cu) -----------------------------------------------------------------

// Row-major SGEMM with exactly the semantics of sgemm in gemm_cpu.h:
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C; beta == 0 never reads C.
// Runs on one global cuBLAS handle created at the first call.
void sgemm_cuda(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, float* C, int ldc);
// TF32 tensor cores for the SGEMMs: off by default (plain FP32, CUBLAS_DEFAULT_MATH); the tests
// never turn it on.
void cuda_set_tf32(bool on);

// ---- encoder layers (cuda/ops_encoder.cu, cuda/attention.cu); see ops_cpu.h ------------------

void embedding_forward_cuda(float* out, const int32_t* ids, const float* table, float scale,
                            int32_t pad, size_t N, size_t C);
// Deterministic: the rows are sorted by id on the device, then each table element adds its rows
// of dout in increasing n, as the CPU does (no atomics).
void embedding_backward_cuda(float* dtable, const float* dout, const int32_t* ids, float scale,
                             int32_t pad, size_t N, size_t C);

void gather_rows_cuda(float* out, const float* src, const int32_t* rows, size_t R, size_t C);
// The same sorted pass as embedding_backward_cuda, over every row.
void scatter_add_rows_cuda(float* dst, const float* src, const int32_t* rows, float scale, size_t R, size_t C);
void scatter_rows_cuda(float* dst, const float* src, const int32_t* rows, size_t R, size_t C);

void posadd_forward_cuda(float* x, const int32_t* pos, const float* P, size_t N, size_t C);
void posadd_backward_cuda(float* dP, const float* dx, const int32_t* pos, size_t N, size_t C);

void padmask_forward_cuda(float* x, const uint8_t* valid, size_t N, size_t C);
void padmask_backward_cuda(float* dx, const uint8_t* valid, size_t N, size_t C);

// The masks are bit-identical to the CPU's (same counter-based draw, same factor 1/(1-p)).
void dropout_forward_cuda(float* out, const float* inp, size_t n, float p, uint64_t seed,
                          uint64_t step, uint64_t site);
void dropout_backward_cuda(float* dinp, const float* dout, size_t n, float p, uint64_t seed,
                           uint64_t step, uint64_t site);

void layernorm_forward_cuda(float* out, float* mean, float* rstd, const float* inp,
                            const float* weight, const float* bias, size_t N, size_t C);
// dweight/dbias: per-block partial sums, then a fixed-order reduction (deterministic).
void layernorm_backward_cuda(float* dinp, float* dweight, float* dbias, const float* dout,
                             const float* inp, const float* weight, const float* mean,
                             const float* rstd, size_t N, size_t C);

void linear_forward_cuda(float* out, const float* inp, const float* weight, const float* bias,
                         size_t N, size_t C, size_t OC);
void linear_forward_cols_cuda(float* out, size_t ldo, const float* inp, const float* weight, size_t ldw,
                              const float* bias, size_t N, size_t C, size_t OC);
void linear_backward_cuda(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, size_t N, size_t C, size_t OC);

void gelu_forward_cuda(float* out, const float* inp, size_t n);
void gelu_backward_cuda(float* dinp, const float* dout, const float* inp, size_t n);

void residual_forward_cuda(float* out, const float* a, const float* b, size_t n);
void residual_backward_cuda(float* da, float* db, const float* dout, size_t n);

// One thread block per (sequence, head); T <= 64 (checked).
void attention_forward_cuda(float* out, float* att, const float* qkv, const int32_t* slot, const uint8_t* valid,
                            size_t B, size_t T, size_t C, size_t NH, float p_drop, uint64_t seed,
                            uint64_t step, uint64_t site);
// One block per (b, h) as attention_forward_cuda, for the last query only.
void attention_last_forward_cuda(float* out, float* att, const float* q, const float* qkv, const int32_t* slot,
                                 const uint8_t* valid, size_t B, size_t T, size_t C, size_t NH);
void attention_backward_cuda(float* dqkv, const float* dout, const float* qkv, const float* att,
                             const uint8_t* valid, size_t B, size_t T, size_t C, size_t NH,
                             float p_drop, uint64_t seed, uint64_t step, uint64_t site);

void l2norm_forward_cuda(float* out, float* norm, const float* inp, size_t N, size_t C);
void l2norm_backward_cuda(float* dinp, const float* dout, const float* out, const float* norm,
                          size_t N, size_t C);

// ---- heads and optimizer (cuda/heads.cu, cuda/fused_head.cu); see heads.h, adam.h ------------

// s is a host float (the caller computes it with logit_scale on the host).
void cosine_logits_forward_cuda(float* logits, const float* hn, const float* En, float s, size_t R,
                                size_t V, size_t C);

// logits and hn stacked by set on the device, s and R host arrays: one product per set; `slot`
// is ignored (cuBLAS reads the table as it is: nothing to pack).
void cosine_logits_forward_sets_cuda(float* logits, const float* hn, const float* En, const float* s,
                                     const size_t* R, size_t n, size_t V, size_t C, int slot);
// Nothing to free (no packed tables on a device).
void packed_tables_release_cuda();

// `logits` is a HOST array of M device pointers, each to an (R,V) block (M <= 8); logw is a
// device array of M floats.
// Evaluation (SPEC §4): out (R,V) += alpha * sum_m w_m softmax(logits[m][r]), the M terms summed
// first; logits as above.
void mixture_prob_accumulate_cuda(float* out, const float* const* logits, const float* logw, float alpha, size_t M,
                                  size_t R, size_t V);

// The lines' scores (heads.h); logits as above, out_rows and rows device arrays, coef a HOST array
// of nv floats.
void mixture_score_lines_cuda(float* out, size_t ldo, const int32_t* out_rows, const int32_t* rows, size_t nv,
                              size_t L, const float* const* logits, const float* logw, const float* coef, size_t M,
                              size_t V);

// The cosine heads of M modalities and the mixture cross-entropy in one call, without the (R,V)
// logits: the items are processed in chunks of Vc, so the memory is O(M R Vc). Vc = 0 chooses it
// from the free device memory (fused_head_chunk in heads.h with half of it): one chunk covering V
// whenever that fits, so the logits are computed once (3 GEMMs per head, not 4).
//   hn[m] (R,C[m]), En[m] (V,C[m]): L2-normalized rows      HOST arrays of M device pointers
//   s[m]: HOST array of M logit scales                      Cm[m]: HOST array of M widths
//   logw (M), y (R, y < 0 = unsupervised), dloss (R), loss (R, overwritten): device
//   dhn[m] (R,C[m]) +=, dEn[m] (V,C[m]) +=: HOST arrays of M device pointers, entries may be null
//   ds (M) +=: device, may be null (the gradient wrt each s_m, scaled by dloss)
// dloss == nullptr computes the loss only (one pass). Same results as cosine_logits_forward +
// mixture_ce_forward/backward + cosine_logits_backward, up to rounding.
void fused_mixture_head_cuda(float* loss, float* const* dhn, float* const* dEn, float* ds,
                             const float* const* hn, const float* const* En, const float* s,
                             const size_t* Cm, const int32_t* y, const float* logw, float lambda_h,
                             const float* dloss, size_t M, size_t R, size_t V, size_t Vc, uint64_t keep = 0);

// dst[0] += sum_i a[i] b[i] (device pointers), in double in a fixed two-stage order.
void dot_sum_add_cuda(float* dst, const float* a, const float* b, size_t n);

// One Adam update of n parameters at step t (1-based), as adam_update (adam.h).
void adam_update_cuda(float* params, float* m, float* v, const float* grads, size_t n,
                      const AdamConfig& cfg, long t);

}  // namespace hafvt
