// reference_input.cpp: `hafvt reference-input --out F.safetensors` (hidden; see reference_input.h).
//
// The world is fixed and small so that every path of the model shows up in a 100 KB fixture:
// NX = 7, NY = 6, T = 5, q = e = 8, 2 blocks of 2 heads, all three views and modalities, frozen
// tables with one missing (all-zero) row each, two clamped logit scales, a sequence longer than
// T+1, rows with an empty X or Y view, a view with no supervised position, a repeated item.
#include "reference_input.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "common.h"
#include "config.h"
#include "dataset.h"
#include "json.h"
#include "ops_cpu.h"
#include "safetensors.h"

namespace hafvt {

namespace {

constexpr uint64_t kInitSeed = 2040;   // Model::init_params
constexpr uint64_t kPerturbSeed = 9;   // the perturbation on top of it
constexpr uint64_t kFrozenSeed = 501;  // raw frozen feature rows
constexpr size_t kAdamSteps = 3;

ModelConfig tiny_config() {
    ModelConfig c;
    c.NX = 7; c.NY = 6; c.T = 5; c.q = 8; c.e = 8; c.n_blocks = 2; c.n_heads = 2;
    c.dropout = 0.0f;
    for (int i = 0; i < 3; i++) c.views[i] = c.mods[i] = true;
    c.weight[MOD_ID] = 0.5f; c.weight[MOD_IMG] = 0.3f; c.weight[MOD_TXT] = 0.2f;
    c.lambda1 = 0.7f; c.lambda2 = 1.3f;
    return c;
}

// Frozen tables [NX+NY+1, e]: random rows L2-normalized as at load (SPEC §1.4), PAD row zero, and
// one missing item per modality (img: item 5, txt: item 9) whose row is zero (cosine 0).
void tiny_frozen(const ModelConfig& c, FrozenTables& fz) {
    const size_t NI = c.num_items(), e = c.e;
    const size_t missing[3] = {0, 5, 9};
    fz.e = e;
    for (int m = MOD_IMG; m <= MOD_TXT; m++) {
        std::vector<float> raw(NI * e), norm(NI);
        for (size_t i = 0; i < NI * e; i++) raw[i] = rng_normal(kFrozenSeed, (uint64_t)m, i);
        std::memset(raw.data() + missing[m] * e, 0, e * sizeof(float));
        fz.table[m].resize((NI + 1) * e);  // zeroed, so the PAD row stays zero
        l2norm_forward(fz.table[m].data(), norm.data(), raw.data(), NI, e);
    }
}

// Init, then weights scaled up and every tensor shifted by noise so that no value is trivially
// zero or one (as tests/test_model.cpp does); the PAD row of E_id and row 0 of every positional
// table stay zero. Logit scales: mostly 10, two inside the range, two clamped (gradient 0).
void perturbed_params(Model& model) {
    model.init_params(kInitSeed);
    const ModelConfig& c = model.config();
    TensorTable& P = model.params();
    const std::map<std::string, float> scales = {
        {"head.x.img.log_scale", 3.0f}, {"head.x.txt.log_scale", 20.0f},
        {"head.y.txt.log_scale", 250.0f}, {"head.xy.id.log_scale", 0.4f}};
    for (size_t i = 0; i < P.entries().size(); i++) {
        Tensor t = P.at(i);
        if (t.name.find("log_scale") != std::string::npos) {
            auto it = scales.find(t.name);
            t.data[0] = std::log(it == scales.end() ? 10.0f : it->second);
            continue;
        }
        const bool ln_w = t.name.size() > 2 && t.name.compare(t.name.size() - 2, 2, ".w") == 0;
        for (size_t j = 0; j < t.numel(); j++) {
            const float n = rng_normal(kPerturbSeed, i, j);
            t.data[j] = ln_w ? 1.0f + 0.2f * n : t.data[j] * 4.0f + 0.05f * n;
        }
        // The key bias gets no gradient in exact arithmetic (softmax is shift-invariant), so its
        // Adam step is driven by l2 * w against float32 noise of about 1e-9: keep |w| >= 0.02.
        const size_t d = t.numel() / 3;
        if (t.name.size() > 9 && t.name.compare(t.name.size() - 9, 9, "attn.bqkv") == 0)
            for (size_t j = d; j < 2 * d; j++) t.data[j] += std::copysign(0.02f, t.data[j]);
        if (t.name == "E_id") std::memset(t.row((size_t)c.pad()), 0, c.q * sizeof(float));
        if (t.name.find(".pos") != std::string::npos) std::memset(t.row(0), 0, t.shape[1] * sizeof(float));
    }
}

// X items are 0..6, Y items 7..12, PAD = 13.
const std::vector<std::vector<int32_t>> kTrainSeqs = {
    {0, 7, 1, 8, 9, 2, 10, 3},  // longer than T+1 = 6: the first two items are cut
    {8, 11, 12},                // Y only: the X view is empty
    {4, 6, 5},                  // X only: the Y view is empty; item 5 has no image
    {9, 2},                     // one input: its Y position has no next Y item (unsupervised)
    {3, 12, 3, 7, 0},           // item 3 twice (embedding gradients accumulate)
};
// Eval lines: inputs, then the target (its domain decides the scored domain).
const std::vector<std::vector<int32_t>> kEvalSeqs = {
    {0, 8, 1, 9},               // all views, target in Y
    {4, 5, 2},                  // no Y items, target in X
    {10, 11, 3},                // no X items, target in X
    {1, 7, 2, 8, 3, 9, 4, 10},  // 7 inputs cut to T = 5, target in Y
    {12, 6},                    // one Y input, target in X
};

// One view's int arrays as I32 tensors named <prefix>.<view>.{ids,pos,target,nonempty}.
void add_view(std::vector<StTensorOut>& out, std::vector<std::vector<int32_t>>& keep,
              const std::string& prefix, const Batch& b, bool with_target) {
    for (int v = 0; v < 3; v++) {
        const ViewBatch& vb = b.view[v];
        const std::string p = cat(prefix, ".", kViewNames[v], ".");
        out.push_back({p + "ids", {b.B, b.T}, vb.ids.data(), "I32"});
        out.push_back({p + "pos", {b.B, b.T}, vb.pos.data(), "I32"});
        if (with_target) out.push_back({p + "target", {b.B, b.T}, vb.target.data(), "I32"});
        keep.emplace_back(vb.nonempty.begin(), vb.nonempty.end());  // uint8 -> int32
        out.push_back({p + "nonempty", {b.B}, keep.back().data(), "I32"});
    }
}

Json bool3(const bool* b) { return Json::array().push(b[0]).push(b[1]).push(b[2]); }

}  // namespace

std::string reference_config_json(const ModelConfig& c, const AdamConfig& a, size_t adam_steps) {
    Json j = Json::object();
    j.set("NX", c.NX).set("NY", c.NY).set("T", c.T).set("q", c.q).set("e", c.e);
    j.set("n_blocks", c.n_blocks).set("n_heads", c.n_heads).set("dropout", c.dropout);
    j.set("views", bool3(c.views)).set("mods", bool3(c.mods));
    j.set("weight", Json::array().push(c.weight[0]).push(c.weight[1]).push(c.weight[2]));
    j.set("lambda1", c.lambda1).set("lambda2", c.lambda2);
    j.set("layernorm_eps", 1e-5).set("norm_eps", 1e-12).set("scale_min", 1.0).set("scale_max", 100.0);
    Json adam = Json::object();
    adam.set("lr", a.lr).set("beta1", a.beta1).set("beta2", a.beta2).set("eps", a.eps).set("l2", a.l2);
    adam.set("steps", adam_steps);
    j.set("adam", std::move(adam));
    return j.dump();
}

ModelConfig reference_config_from_json(const std::string& text, AdamConfig* adam, size_t* adam_steps) {
    const Json j = Json::parse(text, "reference config");
    auto num = [&](const Json& o, const char* k) {
        const Json* v = o.get(k);
        HAFVT_INPUT(v && v->is_number(), "reference config: missing number '", k, "'");
        return v->as_number();
    };
    auto arr3 = [&](const char* k) {
        const Json* v = j.get(k);
        HAFVT_INPUT(v && v->is_array() && v->size() == 3, "reference config: '", k, "' is not an array of 3");
        return v->as_array();
    };
    ModelConfig c;
    c.NX = (size_t)num(j, "NX"); c.NY = (size_t)num(j, "NY"); c.T = (size_t)num(j, "T");
    c.q = (size_t)num(j, "q"); c.e = (size_t)num(j, "e");
    c.n_blocks = (size_t)num(j, "n_blocks"); c.n_heads = (size_t)num(j, "n_heads");
    c.dropout = (float)num(j, "dropout");
    for (int i = 0; i < 3; i++) {
        c.views[i] = arr3("views")[(size_t)i].as_bool();
        c.mods[i] = arr3("mods")[(size_t)i].as_bool();
        c.weight[i] = (float)arr3("weight")[(size_t)i].as_number();
    }
    c.lambda1 = (float)num(j, "lambda1"); c.lambda2 = (float)num(j, "lambda2");
    const Json* a = j.get("adam");
    HAFVT_INPUT(a && a->is_object(), "reference config: missing object 'adam'");
    if (adam) {
        adam->lr = (float)num(*a, "lr"); adam->beta1 = (float)num(*a, "beta1"); adam->beta2 = (float)num(*a, "beta2");
        adam->eps = (float)num(*a, "eps"); adam->l2 = (float)num(*a, "l2");
    }
    if (adam_steps) *adam_steps = (size_t)num(*a, "steps");
    return c;
}

int reference_input_main(int argc, char** argv) {
    std::string out;
    std::vector<Flag> flags = {{"out", Kind::STR, &out, "the fixture input to write (required)"}};
    if (!parse_flags("reference-input", "--out F.safetensors\n\nWrites the fixed tiny world that tools/reference.py evaluates with PyTorch.",
                     argc, argv, flags, nullptr))
        return 0;
    HAFVT_INPUT(!out.empty(), "hafvt reference-input: --out F.safetensors is required");

    const ModelConfig c = tiny_config();
    FrozenTables fz;
    tiny_frozen(c, fz);
    Model model(c, &fz);
    perturbed_params(model);

    ItemCatalog catalog;
    catalog.NX = c.NX;
    catalog.NY = c.NY;
    SequenceSet set;
    set.train = true;
    set.seqs = kTrainSeqs;
    std::vector<size_t> idx(kTrainSeqs.size());
    for (size_t i = 0; i < idx.size(); i++) idx[i] = i;
    Batch train, eval;
    make_train_batch(train, set, idx.data(), idx.size(), catalog, c.T, 0);
    make_eval_batch(eval, kEvalSeqs, 0, kEvalSeqs.size(), true, catalog, c.T);

    // every parameter under its name, then the frozen tables, the train batch, the eval batch
    std::vector<StTensorOut> tensors;
    std::vector<std::vector<int32_t>> keep;
    keep.reserve(8);  // add_view points into these: no reallocation
    const TensorTable& P = model.params();
    for (size_t i = 0; i < P.entries().size(); i++) {
        Tensor t = P.at(i);
        tensors.push_back({t.name, t.dims(), t.data, "F32"});
    }
    const size_t V1 = c.num_items() + 1;
    tensors.push_back({"frozen.img", {V1, c.e}, fz.table[MOD_IMG].data(), "F32"});
    tensors.push_back({"frozen.txt", {V1, c.e}, fz.table[MOD_TXT].data(), "F32"});
    add_view(tensors, keep, "batch", train, true);
    add_view(tensors, keep, "eval", eval, false);
    tensors.push_back({"eval.target", {eval.B}, eval.eval_target.data(), "I32"});

    std::map<std::string, std::string> meta;
    meta["config"] = reference_config_json(c, AdamConfig(), kAdamSteps);
    meta["format"] = "hafvt reference input 1";
    safetensors_write(out, tensors, meta);
    std::printf("wrote %s: %zu tensors, %zu parameters\n", out.c_str(), tensors.size(), P.entries().size());
    return 0;
}

}  // namespace hafvt
