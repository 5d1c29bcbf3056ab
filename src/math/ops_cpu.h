// ops_cpu.h: the layers of the HAF-VT encoder (SPEC §2.1) as forward/backward pairs on the CPU.
//
// Conventions (as in llm.c): outputs first, then cached values, then inputs, weights, dims.
// Every array is row-major; its shape is given in the comment, with the dimension letters
// N rows (= B*T), B batch, T positions, C channels, OC output channels, NH heads.
//
// GRADIENTS ACCUMULATE: every backward function ADDS (+=) into the gradients it is given
// (dinp, dweight, ...), so a tensor used twice (E_id in the encoder and in the head) simply
// receives both contributions. The callers zero the gradient buffers once per step.
// The two exceptions are the in-place masks (padmask_*), which zero rows of the buffer they get.
//
// The CUDA path (cuda/ops_cuda.h) has the same functions with the suffix _cuda and the same
// parameter lists.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hafvt {

// x[n,:] = table[ids[n],:] * scale; rows whose id is `pad` are zero.
void embedding_forward(float* out, const int32_t* ids, const float* table, float scale,
                       int32_t pad, size_t N, size_t C);  // out (N,C), ids (N), table (V,C)
// dtable[ids[n],:] += dout[n,:] * scale; the pad row receives no gradient.
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, float scale,
                        int32_t pad, size_t N, size_t C);

// out[r,:] = src[rows[r],:]: the rows of an activation that go on (the supervised positions of H
// into the heads, the last positions in evaluation).
void gather_rows(float* out, const float* src, const int32_t* rows, size_t R, size_t C);  // out (R,C)
// dst[rows[r],:] += src[r,:] * scale: the backward of gather_rows (rows may repeat; each element
// of dst adds its rows in increasing r); also the scatter of the log scales' gradients.
void scatter_add_rows(float* dst, const float* src, const int32_t* rows, float scale, size_t R, size_t C);
// dst[rows[r],:] = src[r,:] (distinct rows); the other rows of dst are left as they are: the valid
// rows of an encoder's activation placed in the padded (B, T) layout of the attention.
void scatter_rows(float* dst, const float* src, const int32_t* rows, size_t R, size_t C);

// x[n,:] += P[pos[n],:]; row 0 of P (PAD positions) is held at zero and receives no gradient.
void posadd_forward(float* x, const int32_t* pos, const float* P, size_t N, size_t C);
void posadd_backward(float* dP, const float* dx, const int32_t* pos, size_t N, size_t C);

// Zeroes the rows n with valid[n] == 0 ("x_t = 0 at PAD positions"); in place. The backward is
// the same operation on the gradient (the rows were constant zero).
void padmask_forward(float* x, const uint8_t* valid, size_t N, size_t C);
inline void padmask_backward(float* dx, const uint8_t* valid, size_t N, size_t C) {
    padmask_forward(dx, valid, N, C);
}

// Inverted dropout: out[i] = keep(i) ? inp[i] / (1 - p) : 0, keep(i) = rng_uniform(seed,
// rng_stream(RNG_DROPOUT, step), (site << 40) | i) >= p. The mask is redrawn, not stored.
// out may alias inp; p == 0 copies.
void dropout_forward(float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t step,
                     uint64_t site);
void dropout_backward(float* dinp, const float* dout, size_t n, float p, uint64_t seed,
                      uint64_t step, uint64_t site);
// The keep-and-scale factor of element i (0 or 1/(1-p)): dropout_factor, op_math.h.

// LayerNorm over C with affine weight/bias, eps = 1e-5 (biased variance, as torch).
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, size_t N, size_t C);  // out,inp (N,C); mean,rstd (N)
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        size_t N, size_t C);

// out = inp @ weight + bias. weight (C,OC) so that x W reads as in the paper; bias (OC) or null.
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, size_t N,
                    size_t C, size_t OC);  // out (N,OC), inp (N,C)
// Columns of a wider layer: out[:, 0:OC] = inp (N,C) @ weight[:, 0:OC] + bias[0:OC] (bias may be
// null), the rows of out ldo apart and of weight ldw apart; bitwise those columns of
// linear_forward (evaluation's last block: the keys and values of every row, the queries of the
// last positions).
void linear_forward_cols(float* out, size_t ldo, const float* inp, const float* weight, size_t ldw,
                         const float* bias, size_t N, size_t C, size_t OC);
// dinp may be null (no gradient needed for the input); dbias may be null when bias is.
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, size_t N, size_t C, size_t OC);

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void gelu_forward(float* out, const float* inp, size_t n);
void gelu_backward(float* dinp, const float* dout, const float* inp, size_t n);

// out = a + b.
void residual_forward(float* out, const float* a, const float* b, size_t n);
void residual_backward(float* da, float* db, const float* dout, size_t n);

// Multi-head causal self-attention with a key-padding mask (the part between the fused QKV
// projection and the output projection). qkv holds rows [q | k | v] (3C each); head h uses channels
// h*hs..(h+1)*hs-1 of each, hs = C/NH. Query t attends to keys j <= t with valid[b,j]; scores are
// scaled by 1/sqrt(hs). The rows: with slot (B*T, read at the valid positions only) position
// (b, t)'s row of qkv and of out is slot[b T + t] (the encoders' valid rows: no padded copy to make
// and none to gather from), and a PAD query has none; without slot (null) the padded layout, row
// b T + t, where a PAD query outputs zero.
//   att (B,NH,T,T): softmax probabilities before dropout (zero rows for PAD queries)
//   out (rows, C): sum_j dropout(att)[t,j] v_j, heads concatenated
// Attention dropout uses rng site `site` with counter over the (B,NH,T,T) index.
void attention_forward(float* out, float* att, const float* qkv, const int32_t* slot, const uint8_t* valid,
                       size_t B, size_t T, size_t C, size_t NH, float p_drop, uint64_t seed, uint64_t step,
                       uint64_t site);
// The attention of the last position only (evaluation's last block, where no other query goes
// on; left padding puts a sequence's last item at T-1): sequence b's query is row b of q (B,C),
// its keys and values the k and v of qkv (rows as attention_forward's, by slot or padded; its q
// is not read) at the valid positions.
// out (B,C): row b = attention_forward's row (b, T-1) without dropout, bitwise (zero when
// position T-1 is PAD); att: rows (b, h, T-1) of attention_forward's probabilities, the others
// left as they are.
void attention_last_forward(float* out, float* att, const float* q, const float* qkv, const int32_t* slot,
                            const uint8_t* valid, size_t B, size_t T, size_t C, size_t NH);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const uint8_t* valid, size_t B, size_t T, size_t C, size_t NH, float p_drop,
                        uint64_t seed, uint64_t step, uint64_t site);

// Row L2 normalization: out[n] = inp[n] / max(|inp[n]|, eps), norm[n] = |inp[n]|, eps = 1e-12.
void l2norm_forward(float* out, float* norm, const float* inp, size_t N, size_t C);
void l2norm_backward(float* dinp, const float* dout, const float* out, const float* norm, size_t N,
                     size_t C);

constexpr float kLayerNormEps = 1e-5f;
constexpr float kNormEps = 1e-12f;

}  // namespace hafvt
