// ops_encoder.cu: the elementwise and per-row encoder layers on the GPU (see ops_cpu.h for the
// shapes; every function mirrors the CPU one of the same name without _cuda). Backward functions
// ACCUMULATE. No atomics anywhere: every gradient element is summed by one thread in a fixed
// order, so two runs give bitwise the same gradients.
#include "cuda_common.cuh"

namespace hafvt {

// Grid-stride loop over i in [0, n).
#define HAFVT_FOR_EACH(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

// ---- embedding and positions -----------------------------------------------------------------

__global__ void embedding_forward_kernel(float* out, const int32_t* ids, const float* table,
                                         float scale, int32_t pad, size_t N, size_t C) {
    HAFVT_FOR_EACH(i, N * C) {
        size_t n = i / C, c = i % C;
        int32_t id = ids[n];
        out[i] = id == pad ? 0.0f : table[(size_t)id * C + c] * scale;  // (N,C)
    }
}

void embedding_forward_cuda(float* out, const int32_t* ids, const float* table, float scale,
                            int32_t pad, size_t N, size_t C) {
    if (N * C == 0) return;
    HAFVT_LAUNCH(embedding_forward_kernel, grid_for(N * C), kBlock, 0, out, ids, table, scale, pad, N, C);
}

// forward: out[n] = table[ids[n]] * scale  =>  dtable[ids[n]] += dout[n] * scale.
// Ids repeat, so rows of dout cannot be added in parallel, and atomics would add them in a
// different order on every run. A sorted pass instead: (1) one block sorts the keys
// (id << 32 | n) of the N rows (PAD and negative ids become the largest key) with a bitonic
// network, in shared memory up to kSortShared keys, else in the workspace; (2) the first sorted
// row of each id, per channel, adds that id's rows of dout in increasing n, exactly the CPU's
// order per element. Work O(N log^2 N + N C); every element of dtable is written by one thread.
constexpr unsigned kSortThreads = 1024;
constexpr size_t kSortShared = 4096;  // 32 KiB of keys: below 48 KiB, no opt-in needed
constexpr uint64_t kNoKey = ~(uint64_t)0;

__global__ void sort_row_keys_kernel(uint64_t* keys, const int32_t* ids, int32_t pad, size_t N,
                                     size_t P, int in_shared) {
    HAFVT_DYNAMIC_SHARED(uint64_t, keys_sh);
    uint64_t* k = in_shared ? keys_sh : keys;  // P keys, P = N rounded up to a power of two
    for (size_t i = threadIdx.x; i < P; i += blockDim.x) {
        int32_t id = i < N ? ids[i] : -1;
        k[i] = i < N && id != pad && id >= 0 ? ((uint64_t)(uint32_t)id << 32) | (uint64_t)i : kNoKey;
    }
    __syncthreads();
    for (size_t size = 2; size <= P; size *= 2) {
        for (size_t stride = size / 2; stride > 0; stride /= 2) {
            for (size_t i = threadIdx.x; i < P; i += blockDim.x) {
                size_t l = i ^ stride;
                if (l > i) {
                    uint64_t a = k[i], b = k[l];
                    if ((a > b) == ((i & size) == 0)) {  // ascending where bit `size` of i is 0
                        k[i] = b;
                        k[l] = a;
                    }
                }
            }
            __syncthreads();
        }
    }
    if (in_shared)
        for (size_t i = threadIdx.x; i < N; i += blockDim.x) keys[i] = k[i];
}

__global__ void scatter_sorted_rows_kernel(float* dtable, const float* dout, const uint64_t* keys,
                                           float scale, size_t N, size_t C) {
    HAFVT_FOR_EACH(i, N * C) {
        size_t r = i / C, c = i % C;
        uint64_t key = keys[r];
        uint64_t id = key >> 32;
        if (key == kNoKey || (r > 0 && keys[r - 1] >> 32 == id)) continue;  // not the id's first row
        float* d = dtable + id * C + c;
        float v = *d;
        for (size_t j = r; j < N && keys[j] != kNoKey && keys[j] >> 32 == id; j++)
            v += dout[(keys[j] & 0xffffffffu) * C + c] * scale;
        *d = v;
    }
}

static void scatter_rows_add(float* dtable, const float* dout, const int32_t* ids, float scale,
                             int32_t pad, size_t N, size_t C) {
    if (N * C == 0) return;
    HAFVT_CHECK(N < ((size_t)1 << 32), "embedding scatter of ", N, " rows");
    size_t P = 1;
    while (P < N) P *= 2;
    uint64_t* keys = reinterpret_cast<uint64_t*>(cuda_workspace(2 * P));
    const bool in_shared = P <= kSortShared;
    HAFVT_LAUNCH(sort_row_keys_kernel, 1, kSortThreads, in_shared ? P * sizeof(uint64_t) : 0, keys, ids,
                 pad, N, P, (int)in_shared);
    HAFVT_LAUNCH(scatter_sorted_rows_kernel, grid_for(N * C), kBlock, 0, dtable, dout, keys, scale, N, C);
}

void embedding_backward_cuda(float* dtable, const float* dout, const int32_t* ids, float scale,
                             int32_t pad, size_t N, size_t C) {
    scatter_rows_add(dtable, dout, ids, scale, pad, N, C);
}

// A gather is the embedding lookup with every row taken (no PAD id) and scale 1.
void gather_rows_cuda(float* out, const float* src, const int32_t* rows, size_t R, size_t C) {
    if (R * C == 0) return;
    HAFVT_LAUNCH(embedding_forward_kernel, grid_for(R * C), kBlock, 0, out, rows, src, 1.0f, -1, R, C);
}

// forward: out[r] = src[rows[r]]  =>  dsrc[rows[r]] += dout[r] * scale, by the sorted pass
void scatter_add_rows_cuda(float* dst, const float* src, const int32_t* rows, float scale, size_t R, size_t C) {
    scatter_rows_add(dst, src, rows, scale, -1, R, C);
}

__global__ void scatter_rows_kernel(float* dst, const float* src, const int32_t* rows, size_t R, size_t C) {
    HAFVT_FOR_EACH(i, R * C) dst[(size_t)rows[i / C] * C + i % C] = src[i];
}

void scatter_rows_cuda(float* dst, const float* src, const int32_t* rows, size_t R, size_t C) {
    if (R * C == 0) return;
    HAFVT_LAUNCH(scatter_rows_kernel, grid_for(R * C), kBlock, 0, dst, src, rows, R, C);
}

__global__ void posadd_forward_kernel(float* x, const int32_t* pos, const float* P, size_t N,
                                      size_t C) {
    HAFVT_FOR_EACH(i, N * C) {
        size_t n = i / C, c = i % C;
        if (pos[n] != 0) x[i] += P[(size_t)pos[n] * C + c];  // row 0 is the zero row
    }
}

void posadd_forward_cuda(float* x, const int32_t* pos, const float* P, size_t N, size_t C) {
    if (N * C == 0) return;
    HAFVT_LAUNCH(posadd_forward_kernel, grid_for(N * C), kBlock, 0, x, pos, P, N, C);
}

// forward: x[n] += P[pos[n]]  =>  dP[pos[n]] += dx[n], row 0 excluded: the embedding scatter
// with pad = 0 and scale = 1 (the same deterministic kernel).
void posadd_backward_cuda(float* dP, const float* dx, const int32_t* pos, size_t N, size_t C) {
    scatter_rows_add(dP, dx, pos, 1.0f, 0, N, C);
}

__global__ void padmask_forward_kernel(float* x, const uint8_t* valid, size_t N, size_t C) {
    HAFVT_FOR_EACH(i, N * C) {
        if (!valid[i / C]) x[i] = 0.0f;
    }
}

void padmask_forward_cuda(float* x, const uint8_t* valid, size_t N, size_t C) {
    if (N * C == 0) return;
    HAFVT_LAUNCH(padmask_forward_kernel, grid_for(N * C), kBlock, 0, x, valid, N, C);
}
void padmask_backward_cuda(float* dx, const uint8_t* valid, size_t N, size_t C) {
    padmask_forward_cuda(dx, valid, N, C);
}

// ---- dropout ---------------------------------------------------------------------------------

__global__ void dropout_forward_kernel(float* out, const float* inp, size_t n, float p,
                                       uint64_t seed, uint64_t step, uint64_t site) {
    HAFVT_FOR_EACH(i, n) { out[i] = inp[i] * dropout_factor(i, p, seed, step, site); }
}

void dropout_forward_cuda(float* out, const float* inp, size_t n, float p, uint64_t seed,
                          uint64_t step, uint64_t site) {
    if (n == 0) return;
    if (p <= 0.0f) {
        if (out != inp) cuda_memcpy_d2d(out, inp, n * sizeof(float));
        return;
    }
    HAFVT_LAUNCH(dropout_forward_kernel, grid_for(n), kBlock, 0, out, inp, n, p, seed, step, site);
}

// forward: out[i] = inp[i] * f(i)  =>  dinp[i] += dout[i] * f(i)   (f = 1 when p == 0)
__global__ void dropout_backward_kernel(float* dinp, const float* dout, size_t n, float p,
                                        uint64_t seed, uint64_t step, uint64_t site) {
    HAFVT_FOR_EACH(i, n) {
        float f = p > 0.0f ? dropout_factor(i, p, seed, step, site) : 1.0f;
        dinp[i] += dout[i] * f;
    }
}

void dropout_backward_cuda(float* dinp, const float* dout, size_t n, float p, uint64_t seed,
                           uint64_t step, uint64_t site) {
    if (n == 0) return;
    HAFVT_LAUNCH(dropout_backward_kernel, grid_for(n), kBlock, 0, dinp, dout, n, p, seed, step, site);
}

// ---- layernorm -------------------------------------------------------------------------------

// One warp per row; two passes over the row (mean, then the centered variance) as the CPU.
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, size_t N,
                                         size_t C) {
    size_t n = blockIdx.x * (size_t)(blockDim.x / kWarp) + threadIdx.x / kWarp;
    unsigned lane = threadIdx.x % kWarp;
    if (n >= N) return;
    const float* x = inp + n * C;  // (C)
    float s = 0.0f;
    for (size_t c = lane; c < C; c += kWarp) s += x[c];
    float m = warp_sum(s) / (float)C;
    float v = 0.0f;
    for (size_t c = lane; c < C; c += kWarp) v += (x[c] - m) * (x[c] - m);
    float r = 1.0f / sqrtf(warp_sum(v) / (float)C + kLayerNormEps);
    float* o = out + n * C;
    for (size_t c = lane; c < C; c += kWarp) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    if (lane == 0) {
        mean[n] = m;
        rstd[n] = r;
    }
}

