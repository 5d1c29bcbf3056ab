// train.h: the training loop (SPEC §3.3), evaluation (§4) and the run directory (§6).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dataset.h"
#include "frozen_features.h"
#include "json.h"
#include "metrics.h"
#include "model.h"

namespace hafvt {

struct Backend;

// Every setting of SPEC §3 and §5; each is a flag of `hafvt train` (see main.cpp).
struct TrainConfig {
    // data
    std::string data, train_file = "traindata_new.txt", img, txt, img_ids, txt_ids;
    std::string out = "runs/hafvt";
    // model
    size_t T = 15, q = 256, blocks = 2, heads = 1;
    float dropout = 0.3f;
    std::string modalities;            // "" = id plus every modality with a feature file
    std::string views = "x,y,xy";
    float alpha = -1, beta = -1;       // mixture weights; < 0 = default 1/3 each, renormalized
    float lambda1 = 1.0f, lambda2 = 1.0f;
    // optimization
    float lr = 1e-3f, l2 = 1e-5f;
    size_t batch = 256, epochs = 100, patience = 10, eval_every = 1;
    int loss_window = 0;               // <= 0: every supervised position
    uint64_t seed = 2040;
    // evaluation
    std::string protocol = "full";     // the protocol that selects the best checkpoint
    bool exclude_history = false;
    size_t eval_batch = 64, tail_max = 5;
    // running
    bool resume = false;
    int threads = 0;                   // 0 = OpenMP's default
    size_t log_every = 0;              // 0 = about ten progress lines per epoch
    size_t max_steps = 0;              // stop after this many steps (benchmarks); 0 = no limit
    bool skip_test = false;            // skip the final test evaluation (benchmarks)
    std::string device = "auto";
    bool tf32 = false;                 // CUDA: TF32 tensor cores for the matmuls (FP32 otherwise)
};

Json config_to_json(const TrainConfig& c);
TrainConfig config_from_json(const Json& j, const std::string& what);

// Checks a configuration's values and combinations; InputError naming the flag otherwise.
void validate_config(const TrainConfig& c);

// The data a run needs: catalog, frozen tables and the resolved model configuration.
struct World {
    ItemCatalog cat;
    FrozenTables fz;
    ModelConfig mc;
    std::vector<uint32_t> train_count;  // occurrences of each item in the training file (head/tail)
    std::string fingerprint;
};
void load_world(const TrainConfig& c, World& w, const SequenceSet* train);

// Scores every line of `set` once and ranks under both protocols: out[0] = c2dsr (with the given
// negatives, [lines, 999] merged ids), out[1] = full.
void evaluate(Model& model, const World& w, const SequenceSet& set, const std::vector<int32_t>& negatives,
              bool exclude_history, size_t eval_batch, size_t tail_max, EvalResult out[2]);

// --device: cpu, cuda or auto (CUDA when the build has it and a device answers); prints one line
// saying which backend runs and why. InputError for another name, and for `cuda` without a CUDA
// build or device.
const Backend& choose_backend(const std::string& want, bool tf32);

// `hafvt train`: returns the process exit status.
int run_train(const TrainConfig& c);

// The per-domain table printed at the end of training and by `hafvt eval`.
std::string format_results(const std::vector<EvalResult>& results);

}  // namespace hafvt
