// params.cpp: the parameter table (see params.h).
#include "model/params.h"

#include <cmath>
#include <cstring>

#include "core/common.h"

namespace hafvt {

std::vector<ParamSpec> param_specs(const ModelConfig& c, ModelParams* p) {
    std::vector<ParamSpec> specs;
    auto add = [&](std::string name, std::vector<size_t> shape, ParamInit init, float** field, long zero_row = -1) {
        specs.push_back(ParamSpec{std::move(name), std::move(shape), init, zero_row, p ? field : nullptr});
    };
    ModelParams dummy;  // the fields' addresses when listed without a ModelParams (not kept)
    ModelParams& P = p ? *p : dummy;
    const ParamInit N = ParamInit::NORMAL, ONE = ParamInit::ONES, ZERO = ParamInit::ZEROS;
    if (c.mods[MOD_ID]) add("E_id", {c.num_items() + 1, c.q}, N, &P.E_id, (long)c.pad());
    for (int v = 0; v < 3; v++) {
        if (!c.views[v]) continue;
        for (int m = 0; m < kNumMods; m++) {
            if (!c.mods[m]) continue;
            const size_t d = c.width(m);
            HAFVT_CHECK(d % c.n_heads == 0, "width ", d, " not divisible by ", c.n_heads, " heads");
            EncoderParams& e = P.enc[v][m];
            e.blk.resize(c.n_blocks);
            const std::string pre = cat("enc.", kViewNames[v], ".", kModNames[m], ".");
            add(pre + "pos", {c.T + 1, d}, N, &e.pos, 0);
            for (size_t b = 0; b < c.n_blocks; b++) {
                BlockParams& k = e.blk[b];
                const std::string bp = cat(pre, "blk", b, ".");
                add(bp + "ln1.w", {d}, ONE, &k.ln1_w);
                add(bp + "ln1.b", {d}, ZERO, &k.ln1_b);
                add(bp + "attn.wqkv", {d, 3 * d}, N, &k.wqkv);
                add(bp + "attn.bqkv", {3 * d}, ZERO, &k.bqkv);
                add(bp + "attn.wo", {d, d}, N, &k.wo);
                add(bp + "attn.bo", {d}, ZERO, &k.bo);
                add(bp + "ln2.w", {d}, ONE, &k.ln2_w);
                add(bp + "ln2.b", {d}, ZERO, &k.ln2_b);
                add(bp + "ffn.w1", {d, d}, N, &k.w1);
                add(bp + "ffn.b1", {d}, ZERO, &k.b1);
                add(bp + "ffn.w2", {d, d}, N, &k.w2);
                add(bp + "ffn.b2", {d}, ZERO, &k.b2);
            }
            add(pre + "lnf.w", {d}, ONE, &e.lnf_w);
            add(pre + "lnf.b", {d}, ZERO, &e.lnf_b);
            add(cat("head.", kViewNames[v], ".", kModNames[m], ".log_scale"), {1}, ParamInit::LOG_TEN, &e.log_scale);
        }
    }
    return specs;
}

TensorTable make_param_table(const ModelConfig& cfg) {
    TensorTable t;
    for (ParamSpec& s : param_specs(cfg)) t.add(s.name, std::move(s.shape));
    t.allocate();
    return t;
}

ModelParams bind_params(const ModelConfig& cfg, const TensorTable& layout, float* base) {
    ModelParams p;
    const std::vector<ParamSpec> specs = param_specs(cfg, &p);
    HAFVT_CHECK(specs.size() == layout.entries().size(), "parameter table of ", layout.entries().size(),
                " entries, configuration of ", specs.size());
    for (size_t i = 0; i < specs.size(); i++) *specs[i].field = base + layout.entries()[i].offset;
    return p;
}

void init_params(const ModelConfig& cfg, TensorTable& table, uint64_t seed) {
    const std::vector<ParamSpec> specs = param_specs(cfg);
    HAFVT_CHECK(specs.size() == table.entries().size(), "parameter table of ", table.entries().size(),
                " entries, configuration of ", specs.size());
    for (size_t i = 0; i < specs.size(); i++) {
        const ParamSpec& s = specs[i];
        Tensor t = table.at(i);
        const size_t k = t.numel();
        switch (s.init) {
            case ParamInit::ONES: std::fill(t.data, t.data + k, 1.0f); break;
            case ParamInit::ZEROS: std::memset(t.data, 0, k * sizeof(float)); break;
            case ParamInit::LOG_TEN: std::fill(t.data, t.data + k, std::log(10.0f)); break;
            case ParamInit::NORMAL:
                for (size_t j = 0; j < k; j++) t.data[j] = 0.02f * rng_normal(seed, rng_stream(RNG_INIT, i), j);
                if (s.zero_row >= 0) std::memset(t.row((size_t)s.zero_row), 0, t.shape[1] * sizeof(float));
                break;
        }
    }
}

size_t count_params(const ModelConfig& cfg) {
    size_t n = 0;
    for (const ParamSpec& s : param_specs(cfg)) {
        size_t k = 1;
        for (size_t d : s.shape) k *= d;
        n += k;
    }
    return n;
}

}  // namespace hafvt
