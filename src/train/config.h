// config.h: every setting of a run in one table (SPEC §3, §5). A row names the setting's flag of
// `hafvt train`, its member of TrainConfig (also its key in config.json), its kind, its accepted
// range or values, its help line, whether config.json and checkpoints store it, and whether a
// resumed run must keep it. The table drives the flags (parsing and --help), the JSON round trip,
// the range checks, the resume key, and the names of settings in messages: a value the user typed
// is named by its flag (--T), a value read back from a stored configuration by its key ('T').
// Adding a setting is one row of HAFVT_SETTINGS.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/flags.h"
#include "core/json.h"
#include "model/backend.h"
#include "model/model.h"

namespace hafvt {

// The settings table: one row per setting, X(flag, member, type, default, kind, lo, hi, open_lo,
// open_hi, range, choices, help, stored, resume): the flag of hafvt train (without "--"), the
// member of TrainConfig (also its key in config.json) with its type and default, the kind of its
// value, the accepted range [lo, hi] (open_lo / open_hi exclude a bound; lo > hi: none) and how it
// reads in a message, the accepted values of a string (comma-separated) or null, the help line,
// whether config.json and checkpoints store it, whether a resumed run must keep it.
#define HAFVT_SETTINGS(X) \
    /* data */ \
    X("data", data, std::string, "", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "dataset folder in the C2DSR format (required)", true, false) \
    X("train-file", train_file, std::string, "traindata_new.txt", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "training file inside --data (default traindata_new.txt)", true, false) \
    X("img", img, std::string, "", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "image features .npy [NX+NY, e] (enables the img modality)", true, false) \
    X("txt", txt, std::string, "", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "text features .npy [NX+NY, e] (enables the txt modality)", true, false) \
    X("img-ids", img_ids, std::string, "", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "alignment file of --img: one ASIN per row", true, false) \
    X("txt-ids", txt_ids, std::string, "", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "alignment file of --txt: one ASIN per row", true, false) \
    X("out", out, std::string, "runs/hafvt", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "run directory (default runs/hafvt)", true, false) \
    /* model */ \
    X("modalities", modalities, std::string, "", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "id|id,img|id,txt|id,img,txt (default: id + every feature file)", true, false) \
    X("views", views, std::string, "x,y,xy", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "x,y,xy (hierarchical, default) or xy (original framework)", true, true) \
    X("T", T, size_t, 15, SIZE, 1, 512, false, false, "1..512", nullptr, "max sequence length (default 15; at most 64 on a GPU)", true, true) \
    X("q", q, size_t, 256, SIZE, 1, 8192, false, false, "1..8192", nullptr, "ID embedding width (default 256)", true, true) \
    X("blocks", blocks, size_t, 2, SIZE, 1, 32, false, false, "1..32", nullptr, "transformer blocks per encoder (default 2)", true, true) \
    X("heads", heads, size_t, 1, SIZE, 1, kInf, false, false, "at least 1", nullptr, "attention heads (default 1)", true, true) \
    X("dropout", dropout, float, 0.3f, FLOAT, 0, 1, false, true, "0 <= p < 1", nullptr, "dropout rate (default 0.3)", true, true) \
    X("alpha", alpha, float, -1.0f, FLOAT, kNone, kNoneHi, false, false, nullptr, nullptr, "mixture weight of the id head (default 1/3)", true, false) \
    X("beta", beta, float, -1.0f, FLOAT, kNone, kNoneHi, false, false, nullptr, nullptr, "mixture weight of the img head (default 1/3); txt gets 1-alpha-beta", true, false) \
    X("lambda1", lambda1, float, 1.0f, FLOAT, 0, kInf, false, false, ">= 0", nullptr, "weight of the Y term / other-domain view (default 1)", true, true) \
    X("lambda2", lambda2, float, 1.0f, FLOAT, 0, kInf, false, false, ">= 0", nullptr, "weight of the XY term (default 1)", true, true) \
    X("lambda-h", lambda_h, float, 0.0f, FLOAT, 0, kInf, false, false, ">= 0", nullptr, "weight of the per-head cross-entropy added to the mixture's (default 0: the paper's objective)", true, true) \
    X("id-warmup", id_warmup, size_t, 0, SIZE, 0, 100000, false, false, "0..100000", nullptr, "train the first N epochs on the id head alone (default 0)", true, true) \
    /* optimization */ \
    X("lr", lr, float, 1e-3f, FLOAT, 0, 10, true, true, "0 < lr < 10", nullptr, "Adam learning rate (default 1e-3)", true, true) \
    X("l2", l2, float, 1e-5f, FLOAT, 0, 1, false, true, "0 <= l2 < 1", nullptr, "coupled L2 (Adam weight_decay, default 1e-5)", true, true) \
    X("batch", batch, size_t, 256, SIZE, 1, 65536, false, false, "1..65536", nullptr, "sequences per batch (default 256)", true, true) \
    X("epochs", epochs, size_t, 100, SIZE, 1, 100000, false, false, "1..100000", nullptr, "max epochs (default 100)", true, false) \
    X("patience", patience, size_t, 10, SIZE, 1, kInf, false, false, "at least 1", nullptr, "early stopping: evaluations without improvement (default 10)", true, false) \
    X("eval-every", eval_every, size_t, 1, SIZE, 1, kInf, false, false, "at least 1", nullptr, "validate every N epochs (default 1)", true, false) \
    X("loss-window", loss_window, int, 0, INT, 0, 1 << 20, false, false, "0 (every position) or a positive count", nullptr, "supervise only the last K positions of each view (default all)", true, true) \
    X("seed", seed, uint64_t, 2040, U64, kNone, kNoneHi, false, false, nullptr, nullptr, "seed of every random draw (default 2040)", true, true) \
    /* evaluation */ \
    X("protocol", protocol, std::string, "full", STR, kNone, kNoneHi, false, false, nullptr, "full,c2dsr", "protocol that selects the best epoch: full (default) or c2dsr", true, false) \
    X("exclude-history", exclude_history, bool, false, BOOL, kNone, kNoneHi, false, false, nullptr, nullptr, "full protocol: do not rank the input items", true, false) \
    X("eval-batch", eval_batch, size_t, 64, SIZE, 1, 65536, false, false, "1..65536", nullptr, "lines per evaluation batch (default 64)", true, false) \
    X("tail-max", tail_max, size_t, 5, SIZE, kNone, kNoneHi, false, false, nullptr, nullptr, "targets seen at most this often in training count as tail (default 5)", true, false) \
    /* running */ \
    X("resume", resume, bool, false, BOOL, kNone, kNoneHi, false, false, nullptr, nullptr, "continue the run in --out from its last checkpoint", false, false) \
    X("micro-batches", micro_batches, size_t, 1, SIZE, 1, 65536, false, false, "1..65536", nullptr, "split each batch into K slices whose gradients add up (less memory; with N MPI ranks each rank takes K, default 1)", false, false) \
    X("threads", threads, int, 0, INT, 0, kMaxThreads, false, false, "0..1024 (0 = every core)", nullptr, "CPU threads (default: all)", false, false) \
    X("log-every", log_every, size_t, 0, SIZE, kNone, kNoneHi, false, false, nullptr, nullptr, "progress line every N steps (default: ten per epoch)", false, false) \
    X("max-steps", max_steps, size_t, 0, SIZE, kNone, kNoneHi, false, false, nullptr, nullptr, "stop after N optimizer steps (benchmarks)", false, false) \
    X("tune", tune, bool, false, BOOL, kNone, kNoneHi, false, false, nullptr, nullptr, "after training, hafvt tune on the best checkpoint: the mixture and score weights chosen on valid, the test split scored with them too", false, false) \
    X("skip-test", skip_test, bool, false, BOOL, kNone, kNoneHi, false, false, nullptr, nullptr, "do not evaluate the test split at the end", false, false) \
    X("device", device, std::string, "auto", STR, kNone, kNoneHi, false, false, nullptr, nullptr, "cpu, cuda or auto (default: CUDA when a device answers)", false, false) \
    X("tf32", tf32, bool, false, BOOL, kNone, kNoneHi, false, false, nullptr, nullptr, "CUDA only: TF32 tensor cores for the matmuls (default FP32)", false, false)

namespace setting_range {
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNone = 1, kNoneHi = 0;  // lo > hi: no range
constexpr int kMaxThreads = 1024;
}  // namespace setting_range

struct TrainConfig {
#define HAFVT_SETTING_MEMBER(flag, member, type, def, ...) type member = def;
    HAFVT_SETTINGS(HAFVT_SETTING_MEMBER)
#undef HAFVT_SETTING_MEMBER
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

// The names of the settings that choose the device (backend.h), for its messages.
DeviceSettingNames device_setting_names(Source src);

// The flags of hafvt train, from the table.
std::vector<Flag> train_flags(TrainConfig& c);

// The stored settings as JSON, and back (InputError naming `what` and the key on a wrong type or
// a number outside its setting's type).
Json config_to_json(const TrainConfig& c);
TrainConfig config_from_json(const Json& j, const std::string& what);

// `hafvt train --config F.json`: the settings of a JSON object into c. Its keys are the keys of the
// table (any row) and, in a run's own config.json, the values run_train derives and stores beside
// them (ignored: a run recomputes them). An unknown key or a value of the wrong type is refused
// naming the file and the key.
void apply_config_file(const std::string& path, TrainConfig& c);

// Checks every value against its row and the combinations of settings; InputError naming the
// settings as `src` names them otherwise.
void validate_config(const TrainConfig& c, Source src = Source::FLAGS);

// The values a resumed run must share with the run it continues: the resume rows of the table
// and the derived values run_train stores beside them (data fingerprint, resolved modalities,
// mixture weights, feature width), as one string.
std::string resume_key(const Json& cfg);

// The feature file of frozen modality m (`ids` false: the setting keyed kModNames[m], e.g. img) or
// its alignment file (`ids` true: the setting keyed kModNames[m] + "_ids").
std::string& modality_file(TrainConfig& c, int m, bool ids);
const std::string& modality_file(const TrainConfig& c, int m, bool ids);

// The model's configuration from the settings, resolved once (SPEC §2.4): the views, the
// modalities, the mixture weights (alpha, beta, 1 - alpha - beta; a disabled or zero-weight
// modality is left out and the others renormalized to sum to 1), the sizes and the loss weights.
// NX, NY come from the catalog; the feature width e is left 0 for load_world to set from the files.
ModelConfig resolve_model_config(const TrainConfig& c, size_t NX, size_t NY);


}  // namespace hafvt
