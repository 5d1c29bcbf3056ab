// heads.cpp: cosine-softmax heads and the mixture-of-softmax cross-entropy (see heads.h).
#include "math/heads.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/common.h"
#include "core/tensor.h"
#include "math/gemm_cpu.h"
#include "math/vmath.h"

namespace hafvt {

float logit_scale(float log_s, float* dscale_dlogs) {
    float s = std::exp(log_s);
    bool clamped = !(s > kScaleMin && s < kScaleMax);
    if (dscale_dlogs) *dscale_dlogs = clamped ? 0.0f : s;
    return s < kScaleMin ? kScaleMin : (s > kScaleMax ? kScaleMax : s);
}

// logsumexp of one row of V logits, with the max subtracted. The max runs in 16 lanes combined at
// the end, which every compiler vectorizes (clang does not vectorize a float max reduction
// without -ffast-math); a maximum does not depend on the order. The `omp simd` reduction lets the
// compiler vectorize the sum without -ffast-math (the lanes' order is fixed, so the result is
// still deterministic).
static float row_max(const float* z, size_t V) {
    constexpr size_t L = 16;
    float m[L];
    for (size_t l = 0; l < L; l++) m[l] = -INFINITY;
    size_t j = 0;
    for (; j + L <= V; j += L)
#pragma omp simd
        for (size_t l = 0; l < L; l++) m[l] = z[j + l] > m[l] ? z[j + l] : m[l];
    for (; j < V; j++) m[0] = z[j] > m[0] ? z[j] : m[0];
    float mx = m[0];
    for (size_t l = 1; l < L; l++) mx = m[l] > mx ? m[l] : mx;
    return mx;
}
// sum_j exp(z[j] - mx) in 16 lanes (lane l the j = l mod 16, in order; the lanes added in order at
// the end): vectorized, and the same sum on every machine and in both forms. With Store the
// exps are also written to e (which may alias z): the training head's row pass and the
// evaluation's mixture make each exp once. `ahead` (optional): a row of V floats that the caller
// reads next, prefetched a cache line per 16 exps, so that its read from memory overlaps this
// row's exps instead of following them.
template <bool Store>
static float row_exp_sum(float* e, const float* z, size_t V, float mx, const float* ahead = nullptr) {
    constexpr size_t L = 16;
    float s[L] = {};
    size_t j = 0;
    for (; j + L <= V; j += L) {
        if (ahead) __builtin_prefetch(ahead + j);
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            const float t = vexp(z[j + l] - mx);
            if (Store) e[j + l] = t;
            s[l] += t;
        }
    }
    for (size_t l = 0; j < V; j++, l++) {
        const float t = vexp(z[j] - mx);
        if (Store) e[j] = t;
        s[l] += t;
    }
    float sum = s[0];
    for (size_t l = 1; l < L; l++) sum += s[l];
    return sum;
}
static float row_lse(const float* z, size_t V) {
    const float mx = row_max(z, V);
    return mx + std::log(row_exp_sum<false>(nullptr, z, V, mx));
}

// The gradient of one row of V logits whose softmax is exp(z[j] - mx) / sum, for the factor g:
// d[j] = g (softmax[j] - [j == y]) = c exp(z[j] - mx) - g [j == y] with c = g / sum; y in [0, V)
// or outside (no target in this row or chunk). z may alias d.
static void row_softmax_grad(float* d, const float* z, float mx, float c, float g, size_t V, int64_t y) {
#pragma omp simd
    for (size_t j = 0; j < V; j++) d[j] = c * vexp(z[j] - mx);
    if (y >= 0 && (size_t)y < V) d[y] -= g;
}
// The same from the row's exps e[j] = exp(z[j] - mx) (row_exp_sum<true>), in place: the same bits.
static void row_scale_grad(float* e, float c, float g, size_t V, int64_t y) {
#pragma omp simd
    for (size_t j = 0; j < V; j++) e[j] = c * e[j];
    if (y >= 0 && (size_t)y < V) e[y] -= g;
}

