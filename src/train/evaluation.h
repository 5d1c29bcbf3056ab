// evaluation.h: evaluation under both protocols of SPEC §4, the result table and the metrics
// records of a run, and the two commands that read a checkpoint, hafvt eval and hafvt recommend,
// as library functions (main.cpp parses their flags and prints what they return).
#pragma once
#include <cstdio>
#include <cstddef>
#include <string>
#include <vector>

#include "core/json.h"
#include "train/metrics.h"
#include "train/train.h"

namespace hafvt {

// Scores every line of `set` once and ranks under both protocols: out[0] = c2dsr (with the given
// negatives, [lines, 999] merged ids), out[1] = full.
void evaluate(Model& model, const World& w, const SequenceSet& set, const std::vector<int32_t>& negatives,
              bool exclude_history, size_t eval_batch, size_t tail_max, EvalResult out[2]);

// The per-domain table printed at the end of training and by `hafvt eval`.
std::string format_results(const std::vector<EvalResult>& results);

// One line of metrics.jsonl: an evaluation at (epoch, step), with the loss terms when given.
Json eval_json(const EvalResult& r, long epoch, long step, const LossTerms* loss, double seconds);

// The run configuration stored in a checkpoint, with the overrides of eval and recommend
// (--data, --img, --txt, their alignment files, --alpha, --beta, --eval-batch, --threads); InputError naming
// the checkpoint when the stored configuration is invalid.
// A size override that was not given (eval_batch of `overrides`; 0 is a value, refused as such).
constexpr size_t kUnsetSize = ~(size_t)0;
// With catalog_fingerprint, also the stored fingerprint of the catalog ("" when the checkpoint has none).
TrainConfig config_of_checkpoint(const std::string& ckpt, const TrainConfig& overrides,
                                 std::string* catalog_fingerprint = nullptr);

// `hafvt eval`: the checkpoint on the valid or test split under one protocol. `o` holds the
// overrides of config_of_checkpoint plus exclude_history and device.
struct EvalOutcome {
    EvalResult result;
    size_t lines = 0;
    double seconds = 0.0;
};
EvalOutcome run_eval(const std::string& ckpt, const std::string& split, const std::string& protocol, const TrainConfig& o);

// The choices of `hafvt recommend`: the domain to recommend from (X or Y; ignored with --split,
// where each line's target decides), how many items, whether the history's own items are left out,
// and whether each item's score is explained (--explain: Model::explain's parts).
struct RecommendOptions {
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
