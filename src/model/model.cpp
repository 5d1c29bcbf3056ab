// model.cpp: HAF-VT as one readable sequence of layer calls (SPEC §2-4, paper Eq. 1-11).
//
// A step: encode every (view, modality) sequence (Eq. 1), gather the supervised positions,
// score them against the items of their target's domain with cosine heads (Eq. 2, 4-6), mix the
// modalities' probabilities (Eq. 7), take -log of the target's probability (Eq. 8-9), and run all
// of it backwards. Padded positions never reach the heads: only supervised rows are gathered
// before the item-scoring matmuls.
//
// Every layer call goes through a Backend (backend.h): the host backend runs the CPU ops on host
// memory; a device backend runs its ops on its own copies of the parameters and activations. The
// code is the same on both, heads included: the supervised rows are gathered by index, scored by
// the fused chunked head (which never holds the (R,V) logits of all items at once) and scattered
// back. What `device` decides is only where the parameters live (to_device, to_host, adam_step).
#include "model/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "model/backend.h"
#include "core/common.h"
#include "math/gemm_cpu.h"
#include "math/heads.h"
#include "math/ops_cpu.h"
#include "model/params.h"

namespace hafvt {

using Arr = BackendArray<float>;

// One pre-LN transformer block's activations, each (Nv, d) (the view's valid rows) unless noted.
// Kept for the backward: what it cannot recompute in one cheap pass. Not kept: LN1(x), LN2(res1)
// and gelu(fc1) (the backward recomputes them from the kept inputs and row statistics, bitwise the
// same values) and dropout(atty Wo + bo), dropout(W2 gelu + b2) (not read by the backward); the
// forward writes those into the scratch all encoders share.
struct BlockActs {
    Arr ln1_mean, ln1_rstd;          // LN1's row statistics (Nv)
    Arr qkv;                         // LN1(x) Wqkv + bqkv (Nv, 3d)
    Arr att;                         // (B, NH, T, T) softmax probabilities
    Arr atty;                        // attention output before the projection
    Arr res1;                        // x + dropout(atty Wo + bo)
    Arr ln2_mean, ln2_rstd;
    Arr fc1;                         // W1 LN2(res1) + b1
};

// One of the nine encoders (view v, modality m) with its activations for the current batch.
struct Model::Encoder {
    int v = 0, m = 0, index = 0;  // index: 0..8, used for the dropout sites
    size_t d = 0;
    std::vector<Arr> xs;          // xs[0] = embedded input, xs[b+1] = output of block b, (Nv, d)
    std::vector<BlockActs> blocks;
    Arr H, lnf_mean, lnf_rstd;    // H = LN_final(x) (Nv, d)
    Arr dH;                       // gradient of H from the heads (Nv, d)
    size_t B = 0;

