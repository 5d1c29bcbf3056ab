// tune.cpp: hafvt tune (see tune.h).
//
// The score of candidate j for a line of domain D (SPEC §4, Eq. 7 and 10) is linear in nine
// coefficients, one per (view v, modality m):
//   score(j) = sum_{v,m} c_{v,m} p_{v,m}(j),   c_{v,m} = coef_v(D) w_m,
//   coef = 1 for D's own view, lambda1 for the other domain's, lambda2 for XY.
// So the target's rank under any weights follows from the differences d_j = p_j - p_target (a
// 9-vector per candidate): j counts when c . d_j >= 0. The model scores one evaluation batch of
// lines; their candidates are stored, every point of the grid counts over them, and the next
// batch replaces them (memory: one batch). Candidates whose d is >= 0 in every component count
// for every c >= 0 and those whose d is < 0 in every component that speaks for the line count for
// none (unless every coefficient of the line is 0, when all scores tie): only the others are
// stored. How many remain depends on the model: about 1,400 of 1,500-1,800 items per line after
// two epochs on the small synthetic data, 25,000 of about 30,000 on the Food-Kitchen catalog. The grid is
// counted per weight point (tune_accumulate_grid): the three views' terms once per candidate,
// then each (lambda1, lambda2) pair. The sums are in another order than score()'s, so a rank may
// differ from eval's where two scores are within float round-off; the test split is scored by
// eval's own path.
#include "train/tune.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/common.h"
#include "core/json.h"
#include "core/parallel.h"
#include "formats/checkpoint.h"
#include "model/model.h"
#include "train/evaluation.h"
#include "train/metrics.h"
#include "train/run_dir.h"

namespace hafvt {

const std::vector<float> kTuneLambdas = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.5f, 2.0f};

static constexpr size_t kComps = 3 * kNumMods;
static constexpr size_t kChunk = 256;  // candidates per pass of the counts (stack arrays)

// The nine coefficients of the lines of domain D under point p (weights of the enabled modalities
// as SPEC §2.4 renormalizes them).
static void coefficients(const TunePoint& p, const bool mods[3], int D, float c[kComps]) {
    float raw[3] = {p.alpha, p.beta, 1.0f - p.alpha - p.beta}, sum = 0.0f;
    for (int m = 0; m < 3; m++) sum += mods[m] ? std::max(raw[m], 0.0f) : 0.0f;
    for (int v = 0; v < 3; v++) {
        const float coef = v == VIEW_XY ? p.lambda2 : (v == D ? 1.0f : p.lambda1);
        for (int m = 0; m < 3; m++) c[v * 3 + m] = mods[m] && sum > 0 ? coef * std::max(raw[m], 0.0f) / sum : 0.0f;
    }
}

void tune_accumulate(const TuneLines& t, TunePoint& p) {
    // the mods are implied by the stored lines (a disabled modality's components are never active);
    // the coefficients take every modality, its weight 0 where it is off
    const bool all[3] = {true, true, true};
    float c[2][kComps];
    coefficients(p, all, 0, c[0]);
    coefficients(p, all, 1, c[1]);
    for (size_t i = 0; i < t.domain.size(); i++) {
        const int D = t.domain[i];
        const float* cd = c[D];
        bool speaks = false;
        for (size_t k = 0; k < kComps; k++) speaks = speaks || (t.active[i * kComps + k] && cd[k] > 0.0f);
        const size_t m0 = (size_t)t.mixed_at[i], n = (size_t)t.mixed_at[i + 1] - m0;
        size_t above = t.always[i];
        if (!speaks) {
            above += t.never[i] + n;  // every score 0: all tie, against the target
        } else {
            // the line's block is component-major (kComps rows of n): the dots of all its
            // candidates at once, component by component (the same order of additions as a dot)
            const float* d = t.mixed.data() + m0 * kComps;
            for (size_t r0 = 0; r0 < n; r0 += kChunk) {
                const size_t nr = std::min(kChunk, n - r0);
                float dot[kChunk];
                for (size_t r = 0; r < nr; r++) dot[r] = 0.0f;
                for (size_t k = 0; k < kComps; k++) {
                    const float ck = cd[k];
                    if (ck == 0.0f || !t.active[i * kComps + k]) continue;  // adds only zeros
                    const float* dk = d + k * n + r0;
#pragma omp simd
                    for (size_t r = 0; r < nr; r++) dot[r] += ck * dk[r];
                }
                size_t cnt = 0;
#pragma omp simd reduction(+ : cnt)
                for (size_t r = 0; r < nr; r++) cnt += dot[r] >= 0.0f;
                above += cnt;
            }
        }
        p.rr[D] += 1.0 / (double)(above + 1);
        p.lines[D]++;
    }
    for (int D = 0; D < 2; D++) p.mrr[D] = p.lines[D] ? 100.0 * p.rr[D] / (double)p.lines[D] : 0.0;
}

