// config.h: every setting of a run in one table (SPEC §3, §5). A row names the setting's flag of
// `hafvt train`, its member of TrainConfig (also its key in config.json), its kind, its accepted
// range or values, its help line, whether config.json and checkpoints store it, and whether a
// resumed run must keep it. The table drives the flags (parsing and --help), the JSON round trip,
// the range checks, the resume key, and the names of settings in messages: a value the user typed
// is named by its flag (--T), a value read back from a stored configuration by its key ('T').
// Adding a setting is a member here and a row in config.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/flags.h"
#include "core/json.h"
#include "model/model.h"

namespace hafvt {

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

// ---- the settings table ------------------------------------------------------------------------

struct Setting {
    const char* flag;                  // the flag of hafvt train, without "--"
    const char* key;                   // the member of TrainConfig and the key in config.json
    Kind kind;
    void* (*field)(TrainConfig& c);    // the member in c
    double lo, hi;                     // numbers: the accepted range (lo > hi: none)
    bool open_lo, open_hi;             // the bound itself is excluded
    const char* range;                 // how the range or the values read in a message, or null
    const char* choices;               // strings: the accepted values, comma-separated, or null
    const char* help;
    bool stored;                       // written to config.json and checkpoints
    bool resume;                       // a resumed run must keep it (part of the resume key)
};

const std::vector<Setting>& settings();
const Setting& setting(const std::string& key);  // by key; an internal error for an unknown one

// Where values come from, for the names in messages.
enum class Source { FLAGS, STORED };
// "--flag" for FLAGS, "'key'" for STORED.
std::string setting_name(const std::string& key, Source src = Source::FLAGS);

// The flags of hafvt train, from the table.
std::vector<Flag> train_flags(TrainConfig& c);

// The stored settings as JSON, and back (InputError naming `what` and the key on a wrong type or
// a number outside its setting's type).
Json config_to_json(const TrainConfig& c);
TrainConfig config_from_json(const Json& j, const std::string& what);

// Checks every value against its row and the combinations of settings; InputError naming the
// settings as `src` names them otherwise.
void validate_config(const TrainConfig& c, Source src = Source::FLAGS);

// The values a resumed run must share with the run it continues: the resume rows of the table
// and the derived values run_train stores beside them (data fingerprint, resolved modalities,
// mixture weights, feature width), as one string.
std::string resume_key(const Json& cfg);

// The model's configuration from the settings, resolved once (SPEC §2.4): the views, the
// modalities, the mixture weights (alpha, beta, 1 - alpha - beta; a disabled or zero-weight
// modality is left out and the others renormalized to sum to 1), the sizes and the loss weights.
// NX, NY come from the catalog; the feature width e is left 0 for load_world to set from the files.
ModelConfig resolve_model_config(const TrainConfig& c, size_t NX, size_t NY);


}  // namespace hafvt