    // The dropout site of layer `k` of this encoder: sites never repeat within a step.
    uint64_t site(size_t k) const { return (uint64_t)index * 64 + k; }
};

// Many small host arrays copied to a backend in ONE copy (the inputs of a training step or of a
// score() call: on a device each tiny copy costs a synchronization). add() appends an array to a
// host buffer at a 64-byte aligned offset and returns that offset; upload() copies the whole
// buffer; at<T>(offset) is where the array then lies on the backend (whose allocations are at
// least 64-byte aligned).
struct Staging {
    std::vector<uint8_t> host;
    BackendArray<uint8_t> dev;
    void clear() { host.clear(); }
    template <typename T>
    size_t add(const T* p, size_t n) {
        const size_t off = (host.size() + 63) & ~(size_t)63;
        host.resize(off + n * sizeof(T));
        if (n) std::memcpy(host.data() + off, p, n * sizeof(T));
        return off;
    }
    void upload(const Backend& K) { dev.upload(K, host.data(), host.size()); }
    template <typename T>
    T* at(size_t off) {
        return reinterpret_cast<T*>(dev.data() + off);
    }
};

// One view's inputs: valid (B*T, 1 where a position holds an item); the view's valid rows, the
// nv positions b*T + t that hold an item in increasing order (`rows`), with their items and
// position ids (`ids`, `pos`, nv each: the encoders compute these rows only) and `slot`, the valid
// row of each position (-1 at PAD); for evaluation also the valid rows of the sequences' last
// positions (0 for a line whose view is empty) and their valid flags. The host vectors are staged
// (Impl::stage, at the offsets *_at); the pointers are their copies on the backend.
struct ViewInputs {
    size_t nv = 0;
    std::vector<uint8_t> valid, last_valid;
    std::vector<int32_t> rows, ids, pos, slot, last;
    size_t rows_at = 0, ids_at = 0, pos_at = 0, valid_at = 0, slot_at = 0, last_at = 0, last_valid_at = 0;
    const int32_t* rows_p = nullptr;
    const int32_t* ids_p = nullptr;
    const int32_t* pos_p = nullptr;
    const uint8_t* valid_p = nullptr;
    const int32_t* slot_p = nullptr;
    const int32_t* last_p = nullptr;
    const uint8_t* last_valid_p = nullptr;
};

struct Model::Impl {
    const Backend* be = nullptr;
    std::vector<Encoder> enc;     // enabled encoders, in (view, modality) order
    int enc_of[3][kNumMods];      // index into enc, -1 if disabled
    std::vector<int> mods;        // enabled modalities
    float logw[kNumMods] = {};    // log mixture weights of the enabled modalities, by modality
    ViewInputs in[3];
    std::vector<int32_t> rows[3][2];  // forward_backward: the supervised b*T + t per view and target domain
    // the encoders' scratch (N = B T rows): dx, s1, s2 (N, d_max) for the backward, s3 (N, 6 d_max)
    // for the forward and the backward
    Arr dx, s1, s2, s3;
    // normalized E_id rows (NX+NY, q) with norms, and their gradient
    Arr en_id, en_id_norm, den_id;
    // on a device backend: parameters, gradients, Adam moments and frozen tables in its memory
    Arr P, G, Am, Av, fz[kNumMods];
    // the gradient of the slices of a batch so far (keep_grads)
    Arr kept;
    // the parameters and their gradients where the layers read them (the host tables, or P and G
    // on a device backend, bound by to_device)
    ModelParams w, dw;
    // the log mixture weights of the enabled modalities in order (and those of the ID warm-up:
    // 0 for id, -inf for the others), and the heads' scratch
    Arr logw_b, logw_warm_b;
    Arr hg_b[kNumMods], hn_b[kNumMods], hnorm_b[kNumMods], dhn_b[kNumMods], dhg_b[kNumMods], logits_b[kNumMods], loss_b, ds_b, acc_b, out_b;
    // score(): the normalized head rows of every view against one domain, stacked by view, and
    // their logits, by modality
    Arr hns_b[kNumMods], logs_b[kNumMods];
    // inside a ScoringScope: the parameters do not change, so E_id's normalized rows (en_id) are
    // computed once (en_id_ready) and the CPU keeps the packed item tables (table slots)
    bool scoring = false, en_id_ready = false;
    // the inputs of a step or a score() call, copied to the backend in one copy
    Staging stage;
    // the log scales, read in one copy per step: their offsets from the first one in the parameter
    // table (staged with the inputs at scale_at), gathered into scales_b, their values on the host
    // by (view, modality), and the slot of each (view, modality) in that list
    std::vector<int32_t> scale_off;
    size_t scale_at = 0, scale_base = 0;
    int scale_slot[3][kNumMods];
    Arr scales_b;
    std::vector<float> scales;
    // host copies: the row losses of a step, the staged targets and loss weights, the scores
    std::vector<float> loss, dloss, acc;
    std::vector<int32_t> y, vrows;
};

Model::Model(const ModelConfig& cfg, const FrozenTables* frozen) : Model(cfg, frozen, host_backend()) {}

Model::Model(const ModelConfig& cfg, const FrozenTables* frozen, const Backend& backend)
    : cfg_(cfg), frozen_(frozen), impl_(std::make_unique<Impl>()) {
    impl_->be = &backend;
    HAFVT_CHECK(cfg.num_mods() > 0, "no modality enabled");
    HAFVT_CHECK(cfg.num_frozen() == 0 || (frozen && cfg.e > 0), "feature tables missing");
    Impl& I = *impl_;
    std::memset(I.enc_of, -1, sizeof I.enc_of);
    for (int m = 0; m < kNumMods; m++) {
        if (!cfg.mods[m]) continue;
        I.mods.push_back(m);
        I.logw[m] = std::log(cfg.weight[m]);
    }
    // The parameters (params.h) and one encoder per enabled (view, modality), in table order.
    params_ = make_param_table(cfg);
    grads_ = params_.like();
    for (int v = 0; v < 3; v++) {
        if (!cfg.views[v]) continue;
        for (int m : I.mods) {
            Encoder e;
            e.v = v;
            e.m = m;
            e.d = cfg.width(m);
            e.index = v * 3 + m;
            I.enc_of[v][m] = (int)I.enc.size();
            I.enc.push_back(std::move(e));
        }
    }
    const ModelParams host = bind_params(cfg, params_, params_.data());
    if (!backend.device) I.w = host, I.dw = bind_params(cfg, grads_, grads_.data());
    // the log mixture weights of the enabled modalities, in order, on the backend, and the frozen
    // tables on a device backend (the host backend reads the caller's)
    std::vector<float> lw;
    for (int m : I.mods) lw.push_back(I.logw[m]);
    I.logw_b.upload(backend, lw.data(), lw.size());
    for (size_t k = 0; k < I.mods.size(); k++) lw[k] = I.mods[k] == MOD_ID ? 0.0f : -INFINITY;
    I.logw_warm_b.upload(backend, lw.data(), lw.size());
    if (backend.device)
        for (int m : I.mods)
            if (m != MOD_ID) I.fz[m].upload(backend, frozen->table[m].data(), frozen->table[m].size());
    // the log scales' offsets from the first one, in (view, modality) order (forward_backward and
    // score gather them to read them in one copy)
    std::memset(I.scale_slot, -1, sizeof I.scale_slot);
    for (const Encoder& e : I.enc) {
        const size_t at = (size_t)(host.enc[e.v][e.m].log_scale - params_.data());
        if (I.scale_off.empty()) I.scale_base = at;
        HAFVT_CHECK(at - I.scale_base <= (size_t)INT32_MAX, "log scale offset ", at - I.scale_base, " beyond int32");
        I.scale_slot[e.v][e.m] = (int)I.scale_off.size();
        I.scale_off.push_back((int32_t)(at - I.scale_base));
    }
}

Model::~Model() = default;

void Model::set_id_warmup(bool on) {
    HAFVT_CHECK(!on || cfg_.mods[MOD_ID], "the ID warm-up needs the id modality");
    id_warmup_ = on;
}

const Backend& Model::backend() const { return *impl_->be; }

void Model::init_optimizer() {
    adam_m_ = params_.like();
    adam_v_ = params_.like();
}

void Model::to_device() {
    Impl& I = *impl_;
    if (!I.be->device) return;
    I.P.upload(*I.be, params_.data(), params_.size());
    I.G.resize(*I.be, grads_.size());
    I.w = bind_params(cfg_, params_, I.P.data());
    I.dw = bind_params(cfg_, grads_, I.G.data());
    if (has_optimizer()) {
        I.Am.upload(*I.be, adam_m_.data(), adam_m_.size());
        I.Av.upload(*I.be, adam_v_.data(), adam_v_.size());
    }
}

void Model::to_host() {
    Impl& I = *impl_;
    if (!I.be->device) return;
    I.P.download(params_.data(), params_.size());
    I.G.download(grads_.data(), grads_.size());
    if (has_optimizer() && I.Am.size() == adam_m_.size()) {
        I.Am.download(adam_m_.data(), adam_m_.size());
        I.Av.download(adam_v_.data(), adam_v_.size());
    }
}

void Model::adam_step(const AdamConfig& cfg, long t) {
    Impl& I = *impl_;
    HAFVT_CHECK(has_optimizer(), "Model::adam_step before init_optimizer()");
    HAFVT_CHECK(!I.scoring, "an Adam step inside a ScoringScope (it holds the parameters as they were)");
    if (!I.be->device) {
        adam_update(params_.data(), adam_m_.data(), adam_v_.data(), grads_.data(), params_.size(), cfg, t);
        return;
    }
    HAFVT_CHECK(I.P.size() == params_.size(), "Model on a device: to_device() was not called");
    if (I.Am.size() != adam_m_.size()) {  // init_optimizer after to_device: the moments go up now
        I.Am.upload(*I.be, adam_m_.data(), adam_m_.size());
        I.Av.upload(*I.be, adam_v_.data(), adam_v_.size());
    }
    I.be->adam_update(I.P.data(), I.Am.data(), I.Av.data(), I.G.data(), params_.size(), cfg, t);
}

void Model::init_params(uint64_t seed) { hafvt::init_params(cfg_, params_, seed); }

// Sizes one encoder's activations for a batch of B sequences whose view has Nv valid rows: rows
// arrays of max(Nv, B) rows (an evaluation's last block carries B rows), the attention
// probabilities (B, NH, T, T). The buffers only grow: a batch with fewer rows reuses them instead
// of reallocating. Every forward op writes all of its output, so reused memory is never read stale.
static void ensure_acts(Model::Encoder& e, const ModelConfig& cfg, const Backend& K, size_t B, size_t Nv) {
    const size_t N = std::max(Nv, B), d = e.d, NH = cfg.n_heads, T = cfg.T;
    e.B = B;
    e.xs.resize(cfg.n_blocks + 1);
    for (auto& x : e.xs) x.reserve(K, N * d);
    e.blocks.resize(cfg.n_blocks);
    for (auto& a : e.blocks) {
        a.ln1_mean.reserve(K, N); a.ln1_rstd.reserve(K, N);
        a.qkv.reserve(K, N * 3 * d);
        a.att.reserve(K, B * NH * T * T);
        a.atty.reserve(K, N * d); a.res1.reserve(K, N * d);
        a.ln2_mean.reserve(K, N); a.ln2_rstd.reserve(K, N);
        a.fc1.reserve(K, N * d);
    }
    e.H.reserve(K, N * d); e.lnf_mean.reserve(K, N); e.lnf_rstd.reserve(K, N);
    e.dH.reserve(K, N * d);
}

// The (B T, C) padded layout of the Nv valid rows `src` (rows[r] is the position of row r): the
// valid rows in place; the PAD rows are left as they are, since the attention (forward and
// backward, CPU and CUDA) never reads a PAD position's q, k, v or output gradient. The
// attention's inputs and output gradient go through it.
static void to_padded(const Backend& K, float* padded, const float* src, const int32_t* rows, size_t Nv, size_t C) {
    K.scatter_rows(padded, src, rows, Nv, C);
}

// Eq. 1: H = Attention(F) for one view and modality, computed on the view's VALID ROWS only: the
// Nv positions of the batch that hold an item, in (b, t) order (ViewInputs::rows). A PAD position
// is zero after every block and its query outputs zero, its key is masked, and no head reads its
// H, so every op skips it: the row-wise ones (embedding, layer norms, projections, FFN,
// residuals) run on the valid rows, and the attention reads and writes them through each
// position's slot (ViewInputs::slot) on the (B, T) grid of the mask. `in` holds the view's inputs
// on the backend; W the encoder's parameters (host or backend); `train` turns dropout on (masks
// from seed, step, over the valid rows' elements); `scratch` holds 3 (N, d) blocks (N = B T) that
// no one reads after the call.
// With `last_only` (evaluation, no dropout) the last block computes its attention over every
// position, then only the B rows of the last positions go on: e.H holds (B, d).
// Rows of e.xs, the block activations, e.H and e.dH are valid rows (row r is position rows[r]).
static void encoder_forward(Model::Encoder& e, const ModelConfig& cfg, const Backend& K,
                            const EncoderParams& W, const float* table,
                            const ViewInputs& in, size_t B, bool train, uint64_t seed, uint64_t step,
                            float* scratch, bool last_only = false) {
    HAFVT_CHECK(!last_only || !train, "the last-position pass is for evaluation (no dropout)");
    ensure_acts(e, cfg, K, B, in.nv);
    const size_t T = cfg.T, N = B * T, Nv = in.nv, d = e.d, NH = cfg.n_heads;
    const float p = train ? cfg.dropout : 0.0f;
    const int32_t pad = cfg.pad();
    const uint8_t* valid = in.valid_p;

    // x_t = E_m[s_t] * sqrt(d) + P[pos_t];  x = dropout(x)  (valid rows: no PAD to zero)
    float* x0 = e.xs[0].data();
    K.embedding_forward(x0, in.ids_p, table, std::sqrt((float)d), pad, Nv, d);
    K.posadd_forward(x0, in.pos_p, W.pos, Nv, d);
    K.dropout_forward(x0, x0, Nv * d, p, seed, step, e.site(0));
    // the scratch: s0 LN1(x), then dropout(atty Wo + bo), LN2(res1) and dropout(fc2); s1
    // gelu(fc1); in the last block of a last_only pass s1 the LN1 rows of the last positions, s2
    // their queries, then their x
    float* const s0 = scratch;
    float* const s1 = scratch + N * d;
    float* const s2 = scratch + 2 * N * d;
    for (size_t b = 0; b < cfg.n_blocks; b++) {
        BlockActs& a = e.blocks[b];
        const BlockParams& k = W.blk[b];
        const float* x = e.xs[b].data();
        // The block on R rows: the Nv valid rows, or, in the last block of a last_only pass, the B
        // rows of the last positions (the others are never scored): there the keys and values of
        // every valid row, the queries of the last positions only.
        const bool gathered = last_only && b + 1 == cfg.n_blocks;
        const size_t R = gathered ? B : Nv;
        // x = x + dropout(MHA(LN1(x))): the attention reads the valid rows of qkv and writes those of
        // its output, atty, through the positions' slots (gathered: the B rows of its last queries)
        K.layernorm_forward(s0, a.ln1_mean.data(), a.ln1_rstd.data(), x, k.ln1_w, k.ln1_b, Nv, d);
        const float* xin = x;
        if (!gathered) {
            K.linear_forward(a.qkv.data(), s0, k.wqkv, k.bqkv, Nv, d, 3 * d);
            K.attention_forward(a.atty.data(), a.att.data(), a.qkv.data(), in.slot_p, valid, B, T, d, NH, p, seed,
                                step, e.site(1 + 3 * b));
        } else {
            // the keys and values of every valid row (their q columns are not written or read)
            K.linear_forward_cols(a.qkv.data() + d, 3 * d, s0, k.wqkv + d, 3 * d, k.bqkv + d, Nv, d, 2 * d);
            K.gather_rows(s1, s0, in.last_p, B, d);
            K.linear_forward_cols(s2, d, s1, k.wqkv, 3 * d, k.bqkv, B, d, d);
            K.attention_last_forward(a.atty.data(), a.att.data(), s2, a.qkv.data(), in.slot_p, valid, B, T, d, NH);
            K.gather_rows(s2, x, in.last_p, B, d);
            xin = s2;
        }
        const float* atty = a.atty.data();
        K.linear_forward(s0, atty, k.wo, k.bo, R, d, d);
        K.dropout_forward(s0, s0, R * d, p, seed, step, e.site(2 + 3 * b));
        K.residual_forward(a.res1.data(), xin, s0, R * d);
        // x = x + dropout(W2 gelu(W1 LN2(x) + b1) + b2)
        K.layernorm_forward(s0, a.ln2_mean.data(), a.ln2_rstd.data(), a.res1.data(), k.ln2_w, k.ln2_b, R, d);
        K.linear_forward(a.fc1.data(), s0, k.w1, k.b1, R, d, d);
        K.gelu_forward(s1, a.fc1.data(), R * d);
        K.linear_forward(s0, s1, k.w2, k.b2, R, d, d);
        K.dropout_forward(s0, s0, R * d, p, seed, step, e.site(3 + 3 * b));
        K.residual_forward(e.xs[b + 1].data(), a.res1.data(), s0, R * d);
        // the last position of a line whose view is empty (gathered from row 0): zero, as a PAD
        if (gathered) K.padmask_forward(e.xs[b + 1].data(), in.last_valid_p, R, d);
    }
    // H = LN_final(x), over the rows the last block produced
    K.layernorm_forward(e.H.data(), e.lnf_mean.data(), e.lnf_rstd.data(), e.xs[cfg.n_blocks].data(),
                        W.lnf_w, W.lnf_b, last_only ? B : Nv, d);
}

// The backward of encoder_forward from e.dH (valid rows); accumulates into the encoder's
// parameter gradients (dW) and, for the id modality, into dE_id (dtable). dx, s1, s2 (N, d) and
// s3 (N, 6d) are scratch on the backend (N = B T).
static void encoder_backward(Model::Encoder& e, const ModelConfig& cfg, const Backend& K,
                             const EncoderParams& W, const EncoderParams& dW, float* dtable,
                             const ViewInputs& in, uint64_t seed, uint64_t step, float* dx, float* s1,
                             float* s2, float* s3) {
    const size_t B = e.B, T = cfg.T, N = B * T, Nv = in.nv, d = e.d, NH = cfg.n_heads, Nd = Nv * d;
    const float p = cfg.dropout;
    const int32_t pad = cfg.pad();
    const uint8_t* valid = in.valid_p;
    auto zero = [&](float* b, size_t n) { K.zero(b, n * sizeof(float)); };

    // H = LN_final(x)
    zero(dx, Nd);
    K.layernorm_backward(dx, dW.lnf_w, dW.lnf_b, e.dH.data(), e.xs[cfg.n_blocks].data(), W.lnf_w,
                         e.lnf_mean.data(), e.lnf_rstd.data(), Nv, d);
    for (size_t b = cfg.n_blocks; b-- > 0;) {
        BlockActs& a = e.blocks[b];
        const BlockParams& k = W.blk[b];
        const BlockParams& dk = dW.blk[b];
        // x_out = res1 + dropout(fc2)
        zero(s1, Nd);
        K.dropout_backward(s1, dx, Nd, p, seed, step, e.site(3 + 3 * b));
        // fc2 = gelu W2 + b2;  gelu = gelu(fc1);  fc1 = ln2 W1 + b1 (gelu and ln2 recomputed into s3,
        // the same values as the forward's: the same op on the same inputs)
        zero(s2, Nd);
        K.gelu_forward(s3, a.fc1.data(), Nd);
        K.linear_backward(s2, dk.w2, dk.b2, s1, s3, k.w2, Nv, d, d);
        zero(s1, Nd);
        K.gelu_backward(s1, s2, a.fc1.data(), Nd);
        zero(s2, Nd);
        K.layernorm_forward(s3, a.ln2_mean.data(), a.ln2_rstd.data(), a.res1.data(), k.ln2_w, k.ln2_b, Nv, d);
        K.linear_backward(s2, dk.w1, dk.b1, s1, s3, k.w1, Nv, d, d);
        // ln2 = LN2(res1): dres1 = dx (residual path) + LN2 backward
        K.layernorm_backward(dx, dk.ln2_w, dk.ln2_b, s2, a.res1.data(), k.ln2_w,
                             a.ln2_mean.data(), a.ln2_rstd.data(), Nv, d);
        // res1 = x + dropout(atty Wo + bo)
        zero(s1, Nd);
        K.dropout_backward(s1, dx, Nd, p, seed, step, e.site(2 + 3 * b));
        zero(s2, Nd);
        K.linear_backward(s2, dk.wo, dk.bo, s1, a.atty.data(), k.wo, Nv, d, d);
        // atty = valid rows of attention(qkv): datty scattered to (B, T, d) in s1, qkv to
        // (B, T, 3d) in the second half of s3, dqkv (B, T, 3d) in its first half, whose valid
        // rows are gathered into qkv (read for the last time by the scatter)
        float* const qkv_p = s3 + 3 * N * d;
        to_padded(K, s1, s2, in.rows_p, Nv, d);
        to_padded(K, qkv_p, a.qkv.data(), in.rows_p, Nv, 3 * d);
        zero(s3, 3 * N * d);
        K.attention_backward(s3, s1, qkv_p, a.att.data(), valid, B, T, d, NH, p, seed, step, e.site(1 + 3 * b));
        K.gather_rows(a.qkv.data(), s3, in.rows_p, Nv, 3 * d);
        // qkv = ln1 Wqkv + bqkv;  ln1 = LN1(x), recomputed into s2
        K.layernorm_forward(s2, a.ln1_mean.data(), a.ln1_rstd.data(), e.xs[b].data(), k.ln1_w, k.ln1_b, Nv, d);
        zero(s1, Nd);
        K.linear_backward(s1, dk.wqkv, dk.bqkv, a.qkv.data(), s2, k.wqkv, Nv, d, 3 * d);
        // ln1 = LN1(x): dx = dres1 (residual path) + LN1 backward
        K.layernorm_backward(dx, dk.ln1_w, dk.ln1_b, s1, e.xs[b].data(), k.ln1_w,
                             a.ln1_mean.data(), a.ln1_rstd.data(), Nv, d);
    }
    // x0 = dropout(E[s] sqrt(d) + P[pos])
    zero(s1, Nd);
    K.dropout_backward(s1, dx, Nd, p, seed, step, e.site(0));
    K.posadd_backward(dW.pos, s1, in.pos_p, Nv, d);
    if (dtable) K.embedding_backward(dtable, s1, in.ids_p, std::sqrt((float)d), pad, Nv, d);
}

}  // namespace hafvt

