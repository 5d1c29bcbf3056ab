// heads.h: the cosine-softmax heads (paper Eq. 2, 4-6; SPEC §2.3) and the mixture-of-softmax
// cross-entropy (Eq. 7-9; SPEC §2.4, §3.1-3.2), forward/backward pairs on the CPU.
// Gradients accumulate (+=) as in ops_cpu.h, except mixture_ce_backward, which OVERWRITES its
// dlogits (they may alias the logits, so the head needs no second (R,V) buffer).
#pragma once
#include <cstddef>
#include <cstdint>

namespace hafvt {

// The learnable logit scale s = exp(log_s) clamped to [1, 100]; ds/dlog_s = s inside the range,
// 0 when clamped.
constexpr float kScaleMin = 1.0f, kScaleMax = 100.0f;
float logit_scale(float log_s, float* dscale_dlogs);

// logits (R,V) = s * hn (R,C) . En (V,C)^T, where hn and En are L2-normalized rows (l2norm_forward),
// so logits[r,j] = s * cos(h_r, E_j).
void cosine_logits_forward(float* logits, const float* hn, const float* En, float s, size_t R,
                           size_t V, size_t C);
// The logits of n row sets against one table (the views of an evaluation batch scoring one
// domain), stacked: set i is the R[i] rows after those of set i-1 in hn (sum R, C) and logits
// (sum R, V), logits of set i = s[i] hn_i . En^T, each as cosine_logits_forward, bitwise; s is a
// host array. On the CPU the table is packed (PackedB) and the sets make one product. `slot`
// (0 .. kTableSlots-1) keeps the packing for the next call with the same En, V, C in that slot
// (an evaluation's batches score the same tables): the caller promises that En's contents do not
// change until packed_tables_release(); slot -1 packs for this call only (when it pays).
constexpr int kTableSlots = 8;
void cosine_logits_forward_sets(float* logits, const float* hn, const float* En, const float* s, const size_t* R,
                                size_t n, size_t V, size_t C, int slot);
// Frees the tables the slots hold (and the scratch packing of the calls without one).
void packed_tables_release();
// dhn += s dlogits En; dEn += s dlogits^T hn (either may be null);
// ds += sum_{r,j} dlogits[r,j] cos[r,j], computed as sum_r hn_r . (dlogits En)_r so that the
// logits themselves are not needed (the mixture backward overwrites them with dlogits).
void cosine_logits_backward(float* dhn, float* dEn, float* ds, const float* dlogits,
                            const float* hn, const float* En, float s, size_t R, size_t V, size_t C);

// Mixture of M softmax heads over the same V candidates, per row r with target y[r] in [0, V)
// (y[r] < 0: the row is not supervised, loss 0, no gradient):
//   lse[m,r] = logsumexp_j logits[m][r,j]
//   loss[r]  = -log sum_m w_m p_m[y] + lambda_h sum_m w_m (-log p_m[y]),  p_m = softmax(logits[m][r])
//            (the first term = -logsumexp_m(logw[m] + z_m[y] - lse[m,r]); lambda_h = 0: SPEC §3.1
//            exactly, lambda_h > 0: the per-head cross-entropy of SPEC §3.5)
// logw[m] = log w_m; a weight of 0 (logw = -inf) takes no part in either term.
void mixture_ce_forward(float* loss, float* lse, const float* const* logits, const int32_t* y,
                        const float* logw, float lambda_h, size_t M, size_t R, size_t V);  // loss (R), lse (M,R)
// dlogits[m][r,j] = dloss[r] * (resp[m,r] + lambda_h w_m) * (softmax_m[r,j] - [j == y]),
// resp[m,r] = w_m p_m[y] / P (the posterior of modality m for the target), from the logits and the
// forward's lse. OVERWRITES dlogits.
void mixture_ce_backward(float* const* dlogits, const float* const* logits, const float* lse,
                         const int32_t* y, const float* logw, float lambda_h, const float* dloss,
                         size_t M, size_t R, size_t V);

// Evaluation: the mixture probability of every candidate, P[r,j] = sum_m w_m softmax_m[r,j]
// (SPEC §4: one view's P_V over all items of the target domain), added times alpha into out (R,V):
// per element the M terms alpha w_m softmax_m are summed in m order, then added to out. On the
// CPU softmax_m[j] = exp(z_m[j] - max) / sum_i exp(z_m[i] - max), each exp computed once.
void mixture_prob_accumulate(float* out, const float* const* logits, const float* logw, float alpha, size_t M,
                             size_t R, size_t V);

// Evaluation's scores of L lines (SPEC §4, Eq. 10): out row out_rows[l] (its first V entries; the
// rest up to ldo zeroed) = sum over the views v (in order) whose row rows[v L + l] of the stacked
// logits is not -1 of coef[v] P_v, P_v = sum_m w_m softmax_m(logits[m][row]) (the M terms summed
// first); zero for a line without a view. coef is a host array of nv (<= 8) view coefficients; the
// logits as mixture_prob_accumulate's, rows staged with them. On the CPU softmax_m[j] =
// exp(z_m[j] - max) / sum_i exp(z_m[i] - max), each exp computed once, the sums in the 16 lanes of
// the training head's: the same sums as one mixture_prob_accumulate per view into a zeroed out. A
// line's row of out holds the running sum over its views (the first written, the next added)
// while the next rows of logits are prefetched.
void mixture_score_lines(float* out, size_t ldo, const int32_t* out_rows, const int32_t* rows, size_t nv, size_t L,
                         const float* const* logits, const float* logw, const float* coef, size_t M, size_t V);

// The heads of M modalities and the mixture cross-entropy in one call, unfused: the composition
// cosine_logits_forward -> mixture_ce_forward -> mixture_ce_backward -> cosine_logits_backward,
// holding the M (R,V) logits. It states the algorithm in the fewest lines; the tests hold the
// chunked fused_mixture_head below (and its CUDA twin) against it.
//   hn[m] (R,Cm[m]), En[m] (V,Cm[m]), s[m] (host), logw (M), lambda_h (host), y (R, < 0 = unsupervised)
//   loss (R) overwritten; dhn[m] +=, dEn[m] += (entries may be null); ds (M) += (may be null)
// dloss == nullptr computes the loss only.
void mixture_head_unfused(float* loss, float* const* dhn, float* const* dEn, float* ds,
                          const float* const* hn, const float* const* En, const float* s,
                          const size_t* Cm, const int32_t* y, const float* logw, float lambda_h,
                          const float* dloss, size_t M, size_t R, size_t V);

// What the two chunked fused heads (the CPU twin below and fused_mixture_head_cuda) need to know
// of a call before they start: the sum of the widths (the rows of G) and whether the backward runs
// (dloss given and some gradient output wanted). Checks M and V.
struct FusedHeadPlan {
    size_t sumC = 0;
    bool backward = false;
};
FusedHeadPlan fused_head_plan(float* const* dhn, float* const* dEn, const float* ds, const size_t* Cm,
                              const float* dloss, size_t M, size_t V);

// The chunk (items per pass) of the column-chunked head for M heads of R rows over V items with
// widths summing to sumC, given `budget_bytes` of memory for its scratch: all of V (one chunk:
// the logits are computed once, 3 GEMMs per head) when the M (R,V) logit blocks, the 5 row
// statistics (M,R) and the gradient rows (R,sumC) fit; otherwise the largest multiple of 256
// columns that fits, at least 256 (logits recomputed in the backward pass, 4 GEMMs per head).
// The CUDA head's rule, with R all rows of the call (the CPU head's is cpu_head_blocks below).
size_t fused_head_chunk(size_t M, size_t R, size_t V, size_t sumC, size_t budget_bytes);

// How the CPU head cuts a call of M heads, R rows, V items (widths summing to sumC) under a memory
// budget for its scratch (the rule, stated once):
//  - rows: blocks of kSgemmKC rows (384, the GEMM's K depth) or a multiple of it, as many as the
//    budget holds with all V columns, at most R. A multiple of kSgemmKC makes the blocks' dE
//    products add up bitwise to one product over all rows, so the results do not depend on the
//    budget; and 384 rows are the depth at which the dE product runs at full rate. When 384 rows
//    do not fit with all V (about 44,000 items per domain with 3 modalities), the largest multiple
//    of kHeadMinRows (64) that fits: still every logit once, dE equal up to summation order.
//  - cols: all V when a block of min(R, 64) rows fits with all of them (then each logit is
//    computed once: 3 GEMMs per head); otherwise the largest multiple of 256 that fits (the logits
//    of a chunk are recomputed for the backward: 4 GEMMs per head).
//  - the cache: the passes over the logits run per row, all M heads of the row one after another
//    (max, sum of exp, the objective, the gradient in place), so a row's M V floats (0.42 MB at
//    the paper's size) are read from memory once and stay in the core's L2 between the passes.
// At the paper's size (M = 3, V = 34,886) and the default budget: 384-row blocks, 161 MB of
// logits, where all rows at once (2,295 in the XY view) would take 0.96 GB.
constexpr size_t kHeadMinRows = 64;
struct HeadBlocks {
    size_t rows = 0, cols = 0;
};
HeadBlocks cpu_head_blocks(size_t M, size_t R, size_t V, size_t sumC, size_t budget_bytes);

// The CPU head packs each table once per call (all items in one chunk, PackedB) when the call's
// work R V sum(Cm) reaches this; below it the packing per product costs as little.
constexpr size_t kHeadPackWork = (size_t)1 << 22;

// The scratch budget of the CPU head when the caller leaves the blocks to it.
constexpr size_t kCpuHeadBudget = (size_t)192 << 20;

// The head every backend runs (Model, backend.h), on the CPU; fused_mixture_head_cuda
// (cuda/fused_head.cu) is its twin, same parameters and results up to rounding. Parameters and
// results as mixture_head_unfused. The rows go in blocks and the items in chunks of Vc
// (cpu_head_blocks with kCpuHeadBudget decides the blocks, and the chunk when Vc = 0): per block,
// each chunk's logits from one SGEMM per head, folded into a running (online) max and sum of exp
// per row, the target logits picked up on the way; then dZ in place and the two backward SGEMMs
// per chunk. Holds M x block x chunk logits. With Vc >= V its results equal mixture_head_unfused's
// bit for bit (the same row operations in the same order, row blocks of kSgemmKC multiples).
// `keep`: 0, or the caller's promise that a table passed again at the same address with the same
// nonzero keep holds the same values: the CPU head then packs each table once for consecutive
// calls that read it (a step's views scored against one domain), instead of once per call. The
// packed copies are the same bits either way.
void fused_mixture_head(float* loss, float* const* dhn, float* const* dEn, float* ds,
                        const float* const* hn, const float* const* En, const float* s,
                        const size_t* Cm, const int32_t* y, const float* logw, float lambda_h,
                        const float* dloss, size_t M, size_t R, size_t V, size_t Vc, uint64_t keep = 0);
// The same with the row block given (Rb rows, 0 = the rule), for the tests.
void fused_mixture_head_blocked(float* loss, float* const* dhn, float* const* dEn, float* ds,
                                const float* const* hn, const float* const* En, const float* s,
                                const size_t* Cm, const int32_t* y, const float* logw, float lambda_h,
                                const float* dloss, size_t M, size_t R, size_t V, size_t Rb, size_t Vc,
                                uint64_t keep = 0);

}  // namespace hafvt
