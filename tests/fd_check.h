// fd_check.h: central finite-difference gradient checks for the backward functions.
//
// The scalar checked is L = sum_i out[i] * G[i] with a fixed random G, so dL/dout = G is the
// dout passed to the backward function. For each input element (all of them for small tensors,
// a fixed sample otherwise) the numeric derivative (L(x+h) - L(x-h)) / 2h, evaluated in float with
// the loss summed in double, is compared with the analytic one.
// The error measure is |num - ana| / max(|num|, |ana|, floor): relative for gradients of normal
// size, absolute below `floor` (float round-off in L makes tiny derivatives meaningless).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/common.h"

namespace fd {

inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = scale * hafvt::rng_normal(seed, 77, i);
    return v;
}

// Worst error seen per op over the whole run, printed once when the test program exits.
struct WorstErrors {
    std::map<std::string, double> by_op;
    ~WorstErrors() {
        if (by_op.empty()) return;
        std::printf("finite-difference checks, worst relative error per op (tolerance 1e-2; 2e-2 for the whole-model model_* checks):\n");
        for (const auto& kv : by_op) std::printf("  %-22s %.2e\n", kv.first.c_str(), kv.second);
    }
};
inline std::map<std::string, double>& worst() {
    static WorstErrors w;
    return w.by_op;
}

struct Result {
    double max_err = 0.0;
    size_t checked = 0;
};

// loss(): runs the forward with the current inputs and returns L in double.
// x: the input being perturbed (n floats); ana: its analytic gradient.
inline Result check(const std::string& op, const std::function<double()>& loss, float* x,
                    const float* ana, size_t n, float h = 1e-2f, double floor = 1e-2,
                    size_t max_checks = 400) {
    Result r;
    size_t stride = n > max_checks ? n / max_checks : 1;
    for (size_t i = 0; i < n; i += stride) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = loss();
        x[i] = keep - h;
        double lm = loss();
        x[i] = keep;
        double num = (lp - lm) / (2.0 * (double)h);
        double err = std::fabs(num - (double)ana[i]) /
                     std::max({std::fabs(num), std::fabs((double)ana[i]), floor});
        if (err > r.max_err) r.max_err = err;
        if (err > 5e-2 && r.checked < 1000)
            std::printf("  %s[%zu]: numeric %.6g analytic %.6g\n", op.c_str(), i, num, (double)ana[i]);
        r.checked++;
    }
    double& w = worst()[op];
    w = std::max(w, r.max_err);
    return r;
}

inline double dot(const float* a, const std::vector<float>& g) {
    double s = 0.0;
    for (size_t i = 0; i < g.size(); i++) s += (double)a[i] * (double)g[i];
    return s;
}

}  // namespace fd

namespace fd {

// Directional check for a whole tensor: perturbs all n elements at once along a random +-1
// direction u and compares (L(x + h u) - L(x - h u)) / 2h with ana . u. Summing over the tensor
// raises the signal above the float round-off of a deep forward. No single step suits every
// tensor of a deep model (large h: truncation error where the loss curves sharply; small h: the
// float round-off of L, which dominates for a tensor whose gradient is small), so the check
// tries h = 1e-2, 3e-3, 1e-3, 3e-4, 1e-4 and keeps the best agreement: a wrong gradient
// disagrees at every step.
inline double check_direction(const std::string& op, const std::function<double()>& loss, float* x,
                              const float* ana, size_t n, uint64_t seed) {
    std::vector<float> keep(x, x + n), u(n);
    double dot = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        u[i] = (hafvt::rng_u64(seed, 5, i) & 1) ? 1.0f : -1.0f;
        dot += (double)ana[i] * u[i];
        scale += std::fabs((double)ana[i]);
    }
    double best = 1e300, best_num = 0.0;
    for (float h : {1e-2f, 3e-3f, 1e-3f, 3e-4f, 1e-4f}) {
        for (size_t i = 0; i < n; i++) x[i] = keep[i] + h * u[i];
        double lp = loss();
        for (size_t i = 0; i < n; i++) x[i] = keep[i] - h * u[i];
        double lm = loss();
        double num = (lp - lm) / (2.0 * (double)h);
        // relative, with a floor: a sum that cancels is judged against its terms' size
        double err = std::fabs(num - dot) / std::max({std::fabs(num), std::fabs(dot), 0.05 * scale, 1e-3});
        if (err < best) best = err, best_num = num;
    }
    std::copy(keep.begin(), keep.end(), x);
    if (best > 1e-2) std::printf("  %s: numeric %.6g analytic %.6g\n", op.c_str(), best_num, dot);
    double& w = worst()[op];
    w = std::max(w, best);
    return best;
}

}  // namespace fd
