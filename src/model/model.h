// model.h: HAF-VT (SPEC §2-4): nine encoders (views X, Y, XY x modalities id, img, txt),
// cosine-softmax heads with learnable scales, the probability mixture, the loss and the score.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "math/adam.h"
#include "data/dataset.h"
#include "core/tensor.h"

namespace hafvt {

// The modalities: id (learned embeddings) and the frozen feature tables. A frozen modality is a
// name here; its feature file and alignment file are the settings keyed by that name and
// name + "_ids" (config.h), found by modality_file (config.h).
enum Modality : int { MOD_ID = 0, MOD_IMG = 1, MOD_TXT = 2 };
constexpr int kNumMods = 3;
inline constexpr const char* kModNames[kNumMods] = {"id", "img", "txt"};

struct ModelConfig {
    size_t NX = 0, NY = 0;         // items per domain (PAD = NX+NY)
    size_t T = 15;                 // max sequence length
    size_t q = 256;                // ID embedding width
    size_t e = 0;                  // frozen feature width (0 when no feature file)
    size_t n_blocks = 2, n_heads = 1;
    float dropout = 0.3f;
    bool views[3] = {true, true, true};  // X, Y, XY
    bool mods[kNumMods] = {true};        // enabled modalities (id, img, txt)
    float weight[kNumMods] = {1.0f};     // mixture weights alpha, beta, 1-alpha-beta (renormalized)
    float lambda1 = 1.0f, lambda2 = 1.0f;
    float lambda_h = 0.0f;               // weight of the per-head cross-entropy (SPEC §3.5; 0 = §3.1)
    size_t width(int m) const { return m == MOD_ID ? q : e; }
    size_t num_items() const { return NX + NY; }
    size_t num_mods() const {  // enabled modalities
        size_t n = 0;
        for (int m = 0; m < kNumMods; m++) n += mods[m];
        return n;
    }
    size_t num_frozen() const { return num_mods() - (mods[MOD_ID] ? 1 : 0); }  // enabled feature tables
    int32_t pad() const { return (int32_t)(NX + NY); }
};

// The frozen feature tables: [NX+NY+1, e], rows L2-normalized at load, PAD row zero.
struct FrozenTables {
    Buffer table[kNumMods];  // indexed by modality; table[MOD_ID] unused
    size_t e = 0;
};

// Loss terms of one step (SPEC §3.1): L = mean_X + lambda1 mean_Y + lambda2 mean_XY.
struct LossTerms {
    double total = 0.0;
    double view[3] = {0, 0, 0};   // mean loss of each view (0 when it had no positions)
    size_t count[3] = {0, 0, 0};  // supervised positions of each view
};

struct Backend;

// The parameters live in params() (host; their layout and named pointers in params.h). With a
// device backend (backend.h) the layers run on the backend's copies: to_device() uploads params
// (and the Adam moments), forward_backward, score and adam_step use the backend's copies, and
// to_host() brings params, grads (and moments) back for checkpoints and tests. With the host
// backend to_device / to_host do nothing.
class Model {
public:
    Model(const ModelConfig& cfg, const FrozenTables* frozen);
    Model(const ModelConfig& cfg, const FrozenTables* frozen, const Backend& backend);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    // Initialization of SPEC §3.3 from the seed (RNG_INIT stream per parameter).
    void init_params(uint64_t seed);

    // One training forward and backward on a train batch: returns the loss terms and leaves the
    // gradients (zeroed first) in grads(). Dropout masks come from (seed, step). With `norm` (three
    // counts) the batch is a slice of a larger one (train.cpp: micro-batches, MPI ranks): each
    // view's term is this slice's sum of row losses over norm[v], the whole batch's supervised
    // positions, in the loss and its gradient; the slices' terms and gradients then add up to
    // the whole batch's (SPEC §3.1).
    LossTerms forward_backward(const Batch& batch, uint64_t seed, uint64_t step, const uint64_t* norm = nullptr);
    // The supervised positions of each view of a train batch (the count each view's mean divides by).
    void count_supervised(const Batch& batch, uint64_t count[3]) const;

    // A batch's gradient from its slices, added in slice order (train.cpp). After each slice's
    // forward_backward but the last: keep_grads(first), kept = G for the first slice, kept + G for
    // the next ones; after the last: add_kept_grads(), G = kept + G. zero_grads() stands for the
    // forward_backward of a slice with no sequence. backend_grads() is the gradient table in the
    // backend's memory (grads() on the host backend), for the sum across ranks.
    void zero_grads();
    void keep_grads(bool first);
    // The ID warm-up (SPEC §3.5): while on, forward_backward trains the mixture of the id head
    // alone (the content heads' weights 0: no loss term, no gradient); score() keeps the configured
    // weights. Requires the id modality.
    void set_id_warmup(bool on);
    bool id_warmup() const { return id_warmup_; }
    void add_kept_grads();
    float* backend_grads();