void tune_accumulate_grid(const TuneLines& t, std::vector<TunePoint>& grid, size_t n1, size_t n2) {
    const size_t per_w = n1 * n2;
    HAFVT_CHECK(n1 >= 1 && n2 >= 1 && n1 <= 16 && n2 <= 16 && grid.size() % per_w == 0, "tune grid of ", grid.size(),
                " points, not weights x ", n1, " x ", n2);
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t wb = 0; wb < grid.size() / per_w; wb++) {
        TunePoint* g = grid.data() + wb * per_w;
        float lam1[16], lam2[16];
        for (size_t i = 0; i < n1; i++) lam1[i] = g[i * n2].lambda1;
        for (size_t j = 0; j < n2; j++) lam2[j] = g[j].lambda2;
        // the renormalized weights of this block, as coefficients() takes them
        float w[3] = {g[0].alpha, g[0].beta, 1.0f - g[0].alpha - g[0].beta}, sum = 0.0f;
        for (float& x : w) x = std::max(x, 0.0f), sum += x;
        for (float& x : w) x = sum > 0 ? x / sum : 0.0f;
        for (size_t i = 0; i < t.domain.size(); i++) {
            const int D = t.domain[i];
            const int view[3] = {D, 1 - D, VIEW_XY};  // own, other, XY: coefficients 1, lambda1, lambda2
            const uint8_t* act = t.active.data() + i * kComps;
            bool sp[3] = {false, false, false};
            for (int u = 0; u < 3; u++)
                for (int m = 0; m < 3; m++) sp[u] = sp[u] || (act[view[u] * 3 + m] && w[m] > 0.0f);
            const size_t m0 = (size_t)t.mixed_at[i], n = (size_t)t.mixed_at[i + 1] - m0;
            const float* d = t.mixed.data() + m0 * kComps;
            uint32_t cnt[16][16] = {};
            for (size_t r0 = 0; r0 < n; r0 += kChunk) {
                const size_t nr = std::min(kChunk, n - r0);
                float e[3][kChunk], a[kChunk];
                // e_u = sum_m w_m d_{view u, m}: the views' terms of score(j) - score(target)
                for (int u = 0; u < 3; u++) {
                    for (size_t r = 0; r < nr; r++) e[u][r] = 0.0f;
                    for (int m = 0; m < 3; m++) {
                        const size_t k = (size_t)view[u] * 3 + (size_t)m;
                        if (!act[k] || w[m] == 0.0f) continue;
                        const float wm = w[m];
                        const float* dk = d + k * n + r0;
#pragma omp simd
                        for (size_t r = 0; r < nr; r++) e[u][r] += wm * dk[r];
                    }
                }
                for (size_t i1 = 0; i1 < n1; i1++) {
                    const float l1 = lam1[i1];
#pragma omp simd
                    for (size_t r = 0; r < nr; r++) a[r] = e[0][r] + l1 * e[1][r];
                    for (size_t i2 = 0; i2 < n2; i2++) {
                        const float l2 = lam2[i2];
                        uint32_t c = 0;
#pragma omp simd reduction(+ : c)
                        for (size_t r = 0; r < nr; r++) c += a[r] + l2 * e[2][r] >= 0.0f;
                        cnt[i1][i2] += c;
                    }
                }
            }
            for (size_t i1 = 0; i1 < n1; i1++)
                for (size_t i2 = 0; i2 < n2; i2++) {
                    TunePoint& p = g[i1 * n2 + i2];
                    const bool speaks = sp[0] || (lam1[i1] > 0.0f && sp[1]) || (lam2[i2] > 0.0f && sp[2]);
                    const size_t above = t.always[i] + (speaks ? cnt[i1][i2] : t.never[i] + n);
                    p.rr[D] += 1.0 / (double)(above + 1);
                    p.lines[D]++;
                }
        }
        for (size_t k = 0; k < per_w; k++)
            for (int D = 0; D < 2; D++) g[k].mrr[D] = g[k].lines[D] ? 100.0 * g[k].rr[D] / (double)g[k].lines[D] : 0.0;
    }
}

