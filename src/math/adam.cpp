// adam.cpp: torch.optim.Adam with coupled L2 (weight_decay), one loop over one buffer.
#include "math/adam.h"

#include <cmath>

namespace hafvt {

void adam_update(float* params, float* m, float* v, const float* grads, size_t n,
                 const AdamConfig& cfg, long t) {
    // bias corrections as torch computes them: step_size = lr / bc1, denom = sqrt(v)/sqrt(bc2) + eps
    const double bc1 = 1.0 - std::pow((double)cfg.beta1, (double)t);
    const double bc2 = 1.0 - std::pow((double)cfg.beta2, (double)t);
    const float step_size = (float)(cfg.lr / bc1);
    const float bc2_sqrt = (float)std::sqrt(bc2);
    const float b1 = cfg.beta1, b2 = cfg.beta2;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i] + cfg.l2 * params[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        float denom = std::sqrt(v[i]) / bc2_sqrt + cfg.eps;
        params[i] -= step_size * m[i] / denom;
    }
}

}  // namespace hafvt
