// metrics.h: ranking metrics (SPEC §4): the rank rule, MRR, NDCG@5/10, HR@1/5/10 per domain,
// the c2dsr protocol's negatives, and head/tail breakdowns.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace hafvt {

// Sums over ranked lines; finalize() turns them into percentages.
struct RankStats {
    size_t n = 0;
    double mrr = 0, ndcg5 = 0, ndcg10 = 0, hr1 = 0, hr5 = 0, hr10 = 0;
    void add(size_t rank);
    RankStats finalized() const;  // means in percent
};

// rank = 1 + #{c != target : score(c) >= score(target)}: ties count against the target, so a
// constant model gets the worst rank; so does a NaN score on either side (a candidate counts
// unless its score is strictly lower), so a NaN never ranks the target better. `skip` (sorted local ids, may be null) are left out.
size_t rank_full(const float* scores, size_t V, int32_t target, const std::vector<int32_t>* skip);
// The same rule over the target and its sampled negatives (local ids, may repeat).
size_t rank_sampled(const float* scores, int32_t target, const int32_t* negatives, size_t n_neg);

constexpr size_t kNumNegatives = 999;
// c2dsr protocol: for each line, 999 items of the target's domain drawn uniformly with
// replacement, excluding only the target, from (seed, split). Returns merged ids [lines, 999].
std::vector<int32_t> draw_negatives(const SequenceSet& set, const ItemCatalog& cat, uint64_t seed,
                                    uint64_t split);

// Reads saved negatives and checks them against the split: shape [lines, 999], every id in the
// target's domain and different from the target; InputError naming the file and row otherwise.
std::vector<int32_t> load_negatives(const std::string& path, const SequenceSet& set, const ItemCatalog& cat);

// Results of one evaluation pass under one protocol.
struct EvalResult {
    std::string split, protocol;
    RankStats dom[2];             // X, Y (finalized)
    RankStats head[2], tail[2];   // targets seen more / at most `tail_max` times in training
    double mean_mrr() const { return 0.5 * (dom[0].mrr + dom[1].mrr); }
};

}  // namespace hafvt