static unsigned warp_rows_grid(size_t N) {
    return (unsigned)((N + kBlock / kWarp - 1) / (kBlock / kWarp));
}

void layernorm_forward_cuda(float* out, float* mean, float* rstd, const float* inp,
                            const float* weight, const float* bias, size_t N, size_t C) {
    if (N * C == 0) return;
    HAFVT_LAUNCH(layernorm_forward_kernel, warp_rows_grid(N), kBlock, 0, out, mean, rstd, inp, weight, bias, N,
                                                            C);
}

// forward: xhat = (x - mean) * rstd;  out = xhat * w + b
// dxhat = dout * w;  dx += rstd * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat * xhat))
__global__ void layernorm_backward_kernel(float* dinp, const float* dout, const float* inp,
                                          const float* weight, const float* mean,
                                          const float* rstd, size_t N, size_t C) {
    size_t n = blockIdx.x * (size_t)(blockDim.x / kWarp) + threadIdx.x / kWarp;
    unsigned lane = threadIdx.x % kWarp;
    if (n >= N) return;
    const float* x = inp + n * C;
    const float* g = dout + n * C;
    float m = mean[n], r = rstd[n];
    float s1 = 0.0f, s2 = 0.0f;
    for (size_t c = lane; c < C; c += kWarp) {
        float dxhat = g[c] * weight[c];
        s1 += dxhat;
        s2 += dxhat * (x[c] - m) * r;
    }
    s1 = warp_sum(s1) / (float)C;
    s2 = warp_sum(s2) / (float)C;
    float* d = dinp + n * C;
    for (size_t c = lane; c < C; c += kWarp) {
        float xhat = (x[c] - m) * r;
        d[c] += r * (g[c] * weight[c] - s1 - xhat * s2);
    }
}