namespace hafvt {

// The frozen table of img/txt modality m on the backend (normalized at load), and the item table
// of modality m that the heads score, rows of domain D start at `offset`: for the id modality the
// normalized copy of E_id (made once per step), for img/txt the frozen table.
static const float* frozen_table(const Model::Impl& I, const FrozenTables* fz, int m) {
    return I.be->device ? I.fz[m].data() : fz->table[m].data();
}
static const float* candidate_table(const Model::Impl& I, const FrozenTables* fz, int m) {
    return m == MOD_ID ? I.en_id.data() : frozen_table(I, fz, m);
}

// One view's items, positions and valid mask, and for evaluation the rows of the last positions and
// their valid flags, added to `st` (bind_view then points at the backend's copies).
static void load_view(ViewInputs& in, Staging& st, const ViewBatch& vb, size_t B, size_t T, int32_t pad,
                      bool eval) {
    const size_t N = B * T;
    in.valid.resize(N);
    in.slot.resize(N);
    in.rows.clear(), in.ids.clear(), in.pos.clear();
    for (size_t n = 0; n < N; n++) {
        in.valid[n] = vb.ids[n] != pad;
        in.slot[n] = in.valid[n] ? (int32_t)in.rows.size() : -1;
        if (!in.valid[n]) continue;
        in.rows.push_back((int32_t)n);
        in.ids.push_back(vb.ids[n]);
        in.pos.push_back(vb.pos[n]);
    }
    in.nv = in.rows.size();
    in.last.resize(eval ? B : 0);
    in.last_valid.resize(eval ? B : 0);
    for (size_t b = 0; b < in.last.size(); b++) {
        const size_t n = b * T + T - 1;  // left padding: the last item sits at T-1
        in.last_valid[b] = in.valid[n];
        in.last[b] = in.valid[n] ? in.slot[n] : 0;
    }
    in.rows_at = st.add(in.rows.data(), in.nv);
    in.ids_at = st.add(in.ids.data(), in.nv);
    in.pos_at = st.add(in.pos.data(), in.nv);
    in.valid_at = st.add(in.valid.data(), N);
    in.slot_at = st.add(in.slot.data(), N);
    in.last_at = st.add(in.last.data(), in.last.size());
    in.last_valid_at = st.add(in.last_valid.data(), in.last_valid.size());
}

static void bind_view(ViewInputs& in, Staging& st) {
    in.rows_p = st.at<int32_t>(in.rows_at);
    in.ids_p = st.at<int32_t>(in.ids_at);
    in.pos_p = st.at<int32_t>(in.pos_at);
    in.valid_p = st.at<uint8_t>(in.valid_at);
    in.slot_p = st.at<int32_t>(in.slot_at);
    in.last_p = st.at<int32_t>(in.last_at);
    in.last_valid_p = st.at<uint8_t>(in.last_valid_at);
}

// The inputs of every enabled view, staged (Impl::stage, cleared first) for upload_inputs, with the
// caller adding its own arrays in between.
static void load_inputs(Model::Impl& I, const ModelConfig& c, const Batch& batch, bool eval) {
    HAFVT_CHECK(batch.T == c.T, "batch T ", batch.T, " vs model T ", c.T);
    I.stage.clear();
    for (int v = 0; v < 3; v++)
        if (c.views[v]) load_view(I.in[v], I.stage, batch.view[v], batch.B, c.T, c.pad(), eval);
    I.scale_at = I.stage.add(I.scale_off.data(), I.scale_off.size());
}

// Copies everything staged to the backend (the one host-to-backend copy of a step or a score()
// call), points the views at it, and reads every log scale in one copy (a gather of the
// parameter table's scattered log scales, then one download).
static void upload_inputs(Model::Impl& I, const ModelConfig& c, const float* P) {
    const Backend& K = *I.be;
    I.stage.upload(K);
    for (int v = 0; v < 3; v++)
        if (c.views[v]) bind_view(I.in[v], I.stage);
    const size_t n = I.scale_off.size();
    I.scales_b.reserve(K, n);
    K.gather_rows(I.scales_b.data(), P + I.scale_base, I.stage.at<int32_t>(I.scale_at), n, 1);
    I.scales.resize(n);
    I.scales_b.download(I.scales.data(), n);
}

// The largest width d of the enabled encoders (the encoder scratch holds rows of it).
static size_t widest_encoder(const Model::Impl& I) {
    size_t dmax = 0;
    for (const Model::Encoder& e : I.enc) dmax = std::max(dmax, e.d);
    return dmax;
}

// Runs every enabled encoder forward on the batch (Eq. 1) and normalizes the E_id rows for the id
// heads (cos clamps norms at eps). Without `train` (evaluation) H holds only the last positions,
// row b for sequence b. The inputs are loaded (load_inputs, then upload_inputs).
// Returns the backend's E_id (null without the id modality).
static const float* encode_all(Model::Impl& I, const ModelConfig& c, const FrozenTables* fz,
                               const Batch& batch,
                               bool train, uint64_t seed, uint64_t step) {
    const Backend& K = *I.be;
    const size_t B = batch.B, N = B * c.T;
    const float* E_id = I.w.E_id;
    I.s3.reserve(K, 3 * N * widest_encoder(I));  // the forward's scratch (the backward's later, 6 N d)
    for (Model::Encoder& e : I.enc) {
        // a view empty in every line of the batch: no row to encode, none scored
        if (I.in[e.v].nv == 0) continue;
        const float* table = e.m == MOD_ID ? E_id : frozen_table(I, fz, e.m);
        encoder_forward(e, c, K, I.w.enc[e.v][e.m], table, I.in[e.v], B, train, seed, step, I.s3.data(), !train);
        if (train) K.zero(e.dH.data(), I.in[e.v].nv * e.d * sizeof(float));
    }
    if (E_id && !I.en_id_ready) {
        const size_t NI = c.num_items();
        I.en_id.resize(K, NI * c.q);
        I.en_id_norm.resize(K, NI);
        K.l2norm_forward(I.en_id.data(), I.en_id_norm.data(), E_id, NI, c.q);
        I.en_id_ready = I.scoring;  // kept for the scope's next calls
    }
    return E_id;
}

// Eq. 2 for view v: the rows `rows` (on the backend; valid rows in training, lines in evaluation)
// of each enabled modality's H gathered and L2-normalized into hn[k] (I.hn_b when null) from its
// row row0 on; s[k], dsdl[k] from the log scales read by upload_inputs.
static void head_rows(Model::Impl& I, int v, const int32_t* rows, size_t R, float* s, float* dsdl,
                      Arr* hn = nullptr, size_t row0 = 0) {
    if (!hn) hn = I.hn_b;
    const Backend& K = *I.be;
    for (size_t k = 0; k < I.mods.size(); k++) {
        const int m = I.mods[k];
        const Model::Encoder& e = I.enc[(size_t)I.enc_of[v][m]];
        const size_t d = e.d;
        I.hg_b[k].reserve(K, R * d);
        hn[k].reserve(K, (row0 + R) * d);  // a no-op past row 0: the caller sized it for every view
        I.hnorm_b[k].reserve(K, R);
        K.gather_rows(I.hg_b[k].data(), e.H.data(), rows, R, d);
        K.l2norm_forward(hn[k].data() + row0 * d, I.hnorm_b[k].data(), I.hg_b[k].data(), R, d);
        s[k] = logit_scale(I.scales[(size_t)I.scale_slot[v][m]], &dsdl[k]);
    }
}

void Model::count_supervised(const Batch& batch, uint64_t count[3]) const {
    for (int v = 0; v < 3; v++) {
        count[v] = 0;
        if (!cfg_.views[v]) continue;
        const ViewBatch& vb = batch.view[v];
        for (size_t n = 0; n < batch.B * cfg_.T; n++) count[v] += vb.target[n] >= 0;
    }
}

float* Model::backend_grads() {
    Impl& I = *impl_;
    HAFVT_CHECK(!I.be->device || I.G.size() == grads_.size(), "Model on a device: to_device() was not called");
    return I.be->device ? I.G.data() : grads_.data();
}

void Model::zero_grads() { impl_->be->zero(backend_grads(), grads_.size() * sizeof(float)); }

void Model::keep_grads(bool first) {
    Impl& I = *impl_;
    const Backend& K = *I.be;
    const size_t n = grads_.size();
    I.kept.resize(K, n);
    if (first)
        K.copy(I.kept.data(), backend_grads(), n * sizeof(float));
    else
        K.residual_forward(I.kept.data(), I.kept.data(), backend_grads(), n);
}

void Model::add_kept_grads() {
    Impl& I = *impl_;
    HAFVT_CHECK(I.kept.size() == grads_.size(), "add_kept_grads before keep_grads");
    I.be->residual_forward(backend_grads(), I.kept.data(), backend_grads(), grads_.size());
}

LossTerms Model::forward_backward(const Batch& batch, uint64_t seed, uint64_t step, const uint64_t* norm) {
    Impl& I = *impl_;
    HAFVT_CHECK(!I.scoring, "a training step inside a ScoringScope (it holds the parameters as they were)");
    const Backend& K = *I.be;
    const ModelConfig& c = cfg_;
    const size_t B = batch.B, T = c.T, M = I.mods.size();
    HAFVT_CHECK(!K.device || I.P.size() == params_.size(), "Model on a device: to_device() was not called");
    float* P = K.device ? I.P.data() : params_.data();
    float* G = K.device ? I.G.data() : grads_.data();
    const float lambda[3] = {1.0f, c.lambda1, c.lambda2};  // weights of the X, Y, XY terms (Eq. 9)

    // The supervised positions of each view per target domain, as valid rows of the view's H
    // (ViewInputs::slot), staged with their targets and loss weights next to the views' inputs: a
    // step makes three copies to and from the backend in all, these inputs up, the log scales down
    // (upload_inputs), the row losses down (at the end).
    load_inputs(I, c, batch, false);
    size_t count[3] = {0, 0, 0}, rows_at[3][2] = {}, y_at[3][2] = {}, dloss_at[3][2] = {}, loss_at[3][2] = {};
    size_t loss_rows = 0;
    for (int v = 0; v < 3; v++) {
        I.rows[v][0].clear();
        I.rows[v][1].clear();
        if (!c.views[v]) continue;
        const ViewBatch& vb = batch.view[v];
        for (size_t n = 0; n < B * T; n++)
            if (vb.target[n] >= 0) I.rows[v][(size_t)vb.target[n] < c.NX ? 0 : 1].push_back((int32_t)n);
        count[v] = norm ? (size_t)norm[v] : I.rows[v][0].size() + I.rows[v][1].size();
        for (int D = 0; D < 2; D++) {
            const std::vector<int32_t>& rows = I.rows[v][D];
            const size_t R = rows.size(), off = D == 0 ? 0 : c.NX;
            I.y.resize(R);
            I.vrows.resize(R);
            for (size_t r = 0; r < R; r++) {
                I.y[r] = vb.target[(size_t)rows[r]] - (int32_t)off;
                I.vrows[r] = I.in[v].slot[(size_t)rows[r]];
                HAFVT_CHECK(I.vrows[r] >= 0, "a supervised position without an item (view ", v, ", position ", rows[r], ")");
            }
            // backward: dL/dl = lambda_v / count_v for each position of view v
            I.dloss.assign(R, lambda[v] / (float)count[v]);
            rows_at[v][D] = I.stage.add(I.vrows.data(), R);
            y_at[v][D] = I.stage.add(I.y.data(), R);
            dloss_at[v][D] = I.stage.add(I.dloss.data(), R);
            loss_at[v][D] = loss_rows;
            loss_rows += R;
        }
    }
    upload_inputs(I, c, P);

    K.zero(G, grads_.size() * sizeof(float));
    const float* E_id = encode_all(I, c, frozen_, batch, true, seed, step);  // Eq. 1
    float* dE_id = I.dw.E_id;
    const size_t NI = c.num_items();
    if (E_id) I.den_id.resize(K, NI * c.q), I.den_id.zero();
    I.loss_b.reserve(K, loss_rows);
    I.ds_b.reserve(K, 6 * M);  // ds of each (view, domain) head, M each
    K.zero(I.ds_b.data(), 6 * M * sizeof(float));
    const int32_t* scale_off = I.stage.at<int32_t>(I.scale_at);

    // The heads by target domain, then view: a domain's tables are the same in its views' calls
    // (packed once for them on the CPU: `keep`, new for each call of forward_backward, which is
    // when E_id's normalized rows may have changed). Per domain the views go in order, and what two
    // calls add to (E_id's gradient rows of the domain, a view's log scale) gets their terms in
    // the same order as with the view outside.
    static std::atomic<uint64_t> calls{0};
    const uint64_t keep = ++calls;
    for (int D = 0; D < 2; D++) {
        for (int v = 0; v < 3; v++) {
            if (!c.views[v] || count[v] == 0) continue;  // a term with no positions contributes 0
            const size_t R = I.rows[v][D].size();
            if (R == 0) continue;
            const size_t V = D == 0 ? c.NX : c.NY, off = D == 0 ? 0 : c.NX;
            // Eq. 2, 4-8 and their backward: the supervised rows of H, normalized, scored against
            // the items of the target's domain by the fused head, which adds into dhn and, for the
            // id modality, into the normalized E_id's gradient. The row losses stay on the backend
            // until the end of the step.
            const int32_t* rows_p = I.stage.at<int32_t>(rows_at[v][D]);
            float s[kNumMods], dsdl[kNumMods];
            head_rows(I, v, rows_p, R, s, dsdl);
            const float* hn[kNumMods];
            const float* En[kNumMods];
            float* dhn[kNumMods];
            float* dEn[kNumMods];
            size_t Cm[kNumMods];
            for (size_t k = 0; k < M; k++) {
                const int m = I.mods[k];
                const size_t d = c.width(m);
                I.dhn_b[k].reserve(K, R * d);
                K.zero(I.dhn_b[k].data(), R * d * sizeof(float));
                hn[k] = I.hn_b[k].data();
                En[k] = candidate_table(I, frozen_, m) + off * d;
                dhn[k] = I.dhn_b[k].data();
                dEn[k] = m == MOD_ID ? I.den_id.data() + off * d : nullptr;  // frozen tables get none
                Cm[k] = d;
            }
            float* ds = I.ds_b.data() + (size_t)(v * 2 + D) * M;
            K.fused_mixture_head(I.loss_b.data() + loss_at[v][D], dhn, dEn, ds, hn, En, s, Cm,
                                 I.stage.at<int32_t>(y_at[v][D]), (id_warmup_ ? I.logw_warm_b : I.logw_b).data(),
                                 c.lambda_h, I.stage.at<float>(dloss_at[v][D]), M, R, V, 0, keep);
            for (size_t k = 0; k < M; k++) {
                const int m = I.mods[k];
                const size_t d = c.width(m);
                // the log scale's gradient, on the backend: G[log_s] += ds * ds/dlog_s
                K.scatter_add_rows(G + I.scale_base, ds + k, scale_off + I.scale_slot[v][m], dsdl[k], 1, 1);
                I.dhg_b[k].reserve(K, R * d);
                K.zero(I.dhg_b[k].data(), R * d * sizeof(float));
                K.l2norm_backward(I.dhg_b[k].data(), I.dhn_b[k].data(), I.hn_b[k].data(), I.hnorm_b[k].data(), R, d);
                // the backward of the gather: dH[rows[r]] += dhg[r]
                Encoder& e = I.enc[(size_t)I.enc_of[v][m]];
                K.scatter_add_rows(e.dH.data(), I.dhg_b[k].data(), rows_p, 1.0f, R, d);
            }
        }
    }
    // E_id receives the heads' gradient through the normalization
    if (E_id) K.l2norm_backward(dE_id, I.den_id.data(), I.en_id.data(), I.en_id_norm.data(), NI, c.q);

    // encoders backward
    const size_t dmax = widest_encoder(I);
    I.dx.reserve(K, B * T * dmax); I.s1.reserve(K, B * T * dmax); I.s2.reserve(K, B * T * dmax); I.s3.reserve(K, 6 * B * T * dmax);
    for (Encoder& e : I.enc)
        if (I.in[e.v].nv > 0)
            encoder_backward(e, c, K, I.w.enc[e.v][e.m], I.dw.enc[e.v][e.m], e.m == MOD_ID ? dE_id : nullptr,
                             I.in[e.v], seed, step, I.dx.data(), I.s1.data(), I.s2.data(), I.s3.data());
    // the PAD row of E_id is held at zero
    if (dE_id) K.zero(dE_id + (size_t)c.pad() * c.q, c.q * sizeof(float));

    // the row losses of every head in one copy, once the backend has queued the whole step;
    // each view's mean in double, rows in (b*T + t) order per domain, X before Y
    I.loss.resize(loss_rows);
    I.loss_b.download(I.loss.data(), loss_rows);
    LossTerms lt;
    for (int v = 0; v < 3; v++) {
        if (!c.views[v]) continue;
        lt.count[v] = count[v];
        if (count[v] == 0) continue;
        double view_sum = 0.0;
        for (int D = 0; D < 2; D++) {
            const float* loss = I.loss.data() + loss_at[v][D];
            for (size_t r = 0; r < I.rows[v][D].size(); r++) view_sum += loss[r];
        }
        lt.view[v] = view_sum / (double)count[v];
        lt.total += lambda[v] * lt.view[v];
    }
    return lt;
}

// The lines of an eval batch scored against domain D in view v (score, explain): those of domain D
// whose view v has an item, in line order; H of view v holds each line's last position, so row r
// of the heads is line rows[D][v][r].
static void lines_by_domain(const ModelConfig& c, const Batch& batch, const std::vector<int>& domain,
                            std::vector<int32_t> rows[2][3]) {
    for (int D = 0; D < 2; D++)
        for (int v = 0; v < 3; v++) {
            rows[D][v].clear();
            if (!c.views[v]) continue;
            for (size_t b = 0; b < batch.B; b++)
                if (domain[b] == D && batch.view[v].nonempty[b]) rows[D][v].push_back((int32_t)b);
        }
}

// The coefficient of view v's probabilities in the score of a line of domain D (Eq. 10-11):
// 1 for the line's own domain, lambda1 for the other, lambda2 for XY.
static float view_coef(const ModelConfig& c, int v, int D) {
    return v == VIEW_XY ? c.lambda2 : (v == D ? 1.0f : c.lambda1);
}

// The domain each eval line is scored against: its target's (X below NX), or domain_override >= 0.
static void line_domains(const ModelConfig& c, const Batch& batch, int domain_override, std::vector<int>& domain) {
    domain.assign(batch.B, 0);
    for (size_t b = 0; b < batch.B; b++) {
        if (domain_override >= 0) domain[b] = domain_override;
        else {
            HAFVT_CHECK(batch.eval_target[b] >= 0, "eval line without a target");
            domain[b] = (size_t)batch.eval_target[b] < c.NX ? 0 : 1;
        }
    }
}

void Model::score(const Batch& batch, std::vector<float>& scores, std::vector<int>& domain, int domain_override) {
    Impl& I = *impl_;
    const Backend& K = *I.be;
    const ModelConfig& c = cfg_;
    const size_t B = batch.B, M = I.mods.size(), Vmax = std::max(c.NX, c.NY);
    HAFVT_CHECK(!K.device || I.P.size() == params_.size(), "Model on a device: to_device() was not called");
    const float* P = K.device ? I.P.data() : params_.data();
    scores.resize(B * Vmax);
    line_domains(c, batch, domain_override, domain);
    // The lines scored against domain D in view v: row r of view v is line rows[D][v][r]. A
    // domain's head rows are stacked by view (view v's from row row0[D][v]), so that each
    // modality's logits of all views take one product against its table; then each line of the
    // domain gets its row of the (B, Vmax) scores written once, the mixtures (Eq. 8) of its views
    // added (Eq. 10): `scores` itself on the host, on a device out_b, read at the end in one copy
    // (a call makes three copies: the inputs up, the log scales down (upload_inputs), the scores
    // down). lines[D] are the batch's lines of domain D, at[D] (3 x their count) the stacked row of
    // each in each view (-1: the view is empty for the line).
    std::vector<int32_t> rows[2][3], lines[2], at[2];
    lines_by_domain(c, batch, domain, rows);
    size_t rows_at[2][3] = {}, row0[2][3] = {}, lines_at[2] = {}, table_at[2] = {};
    load_inputs(I, c, batch, true);
    for (int D = 0; D < 2; D++) {
        for (size_t b = 0; b < B; b++)
            if (domain[b] == D) lines[D].push_back((int32_t)b);
        const size_t L = lines[D].size();
        std::vector<int32_t> slot(B, -1);  // a line's place in lines[D]
        for (size_t l = 0; l < L; l++) slot[(size_t)lines[D][l]] = (int32_t)l;
        at[D].assign(3 * L, -1);
        size_t rows_all = 0;
        for (int v = 0; v < 3; v++) {
            row0[D][v] = rows_all;
            if (!c.views[v]) continue;
            rows_at[D][v] = I.stage.add(rows[D][v].data(), rows[D][v].size());
            for (size_t r = 0; r < rows[D][v].size(); r++)
                at[D][(size_t)v * L + (size_t)slot[(size_t)rows[D][v][r]]] = (int32_t)(rows_all + r);
            rows_all += rows[D][v].size();
        }
        lines_at[D] = I.stage.add(lines[D].data(), L);
        table_at[D] = I.stage.add(at[D].data(), at[D].size());
    }
    upload_inputs(I, c, P);
    float* out = scores.data();
    if (K.device) I.out_b.reserve(K, B * Vmax), out = I.out_b.data();
    encode_all(I, c, frozen_, batch, false, 0, 0);
    for (int D = 0; D < 2; D++) {
        const size_t V = D == 0 ? c.NX : c.NY, off = D == 0 ? 0 : c.NX;
        if (lines[D].empty()) continue;
        float s[3][kNumMods], dsdl[kNumMods];
        size_t R[3] = {0, 0, 0};
        for (int v = 0; v < 3; v++)
            if (c.views[v]) R[v] = rows[D][v].size();
        for (size_t k = 0; k < M; k++) {  // sized for any batch at once (3 B rows): not regrown
            I.hns_b[k].reserve(K, 3 * B * c.width(I.mods[k]));
            I.logs_b[k].reserve(K, 3 * B * Vmax);
        }
        for (int v = 0; v < 3; v++)
            if (R[v]) head_rows(I, v, I.stage.at<int32_t>(rows_at[D][v]), R[v], s[v], dsdl, I.hns_b, row0[D][v]);
        // per modality the logits of all views in one call (inside a ScoringScope the CPU keeps
        // each (domain, modality) table packed in its own slot for the next batches)
        for (size_t k = 0; k < M; k++) {
            const int m = I.mods[k];
            const size_t d = c.width(m);
            float sk[3];
            size_t Rs[3], n = 0;
            for (int v = 0; v < 3; v++)
                if (R[v]) sk[n] = s[v][k], Rs[n++] = R[v];
            K.cosine_logits_forward_sets(I.logs_b[k].data(), I.hns_b[k].data(), candidate_table(I, frozen_, m) + off * d,
                                         sk, Rs, n, V, d, I.scoring ? D * kNumMods + m : -1);
        }
        // Eq. 10-11: score = P_D + lambda1 P_D' + lambda2 P_XY, the views added in order; an empty
        // view's term is dropped
        const float* zp[kNumMods];
        for (size_t k = 0; k < M; k++) zp[k] = I.logs_b[k].data();
        const float coef[3] = {view_coef(c, 0, D), view_coef(c, 1, D), view_coef(c, 2, D)};
        K.mixture_score_lines(out, Vmax, I.stage.at<int32_t>(lines_at[D]), I.stage.at<int32_t>(table_at[D]), 3,
                              lines[D].size(), zp, I.logw_b.data(), coef, M, V);
    }
    if (K.device) I.out_b.download(scores.data(), B * Vmax);
}

Model::ScoringScope::ScoringScope(Model& m) : m_(m) {
    Impl& I = *m_.impl_;
    HAFVT_CHECK(!I.scoring, "a ScoringScope inside another");
    I.scoring = true;
    I.en_id_ready = false;
}

Model::ScoringScope::~ScoringScope() {
    Impl& I = *m_.impl_;
    I.scoring = false;
    I.en_id_ready = false;
    I.be->packed_tables_release();
}

void Model::head_probs(const Batch& batch, std::vector<float>& probs, std::vector<int>& domain) {
    Impl& I = *impl_;
    const Backend& K = *I.be;
    const ModelConfig& c = cfg_;
    const size_t B = batch.B, M = I.mods.size(), Vmax = std::max(c.NX, c.NY);
    HAFVT_CHECK(!K.device || I.P.size() == params_.size(), "Model on a device: to_device() was not called");
    const float* P = K.device ? I.P.data() : params_.data();
    line_domains(c, batch, -1, domain);
    probs.assign(B * 3 * kNumMods * Vmax, 0.0f);
    std::vector<int32_t> rows[2][3];
    lines_by_domain(c, batch, domain, rows);
    size_t rows_at[2][3] = {};
    load_inputs(I, c, batch, true);
    for (int D = 0; D < 2; D++)
        for (int v = 0; v < 3; v++) rows_at[D][v] = I.stage.add(rows[D][v].data(), rows[D][v].size());
    const float zero = 0.0f;  // log w = 0: one head's softmax alone
    const size_t zero_at = I.stage.add(&zero, 1);
    upload_inputs(I, c, P);
    encode_all(I, c, frozen_, batch, false, 0, 0);
    std::vector<float> host;
    for (int D = 0; D < 2; D++) {
        const size_t V = D == 0 ? c.NX : c.NY, off = D == 0 ? 0 : c.NX;
        for (int v = 0; v < 3; v++) {
            const size_t R = rows[D][v].size();
            if (!c.views[v] || R == 0) continue;
            float s[kNumMods], dsdl[kNumMods];
            head_rows(I, v, I.stage.at<int32_t>(rows_at[D][v]), R, s, dsdl);
            I.logits_b[0].reserve(K, R * V);
            I.acc_b.reserve(K, R * V);
            host.resize(R * V);
            for (size_t k = 0; k < M; k++) {
                const int m = I.mods[k];
                const size_t d = c.width(m);
                const float* zp[1] = {I.logits_b[0].data()};
                K.cosine_logits_forward(I.logits_b[0].data(), I.hn_b[k].data(), candidate_table(I, frozen_, m) + off * d,
                                        s[k], R, V, d);
                K.zero(I.acc_b.data(), R * V * sizeof(float));
                K.mixture_prob_accumulate(I.acc_b.data(), zp, I.stage.at<float>(zero_at), 1.0f, 1, R, V);
                I.acc_b.download(host.data(), R * V);
                for (size_t r = 0; r < R; r++)
                    std::copy(host.data() + r * V, host.data() + (r + 1) * V,
                              probs.data() + (((size_t)rows[D][v][r] * 3 + (size_t)v) * kNumMods + (size_t)m) * Vmax);
            }
        }
    }
}

void Model::explain(const Batch& batch, const std::vector<int>& domain, ScoreParts& ex) {
    Impl& I = *impl_;
    const Backend& K = *I.be;
    const ModelConfig& c = cfg_;
    const size_t B = batch.B, T = c.T, NH = c.n_heads, M = I.mods.size();
    HAFVT_CHECK(!K.device || I.P.size() == params_.size(), "Model on a device: to_device() was not called");
    HAFVT_CHECK(ex.items.size() == B && domain.size() == B, "explain: ", ex.items.size(), " item lists and ",
                domain.size(), " domains for ", B, " lines");
    const float* P = K.device ? I.P.data() : params_.data();
    std::vector<size_t> first(B + 1, 0);  // line b's items are parts first[b] .. first[b+1)
    for (size_t b = 0; b < B; b++) first[b + 1] = first[b] + ex.items[b].size();
    std::vector<int32_t> rows[2][3];
    lines_by_domain(c, batch, domain, rows);
    // Staged with the inputs: each (domain, view)'s rows, and where its chosen items lie in the
    // (R, V) block of one modality's term, r V + item; the rows (b NH + h) T + T - 1 of the last
    // block's attention probabilities, read as (B NH T) rows of T.
    load_inputs(I, c, batch, true);
    size_t rows_at[2][3] = {}, pick_at[2][3] = {}, picks[2][3] = {};
    std::vector<int32_t> pick;
    for (int D = 0; D < 2; D++)
        for (int v = 0; v < 3; v++) {
            const size_t V = D == 0 ? c.NX : c.NY;
            pick.clear();
            for (size_t r = 0; r < rows[D][v].size(); r++)
                for (int32_t item : ex.items[(size_t)rows[D][v][r]]) {
                    HAFVT_CHECK(item >= 0 && (size_t)item < V, "explain: item ", item, " of a domain of ", V);
                    HAFVT_CHECK(r * V + (size_t)item <= (size_t)INT32_MAX, "explain: a block of ", r + 1, " x ", V, " beyond int32");
                    pick.push_back((int32_t)(r * V + (size_t)item));
                }
            rows_at[D][v] = I.stage.add(rows[D][v].data(), rows[D][v].size());
            pick_at[D][v] = I.stage.add(pick.data(), pick.size());
            picks[D][v] = pick.size();
        }
    const bool xy = c.views[VIEW_XY];
    std::vector<int32_t> att_rows(xy ? B * NH : 0);
    for (size_t i = 0; i < att_rows.size(); i++) att_rows[i] = (int32_t)(i * T + T - 1);
    const size_t att_at = I.stage.add(att_rows.data(), att_rows.size());
    upload_inputs(I, c, P);
    encode_all(I, c, frozen_, batch, false, 0, 0);

    // Each modality's term of each view, computed as score() computes the mixture (one modality at
    // a time), the chosen items gathered into out_b: per (domain, view), M segments of its picks;
    // then per modality the attention rows. One copy down at the end.
    size_t total = xy ? M * B * NH * T : 0;
    for (int D = 0; D < 2; D++)
        for (int v = 0; v < 3; v++) total += M * picks[D][v];
    I.out_b.reserve(K, total);
    size_t at = 0, seg_at[2][3] = {};
    for (int D = 0; D < 2; D++) {
        const size_t V = D == 0 ? c.NX : c.NY, off = D == 0 ? 0 : c.NX;
        for (int v = 0; v < 3; v++) {
            const size_t R = rows[D][v].size();
            seg_at[D][v] = at;
            if (!c.views[v] || R == 0 || picks[D][v] == 0) continue;
            float s[kNumMods], dsdl[kNumMods];
            head_rows(I, v, I.stage.at<int32_t>(rows_at[D][v]), R, s, dsdl);
            I.logits_b[0].reserve(K, R * V);
            I.acc_b.reserve(K, R * V);
            for (size_t k = 0; k < M; k++) {
                const size_t d = c.width(I.mods[k]);
                const float* zp[1] = {I.logits_b[0].data()};
                K.cosine_logits_forward(I.logits_b[0].data(), I.hn_b[k].data(),
                                        candidate_table(I, frozen_, I.mods[k]) + off * d, s[k], R, V, d);
                K.zero(I.acc_b.data(), R * V * sizeof(float));
                K.mixture_prob_accumulate(I.acc_b.data(), zp, I.logw_b.data() + k, view_coef(c, v, D), 1, R, V);
                K.gather_rows(I.out_b.data() + at, I.acc_b.data(), I.stage.at<int32_t>(pick_at[D][v]), picks[D][v], 1);
                at += picks[D][v];
            }
        }
    }
    const size_t att_seg = at;
    if (xy)
        for (size_t k = 0; k < M; k++) {
            const Encoder& e = I.enc[(size_t)I.enc_of[VIEW_XY][I.mods[k]]];
            K.gather_rows(I.out_b.data() + at, e.blocks.back().att.data(), I.stage.at<int32_t>(att_at), B * NH, T);
            at += B * NH * T;
        }
    std::vector<float>& got = I.acc;
    got.resize(total);
    I.out_b.download(got.data(), total);

    ex.part.assign(first[B] * 3 * kNumMods, 0.0f);
    for (int D = 0; D < 2; D++)
        for (int v = 0; v < 3; v++) {
            if (picks[D][v] == 0) continue;
            for (size_t k = 0; k < M; k++) {
                const float* src = got.data() + seg_at[D][v] + k * picks[D][v];
                for (int32_t b : rows[D][v])
                    for (size_t i = 0; i < ex.items[(size_t)b].size(); i++)
                        ex.part[((first[(size_t)b] + i) * 3 + (size_t)v) * kNumMods + (size_t)I.mods[k]] = *src++;
            }
        }
    ex.attention.assign(B * kNumMods * T, 0.0f);
    if (!xy) return;
    for (size_t k = 0; k < M; k++)
        for (size_t b = 0; b < B; b++) {
            if (!batch.view[VIEW_XY].nonempty[b]) continue;
            float* a = ex.attention.data() + (b * kNumMods + (size_t)I.mods[k]) * T;
            for (size_t h = 0; h < NH; h++) {
                const float* src = got.data() + att_seg + ((k * B + b) * NH + h) * T;
                for (size_t t = 0; t < T; t++) a[t] += src[t] / (float)NH;
            }
        }
}

size_t Model::estimate_bytes(const ModelConfig& c, size_t B, size_t max_rows) {
    const size_t N = B * c.T, V = std::max(c.NX, c.NY);
    size_t per_d = 0, dmax = 0, encs = 0;
    for (int v = 0; v < 3; v++)
        for (int m = 0; m < kNumMods; m++)
            if (c.views[v] && c.mods[m]) {
                size_t d = c.width(m);
                dmax = std::max(dmax, d);
                encs++;
                // xs + per block (qkv x3, atty, res1, fc1) + H, dH, at most N valid rows each
                per_d += N * d * ((c.n_blocks + 1) + c.n_blocks * 6 + 2) + c.n_blocks * B * c.n_heads * c.T * c.T;
            }
    size_t floats = per_d + 9 * N * dmax                        // encoder scratch
                    + std::min(c.num_mods() * max_rows * V,     // head logits (the CPU head's
                               kCpuHeadBudget / sizeof(float))  // blocks stay in its budget)
                    + 3 * c.num_items() * c.q;                  // normalized E_id, its gradient
    size_t packed = 0;  // the CPU head's tables, packed for the logits and for the rows' gradients
    for (int m = 0; m < kNumMods; m++)
        if (c.mods[m] && max_rows) packed += 2 * PackedB::bytes_for((int)c.width(m), (int)V);
    return floats * sizeof(float) + packed;
}

size_t Model::estimate_eval_bytes(const ModelConfig& c, size_t B) {
    // the scores of the batch (and their copy on a device), per modality the logits of the three
    // views (score()), and each (domain, modality) table packed for the products
    const size_t V = std::max(c.NX, c.NY);
    size_t bytes = (2 + 3 * c.num_mods()) * B * V * sizeof(float);
    for (int m = 0; m < kNumMods; m++)
        if (c.mods[m]) bytes += PackedB::bytes_for((int)c.width(m), (int)c.NX) + PackedB::bytes_for((int)c.width(m), (int)c.NY);
    return bytes + estimate_bytes(c, B, 0);
}

}  // namespace hafvt
