// evaluation.cpp: evaluation under both protocols of SPEC §4, the result tables and records, and
// the commands that read a checkpoint: hafvt eval and hafvt recommend.
#include "train/evaluation.h"

#include "core/parallel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>

#include "model/backend.h"
#include "formats/safetensors.h"
#include "model/params.h"
#include "train/run_dir.h"
#include "train/comm.h"
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

void history_items(const std::vector<int32_t>& s, bool has_target, size_t T, int32_t off, size_t V,
                          std::vector<int32_t>& skip) {
    skip.clear();
    const size_t n = has_target ? s.size() - 1 : s.size(), start = n > T ? n - T : 0;
    for (size_t k = start; k < n; k++)
        if (s[k] >= off && (size_t)(s[k] - off) < V) skip.push_back(s[k] - off);
    std::sort(skip.begin(), skip.end());
    skip.erase(std::unique(skip.begin(), skip.end()), skip.end());
}

// Under MPI the ranks score the batches in turn (rank r the r-th of `size` runs of consecutive
// batches, each batch as one process makes it, so its scores are the same) and the per-line ranks
// are gathered in line order: every rank then sums the metrics in the one process's order.
void evaluate(Model& model, const World& w, const SequenceSet& set, const std::vector<int32_t>& negatives,
              bool exclude_history, size_t eval_batch, size_t tail_max, EvalResult out[2]) {
    const Comm& cm = comm();
    Model::ScoringScope hold(model);  // the parameters stay as they are until the end
    Batch batch;
    std::vector<float> scores;
    std::vector<int> domain;
    const size_t L = set.seqs.size(), Vmax = std::max(w.cat.NX, w.cat.NY);
    // The lines go in batches by target domain (the X lines in line order, then the Y lines): a
    // batch's views are then scored against one table per modality, one product of all its rows,
    // and the table is read from memory once per batch instead of once per domain. A line's scores
    // do not depend on the lines beside it, so its ranks are the same in any batch; the metrics
    // below add the lines up in line order.
    std::vector<size_t> order;  // order[j]: the line at place j
    order.reserve(L);
    for (int D = 0; D < 2; D++)
        for (size_t i = 0; i < L; i++)
            if (w.cat.in_x(set.seqs[i].back()) == (D == 0)) order.push_back(i);
    std::vector<std::vector<int32_t>> seqs(L);
    for (size_t j = 0; j < L; j++) seqs[j] = set.seqs[order[j]];
    const size_t n_batches = (L + eval_batch - 1) / eval_batch;
    const size_t first = n_batches * (size_t)cm.rank() / (size_t)cm.size(),
                 last = n_batches * (size_t)(cm.rank() + 1) / (size_t)cm.size();
    std::vector<uint64_t> mine;  // per place: its line's domain, rank under c2dsr and under full
    for (size_t b0 = first * eval_batch; b0 < std::min(L, last * eval_batch); b0 += eval_batch) {
        size_t b1 = std::min(L, b0 + eval_batch);
        make_eval_batch(batch, seqs, b0, b1, true, w.cat, w.mc.T);
        model.score(batch, scores, domain);
        const size_t at = mine.size();
        mine.resize(at + 3 * (b1 - b0));
#pragma omp parallel for schedule(dynamic, 8)
        for (size_t j = b0; j < b1; j++) {  // the lines ranked on all threads, each in its own place
            thread_local std::vector<int32_t> neg_local, skip;
            neg_local.resize(kNumNegatives);
            const size_t i = order[j];  // the line
            const std::vector<int32_t>& s = seqs[j];
            const int32_t target = s.back();
            const int D = domain[j - b0];
            const int32_t off = D == 0 ? 0 : (int32_t)w.cat.NX;
            const size_t V = D == 0 ? w.cat.NX : w.cat.NY;
            const float* sc = scores.data() + (j - b0) * Vmax;
            for (size_t k = 0; k < kNumNegatives; k++) neg_local[k] = negatives[i * kNumNegatives + k] - off;
            size_t r_c2dsr = rank_sampled(sc, target - off, neg_local.data(), kNumNegatives);
            if (exclude_history) history_items(s, true, w.mc.T, off, V, skip);  // the input items of the target's domain
            size_t r_full = rank_full(sc, V, target - off, exclude_history ? &skip : nullptr);
            uint64_t* m = mine.data() + at + 3 * (j - b0);
            m[0] = (uint64_t)D, m[1] = (uint64_t)r_c2dsr, m[2] = (uint64_t)r_full;
        }
    }
    const std::vector<uint64_t> placed = cm.gather_all(mine);
    HAFVT_CHECK(placed.size() == 3 * L, "evaluation: ", placed.size() / 3, " lines ranked, expected ", L);
    std::vector<uint64_t> all(3 * L);  // per line, in line order
    for (size_t j = 0; j < L; j++)
        for (int k = 0; k < 3; k++) all[3 * order[j] + (size_t)k] = placed[3 * j + (size_t)k];
    RankStats dom[2][2], head[2][2], tail[2][2];  // [protocol][domain]
    for (size_t i = 0; i < L; i++) {
        const int D = (int)all[3 * i];
        const bool is_tail = w.train_count[(size_t)set.seqs[i].back()] <= tail_max;
        for (int p = 0; p < 2; p++) {
            const size_t rank = (size_t)all[3 * i + 1 + (size_t)p];
            dom[p][D].add(rank);
            (is_tail ? tail : head)[p][D].add(rank);
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

std::string checkpoint_dir(const std::string& ckpt) {
    const size_t s = ckpt.rfind('/');
    return s == std::string::npos ? "." : ckpt.substr(0, s);
}

std::string checkpoint_name(const std::string& ckpt) {
    const size_t s = ckpt.rfind('/');
    return s == std::string::npos ? ckpt : ckpt.substr(s + 1);
}

double tuned_number(const Json& tuned, const std::string& path, const char* key) {
    const Json* v = tuned.get(key);
    HAFVT_INPUT(v && v->is_number(), path, ": expected a number '", key, "' (written by hafvt tune), found ",
                v ? v->dump() : std::string("none"));
    return v->as_number();
}

// The run configuration stored in a checkpoint, with the overrides and the tuned weights.
TrainConfig config_of_checkpoint(const std::string& ckpt, const TrainConfig& overrides, std::string* catalog_fingerprint,
                                 const ScoreWeights& sw, std::string* weights_note, TrainState* state) {
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
    std::string note;
    // the weights hafvt tune chose for this checkpoint (its file name and step), unless --trained-weights
    const std::string tuned_path = checkpoint_dir(ckpt) + "/" + kTunedFile;
    if (!sw.trained && file_exists(tuned_path)) {
        const Json t = Json::parse(read_file(tuned_path), tuned_path);
        auto num = [&](const char* k) { return tuned_number(t, tuned_path, k); };
        const Json* name = t.get("checkpoint");
        if (name && name->is_string() && name->as_string() == checkpoint_name(ckpt) && (long)num("step") == st.step) {
            c.alpha = (float)num("alpha"), c.beta = (float)num("beta");
            c.lambda1 = (float)num("lambda1"), c.lambda2 = (float)num("lambda2");
            note = cat("weights tuned on ", t.get("split") && t.get("split")->is_string() ? t.get("split")->as_string() : "valid",
                       " (", tuned_path, "): alpha ", c.alpha, " beta ", c.beta, " lambda1 ", c.lambda1, " lambda2 ", c.lambda2,
                       "; --trained-weights for the run's");
        } else {
            note = cat("note: ", tuned_path, " was tuned on another checkpoint; scoring with the trained weights");
        }
    }
    if (!overrides.data.empty()) c.data = overrides.data;
    for (int m = 0; m < kNumMods; m++)
        for (bool ids : {false, true})
            if (m != MOD_ID && !modality_file(overrides, m, ids).empty()) modality_file(c, m, ids) = modality_file(overrides, m, ids);
    const bool given = overrides.alpha != -1 || overrides.beta != -1 || sw.lambda1 != -1 || sw.lambda2 != -1;
    if (overrides.alpha != -1) c.alpha = overrides.alpha;
    if (overrides.beta != -1) c.beta = overrides.beta;
    if (sw.lambda1 != -1) c.lambda1 = sw.lambda1;
    if (sw.lambda2 != -1) c.lambda2 = sw.lambda2;
    if (given)
        note = cat("weights given: alpha ", c.alpha, " beta ", c.beta, " lambda1 ", c.lambda1, " lambda2 ", c.lambda2,
                   " (-1: the default)");
    if (overrides.eval_batch != kUnsetSize) c.eval_batch = overrides.eval_batch;
    c.threads = overrides.threads;  // not stored: the caller's (its range checked with the others)
    c.id_warmup = 0;  // a training schedule: scoring (with any weights, the id head's 0 too) has none
    validate_config(c, Source::FLAGS);  // with the flags the user typed
    if (weights_note) *weights_note = note;
    if (state) *state = st;
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

std::vector<int32_t> split_negatives(const std::string& ckpt, const std::string& split, const SequenceSet& set,
                                     const ItemCatalog& cat, uint64_t seed) {
    const std::string neg_path = checkpoint_dir(ckpt) + "/negatives_" + split + ".npy";
    if (file_exists(neg_path)) return load_negatives(neg_path, set, cat);  // read_file refuses it if it is not a regular file
    return draw_negatives(set, cat, seed, split == "valid" ? 0 : 1);
}

EvalOutcome run_eval(const std::string& ckpt, const std::string& split, const std::string& protocol, const TrainConfig& o,
                     const ScoreWeights& sw, bool head_tail, std::FILE* info) {
    HAFVT_INPUT(split == "valid" || split == "test", "hafvt eval: --split: expected valid or test, found '", split, "'");
    HAFVT_INPUT(protocol == "full" || protocol == "c2dsr", "hafvt eval: --protocol: expected full or c2dsr, found '", protocol, "'");
    std::string catalog_fp, note;
    TrainState st;
    TrainConfig c = config_of_checkpoint(ckpt, o, &catalog_fp, sw, &note, &st);
    if (c.threads > 0) omp_set_num_threads(c.threads);
    World w;
    if (head_tail) {  // the training file's counts split the targets into head and tail
        const SequenceSet train = read_sequences(c.data + "/" + c.train_file, read_catalog(c.data), c.T, true);
        load_world(c, w, &train, info);
    } else {
        load_world(c, w, nullptr, info);
    }
    const Backend& backend =  // c.T: the checkpoint's
        choose_backend(o.device, false, c.T, {setting_name("device"), setting_name("T", Source::STORED), setting_name("tf32")}, info);
    check_before_model(ckpt, c, w, catalog_fp);
    SequenceSet set = read_sequences(c.data + "/" + (split == "valid" ? "validdata_new.txt" : "testdata_new.txt"), w.cat, c.T, false);
    Model model(w.mc, &w.fz, backend);
    load_checkpoint(ckpt, model.params(), nullptr, nullptr);
    model.to_device();
    const std::vector<int32_t> neg = split_negatives(ckpt, split, set, w.cat, c.seed);
    EvalResult r[2];
    Timer t;
    evaluate(model, w, set, neg, o.exclude_history, c.eval_batch, c.tail_max, r);
    EvalOutcome out;
    out.result = r[protocol == "c2dsr" ? 0 : 1];
    out.result.split = split;
    out.lines = set.seqs.size();
    out.seconds = t.seconds();
    out.weights_note = note;
    out.epoch = st.epoch;
    out.step = st.step;
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

Scorer::Scorer(const std::string& ckpt, const TrainConfig& o, const ScoreWeights& sw, std::FILE* info) {
    std::string catalog_fp;
    c = config_of_checkpoint(ckpt, o, &catalog_fp, sw, &weights_note, &state);
    if (!weights_note.empty()) std::fprintf(info, "%s\n", weights_note.c_str());
    load_world(c, w, nullptr, info);
    const Backend& backend = choose_backend(o.device, false, c.T,
                                            {setting_name("device"), setting_name("T", Source::STORED), setting_name("tf32")}, info);
    check_before_model(ckpt, c, w, catalog_fp);
    model = std::make_unique<Model>(w.mc, &w.fz, backend);
    load_checkpoint(ckpt, model->params(), nullptr, nullptr);
    model->to_device();
}

static int domain_of(const std::string& dom) {
    HAFVT_INPUT(dom == "X" || dom == "Y" || dom == "x" || dom == "y", "hafvt recommend: --domain: expected X or Y, found '", dom, "'");
    return (dom == "X" || dom == "x") ? 0 : 1;
}

// --explain: the columns it adds, and their values for item i of line b (parts from
// Model::explain): the view and modality sums of the item's terms, and for each modality the
// (at most three) input items the XY encoder's last position attended to most, ASIN:weight.
static const char* const kExplainHeader = "\tview_X\tview_Y\tview_XY\tmod_id\tmod_img\tmod_txt\tattn_id\tattn_img\tattn_txt";

static std::string explain_columns(const Model::ScoreParts& p, size_t part, size_t b, const Batch& batch,
                                   const ModelConfig& mc, const ItemCatalog& catalog) {
    const float* t = p.part.data() + part * 3 * kNumMods;
    std::string out;
    for (int v = 0; v < 3; v++) {
        double sum = 0.0;
        for (int m = 0; m < kNumMods; m++) sum += t[v * kNumMods + m];
        out += cat("\t", format_number("%.6g", sum));
    }
    for (int m = 0; m < kNumMods; m++) {
        double sum = 0.0;
        for (int v = 0; v < 3; v++) sum += t[v * kNumMods + m];
        out += cat("\t", format_number("%.6g", sum));
    }
    const size_t T = mc.T;
    for (int m = 0; m < kNumMods; m++) {
        const float* a = p.attention.data() + (b * kNumMods + (size_t)m) * T;
        std::vector<size_t> pos;
        for (size_t i = 0; i < T; i++)
            if (a[i] > 0.0f) pos.push_back(i);
        std::stable_sort(pos.begin(), pos.end(), [&](size_t x, size_t y) { return a[x] > a[y]; });
        if (pos.size() > 3) pos.resize(3);
        std::string col;
        for (size_t i : pos) {
            const int32_t id = batch.view[VIEW_XY].ids[b * T + i];
            col += cat(col.empty() ? "" : ",", catalog.asin[(size_t)id], ":", format_number("%.3f", a[i]));
        }
        out += "\t" + (col.empty() ? std::string("-") : col);
    }
    return out;
}

// What each of the three forms of recommend writes, one TSV row per recommended item:
//   [lead columns] rank merged_id asin score [hit] [the --explain columns]
// for the top k of every line of `seqs` (the whole line the history, or with `with_target` all but
// its last item, which is then the target: the hit column, and the domain), in evaluation's
// batches through Model::score, so that the hits agree with eval's HR@k exactly.
struct TopKJob {
    const std::vector<std::vector<int32_t>>* seqs = nullptr;
    bool with_target = false;
    int domain = 0;                 // without a target: the domain of every line
    const char* lead_header = "";   // the lead columns' names, each followed by a tab
    std::function<std::string(size_t)> lead;  // line i's lead columns, each followed by a tab
};

static void write_top_k(Scorer& sc, const TopKJob& job, const RecommendOptions& ro, std::FILE* out) {
    const World& w = sc.w;
    const std::vector<std::vector<int32_t>>& seqs = *job.seqs;
    const size_t Vmax = std::max(w.cat.NX, w.cat.NY);
    std::fprintf(out, "%srank\tmerged_id\tasin\tscore%s%s\n", job.lead_header, job.with_target ? "\thit" : "",
                 ro.explain ? kExplainHeader : "");
    Batch b;
    std::vector<float> scores;
    std::vector<int> domain;
    Model::ScoreParts parts;
    Model::ScoringScope hold(*sc.model);  // the parameters stay as they are until the end
    for (size_t b0 = 0; b0 < seqs.size(); b0 += sc.c.eval_batch) {
        const size_t b1 = std::min(seqs.size(), b0 + sc.c.eval_batch);
        make_eval_batch(b, seqs, b0, b1, job.with_target, w.cat, sc.c.T);
        sc.model->score(b, scores, domain, job.with_target ? -1 : job.domain);
        parts.items.assign(b1 - b0, {});
        std::vector<int32_t> targets(b1 - b0, -1);
#pragma omp parallel for schedule(dynamic, 8)
        for (size_t i = b0; i < b1; i++) {  // the lines' top k on all threads, each in its own place
            thread_local std::vector<int32_t> skip;
            const std::vector<int32_t>& s = seqs[i];
            const int D = domain[i - b0];
            const size_t V = D == 0 ? w.cat.NX : w.cat.NY, off = D == 0 ? 0 : w.cat.NX;
            if (job.with_target) targets[i - b0] = s.back() - (int32_t)off;
            // with a target, the input items of its domain (as eval --exclude-history); without,
            // every item of the history
            if (ro.exclude_history) history_items(s, job.with_target, job.with_target ? w.mc.T : s.size(), (int32_t)off, V, skip);
            else skip.clear();
            parts.items[i - b0] = top_k(scores.data() + (i - b0) * Vmax, V, ro.k, targets[i - b0], skip);
        }
        if (ro.explain) sc.model->explain(b, domain, parts);
        size_t part = 0;
        for (size_t i = b0; i < b1; i++) {
            const int D = domain[i - b0];
            const size_t off = D == 0 ? 0 : w.cat.NX;
            const float* row = scores.data() + (i - b0) * Vmax;
            const std::string lead = job.lead ? job.lead(i) : std::string();
            const std::vector<int32_t>& best = parts.items[i - b0];
            for (size_t r = 0; r < best.size(); r++, part++) {
                std::string line = cat(lead, r + 1, "\t", off + (size_t)best[r], "\t", w.cat.asin[off + (size_t)best[r]], "\t",
                                       format_number("%.6g", row[best[r]]));
                if (job.with_target) line += best[r] == targets[i - b0] ? "\t1" : "\t0";
                if (ro.explain) line += explain_columns(parts, part, i - b0, b, w.mc, w.cat);
                std::fprintf(out, "%s\n", line.c_str());
            }
        }
    }
}

size_t recommend(const std::string& ckpt, const TrainConfig& o, const RecommendOptions& ro,
                 const std::vector<std::string>& hist, std::FILE* out) {
    TopKJob job;
    job.domain = domain_of(ro.domain);
    HAFVT_INPUT(ro.k >= 1, "hafvt recommend: --k: expected at least 1, found 0");
    Scorer sc(ckpt, o, ro.weights);
    HAFVT_INPUT(!hist.empty(), "hafvt recommend: expected a history of ASINs or merged ids (arguments or stdin), found none");
    std::vector<std::vector<int32_t>> seqs(1);
    for (size_t i = 0; i < hist.size(); i++) seqs[0].push_back(resolve_item(sc.w.cat, hist[i], cat("hafvt recommend: history item ", i + 1)));
    job.seqs = &seqs;
    write_top_k(sc, job, ro, out);
    return 1;
}

size_t recommend_many(const std::string& ckpt, const TrainConfig& o, const RecommendOptions& ro,
                      const std::string& histories, std::FILE* out) {
    TopKJob job;
    job.domain = domain_of(ro.domain);
    HAFVT_INPUT(ro.k >= 1, "hafvt recommend: --k: expected at least 1, found 0");
    Scorer sc(ckpt, o, ro.weights);
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
            ids.push_back(resolve_item(sc.w.cat, t, cat(histories, ":", lr.line_no, ": item ", ids.size() + 1)));
        HAFVT_INPUT(!ids.empty(), histories, ":", lr.line_no, ": expected a history of ASINs or merged ids, found none");
        users.push_back(user);
        seqs.push_back(std::move(ids));
    }
    job.seqs = &seqs;
    job.lead_header = "user\t";
    job.lead = [&](size_t i) { return users[i] + "\t"; };
    write_top_k(sc, job, ro, out);
    return seqs.size();
}

size_t recommend_split(const std::string& ckpt, const TrainConfig& o, const std::string& split, const RecommendOptions& ro,
                       std::FILE* out) {
    HAFVT_INPUT(split == "valid" || split == "test", "hafvt recommend: --split: expected valid or test, found '", split, "'");
    HAFVT_INPUT(ro.k >= 1, "hafvt recommend: --k: expected at least 1, found 0");
    Scorer sc(ckpt, o, ro.weights);
    const SequenceSet set =
        read_sequences(sc.c.data + "/" + (split == "valid" ? "validdata_new.txt" : "testdata_new.txt"), sc.w.cat, sc.c.T, false);
    TopKJob job;
    job.seqs = &set.seqs;
    job.with_target = true;
    job.lead_header = "user\tline\t";
    job.lead = [&](size_t i) { return cat((long long)set.users[i], "\t", i + 1, "\t"); };
    write_top_k(sc, job, ro, out);
    return set.seqs.size();
}

}  // namespace hafvt
