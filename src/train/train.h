// train.h: the settings of a run, the data it loads, and the training loop (SPEC §3.3, §6).
#pragma once
#include <cstdio>
#include <cstdint>
#include <string>
#include <vector>

#include "train/config.h"
#include "data/dataset.h"
#include "data/frozen_features.h"
#include "core/json.h"
#include "train/metrics.h"
#include "model/model.h"

namespace hafvt {

// The data a run needs: catalog, frozen tables and the resolved model configuration.
struct World {
    ItemCatalog cat;
    FrozenTables fz;
    ModelConfig mc;
    std::vector<uint32_t> train_count;  // occurrences of each item in the training file (head/tail)
    // fnv1a hashes: of the catalog (item counts and ASINs), and of everything a run depends on
    // (the catalog, the frozen feature tables' contents, the training sequences)
    std::string catalog_fingerprint, fingerprint;
};
// Prints its notes (feature rows that are all zero) to `info` (nullptr: silent).
void load_world(const TrainConfig& c, World& w, const SequenceSet* train, std::FILE* info = stdout);

// `hafvt train`: returns the process exit status.
int run_train(const TrainConfig& c);

}  // namespace hafvt
