// dataset.h: the C2DSR dataset directory (SPEC §1.2-1.3, §3.4): item lists, sequence files,
// the three views of a sequence, supervised positions and targets, and shuffled batches.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace hafvt {

// Merged id space: X item a -> a (0..NX-1); Y item b -> NX+b; PAD = NX+NY.
struct ItemCatalog {
    size_t NX = 0, NY = 0;
    std::vector<std::string> asin;                  // (NX+NY) merged id -> ASIN
    std::unordered_map<std::string, int32_t> by_asin;
    int32_t pad() const { return (int32_t)(NX + NY); }
    size_t num_items() const { return NX + NY; }
    bool in_x(int32_t id) const { return (size_t)id < NX; }
    int32_t find(const std::string& a) const;       // merged id of an ASIN, -1 if unknown
};

// Reads DIR/Alist.txt and DIR/Blist.txt (`orig_index \t ASIN \t local_id`, local ids contiguous
// from 0 in file order, ASINs unique across both files). InputError naming file and line otherwise.
ItemCatalog read_catalog(const std::string& dir);

// One sequence file, tokens sorted by timestamp with a STABLE sort (ties keep file order).
//   train: seqs[i] = the whole sorted sequence s_1..s_n, truncated to its last T+1 items;
//          lines with n < 2 are skipped and counted.
//   eval:  seqs[i] = the last T inputs followed by the target s_n (so size <= T+1);
//          lines with n < 2 are an error (no input or no target).
struct SequenceSet {
    std::string path;
    bool train = false;
    std::vector<std::vector<int32_t>> seqs;
    std::vector<int64_t> users;  // the user id (field 1) of each line of seqs
    size_t lines = 0;          // non-empty lines read
    size_t skipped_short = 0;  // train lines with fewer than 2 items
    size_t truncated = 0;      // lines longer than T+1 items
    size_t targets_x = 0, targets_y = 0;  // eval: lines whose target is in X / Y
};
SequenceSet read_sequences(const std::string& path, const ItemCatalog& cat, size_t T, bool train);
// The same from the file's text already in memory (`path` only names it in messages); the fuzzer's
// entry point.
SequenceSet parse_sequences(const std::string& text, const std::string& path, const ItemCatalog& cat, size_t T,
                            bool train);

enum View : int { VIEW_X = 0, VIEW_Y = 1, VIEW_XY = 2 };
extern const char* const kViewNames[3];  // "x", "y", "xy"

// One view of a batch, every array (B,T) row-major, LEFT-padded: the most recent item at t = T-1.
struct ViewBatch {
    std::vector<int32_t> ids;       // (B,T) merged ids, PAD = NX+NY
    std::vector<int32_t> pos;       // (B,T) position within the view 1..len, 0 at PAD
    std::vector<int32_t> target;    // (B,T) train: item this position predicts, -1 if unsupervised
    std::vector<uint8_t> nonempty;  // (B) the view has at least one item
};

struct Batch {
    size_t B = 0, T = 0;
    ViewBatch view[3];
    std::vector<int32_t> eval_target;  // (B) eval batches: the target item; -1 when unknown
};

// Train batch from seqs[idx[0..B-1]] (SPEC §1.3, §3.4). XY view: position of s_t predicts s_{t+1}.
// X view: position of X item x_j predicts the next X item after it in the full sequence (s_n
// included), unsupervised if none; Y likewise. loss_window K > 0 keeps only the last K supervised
// positions of each view (per sequence); K <= 0 keeps all.
void make_train_batch(Batch& out, const SequenceSet& set, const size_t* idx, size_t B,
                      const ItemCatalog& cat, size_t T, int loss_window);

// Eval batch: inputs are all but the last item of each sequence when with_target, the whole
// sequence otherwise (recommend); keeps the last T inputs.
void make_eval_batch(Batch& out, const std::vector<std::vector<int32_t>>& seqs, size_t begin,
                     size_t end, bool with_target, const ItemCatalog& cat, size_t T);

// A permutation of 0..n-1 for one epoch, a pure function of (seed, epoch) (Fisher-Yates on the
// counter-based RNG, stream RNG_SHUFFLE).
std::vector<size_t> shuffled_order(size_t n, uint64_t seed, uint64_t epoch);

}  // namespace hafvt