// ds += sum_r hn_r . G_r (a float dot per row, the rows summed in double); dhn += s G (if given).
static void scale_and_rows_grad(float* dhn, float* ds, const float* G, const float* hn, float s, size_t R,
                                size_t C) {
    double acc = 0.0;
    for (size_t r = 0; r < R; r++) {
        const float* g = G + r * C;
        const float* h = hn + r * C;
        float dot = 0.0f;
        for (size_t c = 0; c < C; c++) dot += g[c] * h[c];
        acc += dot;
        if (dhn)
            for (size_t c = 0; c < C; c++) dhn[r * C + c] += s * g[c];
    }
    if (ds) *ds += (float)acc;
}

void cosine_logits_forward(float* logits, const float* hn, const float* En, float s, size_t R,
                           size_t V, size_t C) {
    // logits (R,V) = s * hn (R,C) @ En (V,C)^T
    sgemm(false, true, (int)R, (int)V, (int)C, s, hn, (int)C, En, (int)C, 0.0f, logits, (int)V);
}

// The tables packed for cosine_logits_forward_sets by slot, with what each holds; the scratch
// packing of the calls without a slot. Kept between calls (the evaluation's calls come from one
// thread), freed by packed_tables_release.
namespace {
struct TableSlot {
    PackedB packed;
    const float* En = nullptr;
    size_t V = 0, C = 0;
};
thread_local TableSlot tls_slots[kTableSlots];
thread_local PackedB tls_table_scratch;
}  // namespace

void cosine_logits_forward_sets(float* logits, const float* hn, const float* En, const float* s, const size_t* R,
                                size_t n, size_t V, size_t C, int slot) {
    HAFVT_CHECK(slot < kTableSlots, "table slot ", slot, " (there are ", kTableSlots, ")");
    size_t rows = 0;
    for (size_t i = 0; i < n; i++) rows += R[i];
    if (slot < 0 && (n < 2 || rows * V * C < kHeadPackWork)) {
        for (size_t i = 0, r0 = 0; i < n; r0 += R[i++])
            cosine_logits_forward(logits + r0 * V, hn + r0 * C, En, s[i], R[i], V, C);
        return;
    }
    const PackedB* packed = &tls_table_scratch;
    if (slot >= 0) {
        TableSlot& t = tls_slots[slot];
        if (t.En != En || t.V != V || t.C != C) {
            t.packed.pack(true, (int)C, (int)V, En, (int)C);
            t.En = En, t.V = V, t.C = C;
        }
        packed = &t.packed;
    } else {
        tls_table_scratch.pack(true, (int)C, (int)V, En, (int)C);
    }
    // one product for all sets: row r of set i scaled by s[i]
    thread_local std::vector<float> alpha;
    alpha.clear();
    for (size_t i = 0; i < n; i++) alpha.insert(alpha.end(), R[i], s[i]);
    if (rows)
        sgemm_packed_rows(false, (int)rows, (int)V, (int)C, alpha.data(), hn, (int)C, *packed, 0.0f, logits, (int)V);
}

void packed_tables_release() {
    for (TableSlot& t : tls_slots) {
        t.packed.release();
        t.En = nullptr, t.V = t.C = 0;
    }
    tls_table_scratch.release();
}

void cosine_logits_backward(float* dhn, float* dEn, float* ds, const float* dlogits,
                            const float* hn, const float* En, float s, size_t R, size_t V, size_t C) {
    // forward: logits = s * hn @ En^T
    // G = dlogits @ En (R,C);  dhn += s G;  ds += sum_r hn_r . G_r;  dEn += s dlogits^T @ hn
    thread_local std::vector<float> G;
    G.resize(R * C);
    sgemm(false, false, (int)R, (int)C, (int)V, 1.0f, dlogits, (int)V, En, (int)C, 0.0f, G.data(),
          (int)C);
    scale_and_rows_grad(dhn, ds, G.data(), hn, s, R, C);
    if (dEn)
        sgemm(true, false, (int)V, (int)C, (int)R, s, dlogits, (int)V, hn, (int)C, 1.0f, dEn, (int)C);
}

