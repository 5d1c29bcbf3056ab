// params.h: the model's parameters as named pointers (llm.c style), from ONE table.
//
// for_each_param lists every parameter of a configuration in table order, with its name (the
// checkpoint's tensor name), shape, initialization (SPEC §3.3) and the field of ModelParams that
// points at it. Everything that depends on the set of parameters is driven by it: the layout of
// the parameter table (and so of the gradient table, the Adam moments and their backend copies),
// bind_params (the pointers into any of those tables), init_params, count_params and the memory
// estimate. Adding a parameter is one line there and one field here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/model.h"

namespace hafvt {

// One pre-LN transformer block, d its encoder's width. Linear weights are (in, out): y = x W + b.
struct BlockParams {
    float* ln1_w = nullptr;  // (d)      LN1 gain
    float* ln1_b = nullptr;  // (d)      LN1 bias
    float* wqkv = nullptr;   // (d, 3d)  Q, K, V projections side by side
    float* bqkv = nullptr;   // (3d)
    float* wo = nullptr;     // (d, d)   attention output projection
    float* bo = nullptr;     // (d)
    float* ln2_w = nullptr;  // (d)      LN2 gain
    float* ln2_b = nullptr;  // (d)      LN2 bias
    float* w1 = nullptr;     // (d, d)   FFN
    float* b1 = nullptr;     // (d)
    float* w2 = nullptr;     // (d, d)
    float* b2 = nullptr;     // (d)
};

// One encoder (view v, modality m; SPEC §2.2) and its head's scale (§2.3).
struct EncoderParams {
    float* pos = nullptr;          // (T+1, d) positional table; row 0 (PAD positions) zero
    std::vector<BlockParams> blk;  // n_blocks
    float* lnf_w = nullptr;        // (d) final LayerNorm gain
    float* lnf_b = nullptr;        // (d) final LayerNorm bias
    float* log_scale = nullptr;    // (1) log s of the cosine head, s = clamp(exp, 1, 100)
};

struct ModelParams {
    float* E_id = nullptr;    // (NX+NY+1, q) ID embeddings; row PAD = NX+NY zero
    EncoderParams enc[3][kNumMods];  // [view][modality]; only the enabled ones are set
};

// How a parameter starts (SPEC §3.3): N(0, 0.02) from stream RNG_INIT of its table index, with
// one row held at zero (zero_row; none for the linear weights), ones, zeros, or log(10).
enum class ParamInit { NORMAL, ONES, ZEROS, LOG_TEN };

struct ParamSpec {
    std::string name;
    std::vector<size_t> shape;
    ParamInit init = ParamInit::ZEROS;
    long zero_row = -1;      // NORMAL: the row set to zero afterwards (-1: none)
    float** field = nullptr; // where bind_params points (null when listed without a ModelParams)
};

// Every parameter of `cfg` in table order: E_id (with the id modality), then per enabled view
// and modality (in that order) the encoder's pos, blocks, final LayerNorm and log scale. With `p`
// each spec's field points into it (p->enc[v][m].blk sized first).
std::vector<ParamSpec> param_specs(const ModelConfig& cfg, ModelParams* p = nullptr);

// A table laid out for cfg's parameters (allocated).
TensorTable make_param_table(const ModelConfig& cfg);
// The pointers of cfg's parameters in a table laid out by make_param_table whose data starts at
// `base` (the parameters, the gradients, or a backend's copy of either).
ModelParams bind_params(const ModelConfig& cfg, const TensorTable& layout, float* base);
// SPEC §3.3 from the seed into a table laid out by make_param_table.
void init_params(const ModelConfig& cfg, TensorTable& table, uint64_t seed);
// Floats of cfg's parameters (without padding, without allocating).
size_t count_params(const ModelConfig& cfg);

}  // namespace hafvt