std::vector<TunePoint> tune_grid(const bool mods[3], const bool views[3], float lambda1, float lambda2, size_t* n1,
                                 size_t* n2) {
    // the simplex of the enabled modalities' weights in steps of 1/20 (integers: no drift)
    std::vector<std::pair<float, float>> ab;
    for (int a = 0; a <= 20; a++)
        for (int b = 0; a + b <= 20; b++) {
            const int t = 20 - a - b;
            if ((!mods[MOD_ID] && a) || (!mods[MOD_IMG] && b) || (!mods[MOD_TXT] && t)) continue;
            ab.push_back({(float)a / 20.0f, (float)b / 20.0f});
        }
    const bool vary1 = views[VIEW_X] && views[VIEW_Y], vary2 = views[VIEW_XY] && (views[VIEW_X] || views[VIEW_Y]);
    const std::vector<float> l1 = vary1 ? kTuneLambdas : std::vector<float>{lambda1};
    const std::vector<float> l2 = vary2 ? kTuneLambdas : std::vector<float>{lambda2};
    if (n1) *n1 = l1.size();
    if (n2) *n2 = l2.size();
    std::vector<TunePoint> grid;
    for (const auto& w : ab)
        for (float x : l1)
            for (float y : l2) {
                TunePoint p;
                p.alpha = w.first, p.beta = w.second, p.lambda1 = x, p.lambda2 = y;
                grid.push_back(p);
            }
    return grid;
}

