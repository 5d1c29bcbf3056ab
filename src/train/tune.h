// tune.h: `hafvt tune`, the mixture weights (alpha, beta) and the score weights (lambda1, lambda2)
// of a trained checkpoint chosen on the validation split (SPEC §3.5, §4), without retraining.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "train/config.h"

namespace hafvt {

// One point of the grid: the weights and the MRR (percent, per domain) they give, from the sums of
// reciprocal ranks over the lines seen so far.
struct TunePoint {
    float alpha = 0, beta = 0, lambda1 = 0, lambda2 = 0;
    double rr[2] = {0, 0};
    size_t lines[2] = {0, 0};
    double mrr[2] = {0, 0};
    double mean() const { return (mrr[0] + mrr[1]) / 2.0; }
};

// What the grid search needs of each line, from the model's pass over one batch of lines: the line's
// domain, and its candidates (all items of the domain but the target, or the c2dsr negatives)
// sorted into those that outrank the target under every weighting (every head's probability at
// least the target's), those that never do (every head's below, over the heads that speak for
// the line), and the rest, kept as 9 differences p_j - p_target per (view, modality).
struct TuneLines {
    std::vector<int> domain;                 // per line: 0 = X, 1 = Y
    std::vector<uint8_t> active;             // per line, 9 flags: view v, modality m speaks (v * 3 + m)
    std::vector<uint32_t> always, never;     // per line
    std::vector<uint64_t> mixed_at;          // per line + 1: its candidates (n = mixed_at[i+1] - mixed_at[i])
    std::vector<float> mixed;                // per line from 9 mixed_at[i]: (9, n), component-major
};

// Adds the lines' reciprocal ranks under the weights `p` (the rank rule of SPEC §4, ties against
// the target) to p's sums, and sets p.mrr from them.
void tune_accumulate(const TuneLines& t, TunePoint& p);

// The grid (SPEC §3.5): alpha, beta, 1 - alpha - beta in steps of 0.05 over the enabled modalities
// (each weight of a disabled one 0), lambda1 in kTuneLambdas when the X and Y views are on,
// lambda2 in kTuneLambdas when the XY view and another one are on (else the run's values).
// The points come weights-major, then lambda1, then lambda2 (*n1 and *n2 values, when given).
extern const std::vector<float> kTuneLambdas;
std::vector<TunePoint> tune_grid(const bool mods[3], const bool views[3], float lambda1, float lambda2,
                                 size_t* n1 = nullptr, size_t* n2 = nullptr);

// tune_accumulate for every point of a grid of tune_grid's layout (n1 lambda1 by n2 lambda2 values
// per weight point) at once: per weight point and candidate the three views' terms
// e_u = sum_m w_m d_{u,m} once, then e_own + lambda1 e_other + lambda2 e_XY >= 0 for each lambda
// pair, the same test in another order of float additions.
void tune_accumulate_grid(const TuneLines& t, std::vector<TunePoint>& grid, size_t n1, size_t n2);

// `hafvt tune`: the checkpoint on the valid split under `protocol`, the best point of the grid
// (ties: the earlier point; the trained weights first), written to the run folder (kTunedFile,
// evaluation.h) for eval and recommend; then, unless skip_test, the test split scored once with
// it. Prints its table to `out`. Returns 0.
int run_tune(const std::string& ckpt, const TrainConfig& o, const std::string& protocol, bool skip_test, std::FILE* out);

}  // namespace hafvt
