// ops_cpu.cpp: the encoder layers on the CPU (see ops_cpu.h for shapes and conventions).
// Every backward function ACCUMULATES into its gradients. Inside each backward, the forward line
// it reverses is quoted first, then its derivative. Parallel loops use static schedules and never
// let two threads add into the same element, so results do not depend on timing.
#include "math/ops_cpu.h"
#include "math/op_math.h"

#include "core/parallel.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/common.h"
#include "math/gemm_cpu.h"
#include "math/vmath.h"

namespace hafvt {

// Below this many elements a loop runs on one thread (thread start-up would cost more).
static constexpr size_t kParallelMin = 1 << 15;

// The slice [begin, end) of 0..n that the calling thread of a parallel region owns.
static inline void thread_slice(size_t n, size_t* begin, size_t* end) {
    size_t nt = (size_t)omp_get_num_threads(), it = (size_t)omp_get_thread_num();
    *begin = n * it / nt;
    *end = n * (it + 1) / nt;
}

void embedding_forward(float* out, const int32_t* ids, const float* table, float scale,
                       int32_t pad, size_t N, size_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (size_t n = 0; n < N; n++) {
        float* o = out + n * C;
        if (ids[n] == pad) {
            std::memset(o, 0, C * sizeof(float));
            continue;
        }
        const float* e = table + (size_t)ids[n] * C;
        for (size_t c = 0; c < C; c++) o[c] = e[c] * scale;
    }
}

// dtable[ids[n]] += dout[n] * scale for the rows whose id is not `pad` (-1: every row).
// Ids repeat, so threads split the channels, not the rows.
static void add_rows(float* dtable, const float* dout, const int32_t* ids, float scale, int32_t pad,
                     size_t N, size_t C) {
#pragma omp parallel if (N * C > kParallelMin)
    {
        size_t c0, c1;
        thread_slice(C, &c0, &c1);
        for (size_t n = 0; n < N; n++) {
            if (ids[n] == pad) continue;
            float* d = dtable + (size_t)ids[n] * C;
            const float* g = dout + n * C;
            for (size_t c = c0; c < c1; c++) d[c] += g[c] * scale;
        }
    }
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, float scale,
                        int32_t pad, size_t N, size_t C) {
    // forward: out[n] = table[ids[n]] * scale  =>  dtable[ids[n]] += dout[n] * scale
    add_rows(dtable, dout, ids, scale, pad, N, C);
}

void gather_rows(float* out, const float* src, const int32_t* rows, size_t R, size_t C) {
#pragma omp parallel for schedule(static) if (R * C > kParallelMin)
    for (size_t r = 0; r < R; r++) std::memcpy(out + r * C, src + (size_t)rows[r] * C, C * sizeof(float));
}

void scatter_rows(float* dst, const float* src, const int32_t* rows, size_t R, size_t C) {
#pragma omp parallel for schedule(static) if (R * C > kParallelMin)
    for (size_t r = 0; r < R; r++) std::memcpy(dst + (size_t)rows[r] * C, src + r * C, C * sizeof(float));
}

void scatter_add_rows(float* dst, const float* src, const int32_t* rows, float scale, size_t R, size_t C) {
    // forward: out[r] = src[rows[r]]  =>  dsrc[rows[r]] += dout[r]
    add_rows(dst, src, rows, scale, -1, R, C);
}

void posadd_forward(float* x, const int32_t* pos, const float* P, size_t N, size_t C) {
    for (size_t n = 0; n < N; n++) {
        if (pos[n] == 0) continue;  // row 0 is the zero row
        const float* p = P + (size_t)pos[n] * C;
        float* o = x + n * C;
        for (size_t c = 0; c < C; c++) o[c] += p[c];
    }
}

void posadd_backward(float* dP, const float* dx, const int32_t* pos, size_t N, size_t C) {
    // forward: x[n] += P[pos[n]]  =>  dP[pos[n]] += dx[n], except row 0 (held at zero).
    for (size_t n = 0; n < N; n++) {
        if (pos[n] == 0) continue;
        float* d = dP + (size_t)pos[n] * C;
        const float* g = dx + n * C;
        for (size_t c = 0; c < C; c++) d[c] += g[c];
    }
}

void padmask_forward(float* x, const uint8_t* valid, size_t N, size_t C) {
    for (size_t n = 0; n < N; n++)
        if (!valid[n]) std::memset(x + n * C, 0, C * sizeof(float));
}

void dropout_forward(float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t step,
                     uint64_t site) {
    if (p <= 0.0f) {
        if (out != inp) std::memcpy(out, inp, n * sizeof(float));
        return;
    }
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * dropout_factor(i, p, seed, step, site);
}

void dropout_backward(float* dinp, const float* dout, size_t n, float p, uint64_t seed,
                      uint64_t step, uint64_t site) {
    // forward: out[i] = inp[i] * f(i)  =>  dinp[i] += dout[i] * f(i)
    if (p <= 0.0f) {
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * dropout_factor(i, p, seed, step, site);
}

// The double sums of a layer norm row, sum_c f(x[c]), in 8 fixed lanes (channel c in lane c % 8,
// the lanes added in a fixed tree): vectorized, and the same on every machine.
template <class F>
static inline double lane_sum8(const float* x, size_t C, F f) {
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t c = 0;
    for (; c + 8 <= C; c += 8)
#pragma omp simd
        for (size_t l = 0; l < 8; l++) p[l] += f(x[c + l]);
    for (size_t l = 0; c < C; c++, l++) p[l] += f(x[c]);
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, size_t N, size_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (size_t n = 0; n < N; n++) {
        const float* x = inp + n * C;
        const double s = lane_sum8(x, C, [](float v) { return (double)v; });
        float m = (float)(s / (double)C);
        const double v = lane_sum8(x, C, [m](float xc) { return (double)(xc - m) * (xc - m); });
        float r = 1.0f / std::sqrt((float)(v / (double)C) + kLayerNormEps);
        float* o = out + n * C;
        for (size_t c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        size_t N, size_t C) {
    // forward: xhat = (x - mean) * rstd;  out = xhat * w + b
    // dxhat = dout * w;  dx = rstd * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat * xhat))
#pragma omp parallel if (N * C > kParallelMin)
    {
        size_t n0, n1;
        thread_slice(N, &n0, &n1);
        for (size_t n = n0; n < n1; n++) {
            const float* x = inp + n * C;
            const float* g = dout + n * C;
            float m = mean[n], r = rstd[n];
            float s1 = 0.0f, s2 = 0.0f;
            for (size_t c = 0; c < C; c++) {
                float dxhat = g[c] * weight[c];
                s1 += dxhat;
                s2 += dxhat * (x[c] - m) * r;
            }
            s1 /= (float)C;
            s2 /= (float)C;
            float* d = dinp + n * C;
            for (size_t c = 0; c < C; c++) {
                float xhat = (x[c] - m) * r;
                d[c] += r * (g[c] * weight[c] - s1 - xhat * s2);
            }
        }
        // dw += sum_n dout * xhat; db += sum_n dout: threads split the channels.
        size_t c0, c1;
        thread_slice(C, &c0, &c1);
        for (size_t n = 0; n < N; n++) {
            const float* x = inp + n * C;
            const float* g = dout + n * C;
            float m = mean[n], r = rstd[n];
            for (size_t c = c0; c < c1; c++) {
                dweight[c] += g[c] * (x[c] - m) * r;
                dbias[c] += g[c];
            }
        }
    }
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, size_t N,
                    size_t C, size_t OC) {
    // out (N,OC) = inp (N,C) @ weight (C,OC) + bias
    if (bias) sgemm_bias(false, false, (int)N, (int)OC, (int)C, 1.0f, inp, (int)C, weight, (int)OC, bias, out, (int)OC);
    else sgemm(false, false, (int)N, (int)OC, (int)C, 1.0f, inp, (int)C, weight, (int)OC, 0.0f, out, (int)OC);
}

void linear_forward_cols(float* out, size_t ldo, const float* inp, const float* weight, size_t ldw,
                         const float* bias, size_t N, size_t C, size_t OC) {
    if (bias)
        sgemm_bias(false, false, (int)N, (int)OC, (int)C, 1.0f, inp, (int)C, weight, (int)ldw, bias, out, (int)ldo);
    else
        sgemm(false, false, (int)N, (int)OC, (int)C, 1.0f, inp, (int)C, weight, (int)ldw, 0.0f, out, (int)ldo);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, size_t N, size_t C, size_t OC) {
    // forward: out = inp @ W + b
    // dinp += dout @ W^T;  dW += inp^T @ dout;  db += sum_n dout
    if (dinp)
        sgemm(false, true, (int)N, (int)C, (int)OC, 1.0f, dout, (int)OC, weight, (int)OC, 1.0f, dinp,
              (int)C);
    sgemm(true, false, (int)C, (int)OC, (int)N, 1.0f, inp, (int)C, dout, (int)OC, 1.0f, dweight,
          (int)OC);
    if (dbias) {
        for (size_t n = 0; n < N; n++) {
            const float* g = dout + n * OC;
            for (size_t o = 0; o < OC; o++) dbias[o] += g[o];
        }
    }
}


void gelu_forward(float* out, const float* inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = gelu_from_tanh(x, vtanh(gelu_u(x)));
    }
}

void gelu_backward(float* dinp, const float* dout, const float* inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        dinp[i] += dout[i] * gelu_grad_from_tanh(x, vtanh(gelu_u(x)));
    }
}

void residual_forward(float* out, const float* a, const float* b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_backward(float* da, float* db, const float* dout, size_t n) {
    // forward: out = a + b  =>  da += dout, db += dout
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

// q . k in 16 fixed lanes (element c in lane c % 16, the lanes then added in order): vectorized,
// and the same on every machine.
static inline float dot_lanes16(const float* q, const float* k, size_t n) {
    constexpr size_t L = 16;
    float p[L] = {};
    size_t c = 0;
    for (; c + L <= n; c += L)
#pragma omp simd
        for (size_t l = 0; l < L; l++) p[l] += q[c + l] * k[c + l];
    for (size_t l = 0; c < n; c++, l++) p[l] += q[c] * k[c];
    float s = 0.0f;
    for (size_t l = 0; l < L; l++) s += p[l];
    return s;
}

// One valid query t of one head of sequence b: a (T) its probabilities over the allowed keys
// j <= t, valid vb[j] (the other entries as they were: zero), o (hs) += the weighted values;
// q its hs channels, the keys and values of position j at k0 + row[j] C3 and v0 + row[j] C3 (row:
// the sequence's rows of qkv, read at the valid positions only). drop(j, a_j) is the weight of
// value j (dropout).
template <class Drop>
inline void attend_query(float* a, float* o, const float* q, const float* k0, const float* v0, const size_t* row,
                         size_t C3, const uint8_t* vb, size_t t, size_t hs, float scale, Drop drop) {
    // scores over allowed keys j <= t, valid[j]; softmax with the max subtracted
    float maxv = -INFINITY;
    for (size_t j = 0; j <= t; j++) {
        if (!vb[j]) continue;
        a[j] = dot_lanes16(q, k0 + row[j] * C3, hs) * scale;
        if (a[j] > maxv) maxv = a[j];
    }
    float sum = 0.0f;
    for (size_t j = 0; j <= t; j++) {
        if (!vb[j]) continue;
        a[j] = std::exp(a[j] - maxv);
        sum += a[j];
    }
    float inv = 1.0f / sum;  // query t is valid, so key t is allowed and sum >= 1
    for (size_t j = 0; j <= t; j++) {
        if (!vb[j]) continue;
        a[j] *= inv;
        float w = drop(j, a[j]);
        const float* v = v0 + row[j] * C3;
        for (size_t c = 0; c < hs; c++) o[c] += w * v[c];
    }
}

// The rows of qkv (and of out) that sequence b's positions use: slot[b T + j] (read at the valid
// positions only), or the padded layout's b T + j without slots.
static void sequence_rows(size_t* row, const int32_t* slot, const uint8_t* vb, size_t b, size_t T) {
    for (size_t j = 0; j < T; j++) row[j] = slot ? (vb[j] ? (size_t)slot[b * T + j] : 0) : b * T + j;
}

// fn(b, h, vb, row) for every sequence b and head h, with the sequence's valid flags vb and its
// rows (sequence_rows), split statically between the threads when `parallel`.
template <class F>
static void for_each_sequence_head(size_t B, size_t NH, size_t T, const int32_t* slot, const uint8_t* valid,
                                   bool parallel, F fn) {
#pragma omp parallel if (parallel)
    {
        std::vector<size_t> row(T);
#pragma omp for collapse(2) schedule(static)
        for (size_t b = 0; b < B; b++) {
            for (size_t h = 0; h < NH; h++) {
                const uint8_t* vb = valid + b * T;
                sequence_rows(row.data(), slot, vb, b, T);
                fn(b, h, vb, row.data());
            }
        }
    }
}

void attention_forward(float* out, float* att, const float* qkv, const int32_t* slot, const uint8_t* valid,
                       size_t B, size_t T, size_t C, size_t NH, float p_drop, uint64_t seed, uint64_t step,
                       uint64_t site) {
    const size_t hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / std::sqrt((float)hs);
    for_each_sequence_head(B, NH, T, slot, valid, B * NH * T * T * hs > kParallelMin,
                           [&](size_t b, size_t h, const uint8_t* vb, const size_t* row) {
        const float* kv = qkv + h * hs;  // row r's q at kv + r C3, its k at + C, its v at + 2 C
        for (size_t t = 0; t < T; t++) {
            float* a = att + ((b * NH + h) * T + t) * T;  // (T) scores of query t
            std::memset(a, 0, T * sizeof(float));
            // a PAD query outputs zero in the padded layout, and has no row with slots
            if (!vb[t] && slot) continue;
            float* o = out + row[t] * C + h * hs;  // (hs)
            std::memset(o, 0, hs * sizeof(float));
            if (!vb[t]) continue;
            const size_t base = ((b * NH + h) * T + t) * T;
            attend_query(a, o, kv + row[t] * C3, kv + C, kv + 2 * C, row, C3, vb, t, hs, scale,
                         [&](size_t j, float aj) {
                             return p_drop > 0.0f ? aj * dropout_factor(base + j, p_drop, seed, step, site) : aj;
                         });
        }
    });
}

void attention_last_forward(float* out, float* att, const float* q, const float* qkv, const int32_t* slot,
                            const uint8_t* valid, size_t B, size_t T, size_t C, size_t NH) {
    const size_t hs = C / NH, C3 = 3 * C, t = T - 1;
    const float scale = 1.0f / std::sqrt((float)hs);
    for_each_sequence_head(B, NH, T, slot, valid, B * NH * T * hs > kParallelMin,
                           [&](size_t b, size_t h, const uint8_t* vb, const size_t* row) {
        const float* kv = qkv + h * hs;
        float* a = att + ((b * NH + h) * T + t) * T;
        float* o = out + b * C + h * hs;
        std::memset(a, 0, T * sizeof(float));
        std::memset(o, 0, hs * sizeof(float));
        if (!vb[t]) return;  // an empty view: zero
        attend_query(a, o, q + b * C + h * hs, kv + C, kv + 2 * C, row, C3, vb, t, hs, scale,
                     [](size_t, float aj) { return aj; });
    });
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const uint8_t* valid, size_t B, size_t T, size_t C, size_t NH, float p_drop,
                        uint64_t seed, uint64_t step, uint64_t site) {
    const size_t hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / std::sqrt((float)hs);
#pragma omp parallel if (B * NH * T * T * hs > kParallelMin)
    {
        std::vector<float> datt(T);
        // each (b, h) touches only its own channel slice of dqkv: no two threads share an element
#pragma omp for collapse(2) schedule(static)
        for (size_t b = 0; b < B; b++) {
            for (size_t h = 0; h < NH; h++) {
                for (size_t t = 0; t < T; t++) {
                    if (!valid[b * T + t]) continue;
                    const float* a = att + ((b * NH + h) * T + t) * T;
                    const float* g = dout + (b * T + t) * C + h * hs;
                    const float* q = qkv + (b * T + t) * C3 + h * hs;
                    float* dq = dqkv + (b * T + t) * C3 + h * hs;
                    size_t base = ((b * NH + h) * T + t) * T;
                    // forward: o = sum_j f_j a_j v_j  =>  dv_j += f_j a_j g;  da_j = f_j (g . v_j)
                    for (size_t j = 0; j <= t; j++) {
                        datt[j] = 0.0f;
                        if (!valid[b * T + j]) continue;
                        float f = p_drop > 0.0f ? dropout_factor(base + j, p_drop, seed, step, site) : 1.0f;
                        const float* v = qkv + (b * T + j) * C3 + 2 * C + h * hs;
                        float* dv = dqkv + (b * T + j) * C3 + 2 * C + h * hs;
                        float s = 0.0f;
                        for (size_t c = 0; c < hs; c++) {
                            s += g[c] * v[c];
                            dv[c] += f * a[j] * g[c];
                        }
                        datt[j] = f * s;
                    }
                    // forward: a = softmax(s)  =>  ds_j = a_j (da_j - sum_i a_i da_i)
                    float dot = 0.0f;
                    for (size_t j = 0; j <= t; j++) dot += a[j] * datt[j];
                    // forward: s_j = scale * q . k_j  =>  dq += scale ds_j k_j; dk_j += scale ds_j q
                    for (size_t j = 0; j <= t; j++) {
                        if (!valid[b * T + j]) continue;
                        float ds = a[j] * (datt[j] - dot) * scale;
                        const float* k = qkv + (b * T + j) * C3 + C + h * hs;
                        float* dk = dqkv + (b * T + j) * C3 + C + h * hs;
                        for (size_t c = 0; c < hs; c++) {
                            dq[c] += ds * k[c];
                            dk[c] += ds * q[c];
                        }
                    }
                }
            }
        }
    }
}

void l2norm_forward(float* out, float* norm, const float* inp, size_t N, size_t C) {
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (size_t n = 0; n < N; n++) {
        const float* x = inp + n * C;
        float s = 0.0f;
        for (size_t c = 0; c < C; c++) s += x[c] * x[c];
        float nr = std::sqrt(s);
        float inv = 1.0f / (nr > kNormEps ? nr : kNormEps);
        float* o = out + n * C;
        for (size_t c = 0; c < C; c++) o[c] = x[c] * inv;
        norm[n] = nr;
    }
}

void l2norm_backward(float* dinp, const float* dout, const float* out, const float* norm, size_t N,
                     size_t C) {
    // forward: y = x / max(|x|, eps)
    // |x| > eps: dx += (dy - y (y . dy)) / |x|;   clamped: dx += dy / eps
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
    for (size_t n = 0; n < N; n++) {
        const float* y = out + n * C;
        const float* g = dout + n * C;
        float* d = dinp + n * C;
        if (norm[n] > kNormEps) {
            float dot = 0.0f;
            for (size_t c = 0; c < C; c++) dot += y[c] * g[c];
            float inv = 1.0f / norm[n];
            for (size_t c = 0; c < C; c++) d[c] += (g[c] - y[c] * dot) * inv;
        } else {
            for (size_t c = 0; c < C; c++) d[c] += g[c] / kNormEps;
        }
    }
}

}  // namespace hafvt