// The row terms of the objective (SPEC §3.1, §3.5), from a_m = logw_m + z_m[y] - lse_m = log(w_m p_m[y]):
//   mixture NLL  l_mix = -log sum_m exp(a_m)  (the log of a sum of M terms, stably)
//   the loss     l = l_mix + lambda_h sum_m w_m (-log p_m[y])
//   g_m          = r_m + lambda_h w_m,   r_m = exp(a_m + l_mix)   (dl/dz_m = g_m (p_m - e_y))
// A weight-0 head (logw = -inf) adds nothing to either. Returns l; fills g (M) when given.
static float row_objective(const float* a, const float* logw, float lambda_h, size_t M, float* g) {
    float mx = -INFINITY;
    for (size_t m = 0; m < M; m++) mx = a[m] > mx ? a[m] : mx;
    float sum = 0.0f;
    for (size_t m = 0; m < M; m++) sum += std::exp(a[m] - mx);
    const float l_mix = -(mx + std::log(sum));
    float aux = 0.0f;
    for (size_t m = 0; m < M; m++) {
        const float w = std::exp(logw[m]);
        if (lambda_h != 0.0f && w > 0.0f) aux += w * (logw[m] - a[m]);  // w_m (-log p_m[y])
        if (g) g[m] = std::exp(a[m] + l_mix) + lambda_h * w;
    }
    return lambda_h != 0.0f ? l_mix + lambda_h * aux : l_mix;
}

static float row_mixture_nll(const float* const* logits, const float* lse, const float* logw, float lambda_h,
                             size_t M, size_t R, size_t r, size_t V, int32_t y, float* g) {
    float a[8];
    for (size_t m = 0; m < M; m++) a[m] = logw[m] + logits[m][r * V + (size_t)y] - lse[m * R + r];
    return row_objective(a, logw, lambda_h, M, g);
}

void mixture_ce_forward(float* loss, float* lse, const float* const* logits, const int32_t* y,
                        const float* logw, float lambda_h, size_t M, size_t R, size_t V) {
    HAFVT_CHECK(M >= 1 && M <= 8, "mixture of ", M, " heads");
#pragma omp parallel for schedule(static) if (R * V * M > 65536)
    for (size_t r = 0; r < R; r++) {
        for (size_t m = 0; m < M; m++) lse[m * R + r] = row_lse(logits[m] + r * V, V);
        loss[r] = y[r] < 0 ? 0.0f : row_mixture_nll(logits, lse, logw, lambda_h, M, R, r, V, y[r], nullptr);
    }
}

// Derivation (SPEC §3.2). With p_m = softmax(z_m) and P = sum_m w_m p_m[y], l_mix = -log P:
//   dl_mix/dz_m[j] = -(1/P) w_m dp_m[y]/dz_m[j] = -(w_m p_m[y] / P) ([j==y] - p_m[j])
//                  = r_m (p_m[j] - [j==y]),   r_m = w_m p_m[y] / P = exp(logw_m + z_m[y] - lse_m + l_mix).
// The per-head term (SPEC §3.5) lambda_h sum_m w_m (-log p_m[y]) has d/dz_m[j] = lambda_h w_m (p_m[j] - [j==y])
// (the softmax cross-entropy's gradient), so head m's whole factor is g_m = r_m + lambda_h w_m:
// with lambda_h > 0 each head learns at least at rate lambda_h w_m, however good the others are.
// The row terms (r_m needs l_mix, not the loss l) are recomputed from the logits and lse.
void mixture_ce_backward(float* const* dlogits, const float* const* logits, const float* lse,
                         const int32_t* y, const float* logw, float lambda_h, const float* dloss,
                         size_t M, size_t R, size_t V) {
#pragma omp parallel for schedule(static) if (R * V * M > 65536)
    for (size_t r = 0; r < R; r++) {
        float g[8];
        if (y[r] >= 0) row_mixture_nll(logits, lse, logw, lambda_h, M, R, r, V, y[r], g);
        for (size_t m = 0; m < M; m++) {
            const float* z = logits[m] + r * V;
            float* d = dlogits[m] + r * V;
            if (y[r] < 0) {
                for (size_t j = 0; j < V; j++) d[j] = 0.0f;
                continue;
            }
            // the softmax from the row's max and sum of exps, as the fused head makes it
            const float mx = row_max(z, V), gm = dloss[r] * g[m];
            row_softmax_grad(d, z, mx, gm / row_exp_sum<false>(nullptr, z, V, mx), gm, V, y[r]);
        }
    }
}

