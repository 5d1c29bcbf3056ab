// checkpoint.h: saving and loading training state in the safetensors format (SPEC §6):
// model tensors under their parameter names, Adam moments under adam.m.<name> / adam.v.<name>,
// and in __metadata__ the config, epoch, step, RNG seed, data position and best metric, so that
// --resume continues exactly where an uninterrupted run would be.
#pragma once
#include <string>

#include "core/tensor.h"

namespace hafvt {

struct TrainState {
    long epoch = 0;           // completed epochs (the data position: training resumes at epoch+1)
    long step = 0;            // optimizer steps taken (Adam's t, the dropout stream index)
    double best_metric = -1;  // best validation mean MRR so far
    long best_epoch = 0;
    long bad_evals = 0;       // evaluations since the best one (early stopping)
    unsigned long long seed = 0;
};

// Writes through a temporary name and a rename. m and v may be null (no optimizer state).
void save_checkpoint(const std::string& path, const TensorTable& params, const TensorTable* m,
                     const TensorTable* v, const std::string& config_json, const TrainState& st);

// Reads the config JSON and the state without touching any tensor.
void read_checkpoint_meta(const std::string& path, std::string* config_json, TrainState* st);

// Loads every tensor of `params` (and m, v when given) by name; the names and shapes must match
// exactly, else an InputError naming the checkpoint and the first mismatch.
void load_checkpoint(const std::string& path, TensorTable& params, TensorTable* m, TensorTable* v);

}  // namespace hafvt
