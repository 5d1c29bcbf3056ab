// heads.cu: row L2 normalization, the cosine logits and the mixture of evaluation, Adam, and the
// dot product and axpy of the fused head (fused_head.cu) on the GPU (see ops_cpu.h, heads.h,
// adam.h). Per-row reductions use one warp (L2 norm) or one block (softmax over V candidates) per
// row; the scale gradient is a two-stage fixed-order sum, so everything here is deterministic.
#include <algorithm>
#include <cmath>

#include "cuda_common.cuh"

namespace hafvt {

// ---- small helpers shared with fused_head.cu -------------------------------------------------

constexpr unsigned kDotThreads = 256;
constexpr unsigned kDotMaxBlocks = 256;

// Tree sum of the block's `part` (blockDim.x doubles, a power of two) into part[0].
__device__ __forceinline__ void block_tree_sum(double* part) {
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
}

// dst[0] += sum_i a[i] b[i] in two deterministic stages. Stage 1: block k of nb sums the elements
// i = k*blockDim + t (mod nb*blockDim) in double, each thread in increasing i, then a tree;
// stage 2: one block adds the nb partials with the same tree. nb depends only on n, so the order
// of every addition is fixed and two runs give bitwise the same result.
__global__ void dot_partials_kernel(double* partials, const float* a, const float* b, size_t n) {
    __shared__ double part[kDotThreads];
    double acc = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc += (double)a[i] * (double)b[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    block_tree_sum(part);
    if (threadIdx.x == 0) partials[blockIdx.x] = part[0];
}

__global__ void dot_finish_kernel(float* dst, const double* partials, unsigned nb) {
    __shared__ double part[kDotThreads];
    part[threadIdx.x] = threadIdx.x < nb ? partials[threadIdx.x] : 0.0;
    __syncthreads();
    block_tree_sum(part);
    if (threadIdx.x == 0) dst[0] += (float)part[0];
}

void dot_sum_add_cuda(float* dst, const float* a, const float* b, size_t n) {
    // the partials have their own buffer: callers pass operands that live in the workspace
    static double* partials = nullptr;  // never freed, like the cuBLAS handle
    if (!partials) partials = static_cast<double*>(cuda_malloc(kDotMaxBlocks * sizeof(double)));
    size_t per_block = (size_t)kDotThreads * 8;
    unsigned nb = (unsigned)std::min<size_t>(kDotMaxBlocks, std::max<size_t>(1, (n + per_block - 1) / per_block));
    HAFVT_LAUNCH(dot_partials_kernel, nb, kDotThreads, 0, partials, a, b, n);
    HAFVT_LAUNCH(dot_finish_kernel, 1, kDotThreads, 0, dst, partials, nb);
}

__global__ void axpy_kernel(float* y, float alpha, const float* x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += alpha * x[i];
}

void axpy_cuda(float* y, float alpha, const float* x, size_t n) {
    if (n == 0) return;
    HAFVT_LAUNCH(axpy_kernel, grid_for(n), kBlock, 0, y, alpha, x, n);
}

// ---- L2 normalization ------------------------------------------------------------------------

// out[n] = inp[n] / max(|inp[n]|, eps), norm[n] = |inp[n]|: one warp per row.
__global__ void l2norm_forward_kernel(float* out, float* norm, const float* inp, size_t N,
                                      size_t C) {
    size_t n = blockIdx.x * (size_t)(blockDim.x / kWarp) + threadIdx.x / kWarp;
    unsigned lane = threadIdx.x % kWarp;
    if (n >= N) return;
    const float* x = inp + n * C;
    float s = 0.0f;
    for (size_t c = lane; c < C; c += kWarp) s += x[c] * x[c];
    float nr = sqrtf(warp_sum(s));
    float inv = 1.0f / (nr > kNormEps ? nr : kNormEps);
    for (size_t c = lane; c < C; c += kWarp) out[n * C + c] = x[c] * inv;
    if (lane == 0) norm[n] = nr;
}

void l2norm_forward_cuda(float* out, float* norm, const float* inp, size_t N, size_t C) {
    if (N == 0) return;
    unsigned rows_per_block = kBlock / kWarp;
    HAFVT_LAUNCH(l2norm_forward_kernel, (unsigned)((N + rows_per_block - 1) / rows_per_block), kBlock, 0,
        out, norm, inp, N, C);
}

// forward: y = x / max(|x|, eps)
// |x| > eps: dx += (dy - y (y . dy)) / |x|;   clamped: dx += dy / eps
__global__ void l2norm_backward_kernel(float* dinp, const float* dout, const float* out,
                                       const float* norm, size_t N, size_t C) {
    size_t n = blockIdx.x * (size_t)(blockDim.x / kWarp) + threadIdx.x / kWarp;
    unsigned lane = threadIdx.x % kWarp;
    if (n >= N) return;
    const float* y = out + n * C;
    const float* g = dout + n * C;
    float* d = dinp + n * C;
    if (norm[n] > kNormEps) {
        float dot = 0.0f;
        for (size_t c = lane; c < C; c += kWarp) dot += y[c] * g[c];
        dot = warp_sum(dot);
        float inv = 1.0f / norm[n];
        for (size_t c = lane; c < C; c += kWarp) d[c] += (g[c] - y[c] * dot) * inv;
    } else {
        for (size_t c = lane; c < C; c += kWarp) d[c] += g[c] / kNormEps;
    }
}

void l2norm_backward_cuda(float* dinp, const float* dout, const float* out, const float* norm,
                          size_t N, size_t C) {
    if (N == 0) return;
    unsigned rows_per_block = kBlock / kWarp;
    HAFVT_LAUNCH(l2norm_backward_kernel, (unsigned)((N + rows_per_block - 1) / rows_per_block), kBlock, 0,
        dinp, dout, out, norm, N, C);
}

// ---- cosine logits ---------------------------------------------------------------------------

void cosine_logits_forward_cuda(float* logits, const float* hn, const float* En, float s, size_t R,
                                size_t V, size_t C) {
    // logits (R,V) = s * hn (R,C) @ En (V,C)^T
    sgemm_cuda(false, true, (int)R, (int)V, (int)C, s, hn, (int)C, En, (int)C, 0.0f, logits, (int)V);
}

void cosine_logits_forward_sets_cuda(float* logits, const float* hn, const float* En, const float* s,
                                     const size_t* R, size_t n, size_t V, size_t C, int slot) {
    HAFVT_CHECK(slot < kTableSlots, "table slot ", slot, " (there are ", kTableSlots, ")");
    for (size_t i = 0, r0 = 0; i < n; r0 += R[i++])
        if (R[i]) cosine_logits_forward_cuda(logits + r0 * V, hn + r0 * C, En, s[i], R[i], V, C);
}

void packed_tables_release_cuda() {}

// ---- the evaluation mixture ------------------------------------------------------------------

constexpr unsigned kRowThreads = 256;

// logsumexp of one row of V logits by the whole block (every thread gets it).
__device__ float block_row_lse(const float* z, size_t V, float* scratch) {
    float mx = -INFINITY;
    for (size_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, z[j]);
    mx = block_max(mx, scratch);
    float sum = 0.0f;
    for (size_t j = threadIdx.x; j < V; j += blockDim.x) sum += expf(z[j] - mx);
    return mx + logf(block_sum(sum, scratch));
}

static void check_mixture(size_t M) {
    HAFVT_CHECK(M >= 1 && M <= 8, "mixture of ", M, " heads");
}

// out[r,j] += alpha * sum_m w_m softmax(z_m[r])[j]; one block per row, the heads' terms summed
// in order, then added.
__global__ void mixture_prob_accumulate_kernel(float* out, PtrPack logits, const float* logw, float alpha, size_t M,
                                               size_t V) {
    __shared__ float scratch[kWarp];
    const size_t r = blockIdx.x;
    float* o = out + r * V;
    float l[8], w[8];
    for (size_t m = 0; m < M; m++) {
        l[m] = block_row_lse(logits.p[m] + r * V, V, scratch);
        w[m] = alpha * expf(logw[m]);
    }
    for (size_t j = threadIdx.x; j < V; j += blockDim.x) {
        float t = w[0] * expf(logits.p[0][r * V + j] - l[0]);
        for (size_t m = 1; m < M; m++) t += w[m] * expf(logits.p[m][r * V + j] - l[m]);
        o[j] += t;
    }
}

void mixture_prob_accumulate_cuda(float* out, const float* const* logits, const float* logw, float alpha, size_t M,
                                  size_t R, size_t V) {
    check_mixture(M);
    if (R == 0) return;
    PtrPack pk{};
    for (size_t m = 0; m < M; m++) pk.p[m] = logits[m];
    HAFVT_LAUNCH(mixture_prob_accumulate_kernel, (unsigned)R, kRowThreads, 0, out, pk, logw, alpha, M, V);
}

// Line l's scores: out row out_rows[l] zeroed (up to ldo), then per view with a row, in order,
// += coef[v] sum_m w_m softmax(z_m[row]); one block per line, each thread owning its elements.
struct ViewCoefs {
    float c[8];
};
__global__ void mixture_score_lines_kernel(float* out, size_t ldo, const int32_t* out_rows, const int32_t* rows,
                                           size_t nv, size_t L, PtrPack logits, const float* logw, ViewCoefs coef,
                                           size_t M, size_t V) {
    __shared__ float scratch[kWarp];
    const size_t l = blockIdx.x;
    float* o = out + (size_t)out_rows[l] * ldo;
    for (size_t j = threadIdx.x; j < ldo; j += blockDim.x) o[j] = 0.0f;
    for (size_t v = 0; v < nv; v++) {
        const int32_t r = rows[v * L + l];
        if (r < 0) continue;
        float lse[8], w[8];
        for (size_t m = 0; m < M; m++) {
            lse[m] = block_row_lse(logits.p[m] + (size_t)r * V, V, scratch);
            w[m] = coef.c[v] * expf(logw[m]);
        }
        for (size_t j = threadIdx.x; j < V; j += blockDim.x) {
            float t = w[0] * expf(logits.p[0][(size_t)r * V + j] - lse[0]);
            for (size_t m = 1; m < M; m++) t += w[m] * expf(logits.p[m][(size_t)r * V + j] - lse[m]);
            o[j] += t;
        }
    }
}

void mixture_score_lines_cuda(float* out, size_t ldo, const int32_t* out_rows, const int32_t* rows, size_t nv,
                              size_t L, const float* const* logits, const float* logw, const float* coef, size_t M,
                              size_t V) {
    check_mixture(M);
    HAFVT_CHECK(nv <= 8, "mixture over ", nv, " views");
    if (L == 0) return;
    PtrPack pk{};
    for (size_t m = 0; m < M; m++) pk.p[m] = logits[m];
    ViewCoefs vc{};
    for (size_t v = 0; v < nv; v++) vc.c[v] = coef[v];
    HAFVT_LAUNCH(mixture_score_lines_kernel, (unsigned)L, kRowThreads, 0, out, ldo, out_rows, rows, nv, L, pk, logw,
                 vc, M, V);
}

// ---- Adam ------------------------------------------------------------------------------------

//   g = grad + l2 * w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   w -= step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps),  step_size = lr / (1 - b1^t)
__global__ void adam_update_kernel(float* params, float* m, float* v, const float* grads, size_t n,
                                   float b1, float b2, float eps, float l2, float step_size,
                                   float bc2_sqrt) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = grads[i] + l2 * params[i];
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

void adam_update_cuda(float* params, float* m, float* v, const float* grads, size_t n,
                      const AdamConfig& cfg, long t) {
    if (n == 0) return;
    // the bias corrections in double on the host, exactly as adam_update computes them
    const double bc1 = 1.0 - std::pow((double)cfg.beta1, (double)t);
    const double bc2 = 1.0 - std::pow((double)cfg.beta2, (double)t);
    HAFVT_LAUNCH(adam_update_kernel, grid_for(n), kBlock, 0, params, m, v, grads, n, cfg.beta1, cfg.beta2,
                                                cfg.eps, cfg.l2, (float)(cfg.lr / bc1),
                                                (float)std::sqrt(bc2));
}

}  // namespace hafvt