// Column sums over N rows, deterministic in two steps. Step 1: block (cb, k) with 32x8 threads
// sums rows k*kChunkRows.. of channels cb*32.. into partials (chunk k, C); step 2 adds the chunks
// in order. With inp != null it also sums dout * xhat (the LayerNorm weight gradient).
constexpr size_t kChunkRows = 128;  // at least; more when N would need over 65535 chunks

__global__ void column_partials_kernel(float* part_w, float* part_b, const float* dout,
                                       const float* inp, const float* mean, const float* rstd,
                                       size_t N, size_t C, size_t chunk_rows) {
    __shared__ float sh_w[8][kWarp], sh_b[8][kWarp];
    size_t c = blockIdx.x * (size_t)kWarp + threadIdx.x;
    size_t n0 = blockIdx.y * chunk_rows, n1 = n0 + chunk_rows < N ? n0 + chunk_rows : N;
    float sw = 0.0f, sb = 0.0f;
    if (c < C) {
        for (size_t n = n0 + threadIdx.y; n < n1; n += blockDim.y) {
            float g = dout[n * C + c];
            sb += g;
            if (inp) sw += g * (inp[n * C + c] - mean[n]) * rstd[n];
        }
    }
    sh_w[threadIdx.y][threadIdx.x] = sw;
    sh_b[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (unsigned k = 1; k < blockDim.y; k++) {
            sw += sh_w[k][threadIdx.x];
            sb += sh_b[k][threadIdx.x];
        }
        part_b[blockIdx.y * C + c] = sb;
        if (part_w) part_w[blockIdx.y * C + c] = sw;
    }
}

