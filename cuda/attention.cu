// attention.cu: causal multi-head self-attention with a key-padding mask (see attention_forward in
// ops_cpu.h). One thread block per (sequence b, head h); the (T,T) score matrices of that head
// live in shared memory (T <= 64: at most 3 * 16 KiB), q/k/v are read from global memory (they
// are reused across the block and stay in L1/L2). Every element of out and dqkv is written by
// exactly one thread, so the results are deterministic without atomics.
#include "cuda_common.cuh"

namespace hafvt {

constexpr size_t kMaxT = 64;
constexpr unsigned kAttThreads = 256;

// Key j is allowed for query t when it is not in the future and both positions are real items.
__device__ __forceinline__ bool att_allowed(const uint8_t* vb, size_t t, size_t j) {
    return j <= t && vb[t] && vb[j];
}

// The row of qkv (and of out) of position (b, t): slot[b T + t] (valid positions only), or the
// padded layout's b T + t without slots (attention_forward in ops_cpu.h).
__device__ __forceinline__ size_t att_row(const int32_t* slot, size_t b, size_t T, size_t t) {
    return slot ? (size_t)slot[b * T + t] : b * T + t;
}

__global__ void attention_forward_kernel(float* out, float* att, const float* qkv, const int32_t* slot,
                                         const uint8_t* valid, size_t T, size_t C, size_t NH,
                                         float p_drop, uint64_t seed, uint64_t step,
                                         uint64_t site) {
    HAFVT_DYNAMIC_SHARED(float, sh);
    float* sc = sh;          // (T,T) scores, then softmax probabilities
    float* pd = sh + T * T;  // (T,T) probabilities after dropout
    const size_t b = blockIdx.x / NH, h = blockIdx.x % NH;
    const size_t hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const unsigned nwarps = blockDim.x / kWarp;
    const uint8_t* vb = valid + b * T;                 // (T)
    const float* qb = qkv + h * hs;                    // q of position t at qb + att_row(t) C3
    const float* kb = qb + C;                          // k likewise
    const float* vv = qb + 2 * C;                      // v likewise
    const size_t att_base = (b * NH + h) * T * T;      // index of att[b,h,0,0]

    // scores s[t,j] = scale * q_t . k_j, one warp per (t, j); -inf where not allowed
    for (size_t pr = warp; pr < T * T; pr += nwarps) {
        size_t t = pr / T, j = pr % T;
        bool ok = att_allowed(vb, t, j);  // the same in the whole warp
        float s = 0.0f;
        if (ok) {
            const float* qt = qb + att_row(slot, b, T, t) * C3;
            const float* kj = kb + att_row(slot, b, T, j) * C3;
            for (size_t c = lane; c < hs; c += kWarp) s += qt[c] * kj[c];
            s = warp_sum(s);
        }
        if (lane == 0) sc[pr] = ok ? s * scale : -INFINITY;
    }
    __syncthreads();

    // softmax over the allowed keys of each query, one warp per row; PAD queries get zero rows
    for (size_t t = warp; t < T; t += nwarps) {
        float* a = sc + t * T;
        float* d = pd + t * T;
        if (!vb[t]) {
            for (size_t j = lane; j < T; j += kWarp) a[j] = d[j] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
        for (size_t j = lane; j < T; j += kWarp) mx = fmaxf(mx, a[j]);
        mx = warp_max(mx);  // finite: key t itself is allowed
        float sum = 0.0f;
        for (size_t j = lane; j < T; j += kWarp) {
            a[j] = expf(a[j] - mx);  // exp(-inf) = 0 for the masked keys
            sum += a[j];
        }
        float inv = 1.0f / warp_sum(sum);
        for (size_t j = lane; j < T; j += kWarp) {
            a[j] *= inv;
            d[j] = p_drop > 0.0f
                       ? a[j] * dropout_factor(att_base + t * T + j, p_drop, seed, step, site)
                       : a[j];
        }
    }
    __syncthreads();

    for (size_t i = threadIdx.x; i < T * T; i += blockDim.x) att[att_base + i] = sc[i];
    // out[t, h*hs + c] = sum_{allowed j} pd[t,j] v_j[c]
    // (with slots a PAD query has no row of out)
    for (size_t idx = threadIdx.x; idx < T * hs; idx += blockDim.x) {
        size_t t = idx / hs, c = idx % hs;
        if (slot && !vb[t]) continue;
        float o = 0.0f;
        if (vb[t]) {
            for (size_t j = 0; j <= t; j++)
                if (vb[j]) o += pd[t * T + j] * vv[att_row(slot, b, T, j) * C3 + c];
        }
        out[att_row(slot, b, T, t) * C + h * hs + c] = o;
    }
}

void attention_forward_cuda(float* out, float* att, const float* qkv, const int32_t* slot, const uint8_t* valid,
                            size_t B, size_t T, size_t C, size_t NH, float p_drop, uint64_t seed,
                            uint64_t step, uint64_t site) {
    HAFVT_CHECK(T >= 1 && T <= kMaxT, "attention on the GPU supports 1 <= T <= ", kMaxT, ", got ", T);
    HAFVT_CHECK(NH >= 1 && C % NH == 0, "C = ", C, " is not a multiple of NH = ", NH);
    if (B == 0) return;
    size_t shmem = 2 * T * T * sizeof(float);
    HAFVT_LAUNCH(attention_forward_kernel, (unsigned)(B * NH), kAttThreads, shmem,
        out, att, qkv, slot, valid, T, C, NH, p_drop, seed, step, site);
}

// The last query (position T-1) of sequence b, head h, from q (B, C): one block per (b, h), a warp
// per key for the scores, one warp for the softmax, a thread per channel for the output.
__global__ void attention_last_forward_kernel(float* out, float* att, const float* q, const float* qkv,
                                              const int32_t* slot, const uint8_t* valid, size_t T, size_t C,
                                              size_t NH) {
    HAFVT_DYNAMIC_SHARED(float, sc);  // (T) scores, then probabilities
    const size_t b = blockIdx.x / NH, h = blockIdx.x % NH, t = T - 1;
    const size_t hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const unsigned nwarps = blockDim.x / kWarp;
    const uint8_t* vb = valid + b * T;
    const float* qb = q + b * C + h * hs;
    const float* kb = qkv + C + h * hs;  // k of position j at kb + att_row(j) C3
    const float* vv = kb + C;                          // v likewise
    float* a = att + ((b * NH + h) * T + t) * T;
    for (size_t j = warp; j < T; j += nwarps) {
        const bool ok = att_allowed(vb, t, j);
        float s = 0.0f;
        if (ok) {
            const float* kj = kb + att_row(slot, b, T, j) * C3;
            for (size_t c = lane; c < hs; c += kWarp) s += qb[c] * kj[c];
            s = warp_sum(s);
        }
        if (lane == 0) sc[j] = ok ? s * scale : -INFINITY;
    }
    __syncthreads();
    if (warp == 0) {
        if (!vb[t]) {
            for (size_t j = lane; j < T; j += kWarp) sc[j] = 0.0f;
        } else {
            float mx = -INFINITY;
            for (size_t j = lane; j < T; j += kWarp) mx = fmaxf(mx, sc[j]);
            mx = warp_max(mx);
            float sum = 0.0f;
            for (size_t j = lane; j < T; j += kWarp) {
                sc[j] = expf(sc[j] - mx);
                sum += sc[j];
            }
            const float inv = 1.0f / warp_sum(sum);
            for (size_t j = lane; j < T; j += kWarp) sc[j] *= inv;
        }
    }
    __syncthreads();
    for (size_t j = threadIdx.x; j < T; j += blockDim.x) a[j] = sc[j];
    for (size_t c = threadIdx.x; c < hs; c += blockDim.x) {
        float o = 0.0f;
        if (vb[t])
            for (size_t j = 0; j <= t; j++)
                if (vb[j]) o += sc[j] * vv[att_row(slot, b, T, j) * C3 + c];
        out[b * C + h * hs + c] = o;
    }
}

void attention_last_forward_cuda(float* out, float* att, const float* q, const float* qkv, const int32_t* slot,
                                 const uint8_t* valid, size_t B, size_t T, size_t C, size_t NH) {
    HAFVT_CHECK(T >= 1 && T <= kMaxT, "attention on the GPU supports 1 <= T <= ", kMaxT, ", got ", T);
    HAFVT_CHECK(NH >= 1 && C % NH == 0, "C = ", C, " is not a multiple of NH = ", NH);
    if (B == 0) return;
    HAFVT_LAUNCH(attention_last_forward_kernel, (unsigned)(B * NH), kAttThreads, T * sizeof(float),
        out, att, q, qkv, slot, valid, T, C, NH);
}

// Reverses, per (b, h):
//   o_t = sum_j f_tj a_tj v_j       =>  dv_j += sum_t f_tj a_tj g_t;   da_tj = f_tj (g_t . v_j)
//   a_t = softmax(s_t)              =>  ds_tj = a_tj (da_tj - sum_i a_ti da_ti)
//   s_tj = scale q_t . k_j          =>  dq_t += scale sum_j ds_tj k_j;  dk_j += scale sum_t ds_tj q_t
__global__ void attention_backward_kernel(float* dqkv, const float* dout, const float* qkv,
                                          const float* att, const uint8_t* valid, size_t T,
                                          size_t C, size_t NH, float p_drop, uint64_t seed,
                                          uint64_t step, uint64_t site) {
    HAFVT_DYNAMIC_SHARED(float, sh);
    float* a = sh;              // (T,T) probabilities (zero where not allowed)
    float* pd = sh + T * T;     // (T,T) f * a
    float* ds = sh + 2 * T * T; // (T,T) da, then d(scores) including the scale
    const size_t b = blockIdx.x / NH, h = blockIdx.x % NH;
    const size_t hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const unsigned lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const unsigned nwarps = blockDim.x / kWarp;
    const uint8_t* vb = valid + b * T;
    const float* qb = qkv + b * T * C3 + h * hs;
    const float* kb = qb + C;
    const float* vv = qb + 2 * C;
    const float* gb = dout + b * T * C + h * hs;  // g_t at gb + t*C
    float* dqb = dqkv + b * T * C3 + h * hs;
    float* dkb = dqb + C;
    float* dvb = dqb + 2 * C;
    const size_t att_base = (b * NH + h) * T * T;

    for (size_t i = threadIdx.x; i < T * T; i += blockDim.x) {
        size_t t = i / T, j = i % T;
        bool ok = att_allowed(vb, t, j);
        float av = ok ? att[att_base + i] : 0.0f;
        a[i] = av;
        pd[i] = ok && p_drop > 0.0f ? av * dropout_factor(att_base + i, p_drop, seed, step, site)
                                    : av;
    }
    // da[t,j] = f_tj (g_t . v_j), one warp per pair
    for (size_t pr = warp; pr < T * T; pr += nwarps) {
        size_t t = pr / T, j = pr % T;
        bool ok = att_allowed(vb, t, j);
        float s = 0.0f;
        if (ok) {
            for (size_t c = lane; c < hs; c += kWarp) s += gb[t * C + c] * vv[j * C3 + c];
            s = warp_sum(s);
            if (p_drop > 0.0f) s *= dropout_factor(att_base + pr, p_drop, seed, step, site);
        }
        if (lane == 0) ds[pr] = s;
    }
    __syncthreads();

    // softmax backward per query row, one warp per row (rows of PAD queries are all zero)
    for (size_t t = warp; t < T; t += nwarps) {
        float dot = 0.0f;
        for (size_t j = lane; j < T; j += kWarp) dot += a[t * T + j] * ds[t * T + j];
        dot = warp_sum(dot);
        for (size_t j = lane; j < T; j += kWarp)
            ds[t * T + j] = a[t * T + j] * (ds[t * T + j] - dot) * scale;
    }
    __syncthreads();

    // dq_t[c] += sum_{j<=t} ds[t,j] k_j[c]: thread per (t, c)
    for (size_t idx = threadIdx.x; idx < T * hs; idx += blockDim.x) {
        size_t t = idx / hs, c = idx % hs;
        if (!vb[t]) continue;
        float acc = 0.0f;
        for (size_t j = 0; j <= t; j++)
            if (vb[j]) acc += ds[t * T + j] * kb[j * C3 + c];
        dqb[t * C3 + c] += acc;
    }
    // dk_j[c] += sum_{t>=j} ds[t,j] q_t[c];  dv_j[c] += sum_{t>=j} pd[t,j] g_t[c]: thread per (j, c)
    for (size_t idx = threadIdx.x; idx < T * hs; idx += blockDim.x) {
        size_t j = idx / hs, c = idx % hs;
        if (!vb[j]) continue;
        float dk = 0.0f, dv = 0.0f;
        for (size_t t = j; t < T; t++) {
            if (!vb[t]) continue;
            dk += ds[t * T + j] * qb[t * C3 + c];
            dv += pd[t * T + j] * gb[t * C + c];
        }
        dkb[j * C3 + c] += dk;
        dvb[j * C3 + c] += dv;
    }
}

void attention_backward_cuda(float* dqkv, const float* dout, const float* qkv, const float* att,
                             const uint8_t* valid, size_t B, size_t T, size_t C, size_t NH,
                             float p_drop, uint64_t seed, uint64_t step, uint64_t site) {
    HAFVT_CHECK(T >= 1 && T <= kMaxT, "attention on the GPU supports 1 <= T <= ", kMaxT, ", got ", T);
    HAFVT_CHECK(NH >= 1 && C % NH == 0, "C = ", C, " is not a multiple of NH = ", NH);
    if (B == 0) return;
    size_t shmem = 3 * T * T * sizeof(float);  // <= 48 KiB for T <= 64: no opt-in needed
    HAFVT_LAUNCH(attention_backward_kernel, (unsigned)(B * NH), kAttThreads, shmem,
        dqkv, dout, qkv, att, valid, T, C, NH, p_drop, seed, step, site);
}

}  // namespace hafvt
