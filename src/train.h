// train.h: the settings of a run, the data it loads, and the training loop (SPEC §3.3, §6).
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

// `hafvt train`: returns the process exit status.
int run_train(const TrainConfig& c);

}  // namespace hafvt