// The probabilities of one row of M heads' logits, times alpha w_m, added in 256-wide blocks into
// acc (the M terms summed first), or written there when `first` (acc's old values unread: the
// same bits as adding them to zeros, the terms being >= 0); ex holds M rows of scratch. `next`
// (optional): the row of logits the caller reads after these, prefetched during the last exp pass.
static void add_row_mixture(float* acc, float* ex, const float* const* z, const float* logw, float alpha, size_t M,
                            size_t V, bool first = false, const float* next = nullptr) {
    float cm[8];  // alpha w_m / sum_j exp(z_m[j] - max_m)
    for (size_t m = 0; m < M; m++) {
        const float mx = row_max(z[m], V);
        const float sum = row_exp_sum<true>(ex + m * V, z[m], V, mx, m + 1 < M ? z[m + 1] : next);
        cm[m] = alpha * std::exp(logw[m]) / sum;
    }
    // the M terms summed first (m in order) in a block of sums kept in memory (so that the
    // compiler fuses no product into the final addition), then added to acc
    for (size_t j0 = 0; j0 < V; j0 += 256) {
        const size_t n = std::min<size_t>(256, V - j0);
        float t[256];
#pragma omp simd
        for (size_t j = 0; j < n; j++) t[j] = cm[0] * ex[j0 + j];
        for (size_t m = 1; m < M; m++) {
            const float* e = ex + m * V + j0;
#pragma omp simd
            for (size_t j = 0; j < n; j++) t[j] += cm[m] * e[j];
        }
        if (first) {
            std::copy(t, t + n, acc + j0);
        } else {
#pragma omp simd
            for (size_t j = 0; j < n; j++) acc[j0 + j] += t[j];
        }
    }
}

void mixture_prob_accumulate(float* out, const float* const* logits, const float* logw, float alpha, size_t M,
                             size_t R, size_t V) {
    HAFVT_CHECK(M >= 1 && M <= 8, "mixture of ", M, " heads");
#pragma omp parallel if (R * V * M > 65536)
    {
        thread_local std::vector<float> ex;  // each head's exp(z - max) of the row
        ex.resize(M * V);
#pragma omp for schedule(static)
        for (size_t r = 0; r < R; r++) {
            const float* z[8];
            for (size_t m = 0; m < M; m++) z[m] = logits[m] + r * V;
            add_row_mixture(out + r * V, ex.data(), z, logw, alpha, M, V);
        }
    }
}

