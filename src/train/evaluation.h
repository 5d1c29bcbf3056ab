// evaluation.h: evaluation under both protocols of SPEC §4, the result table and the metrics
// records of a run, and the two commands that read a checkpoint, hafvt eval and hafvt recommend,
// as library functions (main.cpp parses their flags and prints what they return).
#pragma once
#include <cstdio>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "formats/checkpoint.h"
#include "train/metrics.h"
#include "train/train.h"

namespace hafvt {

// Scores every line of `set` once and ranks under both protocols: out[0] = c2dsr (with the given
// negatives, [lines, 999] merged ids), out[1] = full.
void evaluate(Model& model, const World& w, const SequenceSet& set, const std::vector<int32_t>& negatives,
              bool exclude_history, size_t eval_batch, size_t tail_max, EvalResult out[2]);

// The sorted, distinct local ids of the domain [off, off + V) among a line's input items (the last
// T before its target when `has_target`): what --exclude-history leaves out.
void history_items(const std::vector<int32_t>& s, bool has_target, size_t T, int32_t off, size_t V,
                   std::vector<int32_t>& skip);

// The per-domain table printed at the end of training and by `hafvt eval`.
std::string format_results(const std::vector<EvalResult>& results);

// One line of metrics.jsonl: an evaluation at (epoch, step), with the loss terms when given.
Json eval_json(const EvalResult& r, long epoch, long step, const LossTerms* loss, double seconds);

// The score weights of eval and recommend (SPEC §2.4, §4): the run's trained alpha, beta, lambda1,
// lambda2, replaced by those `hafvt tune` chose (kTunedFile beside the checkpoint, when it was
// tuned on this checkpoint: same file name and step) unless `trained`, then by any given here or
// as --alpha/--beta (-1: not given).
struct ScoreWeights {
    float lambda1 = -1.0f, lambda2 = -1.0f;
    bool trained = false;
};
constexpr const char* kTunedFile = "tuned.json";

// The folder of a checkpoint (its run folder: the saved negatives, kTunedFile) and its file name.
std::string checkpoint_dir(const std::string& ckpt);
std::string checkpoint_name(const std::string& ckpt);
// A number of a parsed kTunedFile (at `path`): InputError naming the file and the key when it is
// missing or not a number.
double tuned_number(const Json& tuned, const std::string& path, const char* key);

// The run configuration stored in a checkpoint, with the overrides of eval and recommend
// (--data, --img, --txt, their alignment files, --alpha, --beta, --eval-batch, --threads) and the
// tuned weights (ScoreWeights); InputError naming the checkpoint when the stored configuration is
// invalid. *weights_note (when given) says which weights score: "" for the trained ones, else a
// line naming the tuned file or the overrides.
// A size override that was not given (eval_batch of `overrides`; 0 is a value, refused as such).
constexpr size_t kUnsetSize = ~(size_t)0;
// With catalog_fingerprint, also the stored fingerprint of the catalog ("" when the checkpoint has none);
// with state, the checkpoint's training state.
TrainConfig config_of_checkpoint(const std::string& ckpt, const TrainConfig& overrides,
                                 std::string* catalog_fingerprint = nullptr, const ScoreWeights& sw = {},
                                 std::string* weights_note = nullptr, TrainState* state = nullptr);

// A checkpoint opened for scoring: its configuration with the overrides (config_of_checkpoint),
// the data, the checks that the catalog and tensors are the checkpoint's and that the model fits
// the memory, and the model with its parameters on the chosen backend. Notes go to `info`.
struct Scorer {
    TrainConfig c;
    World w;
    std::unique_ptr<Model> model;
    std::string weights_note;
    TrainState state;  // the checkpoint's epoch and step
    Scorer(const std::string& ckpt, const TrainConfig& o, const ScoreWeights& sw = {}, std::FILE* info = stderr);
};

// `hafvt eval`: the checkpoint on the valid or test split under one protocol. `o` holds the
// overrides of config_of_checkpoint plus exclude_history and device.
struct EvalOutcome {
    EvalResult result;
    size_t lines = 0;
    double seconds = 0.0;
    std::string weights_note;  // config_of_checkpoint's: "" for the trained weights
    long epoch = 0, step = 0;  // the checkpoint's training state
};
// head_tail: read the run's training file too, so that the result's head and tail figures are
// the training run's (without it every target counts as tail, and only dom[] is meaningful).
// info: where the feature and device notes go (nullptr: silent, for a caller that printed them).
EvalOutcome run_eval(const std::string& ckpt, const std::string& split, const std::string& protocol, const TrainConfig& o,
                     const ScoreWeights& sw = {}, bool head_tail = false, std::FILE* info = stdout);

// The c2dsr negatives of a split for a checkpoint: the run's saved ones when they fit the split,
// else the same draw from the run's seed.
std::vector<int32_t> split_negatives(const std::string& ckpt, const std::string& split, const SequenceSet& set,
                                     const ItemCatalog& cat, uint64_t seed);

// The choices of `hafvt recommend`: the domain to recommend from (X or Y; ignored with --split,
// where each line's target decides), how many items, whether the history's own items are left out,
// and whether each item's score is explained (--explain: Model::explain's parts).
struct RecommendOptions {
    ScoreWeights weights;
    std::string domain = "X";
    size_t k = 10;
    bool exclude_history = false;
    bool explain = false;
};

// The three forms of `hafvt recommend`. Each writes TSV to `out`, a header and one row per
// recommended item, best first (ties: the smaller id first):
//   [lead columns] rank merged_id asin score [hit] [view_X view_Y view_XY mod_id mod_img mod_txt
//   attn_id attn_img attn_txt]
// The last nine with --explain: the item's score split by view (the terms of Eq. 10) and by
// modality (the terms of Eq. 7), each set adding up to the score, and per modality the (at most
// three) input items the XY encoder's last position attended to most, ASIN:weight ("-" when none).
// They return the number of histories.
//
// One history of ASINs or merged ids; no lead columns.
size_t recommend(const std::string& ckpt, const TrainConfig& o, const RecommendOptions& ro,
                 const std::vector<std::string>& history, std::FILE* out);

// --histories F: every history of F (one a line, `[user<TAB>]item item ...`, items ASINs or merged
// ids separated by blanks or commas), batched through evaluation's scoring; lead column `user` (the
// first column, else the line number).
size_t recommend_many(const std::string& ckpt, const TrainConfig& o, const RecommendOptions& ro,
                      const std::string& histories, std::FILE* out);

// --split valid|test: every line of the split from its target's domain, scored in evaluation's
// batches; lead columns `user, line`, and `hit` (1 on the target's row). Ties put the target after
// the items it ties with, as the rank rule counts them, so the lines with a hit are exactly those
// whose full-protocol rank is at most k (with --exclude-history, as eval --exclude-history ranks).
size_t recommend_split(const std::string& ckpt, const TrainConfig& o, const std::string& split, const RecommendOptions& ro,
                       std::FILE* out);

}  // namespace hafvt
