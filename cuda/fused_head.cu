// fused_head.cu: the M cosine-softmax heads and the mixture cross-entropy of one view in one call,
// without ever holding the (R,V) logits (V is 30k-100k items; R = B*T rows).
//
// What is computed (SPEC §2.3-2.4, §3.1-3.2), per row r with target y (y < 0: no loss, no gradient):
//   z_m[j] = s_m hn_m[r] . En_m[j]                        (cosine logits; rows are normalized)
//   lse_m  = logsumexp_j z_m[j]
//   l_mix  = -logsumexp_m(logw_m + z_m[y] - lse_m)        = -log sum_m w_m p_m[y]
//   loss   = l_mix + lambda_h sum_m w_m (lse_m - z_m[y])   (SPEC §3.5; lambda_h = 0: §3.1 exactly)
// Gradient (the derivation of mixture_ce_backward): with P = sum_m w_m p_m[y], l_mix = -log P,
//   dl_mix/dz_m[j] = -(1/P) w_m dp_m[y]/dz_m[j] = -(w_m p_m[y] / P) ([j==y] - p_m[j]),
// and the per-head term's is lambda_h w_m (p_m[j] - [j==y]), so
//   dl/dz_m[j] = g_m (exp(z_m[j] - lse_m) - [j==y]),
//   g_m = dloss * (r_m + lambda_h w_m),  r_m = w_m p_m[y] / P = exp(logw_m + z_m[y] - lse_m + l_mix).
// Then through the cosine logits (as cosine_logits_backward):
//   G_m = dZ_m En_m (R,C_m);  dhn_m += s_m G_m;  ds_m += sum_r hn_m[r] . G_m[r] (dz/ds = cos);
//   dEn_m[j] += s_m sum_r dZ_m[r,j] hn_m[r].
// Everything except lse_m and z_m[y] is local to one item j, so the items are processed in chunks
// of Vc columns:
//   pass 1, per chunk: Z = chunk logits (cuBLAS, into an (R,Vc) scratch per head); fold the
//     chunk's max and sum of exp into a running (online) max mx and sum S per row:
//       mx' = max(mx, max_chunk),  S' = S exp(mx - mx') + sum_chunk exp(z - mx')
//     and pick up z_m[y] when y falls in the chunk.
//   then per row: lse_m = mx + log S, the loss, and g_m.
//   pass 2, per chunk: recompute Z (skipped when there is one chunk: it is still there), turn it
//     into dZ in place, then G_m += dZ En_chunk and dEn_chunk += s_m dZ^T hn_m (two GEMMs).
//   finally dhn_m += s_m G_m and ds_m += sum hn_m . G_m.
// Memory: M*R*Vc floats for Z, 5*M*R for the row statistics, R*sum(C_m) for G. Vc = 0 picks the
// chunk from the free device memory (fused_head_chunk, heads.h): V itself whenever that fits, so
// that the logits are computed once (3 GEMMs per head); fused_mixture_head (heads.cpp) is
// this algorithm on the CPU.
#include "cuda_common.cuh"

namespace hafvt {

constexpr unsigned kFusedThreads = 256;

// The row statistics of all heads, each (M,R) in the workspace.
struct RowStats {
    float* mx;    // running max
    float* sum;   // running sum of exp(z - mx)
    float* zy;    // the target logit z_m[y]
    float* lse;   // logsumexp over all V
    float* g;     // dloss * responsibility
};

__global__ void fused_init_kernel(RowStats st, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        st.mx[i] = -INFINITY;
        st.sum[i] = 0.0f;
        st.zy[i] = 0.0f;
    }
}