void mixture_score_lines(float* out, size_t ldo, const int32_t* out_rows, const int32_t* rows, size_t nv, size_t L,
                         const float* const* logits, const float* logw, const float* coef, size_t M, size_t V) {
    HAFVT_CHECK(M >= 1 && M <= 8 && nv <= 8, "mixture of ", M, " heads over ", nv, " views");
    // the first row of logits that line l reads (its first view's, head 0), or null
    auto first_row = [&](size_t l) -> const float* {
        for (size_t v = 0; v < nv; v++)
            if (rows[v * L + l] >= 0) return logits[0] + (size_t)rows[v * L + l] * V;
        return nullptr;
    };
#pragma omp parallel if (L * V * M * nv > 65536)
    {
        // each head's exp(z - max) of a row, kept in cache
        thread_local std::vector<float> ex;
        ex.resize(M * V);
#pragma omp for schedule(static)
        for (size_t l = 0; l < L; l++) {
            // the line's row of scores itself holds the sum over its views (the first view written,
            // the others added), while it is in cache
            float* o = out + (size_t)out_rows[l] * ldo;
            bool first = true;
            for (size_t v = 0; v < nv; v++) {
                const int32_t r = rows[v * L + l];
                if (r < 0) continue;
                const float* z[8];
                for (size_t m = 0; m < M; m++) z[m] = logits[m] + (size_t)r * V;
                // the row read after this view's: the line's next view's, or the next line's first
                const float* next = nullptr;
                for (size_t u = v + 1; u < nv && !next; u++)
                    if (rows[u * L + l] >= 0) next = logits[0] + (size_t)rows[u * L + l] * V;
                if (!next && l + 1 < L) next = first_row(l + 1);
                add_row_mixture(o, ex.data(), z, logw, coef[v], M, V, first, next);
                first = false;
            }
            if (first) std::fill(o, o + V, 0.0f);
            std::fill(o + V, o + ldo, 0.0f);
        }
    }
}

}  // namespace hafvt