// The model over the lines [b0, b1) of the split (one evaluation batch): their stored candidates
// (TuneLines, line i of the batch at index i - b0).
static void collect(Scorer& sc, const SequenceSet& set, const std::vector<int32_t>& negatives, bool full,
                    bool exclude_history, size_t b0, size_t b1, TuneLines& t) {
    const World& w = sc.w;
    const size_t L = b1 - b0, Vmax = std::max(w.cat.NX, w.cat.NY);
    t.domain.assign(L, 0);
    t.active.assign(L * kComps, 0);
    t.always.assign(L, 0);
    t.never.assign(L, 0);
    t.mixed_at.assign(L + 1, 0);
    t.mixed.clear();
    thread_local Batch batch;
    thread_local std::vector<float> probs, rows;  // rows: one line's stored candidates, (n, kComps)
    thread_local std::vector<int> domain;
    thread_local std::vector<int32_t> skip, cand;
    {
        make_eval_batch(batch, set.seqs, b0, b1, true, w.cat, w.mc.T);
        sc.model->head_probs(batch, probs, domain);
        for (size_t b = 0; b < L; b++) {
            const size_t i = b0 + b;
            const int D = domain[b];
            const int32_t off = D == 0 ? 0 : (int32_t)w.cat.NX;
            const size_t V = D == 0 ? w.cat.NX : w.cat.NY;
            const int32_t y = set.seqs[i].back() - off;
            t.domain[b] = D;
            const float* p[kComps];
            float pt[kComps];
            uint8_t* act = t.active.data() + b * kComps;
            for (int v = 0; v < 3; v++)
                for (int m = 0; m < kNumMods; m++) {
                    const size_t k = (size_t)v * 3 + (size_t)m;
                    act[k] = w.mc.views[v] && w.mc.mods[m] && batch.view[v].nonempty[b];
                    p[k] = probs.data() + ((b * 3 + (size_t)v) * kNumMods + (size_t)m) * Vmax;
                    pt[k] = p[k][y];
                }
            cand.clear();
            if (full) {
                if (exclude_history) history_items(set.seqs[i], true, w.mc.T, off, V, skip);
                size_t s = 0;
                for (size_t j = 0; j < V; j++) {
                    while (exclude_history && s < skip.size() && (size_t)skip[s] < j) s++;
                    if ((int32_t)j == y || (exclude_history && s < skip.size() && (size_t)skip[s] == j)) continue;
                    cand.push_back((int32_t)j);
                }
            } else {
                for (size_t k = 0; k < kNumNegatives; k++) cand.push_back(negatives[i * kNumNegatives + k] - off);
            }
            rows.clear();
            for (int32_t j : cand) {
                bool all_ge = true, all_lt = true;
                float d[kComps];
                for (size_t k = 0; k < kComps; k++) {
                    d[k] = act[k] ? p[k][j] - pt[k] : 0.0f;
                    if (!act[k]) continue;
                    all_ge = all_ge && d[k] >= 0.0f;
                    all_lt = all_lt && d[k] < 0.0f;
                }
                if (all_ge) t.always[b]++;
                else if (all_lt) t.never[b]++;
                else rows.insert(rows.end(), d, d + kComps);
            }
            // stored component-major: kComps rows of the line's n candidates (tune_accumulate)
            const size_t n = rows.size() / kComps, at = t.mixed.size();
            t.mixed.resize(at + rows.size());
            for (size_t r = 0; r < n; r++)
                for (size_t k = 0; k < kComps; k++) t.mixed[at + k * n + r] = rows[r * kComps + k];
            t.mixed_at[b + 1] = t.mixed.size() / kComps;
        }
    }
}

static std::string fix(double x, int decimals) { return format_number(cat("%.", decimals, "f").c_str(), x); }

static std::string weights_text(const TunePoint& p) {
    return cat("alpha ", fix(p.alpha, 2), " beta ", fix(p.beta, 2), " lambda1 ", fix(p.lambda1, 2), " lambda2 ", fix(p.lambda2, 2));
}