// Block (r, m): folds row r of head m's chunk Z_m (R,vc) into the running max/sum.
__global__ void fused_online_lse_kernel(RowStats st, const float* Z, size_t Zstride,
                                        const int32_t* y, size_t R, size_t vc, size_t j0) {
    __shared__ float scratch[kWarp];
    size_t r = blockIdx.x, m = blockIdx.y;
    const float* z = Z + m * Zstride + r * vc;  // (vc)
    float cm = -INFINITY;
    for (size_t j = threadIdx.x; j < vc; j += blockDim.x) cm = fmaxf(cm, z[j]);
    cm = block_max(cm, scratch);
    float cs = 0.0f;
    for (size_t j = threadIdx.x; j < vc; j += blockDim.x) cs += expf(z[j] - cm);
    cs = block_sum(cs, scratch);
    if (threadIdx.x == 0) {
        size_t k = m * R + r;
        float old = st.mx[k], nm = fmaxf(old, cm);
        st.sum[k] = st.sum[k] * expf(old - nm) + cs * expf(cm - nm);  // exp(-inf) = 0 at first
        st.mx[k] = nm;
        int32_t yr = y[r];
        if (yr >= 0 && (size_t)yr >= j0 && (size_t)yr < j0 + vc) st.zy[k] = z[(size_t)yr - j0];
    }
}

// Thread per row: lse, loss (as mixture_ce_forward), and g_m = dloss * (r_m + lambda_h w_m)
// (0 without dloss), in the order of row_objective (heads.cpp).
__global__ void fused_finalize_kernel(float* loss, RowStats st, const int32_t* y, const float* logw,
                                      float lambda_h, const float* dloss, size_t M, size_t R) {
    for (size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x; r < R;
         r += (size_t)gridDim.x * blockDim.x) {
        float a[8], mx = -INFINITY;
        for (size_t m = 0; m < M; m++) {
            size_t k = m * R + r;
            st.lse[k] = st.mx[k] + logf(st.sum[k]);
            a[m] = logw[m] + st.zy[k] - st.lse[k];
            mx = fmaxf(mx, a[m]);
        }
        float l = 0.0f, aux = 0.0f;
        if (y[r] >= 0) {
            float sum = 0.0f;
            for (size_t m = 0; m < M; m++) sum += expf(a[m] - mx);
            l = -(mx + logf(sum));
        }
        for (size_t m = 0; m < M; m++) {
            const float w = expf(logw[m]);
            if (lambda_h != 0.0f && w > 0.0f) aux += w * (logw[m] - a[m]);  // w_m (-log p_m[y])
            st.g[m * R + r] = (y[r] < 0 || !dloss) ? 0.0f : dloss[r] * (expf(a[m] + l) + lambda_h * w);
        }
        loss[r] = (y[r] >= 0 && lambda_h != 0.0f) ? l + lambda_h * aux : l;
    }
}

// Block (r, m): Z_m[r, :] becomes dZ = g (exp(z - lse) - [j0 + j == y]) in place.
__global__ void fused_dlogits_kernel(float* Z, size_t Zstride, RowStats st, const int32_t* y,
                                     size_t R, size_t vc, size_t j0) {
    size_t r = blockIdx.x, m = blockIdx.y, k = m * R + r;
    float* z = Z + m * Zstride + r * vc;
    float g = st.g[k], l = st.lse[k];
    int32_t yr = y[r];
    for (size_t j = threadIdx.x; j < vc; j += blockDim.x) {
        float d = g * expf(z[j] - l);
        if (yr >= 0 && (size_t)yr == j0 + j) d -= g;
        z[j] = d;
    }
}

