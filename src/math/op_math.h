// op_math.h: the small formulas that the CPU ops (ops_cpu.cpp) and their CUDA twins (cuda/) share,
// written once as host-and-device inline functions (HAFVT_HD, common.h), so that both sides
// compute them with the same operations in the same order.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/common.h"

namespace hafvt {

// Inverted dropout's factor for element i: 1/(1-p) when kept, 0 when dropped. keep(i) =
// rng_uniform(seed, rng_stream(RNG_DROPOUT, step), (site << 40) | i) >= p: the mask is redrawn,
// not stored, and the CPU and the GPU draw the same one (IEEE division on both; nvcc does not use
// fast division by default).
HAFVT_HD float dropout_factor(size_t i, float p, uint64_t seed, uint64_t step, uint64_t site) {
    float u = rng_uniform(seed, rng_stream(RNG_DROPOUT, step), (site << 40) | (uint64_t)i);
    return u >= p ? 1.0f / (1.0f - p) : 0.0f;
}

// GELU, tanh approximation: y = 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3), c = sqrt(2/pi).
// The tanh itself is each side's own (vtanh on the CPU, tanhf on the GPU).
constexpr float kGeluC = 0.7978845608028654f;
HAFVT_HD float gelu_u(float x) { return kGeluC * (x + 0.044715f * x * x * x); }
HAFVT_HD float gelu_from_tanh(float x, float t) { return 0.5f * x * (1.0f + t); }
// dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2), t = tanh(u)
HAFVT_HD float gelu_grad_from_tanh(float x, float t) {
    float dudx = kGeluC * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dudx;
}

}  // namespace hafvt