    // Evaluation score (SPEC §4) of every candidate of the target's domain for each line of an
    // eval batch: scores (B, V_max), row b holds the NX or NY scores of line b's target domain
    // (domain[b] = 0 for X, 1 for Y). With domain_override >= 0 every line is scored against that
    // domain (recommend). No dropout.
    void score(const Batch& batch, std::vector<float>& scores, std::vector<int>& domain,
               int domain_override = -1);

    // While a ScoringScope lives, its owner promises that the parameters do not change (no step,
    // no load): score() then makes what depends on them alone once, at its first call, and reuses
    // it in the next (an evaluation's batches): E_id's normalized rows, and on the CPU each
    // (domain, modality) item table packed for the logits' products. The scope's end frees it.
    class ScoringScope {
    public:
        explicit ScoringScope(Model& m);
        ~ScoringScope();
        ScoringScope(const ScoringScope&) = delete;
        ScoringScope& operator=(const ScoringScope&) = delete;

    private:
        Model& m_;
    };

    // The parts of the scores of chosen items (recommend --explain; SPEC §4, Eq. 7 and 10), for the
    // lines of an eval batch scored against domain[b] (as score() returns it). In: parts.items[b],
    // the items (indices within line b's domain) to explain. Out:
    //   part (sum of the items' counts, 3, kNumMods): for each chosen item in line order, the term
    //     coef_v w_m softmax_{v,m}[item] of view v and modality m (coef_v as in score(): 1,
    //     lambda1, lambda2); 0 for a view or modality that is off, or a view with no item. The
    //     terms add up to the item's score (in another order of float additions).
    //   attention (B, kNumMods, T): the attention of the XY encoder's last position to each
    //     position t in its last block, the mean over heads, for each modality (zeros where the
    //     XY view or the modality is off, or the line has no item); the items at the positions are
    //     batch.view[VIEW_XY].ids.
    // Each head's own probabilities of every candidate (hafvt tune; SPEC §4's terms before their
    // weights): probs (B, 3, kNumMods, V_max), row (b, v, m) = softmax_{v,m} over the items of line
    // b's domain (as score() takes it: from the eval target), zeros where view v is off or empty
    // for line b, or modality m is off. score() is sum_{v,m} coef_v w_m probs[b, v, m].
    void head_probs(const Batch& batch, std::vector<float>& probs, std::vector<int>& domain);

    struct ScoreParts {
        std::vector<std::vector<int32_t>> items;
        std::vector<float> part, attention;
    };
    void explain(const Batch& batch, const std::vector<int>& domain, ScoreParts& parts);

    // The Adam moments m, v (tables laid out like params(), zeroed), owned by the model: made by
    // init_optimizer (training; a checkpoint may then fill them), absent otherwise (eval, recommend).
    void init_optimizer();
    bool has_optimizer() const { return adam_m_.size() != 0; }
    TensorTable& adam_m() { return adam_m_; }
    TensorTable& adam_v() { return adam_v_; }

    // Host <-> backend copies: params (and the moments) up; params, grads (and moments) down.
    void to_device();
    void to_host();
    // One Adam update (adam.h) of all parameters at step t, with the model's moments, on the
    // backend.
    void adam_step(const AdamConfig& cfg, long t);
    const Backend& backend() const;

    TensorTable& params() { return params_; }
    TensorTable& grads() { return grads_; }
    const ModelConfig& config() const { return cfg_; }
    // Bytes held by the model's activations and scratch for batches of B (for the memory estimate).
    static size_t estimate_bytes(const ModelConfig& cfg, size_t B, size_t max_rows_per_domain);
    // Bytes an evaluation batch of B lines needs: the activations of estimate_bytes, the (B, V)
    // scores with each view's logits and mixture blocks, and the packed candidate table.
    static size_t estimate_eval_bytes(const ModelConfig& cfg, size_t B);

    // Implementation details, defined in model.cpp.
    struct Encoder;
    struct Impl;

private:
    ModelConfig cfg_;
    bool id_warmup_ = false;
    const FrozenTables* frozen_;
    TensorTable params_, grads_, adam_m_, adam_v_;
    // Owned: a constructor that throws (a device allocation failing) frees what it allocated.
    // Impl is complete only in model.cpp, where the destructor is defined.
    std::unique_ptr<Impl> impl_;
};

}  // namespace hafvt
