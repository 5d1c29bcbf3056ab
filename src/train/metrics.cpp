// metrics.cpp: ranks, ranking metrics and the c2dsr protocol's negatives.
#include "train/metrics.h"

#include <algorithm>
#include <cmath>

#include "core/common.h"
#include "formats/npy.h"

namespace hafvt {

void RankStats::add(size_t rank) {
    n++;
    mrr += 1.0 / (double)rank;
    // NDCG@k with one relevant item: 1 / log2(rank + 1) when rank <= k
    double gain = 1.0 / std::log2((double)rank + 1.0);
    if (rank <= 5) ndcg5 += gain;
    if (rank <= 10) ndcg10 += gain;
    hr1 += rank <= 1;
    hr5 += rank <= 5;
    hr10 += rank <= 10;
}

RankStats RankStats::finalized() const {
    RankStats r = *this;
    double k = n ? 100.0 / (double)n : 0.0;
    r.mrr *= k; r.ndcg5 *= k; r.ndcg10 *= k; r.hr1 *= k; r.hr5 *= k; r.hr10 *= k;
    return r;
}

// Whether a candidate of score s ranks at or above a target of score st: unless it is strictly
// lower. Ties count against the target, and so does a NaN on either side (a NaN target ranks last).
static inline bool at_or_above(float s, float st) { return !(s < st); }

size_t rank_full(const float* scores, size_t V, int32_t target, const std::vector<int32_t>* skip) {
    const float st = scores[target];
    size_t above = 0;
    for (size_t j = 0; j < V; j++) above += (int32_t)j != target && at_or_above(scores[j], st);
    if (skip) {
        for (int32_t s : *skip)
            if (s != target && at_or_above(scores[s], st)) above--;
    }
    return above + 1;
}

size_t rank_sampled(const float* scores, int32_t target, const int32_t* negatives, size_t n_neg) {
    const float st = scores[target];
    size_t above = 0;
    for (size_t k = 0; k < n_neg; k++) above += at_or_above(scores[negatives[k]], st);
    return above + 1;
}

std::vector<int32_t> draw_negatives(const SequenceSet& set, const ItemCatalog& cat, uint64_t seed,
                                    uint64_t split) {
    const size_t L = set.seqs.size();
    std::vector<int32_t> neg(L * kNumNegatives);
    const uint64_t stream = rng_stream(RNG_NEGATIVES, split);
    for (size_t i = 0; i < L; i++) {
        const int32_t target = set.seqs[i].back();
        const bool x = cat.in_x(target);
        const int32_t off = x ? 0 : (int32_t)cat.NX, V = (int32_t)(x ? cat.NX : cat.NY);
        HAFVT_INPUT(V >= 2, set.path, ": line ", i + 1, ": the c2dsr protocol needs at least 2 items in the target's domain");
        const int32_t t = target - off;
        for (size_t k = 0; k < kNumNegatives; k++) {
            // uniform over the V - 1 items other than the target
            int32_t j = (int32_t)rng_below(seed, stream, i * kNumNegatives + k, (uint64_t)(V - 1));
            neg[i * kNumNegatives + k] = off + (j >= t ? j + 1 : j);
        }
    }
    return neg;
}

std::vector<int32_t> load_negatives(const std::string& path, const SequenceSet& set, const ItemCatalog& cat) {
    std::vector<size_t> shape;
    std::vector<int32_t> neg = npy_read_i32(path, &shape);
    const size_t L = set.seqs.size();
    HAFVT_INPUT(shape.size() == 2 && shape[0] == L && shape[1] == kNumNegatives, path, ": expected shape [", L, ", ",
                kNumNegatives, "] (one row per line of ", set.path, "), found ", npy_shape_str(shape));
    for (size_t i = 0; i < L; i++) {
        const int32_t target = set.seqs[i].back();
        for (size_t k = 0; k < kNumNegatives; k++) {
            int32_t n = neg[i * kNumNegatives + k];
            HAFVT_INPUT(n >= 0 && (size_t)n < cat.num_items() && cat.in_x(n) == cat.in_x(target) && n != target, path,
                        ": row ", i, " column ", k, ": expected an item of the target's domain other than the target ",
                        target, ", found ", n);
        }
    }
    return neg;
}

}  // namespace hafvt
