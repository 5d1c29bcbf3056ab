// evaluation.cpp: evaluation under both protocols of SPEC §4, the result tables and records, and
// the commands that read a checkpoint: hafvt eval and hafvt recommend.
#include "train/evaluation.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "model/backend.h"
#include "formats/safetensors.h"
#include "model/params.h"
#include "train/run_dir.h"
#include "formats/checkpoint.h"
#include "core/common.h"
#include "core/lines.h"

namespace hafvt {

// The k best local ids of one row of V scores, best first: a higher score first, ties by the
// smaller id, except that `target` (local, or -1 for none) goes after every item it ties with, as
// the rank rule counts ties; the sorted local ids in `skip` are left out.
static std::vector<int32_t> top_k(const float* sc, size_t V, size_t k, int32_t target, const std::vector<int32_t>& skip) {
    auto key = [&](int32_t j) { return std::isnan(sc[j]) ? -INFINITY : sc[j]; };  // a strict weak order
    auto better = [&](int32_t a, int32_t b) {
        if (key(a) != key(b)) return key(a) > key(b);
        if (a == target || b == target) return b == target;
        return a < b;
    };
    // one pass over the row with a heap of the k best so far, its worst on top: O(V log k), and
    // for most items one comparison with the top
    std::vector<int32_t> heap;
    heap.reserve(k + 1);
    size_t next_skip = 0;
    for (size_t j = 0; j < V; j++) {
        while (next_skip < skip.size() && (size_t)skip[next_skip] < j) next_skip++;
        if (next_skip < skip.size() && (size_t)skip[next_skip] == j) continue;
        const int32_t id = (int32_t)j;
        if (heap.size() < k) {
            heap.push_back(id);
            std::push_heap(heap.begin(), heap.end(), better);
        } else if (k > 0 && better(id, heap.front())) {
            std::pop_heap(heap.begin(), heap.end(), better);
            heap.back() = id;
            std::push_heap(heap.begin(), heap.end(), better);
        }
    }
    std::sort_heap(heap.begin(), heap.end(), better);  // best first
    return heap;
}

// The sorted, distinct local ids of the domain [off, off + V) among a line's input items (the last
// T before its target when `has_target`): what --exclude-history leaves out.
static void history_items(const std::vector<int32_t>& s, bool has_target, size_t T, int32_t off, size_t V,
                          std::vector<int32_t>& skip) {
    skip.clear();
    const size_t n = has_target ? s.size() - 1 : s.size(), start = n > T ? n - T : 0;
    for (size_t k = start; k < n; k++)
        if (s[k] >= off && (size_t)(s[k] - off) < V) skip.push_back(s[k] - off);
    std::sort(skip.begin(), skip.end());
    skip.erase(std::unique(skip.begin(), skip.end()), skip.end());
}

void evaluate(Model& model, const World& w, const SequenceSet& set, const std::vector<int32_t>& negatives,
              bool exclude_history, size_t eval_batch, size_t tail_max, EvalResult out[2]) {
    RankStats dom[2][2], head[2][2], tail[2][2];  // [protocol][domain]
    Batch batch;
    std::vector<float> scores;
    std::vector<int> domain;
    std::vector<int32_t> neg_local(kNumNegatives), skip;
    const size_t L = set.seqs.size(), Vmax = std::max(w.cat.NX, w.cat.NY);
    for (size_t b0 = 0; b0 < L; b0 += eval_batch) {
        size_t b1 = std::min(L, b0 + eval_batch);
        make_eval_batch(batch, set.seqs, b0, b1, true, w.cat, w.mc.T);
        model.score(batch, scores, domain);
        for (size_t i = b0; i < b1; i++) {
            const std::vector<int32_t>& s = set.seqs[i];
            const int32_t target = s.back();
            const int D = domain[i - b0];
            const int32_t off = D == 0 ? 0 : (int32_t)w.cat.NX;
            const size_t V = D == 0 ? w.cat.NX : w.cat.NY;
            const float* sc = scores.data() + (i - b0) * Vmax;
            for (size_t k = 0; k < kNumNegatives; k++) neg_local[k] = negatives[i * kNumNegatives + k] - off;
            size_t r_c2dsr = rank_sampled(sc, target - off, neg_local.data(), kNumNegatives);
            if (exclude_history) history_items(s, true, w.mc.T, off, V, skip);  // the input items of the target's domain
            size_t r_full = rank_full(sc, V, target - off, exclude_history ? &skip : nullptr);
            const bool is_tail = w.train_count[(size_t)target] <= tail_max;
            size_t ranks[2] = {r_c2dsr, r_full};
            for (int p = 0; p < 2; p++) {
                dom[p][D].add(ranks[p]);
                (is_tail ? tail : head)[p][D].add(ranks[p]);
            }
        }
    }
    const char* names[2] = {"c2dsr", "full"};
    for (int p = 0; p < 2; p++) {
        out[p].protocol = names[p];
        for (int D = 0; D < 2; D++) {
            out[p].dom[D] = dom[p][D].finalized();
            out[p].head[D] = head[p][D].finalized();
            out[p].tail[D] = tail[p][D].finalized();
        }
    }
}

static Json stats_json(const RankStats& r) {
    Json j = Json::object();
    j.set("n", r.n).set("mrr", r.mrr).set("ndcg5", r.ndcg5).set("ndcg10", r.ndcg10);
    j.set("hr1", r.hr1).set("hr5", r.hr5).set("hr10", r.hr10);
    return j;
}

std::string format_results(const std::vector<EvalResult>& results) {
    std::string s = cat("split  protocol  domain  targets     MRR  NDCG@5 NDCG@10    HR@1    HR@5   HR@10   (percent)\n");
    for (const EvalResult& r : results)
        for (int D = 0; D < 2; D++) {
            const RankStats& x = r.dom[D];
            char line[200];
            std::snprintf(line, sizeof line, "%-6s %-9s %-7s %7zu %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f\n",
                          r.split.c_str(), r.protocol.c_str(), D == 0 ? "X" : "Y", x.n, x.mrr, x.ndcg5,
                          x.ndcg10, x.hr1, x.hr5, x.hr10);
            s += line;
        }
    return s;
}

Json eval_json(const EvalResult& r, long epoch, long step, const LossTerms* loss, double seconds) {
    Json j = Json::object();
    j.set("epoch", epoch).set("step", step).set("split", r.split).set("protocol", r.protocol);
    j.set("X", stats_json(r.dom[0])).set("Y", stats_json(r.dom[1]));
    Json ht = Json::object();
    ht.set("X_head", stats_json(r.head[0])).set("X_tail", stats_json(r.tail[0]));
    ht.set("Y_head", stats_json(r.head[1])).set("Y_tail", stats_json(r.tail[1]));
    j.set("head_tail", ht);
    if (loss) {
        Json l = Json::object();
        l.set("total", loss->total).set("x", loss->view[0]).set("y", loss->view[1]).set("xy", loss->view[2]);
        j.set("loss", l);
    }
    j.set("seconds", seconds);
    return j;
}

// The run configuration stored in a checkpoint, with --data/--img/--txt overrides.
TrainConfig config_of_checkpoint(const std::string& ckpt, const TrainConfig& overrides, std::string* catalog_fingerprint) {
    std::string cfg_s;
    TrainState st;
    read_checkpoint_meta(ckpt, &cfg_s, &st);
    const Json stored = Json::parse(cfg_s, ckpt + " (config)");
    TrainConfig c = config_from_json(stored, ckpt);
    if (catalog_fingerprint) {
        const Json* fp = stored.get("catalog_fingerprint");
        *catalog_fingerprint = fp && fp->is_string() ? fp->as_string() : "";
    }
    // a hand-edited or foreign config must not reach the model's internal checks: a checkpoint
    // problem, named by the stored keys
    try {
        validate_config(c, Source::STORED);
    } catch (const InputError& e) {
        HAFVT_FAIL_INPUT(ckpt, ": the config stored in the checkpoint is invalid: ", e.message);
    }
    if (!overrides.data.empty()) c.data = overrides.data;
    for (int m = 0; m < kNumMods; m++)
        for (bool ids : {false, true})
            if (m != MOD_ID && !modality_file(overrides, m, ids).empty()) modality_file(c, m, ids) = modality_file(overrides, m, ids);
    if (overrides.alpha != -1) c.alpha = overrides.alpha;
    if (overrides.beta != -1) c.beta = overrides.beta;
    if (overrides.eval_batch != kUnsetSize) c.eval_batch = overrides.eval_batch;
    c.threads = overrides.threads;  // not stored: the caller's (its range checked with the others)
    validate_config(c, Source::FLAGS);  // with the flags the user typed
    return c;
}

// What eval and recommend check before they build the model: that the catalog is the one the
// checkpoint was trained on (same ASINs, not only the same counts; checkpoints that predate the
// catalog fingerprint are taken as they are), that the stored configuration describes the stored
// tensors (a configuration edited to claim a larger model is refused before anything of its size
// is allocated), and that the model and an evaluation batch fit the memory available.
static void check_before_model(const std::string& ckpt, const TrainConfig& c, const World& w,
                               const std::string& catalog_fingerprint) {
    HAFVT_INPUT(catalog_fingerprint.empty() || catalog_fingerprint == w.catalog_fingerprint, c.data,
                ": expected the catalog (Alist.txt, Blist.txt) that ", ckpt, " was trained on (fingerprint ",
                catalog_fingerprint, "), found another one with ", w.cat.NX, " + ", w.cat.NY, " items (fingerprint ",
                w.catalog_fingerprint, ")");
    const StFile f = safetensors_read(ckpt);
    for (const ParamSpec& s : param_specs(w.mc)) {
        HAFVT_INPUT(f.has(s.name), ckpt, ": tensor '", s.name, "' missing (the stored configuration implies it: ",
                    "was the checkpoint written with other settings, or its configuration edited?)");
        const std::vector<size_t>& found = f.entry(s.name).shape;
        HAFVT_INPUT(found == s.shape, ckpt, ": tensor '", s.name, "': expected shape ", shape_str(s.shape),
                    " (from the stored configuration), found ", shape_str(found), " (was the configuration edited?)");
    }
    const double MiB = 1048576.0;
    const double need = 2.0 * (double)count_params(w.mc) * sizeof(float) +  // parameters and gradients
                        (double)Model::estimate_eval_bytes(w.mc, c.eval_batch);
    const double have = available_bytes();
    HAFVT_INPUT(need <= have, "memory: scoring with ", ckpt, " needs about ", (long)(need / MiB), " MiB, expected at most the ",
                (long)(have / MiB), " MiB available; try a smaller ", setting_name("eval_batch"), " (now ", c.eval_batch, ")");
}

static std::string dir_of(const std::string& path) {
    size_t s = path.rfind('/');
    return s == std::string::npos ? "." : path.substr(0, s);
}

EvalOutcome run_eval(const std::string& ckpt, const std::string& split, const std::string& protocol, const TrainConfig& o) {
    HAFVT_INPUT(split == "valid" || split == "test", "hafvt eval: --split: expected valid or test, found '", split, "'");
    HAFVT_INPUT(protocol == "full" || protocol == "c2dsr", "hafvt eval: --protocol: expected full or c2dsr, found '", protocol, "'");
    std::string catalog_fp;
    TrainConfig c = config_of_checkpoint(ckpt, o, &catalog_fp);
    if (c.threads > 0) omp_set_num_threads(c.threads);
    World w;
    load_world(c, w, nullptr);
    const Backend& backend =  // c.T: the checkpoint's
        choose_backend(o.device, false, c.T, {setting_name("device"), setting_name("T", Source::STORED), setting_name("tf32")});
    check_before_model(ckpt, c, w, catalog_fp);
    SequenceSet set = read_sequences(c.data + "/" + (split == "valid" ? "validdata_new.txt" : "testdata_new.txt"), w.cat, c.T, false);
    Model model(w.mc, &w.fz, backend);
    load_checkpoint(ckpt, model.params(), nullptr, nullptr);
    model.to_device();
    // the run's saved negatives when they fit this split, else the same draw from the run's seed
    std::vector<int32_t> neg;
    std::string neg_path = dir_of(ckpt) + "/negatives_" + split + ".npy";
    if (file_exists(neg_path)) {  // read_file refuses it if it is not a regular file
        neg = load_negatives(neg_path, set, w.cat);
    } else {
        neg = draw_negatives(set, w.cat, c.seed, split == "valid" ? 0 : 1);
    }
    EvalResult r[2];
    Timer t;
    evaluate(model, w, set, neg, o.exclude_history, c.eval_batch, c.tail_max, r);
    EvalOutcome out;
    out.result = r[protocol == "c2dsr" ? 0 : 1];
    out.result.split = split;
    out.lines = set.seqs.size();
    out.seconds = t.seconds();
    return out;
}

// A history item: an ASIN of the catalog or a merged id; `where` names it in messages.
static int32_t resolve_item(const ItemCatalog& cat, const std::string& t, const std::string& where) {
    int32_t id = cat.find(t);
    if (id >= 0) return id;
    char* end = nullptr;
    long x = std::strtol(t.c_str(), &end, 10);
    HAFVT_INPUT(!t.empty() && *end == '\0' && x >= 0 && (size_t)x < cat.num_items(), where,
                ": expected an ASIN of the catalog or a merged id 0..", cat.num_items() - 1, ", found '", t, "'");
    return (int32_t)x;
}

// A checkpoint opened for scoring: its configuration with the overrides, the data, the checks of
// check_before_model, and the model with its parameters on the chosen backend.
struct Scorer {
    TrainConfig c;
    World w;
    std::unique_ptr<Model> model;
    Scorer(const std::string& ckpt, const TrainConfig& o) {
        std::string catalog_fp;
        c = config_of_checkpoint(ckpt, o, &catalog_fp);
        // notes go to stderr: stdout carries the recommendations
        load_world(c, w, nullptr, stderr);
        const Backend& backend = choose_backend(o.device, false, c.T,
                                                {setting_name("device"), setting_name("T", Source::STORED), setting_name("tf32")}, stderr);
        check_before_model(ckpt, c, w, catalog_fp);
        model = std::make_unique<Model>(w.mc, &w.fz, backend);
        load_checkpoint(ckpt, model->params(), nullptr, nullptr);
        model->to_device();
    }
};

static int domain_of(const std::string& dom) {
    HAFVT_INPUT(dom == "X" || dom == "Y" || dom == "x" || dom == "y", "hafvt recommend: --domain: expected X or Y, found '", dom, "'");
    return (dom == "X" || dom == "x") ? 0 : 1;
}

std::vector<Recommendation> recommend(const std::string& ckpt, const TrainConfig& o, const std::string& dom, size_t k,
                                      bool exclude_history, const std::vector<std::string>& hist) {
    const int D = domain_of(dom);
    HAFVT_INPUT(k >= 1, "hafvt recommend: --k: expected at least 1, found 0");
    Scorer sc(ckpt, o);
    const World& w = sc.w;
    HAFVT_INPUT(!hist.empty(), "hafvt recommend: expected a history of ASINs or merged ids (arguments or stdin), found none");
    std::vector<int32_t> ids;
    for (size_t i = 0; i < hist.size(); i++) ids.push_back(resolve_item(w.cat, hist[i], cat("hafvt recommend: history item ", i + 1)));
    std::vector<std::vector<int32_t>> seqs = {ids};
    Batch b;
    make_eval_batch(b, seqs, 0, 1, false, w.cat, sc.c.T);
    std::vector<float> scores;
    std::vector<int> domain;
    sc.model->score(b, scores, domain, D);
    const size_t V = D == 0 ? w.cat.NX : w.cat.NY, off = D == 0 ? 0 : w.cat.NX;
    std::vector<int32_t> skip;
    if (exclude_history) history_items(ids, false, ids.size(), (int32_t)off, V, skip);  // every item of the history
    std::vector<Recommendation> out;
    const std::vector<int32_t> best = top_k(scores.data(), V, k, -1, skip);
    for (size_t r = 0; r < best.size(); r++)
        out.push_back({r + 1, off + (size_t)best[r], w.cat.asin[off + (size_t)best[r]], scores[(size_t)best[r]]});
    return out;
}

size_t recommend_many(const std::string& ckpt, const TrainConfig& o, const std::string& dom, size_t k, bool exclude_history,
                      const std::string& histories, std::FILE* out) {
    const int D = domain_of(dom);
    HAFVT_INPUT(k >= 1, "hafvt recommend: --k: expected at least 1, found 0");
    Scorer sc(ckpt, o);
    const World& w = sc.w;
    // one history a line: [user<TAB>]item item ... (items separated by blanks or commas)
    std::vector<std::string> users;
    std::vector<std::vector<int32_t>> seqs;
    const std::string text = read_file(histories);
    LineReader lr(text, histories);
    for (Span line; lr.next(line);) {
        if (line.empty()) continue;
        std::string l = line.str(), user = cat(lr.line_no);
        const size_t tab = l.find('\t');
        if (tab != std::string::npos) user = l.substr(0, tab), l = l.substr(tab + 1);
        std::vector<int32_t> ids;
        for (const std::string& t : split_tokens(l.data(), l.size(), " ,\t"))
            ids.push_back(resolve_item(w.cat, t, cat(histories, ":", lr.line_no, ": item ", ids.size() + 1)));
        HAFVT_INPUT(!ids.empty(), histories, ":", lr.line_no, ": expected a history of ASINs or merged ids, found none");
        users.push_back(user);
        seqs.push_back(std::move(ids));
    }
    const size_t V = D == 0 ? w.cat.NX : w.cat.NY, off = D == 0 ? 0 : w.cat.NX, Vmax = std::max(w.cat.NX, w.cat.NY);
    std::fprintf(out, "user\trank\tmerged_id\tasin\tscore\n");
    Batch b;
    std::vector<float> scores;
    std::vector<int> domain;
    std::vector<int32_t> skip;
    for (size_t b0 = 0; b0 < seqs.size(); b0 += sc.c.eval_batch) {
        const size_t b1 = std::min(seqs.size(), b0 + sc.c.eval_batch);
        make_eval_batch(b, seqs, b0, b1, false, w.cat, sc.c.T);
        sc.model->score(b, scores, domain, D);
        for (size_t i = b0; i < b1; i++) {
            const float* row = scores.data() + (i - b0) * Vmax;
            if (exclude_history) history_items(seqs[i], false, seqs[i].size(), (int32_t)off, V, skip);
            const std::vector<int32_t> best = top_k(row, V, k, -1, skip);
            for (size_t r = 0; r < best.size(); r++)
                std::fprintf(out, "%s\t%zu\t%zu\t%s\t%.6g\n", users[i].c_str(), r + 1, off + (size_t)best[r],
                             w.cat.asin[off + (size_t)best[r]].c_str(), row[best[r]]);
        }
    }
    return seqs.size();
}

size_t recommend_split(const std::string& ckpt, const TrainConfig& o, const std::string& split, size_t k, bool exclude_history,
                       std::FILE* out) {
    HAFVT_INPUT(split == "valid" || split == "test", "hafvt recommend: --split: expected valid or test, found '", split, "'");
    HAFVT_INPUT(k >= 1, "hafvt recommend: --k: expected at least 1, found 0");
    Scorer sc(ckpt, o);
    const World& w = sc.w;
    const SequenceSet set =
        read_sequences(sc.c.data + "/" + (split == "valid" ? "validdata_new.txt" : "testdata_new.txt"), w.cat, sc.c.T, false);
    const size_t Vmax = std::max(w.cat.NX, w.cat.NY);
    std::fprintf(out, "user\tline\trank\tmerged_id\tasin\tscore\thit\n");
    Batch b;
    std::vector<float> scores;
    std::vector<int> domain;
    std::vector<int32_t> skip;
    // the batches and scores of evaluation (evaluate), so the hits agree with its HR@k exactly
    for (size_t b0 = 0; b0 < set.seqs.size(); b0 += sc.c.eval_batch) {
        const size_t b1 = std::min(set.seqs.size(), b0 + sc.c.eval_batch);
        make_eval_batch(b, set.seqs, b0, b1, true, w.cat, sc.c.T);
        sc.model->score(b, scores, domain);
        for (size_t i = b0; i < b1; i++) {
            const std::vector<int32_t>& s = set.seqs[i];
            const int D = domain[i - b0];
            const size_t V = D == 0 ? w.cat.NX : w.cat.NY, off = D == 0 ? 0 : w.cat.NX;
            const int32_t target = s.back() - (int32_t)off;
            const float* row = scores.data() + (i - b0) * Vmax;
            if (exclude_history) history_items(s, true, w.mc.T, (int32_t)off, V, skip);
            else skip.clear();
            const std::vector<int32_t> best = top_k(row, V, k, target, skip);
            for (size_t r = 0; r < best.size(); r++)
                std::fprintf(out, "%lld\t%zu\t%zu\t%zu\t%s\t%.6g\t%d\n", (long long)set.users[i], i + 1, r + 1, off + (size_t)best[r],
                             w.cat.asin[off + (size_t)best[r]].c_str(), row[best[r]], best[r] == target ? 1 : 0);
        }
    }
    return set.seqs.size();
}

}  // namespace hafvt