__global__ void column_finish_kernel(float* dw, float* db, const float* part_w,
                                     const float* part_b, size_t chunks, size_t C) {
    HAFVT_FOR_EACH(c, C) {
        float sw = 0.0f, sb = 0.0f;
        for (size_t k = 0; k < chunks; k++) {
            sb += part_b[k * C + c];
            if (dw) sw += part_w[k * C + c];
        }
        db[c] += sb;
        if (dw) dw[c] += sw;
    }
}

// db (C) += sum_n dout[n];  dw (C) += sum_n dout[n] * xhat[n] when dw is given.
static void column_sums_add(float* dw, float* db, const float* dout, const float* inp,
                            const float* mean, const float* rstd, size_t N, size_t C) {
    if (N * C == 0) return;
    size_t chunk_rows = (N + 65534) / 65535 > kChunkRows ? (N + 65534) / 65535 : kChunkRows;
    size_t chunks = (N + chunk_rows - 1) / chunk_rows;
    float* part_b = cuda_workspace(2 * chunks * C);
    float* part_w = dw ? part_b + chunks * C : nullptr;
    dim3 grid((unsigned)((C + kWarp - 1) / kWarp), (unsigned)chunks), block(kWarp, 8);
    HAFVT_LAUNCH(column_partials_kernel, grid, block, 0, part_w, part_b, dout, dw ? inp : nullptr, mean, rstd,
                                            N, C, chunk_rows);
    HAFVT_LAUNCH(column_finish_kernel, grid_for(C), kBlock, 0, dw, db, part_w, part_b, chunks, C);
}

void layernorm_backward_cuda(float* dinp, float* dweight, float* dbias, const float* dout,
                             const float* inp, const float* weight, const float* mean,
                             const float* rstd, size_t N, size_t C) {
    if (N * C == 0) return;
    HAFVT_LAUNCH(layernorm_backward_kernel, warp_rows_grid(N), kBlock, 0, dinp, dout, inp, weight, mean, rstd,
                                                             N, C);
    column_sums_add(dweight, dbias, dout, inp, mean, rstd, N, C);
}

// ---- linear ----------------------------------------------------------------------------------

__global__ void bias_broadcast_kernel(float* out, const float* bias, size_t N, size_t OC) {
    HAFVT_FOR_EACH(i, N * OC) { out[i] = bias[i % OC]; }
}

