// train.cpp: the settings of a run (JSON round trip, validation), the data it loads, and the
// training loop of SPEC §3.3 with its run directory of §6 (config.json, metrics.jsonl, train.log,
// best/last checkpoints, negatives); evaluation is in evaluation.cpp, the folder and memory probes
// in run_dir.cpp.
#include "train/train.h"

#include "core/parallel.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "math/adam.h"
#include "model/backend.h"
#include "model/params.h"
#include "formats/checkpoint.h"
#include "core/common.h"
#include "core/lines.h"
#include "train/evaluation.h"
#include "train/tune.h"
#include "formats/npy.h"
#include "train/run_dir.h"
#include "train/comm.h"
#ifdef HAFVT_CUDA
#include "../../cuda/ops_cuda.h"
#endif

namespace hafvt {

// ---- data ------------------------------------------------------------------------------------

static uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
static uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ull) { return fnv1a(s.data(), s.size(), h); }

void load_world(const TrainConfig& c, World& w, const SequenceSet* train, std::FILE* info) {
    w.cat = read_catalog(c.data);
    ModelConfig& mc = w.mc;
    mc = resolve_model_config(c, w.cat.NX, w.cat.NY);
    const bool* mods = mc.mods;
    for (int m = 0; m < kNumMods; m++) {
        if (m == MOD_ID || !mods[m]) continue;
        const std::string& path = modality_file(c, m, false);
        FeatureInfo fi = load_features(w.fz.table[m], path, modality_file(c, m, true), w.cat);
        HAFVT_INPUT(mc.e == 0 || mc.e == fi.e, path, ": expected width ", mc.e,
                    " (that of the other feature file), found ", fi.e);
        HAFVT_INPUT(fi.e % c.heads == 0, path, ": width ", fi.e, " is not divisible by ", setting_name("heads"), " ", c.heads);
        mc.e = fi.e;
        if (fi.zero_rows && info) std::fprintf(info, "%s: %zu all-zero rows (missing features, cosine 0)\n", path.c_str(), fi.zero_rows);
    }
    w.fz.e = mc.e;
    // head/tail split of the targets: occurrences of each item in the training file
    w.train_count.assign(w.cat.num_items(), 0);
    auto hex = [](uint64_t x) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)x);
        return std::string(buf);
    };
    uint64_t h = fnv1a(cat(w.cat.NX, "/", w.cat.NY));
    for (size_t i = 0; i < w.cat.num_items(); i++) h = fnv1a(w.cat.asin[i], h);
    w.catalog_fingerprint = hex(h);
    for (int m = 0; m < kNumMods; m++)  // the feature tables as loaded (normalized), byte for byte
        if (m != MOD_ID && mods[m])
            h = fnv1a(w.fz.table[m].data(), w.fz.table[m].size() * sizeof(float), h);
    if (train) {
        for (const auto& s : train->seqs)
            for (int32_t id : s) {
                w.train_count[(size_t)id]++;
                h = (h ^ (uint64_t)id) * 1099511628211ull;
            }
    }
    w.fingerprint = hex(h);
}

// ---- the training loop -----------------------------------------------------------------------

// A number with a fixed count of decimals, for the progress lines.
static std::string fix(double x, int decimals = 2) { return format_number(cat("%.", decimals, "f").c_str(), x); }

static std::string fmt_time(double s) {
    long t = (long)(s + 0.5);
    return t >= 3600 ? cat(t / 3600, "h", (t / 60) % 60 < 10 ? "0" : "", (t / 60) % 60, "m")
                     : cat(t / 60, ":", t % 60 < 10 ? "0" : "", t % 60);
}