void fused_mixture_head_cuda(float* loss, float* const* dhn, float* const* dEn, float* ds,
                             const float* const* hn, const float* const* En, const float* s,
                             const size_t* Cm, const int32_t* y, const float* logw, float lambda_h,
                             const float* dloss, size_t M, size_t R, size_t V, size_t Vc, uint64_t keep) {
    (void)keep;  // cuBLAS reads the tables as they are: nothing is packed
    const FusedHeadPlan plan = fused_head_plan(dhn, dEn, ds, Cm, dloss, M, V);
    const size_t sumC = plan.sumC;
    const bool backward = plan.backward;
    if (R == 0) return;
    if (Vc == 0) {
        // one chunk when it fits in half of what is free (the workspace itself counts as free)
        size_t free_b = 0, total_b = 0;
        HAFVT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        Vc = fused_head_chunk(M, R, V, sumC, (free_b + cuda_workspace_floats() * sizeof(float)) / 2);
    }
    if (Vc > V) Vc = V;
    const size_t nchunks = (V + Vc - 1) / Vc;

    // workspace: Z (M, R, Vc) | 5 row statistics (M, R) | G (R, C_m) per head
    const size_t Zstride = R * Vc, MR = M * R;
    float* ws = cuda_workspace(M * Zstride + 5 * MR + (backward ? R * sumC : 0));
    float* Z = ws;
    RowStats st{ws + M * Zstride, ws + M * Zstride + MR, ws + M * Zstride + 2 * MR,
                ws + M * Zstride + 3 * MR, ws + M * Zstride + 4 * MR};
    float* G = ws + M * Zstride + 5 * MR;
    HAFVT_LAUNCH(fused_init_kernel, grid_for(MR), kBlock, 0, st, MR);

    // Z_m (R,vc) = s_m hn_m (R,C_m) @ En_m[j0:j0+vc] (vc,C_m)^T
    auto chunk_logits = [&](size_t j0, size_t vc) {
        for (size_t m = 0; m < M; m++) {
            int C = (int)Cm[m];
            sgemm_cuda(false, true, (int)R, (int)vc, C, s[m], hn[m], C, En[m] + j0 * Cm[m], C, 0.0f,
                       Z + m * Zstride, (int)vc);
        }
    };
    dim3 row_grid((unsigned)R, (unsigned)M);

    // pass 1: running logsumexp and the target logits
    for (size_t j0 = 0; j0 < V; j0 += Vc) {
        size_t vc = V - j0 < Vc ? V - j0 : Vc;
        chunk_logits(j0, vc);
        HAFVT_LAUNCH(fused_online_lse_kernel, row_grid, kFusedThreads, 0, st, Z, Zstride, y, R, vc, j0);
    }
    HAFVT_LAUNCH(fused_finalize_kernel, grid_for(R), kBlock, 0, loss, st, y, logw, lambda_h, dloss, M, R);
    if (!backward) return;

    // pass 2: dZ per chunk, then the two backward GEMMs of the chunk
    cuda_memset_zero(G, R * sumC * sizeof(float));
    for (size_t j0 = 0; j0 < V; j0 += Vc) {
        size_t vc = V - j0 < Vc ? V - j0 : Vc;
        if (nchunks > 1) chunk_logits(j0, vc);  // one chunk: Z still holds it from pass 1
        HAFVT_LAUNCH(fused_dlogits_kernel, row_grid, kFusedThreads, 0, Z, Zstride, st, y, R, vc, j0);
        float* Gm = G;
        for (size_t m = 0; m < M; m++) {
            int C = (int)Cm[m];
            const float* dZ = Z + m * Zstride;  // (R,vc)
            // G_m (R,C) += dZ (R,vc) @ En_chunk (vc,C)
            if ((dhn && dhn[m]) || ds)
                sgemm_cuda(false, false, (int)R, C, (int)vc, 1.0f, dZ, (int)vc, En[m] + j0 * Cm[m],
                           C, 1.0f, Gm, C);
            // dEn_chunk (vc,C) += s_m dZ^T (vc,R) @ hn_m (R,C)
            if (dEn && dEn[m])
                sgemm_cuda(true, false, (int)vc, C, (int)R, s[m], dZ, (int)vc, hn[m], C, 1.0f,
                           dEn[m] + j0 * Cm[m], C);
            Gm += R * Cm[m];
        }
    }
    float* Gm = G;
    for (size_t m = 0; m < M; m++) {
        if (ds) dot_sum_add_cuda(ds + m, Gm, hn[m], R * Cm[m]);
        if (dhn && dhn[m]) axpy_cuda(dhn[m], s[m], Gm, R * Cm[m]);
        Gm += R * Cm[m];
    }
}

}  // namespace hafvt