void linear_forward_cuda(float* out, const float* inp, const float* weight, const float* bias,
                         size_t N, size_t C, size_t OC) {
    if (N * OC == 0) return;
    // out (N,OC) = inp (N,C) @ weight (C,OC) + bias
    if (bias) {
        HAFVT_LAUNCH(bias_broadcast_kernel, grid_for(N * OC), kBlock, 0, out, bias, N, OC);
    }
    sgemm_cuda(false, false, (int)N, (int)OC, (int)C, 1.0f, inp, (int)C, weight, (int)OC,
               bias ? 1.0f : 0.0f, out, (int)OC);
}

__global__ void bias_broadcast_ld_kernel(float* out, size_t ldo, const float* bias, size_t N, size_t OC) {
    HAFVT_FOR_EACH(i, N * OC) { out[(i / OC) * ldo + i % OC] = bias[i % OC]; }
}

void linear_forward_cols_cuda(float* out, size_t ldo, const float* inp, const float* weight, size_t ldw,
                              const float* bias, size_t N, size_t C, size_t OC) {
    if (N * OC == 0) return;
    if (bias) HAFVT_LAUNCH(bias_broadcast_ld_kernel, grid_for(N * OC), kBlock, 0, out, ldo, bias, N, OC);
    sgemm_cuda(false, false, (int)N, (int)OC, (int)C, 1.0f, inp, (int)C, weight, (int)ldw, bias ? 1.0f : 0.0f, out,
               (int)ldo);
}

void linear_backward_cuda(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, size_t N, size_t C, size_t OC) {
    // forward: out = inp @ W + b
    // dinp += dout @ W^T;  dW += inp^T @ dout;  db += sum_n dout
    if (dinp)
        sgemm_cuda(false, true, (int)N, (int)C, (int)OC, 1.0f, dout, (int)OC, weight, (int)OC, 1.0f,
                   dinp, (int)C);
    sgemm_cuda(true, false, (int)C, (int)OC, (int)N, 1.0f, inp, (int)C, dout, (int)OC, 1.0f,
               dweight, (int)OC);
    if (dbias) column_sums_add(nullptr, dbias, dout, nullptr, nullptr, nullptr, N, OC);
}

// ---- gelu and residual -----------------------------------------------------------------------


__global__ void gelu_forward_kernel(float* out, const float* inp, size_t n) {
    HAFVT_FOR_EACH(i, n) {
        float x = inp[i];
        out[i] = gelu_from_tanh(x, tanhf(gelu_u(x)));
    }
}

void gelu_forward_cuda(float* out, const float* inp, size_t n) {
    if (n == 0) return;
    HAFVT_LAUNCH(gelu_forward_kernel, grid_for(n), kBlock, 0, out, inp, n);
}

// forward: y = gelu(x)  =>  dinp += dout * gelu'(x) (op_math.h)
__global__ void gelu_backward_kernel(float* dinp, const float* dout, const float* inp, size_t n) {
    HAFVT_FOR_EACH(i, n) {
        float x = inp[i];
        dinp[i] += dout[i] * gelu_grad_from_tanh(x, tanhf(gelu_u(x)));
    }
}

void gelu_backward_cuda(float* dinp, const float* dout, const float* inp, size_t n) {
    if (n == 0) return;
    HAFVT_LAUNCH(gelu_backward_kernel, grid_for(n), kBlock, 0, dinp, dout, inp, n);
}

__global__ void residual_forward_kernel(float* out, const float* a, const float* b, size_t n) {
    HAFVT_FOR_EACH(i, n) { out[i] = a[i] + b[i]; }
}

void residual_forward_cuda(float* out, const float* a, const float* b, size_t n) {
    if (n == 0) return;
    HAFVT_LAUNCH(residual_forward_kernel, grid_for(n), kBlock, 0, out, a, b, n);
}

// forward: out = a + b  =>  da += dout, db += dout
__global__ void residual_backward_kernel(float* da, float* db, const float* dout, size_t n) {
    HAFVT_FOR_EACH(i, n) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

void residual_backward_cuda(float* da, float* db, const float* dout, size_t n) {
    if (n == 0) return;
    HAFVT_LAUNCH(residual_backward_kernel, grid_for(n), kBlock, 0, da, db, dout, n);
}

}  // namespace hafvt