// The peak memory of a run, estimated before anything large is allocated: what is resident now
// (the program, the data and the frozen tables, already loaded), plus four parameter-sized tables
// (parameters, gradients, Adam m and v) and the larger of a training batch's activations and head
// logits (every position supervised in the worst case) and the evaluation's activations and
// (eval-batch, V) scores. Refuses when the part still to allocate exceeds MemAvailable.
// With micro-batches, the activations are those of one slice, and a fifth parameter-sized table
// keeps the slices' gradient.
static void check_memory(const TrainConfig& c, const ModelConfig& mc, size_t slice_batch, RunFiles& run) {
    const double MiB = 1048576.0;
    double params = (c.micro_batches > 1 ? 5.0 : 4.0) * (double)count_params(mc) * sizeof(float);
    double frozen = (double)mc.num_frozen() * (mc.num_items() + 1) * mc.e * sizeof(float);
    double train = (double)Model::estimate_bytes(mc, slice_batch, slice_batch * mc.T);
    double eval = (double)Model::estimate_eval_bytes(mc, c.eval_batch);
    double in_use = std::max(resident_bytes(), frozen), more = params + std::max(train, eval), have = available_bytes();
    run.say(cat("memory estimate ", fix((in_use + more) / MiB, 0), " MiB at the peak (in use now ", fix(in_use / MiB, 0),
                ", of which frozen tables ", fix(frozen / MiB, 0), "; parameters and Adam ", fix(params / MiB, 0),
                "; batch activations, logits and packed tables ", fix(std::max(train, eval) / MiB, 0), "); available ",
                fix(have / MiB, 0), " MiB"));
    HAFVT_INPUT(more <= have, "memory: this configuration needs about ", fix(more / MiB, 0), " MiB more than the ",
                fix(in_use / MiB, 0), " MiB in use, expected at most the ", fix(have / MiB, 0),
                " MiB available; try a smaller ", setting_name("batch"), " (now ", c.batch, ") or ", setting_name("eval_batch"), " (now ", c.eval_batch, ")");
}

// ---- a step in slices: micro-batches and MPI ranks -------------------------------------------

// The dropout seed of slice s of a batch: the run's seed for the first (so that a run in one slice
// is the run without slicing), a seed drawn from it for the others.
static uint64_t slice_seed(uint64_t seed, size_t s) {
    return s == 0 ? seed : rng_u64(seed, rng_stream(RNG_SLICE, (uint64_t)s), 0);
}

// One step's loss and gradient from S = ranks x K slices of the batch (K = --micro-batches).
// Slice s holds the batch's sequences [s B / S, (s+1) B / S); rank r computes the slices r K ..
// r K + K - 1. Each slice's terms are normalized by the whole batch's counts of supervised
// positions (summed over the ranks), so that the slices' terms and gradients add up to the
// batch's; each slice draws its own dropout masks (slice_seed). The gradients are added in slice
// order: on this rank with keep_grads, then across the ranks with Comm::sum_in_rank_order (or
// NCCL for device memory), so that N ranks give bit for bit what one process gives with N
// micro-batches (on the CPU backend; NCCL's order is its own). The loss terms are added in the
// same order. Leaves the batch's gradient in the model, as forward_backward does. With S = 1 (one
// process, no micro-batches) it is one forward_backward of the whole batch with its own counts.
struct SlicedStep {
    std::vector<Batch> parts;
    std::vector<float> host_grads;  // a device run without NCCL: the gradient on its way through MPI
};
static LossTerms sliced_step(Model& model, SlicedStep& ss, const SequenceSet& train, const size_t* order, size_t B,
                             const World& w, const TrainConfig& c, uint64_t step) {
    const Comm& cm = comm();
    const size_t K = c.micro_batches, S = (size_t)cm.size() * K;
    ss.parts.resize(K);
    uint64_t count[3] = {0, 0, 0};
    for (size_t k = 0; k < K; k++) {
        const size_t s = (size_t)cm.rank() * K + k, lo = s * B / S, hi = (s + 1) * B / S;
        ss.parts[k].B = 0;
        if (hi == lo) continue;
        make_train_batch(ss.parts[k], train, order + lo, hi - lo, w.cat, c.T, c.loss_window);
        uint64_t ck[3];
        model.count_supervised(ss.parts[k], ck);
        for (int v = 0; v < 3; v++) count[v] += ck[v];
    }
    cm.sum(count, 3);
    double view[3] = {0, 0, 0};
    for (size_t k = 0; k < K; k++) {
        if (ss.parts[k].B == 0) {
            model.zero_grads();
        } else {
            const LossTerms lt = model.forward_backward(ss.parts[k], slice_seed(c.seed, (size_t)cm.rank() * K + k), step, count);
            for (int v = 0; v < 3; v++) view[v] = k == 0 ? lt.view[v] : view[v] + lt.view[v];
        }
        if (k + 1 < K) model.keep_grads(k == 0);
        else if (K > 1) model.add_kept_grads();
    }
    if (cm.size() > 1) {
        const size_t n = model.grads().size();
        float* G = model.backend_grads();
        const Backend& be = model.backend();
        if (!be.device) {
            cm.sum_in_rank_order(G, n);
        } else if (!cm.sum_on_device(G, n)) {
            ss.host_grads.resize(n);
            be.to_host(ss.host_grads.data(), G, n * sizeof(float));
            cm.sum_in_rank_order(ss.host_grads.data(), n);
            be.to_backend(G, ss.host_grads.data(), n * sizeof(float));
        }
        cm.sum_in_rank_order(view, 3);
    }
    const ModelConfig& mc = model.config();
    const float lambda[3] = {1.0f, mc.lambda1, mc.lambda2};
    LossTerms lt;
    for (int v = 0; v < 3; v++) {
        if (!mc.views[v]) continue;
        lt.count[v] = (size_t)count[v];
        if (count[v] == 0) continue;
        lt.view[v] = view[v];
        lt.total += lambda[v] * lt.view[v];
    }
    return lt;
}