namespace hafvt {

void mixture_head_unfused(float* loss, float* const* dhn, float* const* dEn, float* ds,
                          const float* const* hn, const float* const* En, const float* s,
                          const size_t* Cm, const int32_t* y, const float* logw, float lambda_h,
                          const float* dloss, size_t M, size_t R, size_t V) {
    HAFVT_CHECK(M >= 1 && M <= 8, "mixture of ", M, " heads");
    thread_local std::vector<float> z[8], lse;
    const float* zp[8];
    float* dz[8];
    for (size_t m = 0; m < M; m++) {
        z[m].resize(R * V);
        cosine_logits_forward(z[m].data(), hn[m], En[m], s[m], R, V, Cm[m]);
        zp[m] = dz[m] = z[m].data();
    }
    lse.resize(M * R);
    mixture_ce_forward(loss, lse.data(), zp, y, logw, lambda_h, M, R, V);
    if (!dloss) return;
    mixture_ce_backward(dz, zp, lse.data(), y, logw, lambda_h, dloss, M, R, V);  // dz overwrites z
    for (size_t m = 0; m < M; m++)
        cosine_logits_backward(dhn[m], dEn[m], ds ? ds + m : nullptr, dz[m], hn[m], En[m], s[m], R, V, Cm[m]);
}

// The item chunk when all V do not fit: the largest multiple of 256 of the `cols` that fit, at
// least 256, at most V.
static size_t chunk_of(double cols, size_t V) {
    const size_t vc = cols > 256 ? ((size_t)cols / 256) * 256 : 256;
    return vc < V ? vc : V;
}

size_t fused_head_chunk(size_t M, size_t R, size_t V, size_t sumC, size_t budget_bytes) {
    const double fixed = 5.0 * M * R + (double)R * sumC, per_col = (double)M * R;
    const double floats = (double)budget_bytes / sizeof(float);
    if (per_col == 0 || fixed + per_col * V <= floats) return V;
    return chunk_of((floats - fixed) / per_col, V);
}

FusedHeadPlan fused_head_plan(float* const* dhn, float* const* dEn, const float* ds, const size_t* Cm,
                              const float* dloss, size_t M, size_t V) {
    HAFVT_CHECK(M >= 1 && M <= 8, "mixture of ", M, " heads");
    HAFVT_CHECK(V >= 1, "a head with no candidates");
    FusedHeadPlan p;
    bool any_grad = ds != nullptr;
    for (size_t m = 0; m < M; m++) {
        p.sumC += Cm[m];
        any_grad = any_grad || (dhn && dhn[m]) || (dEn && dEn[m]);
    }
    p.backward = dloss && any_grad;
    return p;
}

HeadBlocks cpu_head_blocks(size_t M, size_t R, size_t V, size_t sumC, size_t budget_bytes) {
    HeadBlocks b;
    const size_t KC = (size_t)kSgemmKC, unit = std::max<size_t>(1, std::min(R, KC));
    const double floats = (double)budget_bytes / sizeof(float);
    const double fixed = 5.0 * M * R + (double)R * sumC;  // row statistics and gradient rows, all R
    const size_t small = std::min(unit, kHeadMinRows);
    if (fixed + (double)M * unit * V <= floats) {
        b.cols = V;
        const double k = std::floor((floats - fixed) / ((double)M * KC * V));
        b.rows = R <= KC ? R : std::min(R, (size_t)std::max(1.0, k) * KC);
    } else if (fixed + (double)M * small * V <= floats) {
        // fewer rows than the GEMM's depth, all items: the largest multiple of kHeadMinRows that fits
        b.cols = V;
        const double k = std::floor((floats - fixed) / ((double)M * kHeadMinRows * V));
        b.rows = std::min(unit, std::max<size_t>(small, (size_t)k * kHeadMinRows));
    } else {
        b.rows = small;
        b.cols = chunk_of((floats - fixed) / ((double)M * small), V);
    }
    return b;
}

void fused_mixture_head(float* loss, float* const* dhn, float* const* dEn, float* ds, const float* const* hn,
                        const float* const* En, const float* s, const size_t* Cm, const int32_t* y,
                        const float* logw, float lambda_h, const float* dloss, size_t M, size_t R, size_t V,
                        size_t Vc, uint64_t keep) {
    fused_mixture_head_blocked(loss, dhn, dEn, ds, hn, En, s, Cm, y, logw, lambda_h, dloss, M, R, V, 0, Vc, keep);
}

void fused_mixture_head_blocked(float* loss, float* const* dhn, float* const* dEn, float* ds,
                                const float* const* hn, const float* const* En, const float* s,
                                const size_t* Cm, const int32_t* y, const float* logw, float lambda_h,
                                const float* dloss, size_t M, size_t R, size_t V, size_t Rb, size_t Vc,
                                uint64_t keep) {
    const FusedHeadPlan plan = fused_head_plan(dhn, dEn, ds, Cm, dloss, M, V);
    const bool backward = plan.backward;
    if (R == 0) return;
    const HeadBlocks rule = cpu_head_blocks(M, R, V, plan.sumC, kCpuHeadBudget);
    Rb = std::min(Rb ? Rb : rule.rows, R);
    Vc = std::min(Vc ? Vc : rule.cols, V);
    const size_t MR = M * R;
    // scratch kept between calls (a step makes up to six): one block's logits, per (head, row) the
    // running max, sum of exp, target logit, lse and g, and the rows' gradients G (R, sumC), head m's
    // (R, Cm[m]) at Goff[m] (thread_local: the OpenMP threads below reach them through these
    // pointers, not by name)
    // (grown to the exact size with the old block freed first, so the peak never holds both; a
    // large block on huge pages: aligned_calloc)
    thread_local Buffer Zs, Gs, stats;
    auto grow = [](Buffer& v, size_t n) {
        if (v.size() < n) v.resize(n);
    };
    grow(Zs, M * Rb * Vc), grow(Gs, R * plan.sumC), grow(stats, 5 * MR);
    float* const Z = Zs.data();
    float* const G = Gs.data();
    float* const mx = stats.data();
    float* const sum = mx + MR;
    float* const zy = sum + MR;
    float* const lse = zy + MR;
    float* const g = lse + MR;
    size_t Goff[8];
    for (size_t m = 0, o = 0; m < M; o += R * Cm[m], m++) Goff[m] = o;
    auto wants_G = [&](size_t m) { return (dhn && dhn[m]) || ds; };
    // With all items in one chunk, each head's table is packed once per call for the products that
    // read it, En^T for the logits and En for G (sgemm_packed, the same bits as sgemm's own packing):
    // sgemm would pack it again for every row block, and for G in each thread.
    // With keep, a slot whose table, shape and keep are this call's is not packed again.
    thread_local PackedB packed_logits[8], packed_G[8];
    struct Packed {
        const float* table = nullptr;
        size_t V = 0, C = 0;
        uint64_t keep = 0;
    };
    thread_local Packed held_logits[8], held_G[8];
    auto pack = [&](PackedB& p, Packed& held, bool trans, size_t m) {
        const Packed now{En[m], V, Cm[m], keep};
        if (keep && held.table == now.table && held.V == V && held.C == Cm[m] && held.keep == keep) return;
        held = Packed{};  // not valid while packing (an exception leaves it empty)
        if (trans) p.pack(true, (int)Cm[m], (int)V, En[m], (int)Cm[m]);
        else p.pack(false, (int)V, (int)Cm[m], En[m], (int)Cm[m]);
        held = now;
    };
    const bool whole = Vc >= V && R * V * plan.sumC >= kHeadPackWork;
    for (size_t m = 0; whole && m < M; m++) {
        pack(packed_logits[m], held_logits[m], true, m);
        if (backward && wants_G(m)) pack(packed_G[m], held_G[m], false, m);
    }
    // the logits of rows [r0, r0 + rb) and items [j0, j0 + vc): head m's (rb, vc) at Z + m Rb Vc
    auto block_logits = [&](size_t r0, size_t rb, size_t j0, size_t vc) {
        for (size_t m = 0; m < M; m++) {
            if (whole)
                sgemm_packed(false, (int)rb, (int)vc, (int)Cm[m], s[m], hn[m] + r0 * Cm[m], (int)Cm[m],
                             packed_logits[m], 0.0f, Z + m * Rb * Vc, (int)vc);
            else
                sgemm(false, true, (int)rb, (int)vc, (int)Cm[m], s[m], hn[m] + r0 * Cm[m], (int)Cm[m],
                      En[m] + j0 * Cm[m], (int)Cm[m], 0.0f, Z + m * Rb * Vc, (int)vc);
        }
    };
    // G_m[r0..] (= beta G + dZ En_chunk) and dEn_chunk += s dZ^T hn for the block's dZ
    auto block_grads = [&](size_t r0, size_t rb, size_t j0, size_t vc, float beta) {
        for (size_t m = 0; m < M; m++) {
            const int C = (int)Cm[m];
            const float* dZ = Z + m * Rb * Vc;
            if (wants_G(m) && whole)
                sgemm_packed(false, (int)rb, C, (int)vc, 1.0f, dZ, (int)vc, packed_G[m], beta,
                             G + Goff[m] + r0 * Cm[m], C);
            else if (wants_G(m))
                sgemm(false, false, (int)rb, C, (int)vc, 1.0f, dZ, (int)vc, En[m] + j0 * Cm[m], C, beta,
                      G + Goff[m] + r0 * Cm[m], C);
            if (dEn && dEn[m])
                sgemm(true, false, (int)vc, C, (int)rb, s[m], dZ, (int)vc, hn[m] + r0 * Cm[m], C, 1.0f,
                      dEn[m] + j0 * Cm[m], C);
        }
    };
    // per row: the loss and g_m = dloss * (r_m + lambda_h w_m) (row_objective) from lse and zy
    auto row_terms = [&](size_t r) {
        float a[8], gr[8];
        for (size_t m = 0; m < M; m++) a[m] = logw[m] + zy[m * R + r] - lse[m * R + r];
        loss[r] = y[r] < 0 ? 0.0f : row_objective(a, logw, lambda_h, M, gr);
        for (size_t m = 0; m < M; m++) g[m * R + r] = (y[r] < 0 || !dloss) ? 0.0f : dloss[r] * gr[m];
    };
    for (size_t r0 = 0; r0 < R; r0 += Rb) {
        const size_t rb = std::min(Rb, R - r0);
        if (Vc >= V) {
            // every logit of the block at once; then per row, all heads one after another while the
            // row is in cache: the max, the target logit, the exps (in place) and their sum, lse,
            // the objective, and the gradient as the exps scaled in place (each exp made once)
            block_logits(r0, rb, 0, V);
#pragma omp parallel for schedule(static) if (M * rb * V > 65536)
            for (size_t i = 0; i < rb; i++) {
                const size_t r = r0 + i;
                for (size_t m = 0; m < M; m++) {
                    const size_t k = m * R + r;
                    float* z = Z + m * Rb * V + i * V;
                    mx[k] = row_max(z, V);
                    zy[k] = y[r] >= 0 ? z[y[r]] : 0.0f;
                    sum[k] = row_exp_sum<true>(z, z, V, mx[k]);
                    lse[k] = mx[k] + std::log(sum[k]);
                }
                row_terms(r);
                if (backward)
                    for (size_t m = 0; m < M; m++) {
                        const size_t k = m * R + r;
                        row_scale_grad(Z + m * Rb * V + i * V, g[k] / sum[k], g[k], V, y[r]);
                    }
            }
            if (backward) block_grads(r0, rb, 0, V, 0.0f);
            continue;
        }
        // items in chunks: pass 1 folds each chunk into the running logsumexp of every row and head
        // and picks up the target logits; pass 2 recomputes each chunk's logits for dZ
        const size_t nb = M * rb;
        for (size_t i = 0; i < nb; i++) {
            const size_t k = (i / rb) * R + r0 + i % rb;
            mx[k] = -INFINITY, sum[k] = 0.0f, zy[k] = 0.0f;
        }
        for (size_t j0 = 0; j0 < V; j0 += Vc) {
            const size_t vc = std::min(Vc, V - j0);
            block_logits(r0, rb, j0, vc);
#pragma omp parallel for schedule(static) if (nb * vc > 65536)
            for (size_t i = 0; i < nb; i++) {
                const size_t m = i / rb, r = r0 + i % rb, k = m * R + r;
                const float* z = Z + m * Rb * Vc + (i % rb) * vc;
                const float cm = row_max(z, vc), cs = row_exp_sum<false>(nullptr, z, vc, cm);
                const float nm = std::max(mx[k], cm);
                sum[k] = sum[k] * std::exp(mx[k] - nm) + cs * std::exp(cm - nm);  // exp(-inf) = 0 at first
                mx[k] = nm;
                if (y[r] >= 0 && (size_t)y[r] >= j0 && (size_t)y[r] < j0 + vc) zy[k] = z[(size_t)y[r] - j0];
            }
        }
        for (size_t r = r0; r < r0 + rb; r++) {
            for (size_t m = 0; m < M; m++) lse[m * R + r] = mx[m * R + r] + std::log(sum[m * R + r]);
            row_terms(r);
        }
        if (!backward) continue;
        for (size_t j0 = 0; j0 < V; j0 += Vc) {
            const size_t vc = std::min(Vc, V - j0);
            block_logits(r0, rb, j0, vc);
#pragma omp parallel for schedule(static) if (nb * vc > 65536)
            for (size_t i = 0; i < nb; i++) {
                const size_t m = i / rb, r = r0 + i % rb;
                float* z = Z + m * Rb * Vc + (i % rb) * vc;
                const size_t k = m * R + r;
                row_softmax_grad(z, z, mx[k], g[k] / sum[k], g[k], vc, y[r] < 0 ? -1 : (int64_t)y[r] - (int64_t)j0);
            }
            block_grads(r0, rb, j0, vc, j0 == 0 ? 0.0f : 1.0f);  // the first chunk overwrites G
        }
    }
    if (!backward) return;
    for (size_t m = 0; m < M; m++)
        if (wants_G(m)) scale_and_rows_grad(dhn ? dhn[m] : nullptr, ds ? ds + m : nullptr, G + Goff[m], hn[m], s[m], R, Cm[m]);
}

}  // namespace hafvt
