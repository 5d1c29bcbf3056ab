// adam.h: Adam exactly as torch.optim.Adam with coupled L2 (SPEC §3.3).
#pragma once
#include <cstddef>

namespace hafvt {

struct AdamConfig {
    float lr = 1e-3f;
    float beta1 = 0.9f, beta2 = 0.98f;
    float eps = 1e-8f;
    float l2 = 1e-5f;  // coupled: g += l2 * w before the moments (torch's weight_decay)
};

// One update of n parameters at step t (1-based):
//   g = grad + l2 * w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
void adam_update(float* params, float* m, float* v, const float* grads, size_t n,
                 const AdamConfig& cfg, long t);

}  // namespace hafvt