int run_train(const TrainConfig& c) {
    validate_config(c);
    if (c.threads > 0) omp_set_num_threads(c.threads);
    const int threads = omp_get_max_threads();
    Timer total;
    const Comm& cm = comm();
    const size_t slices = (size_t)cm.size() * c.micro_batches;
    RunFiles run;
    run.dir = c.out;
    run.write_files = cm.root();  // rank 0 alone writes the run folder (and prints: main.cpp)
    run.tty = run.tty && cm.size() == 1;  // mpirun gives its ranks a terminal even when its own output is a file
#ifdef HAFVT_CUDA
    cuda_use_device(cm.local_rank());  // one rank per GPU of the machine
#endif
    const Backend& backend = choose_backend(c.device, c.tf32, c.T, device_setting_names(Source::FLAGS));
    const std::string device = backend.name;

    // data (SPEC §1)
    const std::string dir = c.data + "/";
    SequenceSet train = read_sequences(dir + c.train_file, read_catalog(c.data), c.T, true);
    World w;
    load_world(c, w, &train);
    SequenceSet valid = read_sequences(dir + "validdata_new.txt", w.cat, c.T, false);
    SequenceSet test = read_sequences(dir + "testdata_new.txt", w.cat, c.T, false);
    const ModelConfig& mc = w.mc;
    run.say(cat("data ", c.data, ": items X ", mc.NX, " Y ", mc.NY, "; train ", train.seqs.size(), " sequences (",
                train.skipped_short, " skipped, shorter than 2), valid ", valid.seqs.size(), " (X ", valid.targets_x,
                " / Y ", valid.targets_y, "), test ", test.seqs.size(), " (X ", test.targets_x, " / Y ", test.targets_y, ")"));
    std::string mods_s, views_s;
    for (int m = 0; m < kNumMods; m++) if (mc.mods[m]) mods_s += cat(mods_s.empty() ? "" : ",", kModNames[m]);
    for (int v = 0; v < 3; v++) if (mc.views[v]) views_s += cat(views_s.empty() ? "" : ",", kViewNames[v]);

    Json cfg = config_to_json(c);
    cfg.set("modalities_resolved", mods_s).set("views", views_s);
    Json wts = Json::array();
    for (int m = 0; m < kNumMods; m++) wts.push(mc.weight[m]);
    cfg.set("weights", wts).set("NX", mc.NX).set("NY", mc.NY).set("e", mc.e);
    cfg.set("fingerprint", w.fingerprint).set("catalog_fingerprint", w.catalog_fingerprint).set("threads", threads);
    cfg.set("gradient_slices", slices);
    const std::string cfg_s = cfg.dump();

    const size_t slice_batch = (c.batch + slices - 1) / slices;
    if (!backend.device) check_memory(c, mc, slice_batch, run);  // host memory; a device run keeps its activations there
    Model model(mc, &w.fz, backend);
    model.init_optimizer();
    TrainState st;
    st.seed = c.seed;
    const std::string last_path = c.out + "/last.safetensors", best_path = c.out + "/best.safetensors";
    if (c.resume && cm.root()) {
        HAFVT_INPUT(file_exists(last_path), last_path, ": ", setting_name("resume"), " needs the last checkpoint of a run in ", setting_name("out"), ", found none");
        std::string old_cfg;
        read_checkpoint_meta(last_path, &old_cfg, &st);
        HAFVT_INPUT(resume_key(Json::parse(old_cfg, last_path)) == resume_key(cfg), last_path,
                    ": ", setting_name("resume"), " with other settings or data than the run being continued (expected ",
                    resume_key(Json::parse(old_cfg, last_path)), ", found ", resume_key(cfg), ")");
        load_checkpoint(last_path, model.params(), &model.adam_m(), &model.adam_v());
        // keep the metrics of the epochs the checkpoint covers
        if (file_exists(c.out + "/metrics.jsonl")) {
            std::string text = read_file(c.out + "/metrics.jsonl");
            LineReader lr(text, c.out + "/metrics.jsonl");
            for (Span s; lr.next(s);) {
                const std::string line = s.str();
                if (line.empty()) continue;
                Json j = Json::parse(line, c.out + "/metrics.jsonl");
                const Json* e = j.get("epoch");
                if (e && e->is_number() && (long)e->as_number() <= st.epoch && j.get("split") && j.get("split")->as_string() == "valid")
                    run.metrics.push_back(line);
            }
        }
        if (file_exists(c.out + "/train.log")) run.log = read_file(c.out + "/train.log");
        run.say(cat("resumed from ", last_path, ": epoch ", st.epoch, " done, step ", st.step));
    } else if (!c.resume) {
        model.init_params(c.seed);
    }
    if (c.resume) {  // rank 0 read the checkpoint: its tables and state to the other ranks
        cm.broadcast(&st, sizeof st);
        for (TensorTable* t : {&model.params(), &model.adam_m(), &model.adam_v()}) cm.broadcast(t->data(), t->size() * sizeof(float));
    }
    model.to_device();
    // every input is read and checked above: only now does the run folder get its first file
    if (cm.root()) {
        make_dirs(c.out);
        for (const std::string& name : remove_stale_temporaries(c.out))
            run.say(cat("removed ", c.out, "/", name, ", a temporary file left by an interrupted run"));
        write_file_atomic(c.out + "/config.json", cfg_s + "\n");
    }
    // c2dsr protocol: the negatives are drawn once per split and saved with the run
    std::vector<int32_t> neg_valid = draw_negatives(valid, w.cat, c.seed, 0);
    std::vector<int32_t> neg_test = draw_negatives(test, w.cat, c.seed, 1);
    if (cm.root()) {
        npy_write_i32(c.out + "/negatives_valid.npy", neg_valid.data(), {valid.seqs.size(), kNumNegatives});
        npy_write_i32(c.out + "/negatives_test.npy", neg_test.data(), {test.seqs.size(), kNumNegatives});
    }

    size_t n_params = 0;
    for (const auto& e : model.params().entries()) n_params += e.numel;
    std::string weights_s;
    for (int m = 0; m < kNumMods; m++) weights_s += cat(m ? " " : "", mc.weight[m]);
    run.say(cat("model: views ", views_s, ", modalities ", mods_s, " (weights ", weights_s, "), q ", mc.q, ", e ", mc.e, ", ", mc.n_blocks, " blocks, ", mc.n_heads, " heads, ",
                n_params, " parameters; ", threads, " threads, device ", device));
    if (cm.size() > 1)
        run.say(cat("ranks: ", cm.size(), " (MPI), each ", c.batch / slices == slice_batch ? cat(slice_batch) : cat(c.batch / slices, "-", slice_batch),
                    " sequences of every batch of ",
                    c.batch, "; gradients summed ", backend.device ? cat("by ", cm.device_path()) : std::string("by MPI"),
                    " in rank order"));
    if (c.micro_batches > 1)
        run.say(cat("micro-batches: ", c.micro_batches, " per ", cm.size() > 1 ? "rank" : "batch", ", ", slices,
                    " slices of every batch in all"));

    AdamConfig ac;
    ac.lr = c.lr;
    ac.l2 = c.l2;
    const size_t N = train.seqs.size(), steps_per_epoch = (N + c.batch - 1) / c.batch;
    const size_t log_every = c.log_every ? c.log_every : std::max<size_t>(1, steps_per_epoch / 10);
    SlicedStep sliced;
    bool stop = false;
    long steps_this_run = 0;
    double timed_s = 0, timed_seqs = 0;  // the steps after the first (warm-up), for benchmarks
    double steps_s = 0, steps_comm_s = 0;  // every step, and its collectives (MPI)
    for (long epoch = st.epoch + 1; epoch <= (long)c.epochs && !stop; epoch++) {
        Timer et;
        std::vector<size_t> order = shuffled_order(N, c.seed, (uint64_t)epoch);
        const bool warmup = (size_t)epoch <= c.id_warmup;  // SPEC §3.5: the id head alone
        if (warmup != model.id_warmup()) {
            model.set_id_warmup(warmup);
            run.say(warmup ? cat("ID warm-up: epochs 1-", c.id_warmup, " train the id head alone")
                           : std::string("ID warm-up over: the configured mixture weights from here on"));
        }
        LossTerms sum;
        double seqs = 0;
        for (size_t k = 0; k < steps_per_epoch; k++) {
            const size_t b0 = k * c.batch, B = std::min(c.batch, N - b0);
            Timer step_t;
            const double comm_before = cm.seconds();
            LossTerms lt = sliced_step(model, sliced, train, order.data() + b0, B, w, c, (uint64_t)st.step + 1);
            if (fault_injected("nan_loss")) lt.view[VIEW_XY] = NAN;  // crash-safety tests
            const char* names[3] = {"X", "Y", "XY"};
            for (int v = 0; v < 3; v++)
                if (!std::isfinite(lt.view[v])) {
                    const std::string kept = file_exists(last_path)
                                                 ? cat("The last good checkpoint is ", last_path, " (end of epoch ", st.epoch, ").")
                                                 : std::string("No checkpoint was written yet.");
                    std::string msg = cat("error: the ", names[v], " loss term is ", lt.view[v], " at step ", st.step + 1,
                                          " (epoch ", epoch, "); stopping. ", kept, " Check the inputs (data, feature files)",
                                          " or try a lower ", setting_name("lr"), ".");
                    run.say(msg);
                    if (cm.root()) std::fprintf(stderr, "%s\n", msg.c_str());
                    run.flush();
                    return 1;
                }
            st.step++;
            steps_this_run++;
            model.adam_step(ac, st.step);
            steps_s += step_t.seconds();
            steps_comm_s += cm.seconds() - comm_before;
            if (steps_this_run > 1) {
                timed_s += step_t.seconds();
                timed_seqs += (double)B;
            }
            sum.total += lt.total * B;
            for (int v = 0; v < 3; v++) sum.view[v] += lt.view[v] * B;
            seqs += (double)B;
            const bool log_it = (k + 1) % log_every == 0 || k + 1 == steps_per_epoch;
            if (log_it || run.tty) {
                const double rate = seqs / et.seconds();
                const double eta = (double)(N - std::min(N, b0 + B)) / rate;
                // the run's ETA: this epoch's rest, then the epochs left at this epoch's pace (early
                // stopping may end it sooner)
                const double eta_run = eta + (double)(c.epochs - (size_t)epoch) * ((double)N / rate);
                run.progress(cat("epoch ", epoch, "/", c.epochs, " step ", k + 1, "/", steps_per_epoch, " | loss ",
                                 fix(sum.total / seqs, 3), " (x ", fix(sum.view[0] / seqs, 3), " y ", fix(sum.view[1] / seqs, 3),
                                 " xy ", fix(sum.view[2] / seqs, 3), ") | ", (long)rate, " seq/s | peak ", fix(peak_rss_gib()),
                                 " GiB | ETA epoch ", fmt_time(eta), ", run ", fmt_time(eta_run)),
                             log_it);
            }
            if (c.max_steps && (size_t)steps_this_run >= c.max_steps) {
                run.say(cat("stopping after ", setting_name("max_steps"), " ", c.max_steps, ": ", (long)(seqs / et.seconds()), " seq/s this epoch"));
                if (steps_this_run > 1)
                    run.say(cat("throughput: ", steps_this_run - 1, " steps after the first: ", timed_seqs / timed_s, " seq/s (",
                                timed_s / (double)(steps_this_run - 1), " s/step)"));
                stop = true;
                break;
            }
        }
        model.to_host();  // the checkpoints below save the host tables
        LossTerms mean;
        mean.total = sum.total / std::max(1.0, seqs);
        for (int v = 0; v < 3; v++) mean.view[v] = sum.view[v] / std::max(1.0, seqs);
        st.epoch = epoch;
        if (!stop && (epoch % (long)c.eval_every == 0 || epoch == (long)c.epochs)) {
            Timer vt;
            EvalResult r[2];
            evaluate(model, w, valid, neg_valid, c.exclude_history, c.eval_batch, c.tail_max, r);
            for (auto& x : r) x.split = "valid";
            for (auto& x : r) run.metrics.push_back(eval_json(x, epoch, st.step, &mean, total.seconds()).dump());
            const EvalResult& sel = c.protocol == "c2dsr" ? r[0] : r[1];
            const bool better = sel.mean_mrr() > st.best_metric;
            if (better) {
                st.best_metric = sel.mean_mrr();
                st.best_epoch = epoch;
                st.bad_evals = 0;
            } else if (!warmup) {  // the warm-up's evaluations do not count against the patience
                st.bad_evals++;
            }
            run.say(cat("epoch ", epoch, " valid (", sel.protocol, "): MRR X ", fix(sel.dom[0].mrr), " Y ", fix(sel.dom[1].mrr),
                        ", NDCG@10 X ", fix(sel.dom[0].ndcg10), " Y ", fix(sel.dom[1].ndcg10), better ? " (best)" : "",
                        " | epoch ", fmt_time(et.seconds()), ", eval ", fmt_time(vt.seconds())));
            if (better && cm.root()) save_checkpoint(best_path, model.params(), nullptr, nullptr, cfg_s, st);
            if (st.bad_evals >= (long)c.patience) {
                run.say(cat("early stopping: no better validation MRR for ", c.patience, " evaluations"));
                stop = true;
            }
        }
        if (cm.root()) save_checkpoint(last_path, model.params(), &model.adam_m(), &model.adam_v(), cfg_s, st);
        run.flush();
    }

    if (!c.skip_test) {
        // the test split, once, with the best checkpoint
        int have_best = cm.root() && file_exists(best_path);
        cm.broadcast(&have_best, sizeof have_best);
        if (have_best) {
            if (cm.root()) load_checkpoint(best_path, model.params(), nullptr, nullptr);
            cm.broadcast(model.params().data(), model.params().size() * sizeof(float));
        }
        model.to_device();
        EvalResult r[2];
        evaluate(model, w, test, neg_test, c.exclude_history, c.eval_batch, c.tail_max, r);
        for (auto& x : r) x.split = "test";
        for (auto& x : r) run.metrics.push_back(eval_json(x, st.best_epoch, st.step, nullptr, total.seconds()).dump());
        run.say(cat("\ntest metrics of the best checkpoint (epoch ", st.best_epoch, ", valid ", c.protocol, " mean MRR ",
                    fix(st.best_metric), "):"));
        run.say(format_results({r[0], r[1]}));
        for (const EvalResult& x : r)
            run.say(cat(x.protocol, " MRR on targets seen <= ", c.tail_max, " times in training (tail): X ", fix(x.tail[0].mrr),
                        " (", x.tail[0].n, " lines), Y ", fix(x.tail[1].mrr), " (", x.tail[1].n, "); head: X ",
                        fix(x.head[0].mrr), " (", x.head[0].n, "), Y ", fix(x.head[1].mrr), " (", x.head[1].n, ")"));
    }
    if (c.tune && cm.size() == 1 && file_exists(best_path)) {
        // the mixture and score weights chosen on valid (hafvt tune), the test split scored once
        // more with them; the table above stays the trained weights'
        run.say(cat("\n", setting_name("tune"), ": hafvt tune --ckpt ", best_path));
        run.flush();
        std::FILE* f = std::tmpfile();
        HAFVT_CHECK(f != nullptr, "tmpfile failed");
        TrainConfig o;
        o.threads = c.threads;
        o.eval_batch = c.eval_batch;
        o.device = c.device;
        run_tune(best_path, o, c.protocol, c.skip_test, f);
        std::string text((size_t)std::max<long>(0, std::ftell(f)), '\0');
        std::rewind(f);
        text.resize(std::fread(&text[0], 1, text.size(), f));
        std::fclose(f);
        while (!text.empty() && text.back() == '\n') text.pop_back();
        run.say(text);
    } else if (c.tune && cm.size() > 1) {
        run.say(cat("tune: skipped under MPI; run hafvt tune --ckpt ", best_path, " as one process"));
    }
    if (cm.size() > 1 && steps_s > 0)
        run.say(cat("MPI: the training steps took ", fix(steps_s), " s, of which ", fix(steps_comm_s), " s (",
                    fix(100.0 * steps_comm_s / steps_s, 1), "%) in the collectives on rank 0, waiting for the other ranks included"));
    run.say(cat("done in ", fmt_time(total.seconds()), "; run directory ", c.out));
    run.flush();
    return 0;
}

}  // namespace hafvt