int run_tune(const std::string& ckpt, const TrainConfig& o, const std::string& protocol, bool skip_test, std::FILE* out) {
    HAFVT_INPUT(protocol == "full" || protocol == "c2dsr", "hafvt tune: --protocol: expected full or c2dsr, found '", protocol, "'");
    Timer total;
    ScoreWeights trained;
    trained.trained = true;  // the heads of the trained model, whatever an earlier tune chose
    Scorer sc(ckpt, o, trained, out);
    if (sc.c.threads > 0) omp_set_num_threads(sc.c.threads);
    const World& w = sc.w;
    SequenceSet valid = read_sequences(sc.c.data + "/validdata_new.txt", w.cat, sc.c.T, false);
    const std::vector<int32_t> neg = split_negatives(ckpt, "valid", valid, w.cat, sc.c.seed);
    // the trained weights first (the incumbent that a grid point must beat), then the grid; the
    // lines go one evaluation batch at a time (memory: one batch's candidates), every point's
    // reciprocal ranks summed over the batches
    TunePoint start;
    start.alpha = w.mc.weight[MOD_ID], start.beta = w.mc.weight[MOD_IMG];
    start.lambda1 = w.mc.lambda1, start.lambda2 = w.mc.lambda2;
    size_t n1 = 1, n2 = 1;
    std::vector<TunePoint> grid = tune_grid(w.mc.mods, w.mc.views, w.mc.lambda1, w.mc.lambda2, &n1, &n2);
    const size_t L = valid.seqs.size();
    size_t stored = 0;
    double pass_s = 0.0, grid_s = 0.0;
    TuneLines lines;
    for (size_t b0 = 0; b0 < L; b0 += sc.c.eval_batch) {
        Timer pass;
        collect(sc, valid, neg, protocol == "full", sc.c.exclude_history, b0, std::min(L, b0 + sc.c.eval_batch), lines);
        pass_s += pass.seconds();
        stored += lines.mixed.size() / kComps;
        Timer gt;
        tune_accumulate(lines, start);
        tune_accumulate_grid(lines, grid, n1, n2);
        grid_s += gt.seconds();
    }
    TunePoint best = start;
    for (const TunePoint& p : grid)
        if (p.mean() > best.mean()) best = p;
    std::fprintf(out, "tune: %zu valid lines (%s protocol), %.1f candidates per line whose rank depends on the weights; "
                      "model %.1f s, %zu grid points %.1f s\n",
                 L, protocol.c_str(), (double)stored / (double)std::max<size_t>(1, L), pass_s, grid.size(), grid_s);
    std::vector<TunePoint> top = grid;
    std::stable_sort(top.begin(), top.end(), [](const TunePoint& a, const TunePoint& b) { return a.mean() > b.mean(); });
    std::fprintf(out, "weights                                           valid MRR X  Y   mean\n");
    std::fprintf(out, "%-48s  %6.2f %6.2f %6.2f  (trained)\n", weights_text(start).c_str(), start.mrr[0], start.mrr[1], start.mean());
    for (size_t i = 0; i < std::min<size_t>(5, top.size()); i++)
        std::fprintf(out, "%-48s  %6.2f %6.2f %6.2f%s\n", weights_text(top[i]).c_str(), top[i].mrr[0], top[i].mrr[1], top[i].mean(),
                     i == 0 ? "  (best)" : "");

    // the choice, beside the checkpoint, for eval and recommend (config_of_checkpoint)
    const TrainState& st = sc.state;
    Json j = Json::object();
    j.set("checkpoint", checkpoint_name(ckpt)).set("step", (double)st.step).set("split", "valid").set("protocol", protocol);
    j.set("alpha", best.alpha).set("beta", best.beta).set("lambda1", best.lambda1).set("lambda2", best.lambda2);
    Json tv = Json::object(), bv = Json::object();
    tv.set("X", start.mrr[0]).set("Y", start.mrr[1]);
    bv.set("X", best.mrr[0]).set("Y", best.mrr[1]);
    j.set("valid_mrr_trained", tv).set("valid_mrr_tuned", bv);
    std::string text = j.dump() + "\n";
    const std::string path = checkpoint_dir(ckpt) + "/" + kTunedFile;
    write_file_atomic(path, text);
    std::fprintf(out, "chose %s (valid mean MRR %.2f against %.2f trained); wrote %s: hafvt eval and recommend use it "
                      "(--trained-weights: the run's)\n",
                 weights_text(best).c_str(), best.mean(), start.mean(), path.c_str());
    if (!skip_test) {
        // the test split, once, by eval's own path with the weights just written
        TrainConfig eo = o;
        eo.exclude_history = sc.c.exclude_history;  // as the grid ranked
        EvalOutcome e = run_eval(ckpt, "test", protocol, eo, ScoreWeights(), true, nullptr);  // notes printed above
        std::fprintf(out, "\ntest, scored once with the tuned weights (%s):\n%s", weights_text(best).c_str(),
                     format_results({e.result}).c_str());
        j.set("test", eval_json(e.result, (long)st.epoch, st.step, nullptr, e.seconds));
        write_file_atomic(path, j.dump() + "\n");
    }
    std::fprintf(out, "tune done in %.1f s\n", total.seconds());
    return 0;
}

}  // namespace hafvt
