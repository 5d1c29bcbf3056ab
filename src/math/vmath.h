// vmath.h: exp and tanh written so that the compiler vectorizes loops that call them (AVX2/FMA
// with -march=native, SSE otherwise). libm's expf/tanhf are scalar calls without -ffast-math,
// which this project does not use; in the heads and GELU they were a quarter of a training step.
#pragma once
#include <cstdint>

namespace hafvt {

// exp(x) with a relative error below 2e-7 on [-87, 88]; inputs beyond are clamped (exp(-87) is
// 1.6e-38, negligible next to any softmax term; exp(88) is near FLT_MAX).
// exp(x) = 2^n * exp(g), n = round(x / ln2), g = x - n ln2 in [-ln2/2, ln2/2], where exp(g) is
// the Taylor polynomial of degree 7 (truncation error < g^8/8! = 5e-9).
inline float vexp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // n = round(x / ln2) by the magic-number trick: adding 1.5 * 2^23 leaves the rounded integer
    // in the low mantissa bits, readable both as a float (n) and as an int (ni), with no
    // float-to-int conversion that would keep the loop from vectorizing.
    const float big = 12582912.0f;
    const float shifted = x * 1.44269504088896341f + big;
    const float n = shifted - big;
    const int32_t ni = __builtin_bit_cast(int32_t, shifted) - __builtin_bit_cast(int32_t, big);
    // g = x - n ln2, with ln2 split in two parts so the product is exact enough
    const float g = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;
    p = p * g + 1.0f / 720.0f;
    p = p * g + 1.0f / 120.0f;
    p = p * g + 1.0f / 24.0f;
    p = p * g + 1.0f / 6.0f;
    p = p * g + 0.5f;
    p = p * g + 1.0f;
    p = p * g + 1.0f;
    // times 2^n: the exponent field built in unsigned arithmetic (a NaN x leaves ni arbitrary,
    // and a signed shift of it would be undefined; the product is NaN either way)
    return p * __builtin_bit_cast(float, (uint32_t)(ni + 127) << 23);
}

// tanh(u) = 1 - 2 / (exp(2u) + 1), odd-symmetric evaluation for accuracy near 0 is not needed at
// float GELU precision (absolute error < 1e-7).
inline float vtanh(float u) {
    return 1.0f - 2.0f / (vexp(2.0f * u) + 1.0f);
}

}  // namespace hafvt
