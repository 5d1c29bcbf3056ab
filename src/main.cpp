// main.cpp: the `hafvt` command line: synth, train, eval, recommend, info (and bench-gemm).
// Every subcommand has --help. main() catches errors: bad input prints one line and exits 2,
// an internal failure exits 1.
#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "bench_gemm.h"
#include "checkpoint.h"
#include "common.h"
#include "reference_input.h"
#include "safetensors.h"
#include "synth.h"
#include "evaluation.h"
#include "text_features.h"
#include "train.h"

using namespace hafvt;

namespace {

// A table-driven flag parser: every flag has a name, a kind, a destination and a help line.
struct Flag {
    const char* name;
    enum Kind { STR, SIZE, INT, FLOAT, U64, BOOL } kind;
    void* dst;
    const char* help;
};

std::string usage(const char* cmd, const char* synopsis, const std::vector<Flag>& flags) {
    std::string s = cat("usage: hafvt ", cmd, " ", synopsis, "\n\nflags:\n");
    for (const Flag& f : flags) {
        std::string n = cat("  --", f.name, f.kind == Flag::BOOL ? "" : " X");
        s += cat(n, std::string(n.size() < 24 ? 24 - n.size() : 1, ' '), f.help, "\n");
    }
    return s;
}

// Parses argv[i..) into the flags; positional arguments go to `pos`. --help prints the usage.
// Returns false when --help was given.
bool parse_flags(const char* cmd, const char* synopsis, int argc, char** argv, const std::vector<Flag>& flags,
                 std::vector<std::string>* pos) {
    for (int i = 0; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::printf("%s", usage(cmd, synopsis, flags).c_str());
            return false;
        }
        if (a.rfind("--", 0) != 0 || a == "--") {
            HAFVT_INPUT(pos, "hafvt ", cmd, ": unexpected argument '", a, "' (see hafvt ", cmd, " --help)");
            pos->push_back(a);
            continue;
        }
        std::string name = a.substr(2), value;
        size_t eq = name.find('=');
        bool has_eq = eq != std::string::npos;
        if (has_eq) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        const Flag* f = nullptr;
        for (const Flag& g : flags)
            if (name == g.name) f = &g;
        HAFVT_INPUT(f, "hafvt ", cmd, ": unknown flag --", name, " (see hafvt ", cmd, " --help)");
        if (f->kind == Flag::BOOL) {
            HAFVT_INPUT(!has_eq, "hafvt ", cmd, ": --", name, " takes no value, found '", value, "'");
            *(bool*)f->dst = true;
            continue;
        }
        if (!has_eq) {
            HAFVT_INPUT(i + 1 < argc, "hafvt ", cmd, ": --", name, " expects a value, found the end of the line");
            value = argv[++i];
        }
        const char* s = value.c_str();
        char* end = nullptr;
        errno = 0;
        switch (f->kind) {
            case Flag::STR: *(std::string*)f->dst = value; break;
            case Flag::SIZE:
            case Flag::U64: {
                unsigned long long x = std::strtoull(s, &end, 10);
                HAFVT_INPUT(!value.empty() && *end == '\0' && errno == 0 && value[0] != '-', "hafvt ", cmd, ": --", name,
                            ": expected a non-negative integer, found '", value, "'");
                if (f->kind == Flag::SIZE) *(size_t*)f->dst = (size_t)x;
                else *(uint64_t*)f->dst = (uint64_t)x;
                break;
            }
            case Flag::INT: {
                long x = std::strtol(s, &end, 10);
                HAFVT_INPUT(!value.empty() && *end == '\0' && errno == 0 && x > -1000000000L && x < 1000000000L, "hafvt ", cmd,
                            ": --", name, ": expected an integer, found '", value, "'");
                *(int*)f->dst = (int)x;
                break;
            }
            case Flag::FLOAT: {
                float x = std::strtof(s, &end);
                HAFVT_INPUT(!value.empty() && *end == '\0' && errno == 0 && std::isfinite(x), "hafvt ", cmd, ": --", name,
                            ": expected a number, found '", value, "'");
                *(float*)f->dst = x;
                break;
            }
            case Flag::BOOL: break;
        }
    }
    return true;
}

std::vector<Flag> train_flags(TrainConfig& c) {
    return {
        {"data", Flag::STR, &c.data, "dataset folder in the C2DSR format (required)"},
        {"train-file", Flag::STR, &c.train_file, "training file inside --data (default traindata_new.txt)"},
        {"img", Flag::STR, &c.img, "image features .npy [NX+NY, e] (enables the img modality)"},
        {"txt", Flag::STR, &c.txt, "text features .npy [NX+NY, e] (enables the txt modality)"},
        {"img-ids", Flag::STR, &c.img_ids, "alignment file of --img: one ASIN per row"},
        {"txt-ids", Flag::STR, &c.txt_ids, "alignment file of --txt: one ASIN per row"},
        {"out", Flag::STR, &c.out, "run directory (default runs/hafvt)"},
        {"modalities", Flag::STR, &c.modalities, "id|id,img|id,txt|id,img,txt (default: id + every feature file)"},
        {"views", Flag::STR, &c.views, "x,y,xy (hierarchical, default) or xy (original framework)"},
        {"T", Flag::SIZE, &c.T, "max sequence length (default 15; at most 64 on a GPU)"},
        {"q", Flag::SIZE, &c.q, "ID embedding width (default 256)"},
        {"blocks", Flag::SIZE, &c.blocks, "transformer blocks per encoder (default 2)"},
        {"heads", Flag::SIZE, &c.heads, "attention heads (default 1)"},
        {"dropout", Flag::FLOAT, &c.dropout, "dropout rate (default 0.3)"},
        {"alpha", Flag::FLOAT, &c.alpha, "mixture weight of the id head (default 1/3)"},
        {"beta", Flag::FLOAT, &c.beta, "mixture weight of the img head (default 1/3); txt gets 1-alpha-beta"},
        {"lambda1", Flag::FLOAT, &c.lambda1, "weight of the Y term / other-domain view (default 1)"},
        {"lambda2", Flag::FLOAT, &c.lambda2, "weight of the XY term (default 1)"},
        {"lr", Flag::FLOAT, &c.lr, "Adam learning rate (default 1e-3)"},
        {"l2", Flag::FLOAT, &c.l2, "coupled L2 (Adam weight_decay, default 1e-5)"},
        {"batch", Flag::SIZE, &c.batch, "sequences per batch (default 256)"},
        {"epochs", Flag::SIZE, &c.epochs, "max epochs (default 100)"},
        {"patience", Flag::SIZE, &c.patience, "early stopping: evaluations without improvement (default 10)"},
        {"eval-every", Flag::SIZE, &c.eval_every, "validate every N epochs (default 1)"},
        {"loss-window", Flag::INT, &c.loss_window, "supervise only the last K positions of each view (default all)"},
        {"seed", Flag::U64, &c.seed, "seed of every random draw (default 2040)"},
        {"protocol", Flag::STR, &c.protocol, "protocol that selects the best epoch: full (default) or c2dsr"},
        {"exclude-history", Flag::BOOL, &c.exclude_history, "full protocol: do not rank the input items"},
        {"eval-batch", Flag::SIZE, &c.eval_batch, "lines per evaluation batch (default 64)"},
        {"tail-max", Flag::SIZE, &c.tail_max, "targets seen at most this often in training count as tail (default 5)"},
        {"resume", Flag::BOOL, &c.resume, "continue the run in --out from its last checkpoint"},
        {"threads", Flag::INT, &c.threads, "CPU threads (default: all)"},
        {"log-every", Flag::SIZE, &c.log_every, "progress line every N steps (default: ten per epoch)"},
        {"max-steps", Flag::SIZE, &c.max_steps, "stop after N optimizer steps (benchmarks)"},
        {"skip-test", Flag::BOOL, &c.skip_test, "do not evaluate the test split at the end"},
        {"device", Flag::STR, &c.device, "cpu, cuda, auto (default: CUDA when a device answers) or emulate (the device path on the CPU ops, for tests)"},
        {"tf32", Flag::BOOL, &c.tf32, "CUDA only: TF32 tensor cores for the matmuls (default FP32)"},
    };
}

int cmd_synth(int argc, char** argv) {
    SynthOptions o;
    std::string seed_s;
    uint64_t seed = o.seed;
    std::vector<Flag> flags = {
        {"out", Flag::STR, &o.out, "output folder (required)"},
        {"size", Flag::STR, &o.size, "tiny, small (default), medium or paper"},
        {"seed", Flag::U64, &seed, "generator seed (default 2040)"},
    };
    if (!parse_flags("synth", "--out DIR [--size tiny|small|medium|paper] [--seed N]", argc, argv, flags, nullptr)) return 0;
    HAFVT_INPUT(!o.out.empty(), "hafvt synth: --out DIR is required");
    o.seed = seed;
    Timer t;
    synth_generate(o);
    std::printf("wrote the %s synthetic dataset to %s in %.1f s\n", o.size.c_str(), o.out.c_str(), t.seconds());
    return 0;
}

int cmd_train(int argc, char** argv) {
    TrainConfig c;
    if (!parse_flags("train", "--data DIR [--img F.npy] [--txt F.npy] [--out RUN] [...]", argc, argv, train_flags(c), nullptr)) return 0;
    return run_train(c);
}

int cmd_eval(int argc, char** argv) {
    TrainConfig o;
    std::string ckpt, split = "test", protocol = "full";
    std::vector<Flag> flags = {
        {"ckpt", Flag::STR, &ckpt, "checkpoint (.safetensors) written by hafvt train (required)"},
        {"data", Flag::STR, &o.data, "dataset folder (default: the one the run used)"},
        {"split", Flag::STR, &split, "valid or test (default test)"},
        {"protocol", Flag::STR, &protocol, "full (default) or c2dsr"},
        {"img", Flag::STR, &o.img, "image features (default: the run's)"},
        {"txt", Flag::STR, &o.txt, "text features (default: the run's)"},
        {"exclude-history", Flag::BOOL, &o.exclude_history, "full protocol: do not rank the input items"},
        {"alpha", Flag::FLOAT, &o.alpha, "score with another id weight (default: the run's)"},
        {"beta", Flag::FLOAT, &o.beta, "score with another img weight (default: the run's); a weight of 0 drops that head"},
        {"threads", Flag::INT, &o.threads, "CPU threads (default: all)"},
        {"eval-batch", Flag::SIZE, &o.eval_batch, "lines per evaluation batch (default: the run's)"},
        {"device", Flag::STR, &o.device, "cpu, cuda, auto (default: CUDA when a device answers) or emulate (the device path on the CPU ops, for tests)"},
    };
    o.eval_batch = 0;
    if (!parse_flags("eval", "--ckpt F --data DIR --split valid|test --protocol c2dsr|full", argc, argv, flags, nullptr)) return 0;
    if (o.threads > 0) omp_set_num_threads(o.threads);
    EvalOutcome e = run_eval(ckpt, split, protocol, o);
    std::printf("%s", format_results({e.result}).c_str());
    std::printf("%zu lines in %.1f s (%.0f lines/s)\n", e.lines, e.seconds, (double)e.lines / e.seconds);
    return 0;
}

}  // namespace

namespace {

int cmd_recommend(int argc, char** argv) {
    TrainConfig o;
    std::string ckpt, dom = "X";
    size_t k = 10;
    bool exclude = false;
    std::vector<Flag> flags = {
        {"ckpt", Flag::STR, &ckpt, "checkpoint written by hafvt train (required)"},
        {"data", Flag::STR, &o.data, "dataset folder (default: the one the run used)"},
        {"domain", Flag::STR, &dom, "X or Y: the domain to recommend from (default X)"},
        {"k", Flag::SIZE, &k, "how many items (default 10)"},
        {"exclude-history", Flag::BOOL, &exclude, "do not recommend items of the history"},
        {"img", Flag::STR, &o.img, "image features (default: the run's)"},
        {"txt", Flag::STR, &o.txt, "text features (default: the run's)"},
    };
    std::vector<std::string> hist;
    if (!parse_flags("recommend", "--ckpt F --data DIR --domain X|Y --k 10 [ITEM ...]  (ITEMs: ASINs or merged ids; "
                     "read from stdin when none are given)", argc, argv, flags, &hist)) return 0;
    if (hist.empty()) {
        std::string tok;
        while (std::cin >> tok) hist.push_back(tok);
    }
    std::vector<Recommendation> top = recommend(ckpt, o, dom, k, exclude, hist);
    std::printf("rank\tmerged_id\tasin\tscore\n");
    for (const Recommendation& r : top) std::printf("%zu\t%zu\t%s\t%.6g\n", r.rank, r.merged_id, r.asin.c_str(), r.score);
    return 0;
}

int cmd_info(int argc, char** argv) {
    std::vector<std::string> files;
    if (!parse_flags("info", "FILE [FILE ...]  (.npy or .safetensors)", argc, argv, {}, &files)) return 0;
    HAFVT_INPUT(!files.empty(), "hafvt info: expected a .npy or .safetensors file");
    for (const std::string& f : files) std::printf("%s", describe_file(f).c_str());
    return 0;
}

const char* kUsage =
    "hafvt: HAF-VT cross-domain sequential recommendation (train, evaluate, recommend)\n\n"
    "usage: hafvt COMMAND [flags]   (hafvt COMMAND --help for its flags)\n\n"
    "commands:\n"
    "  synth       write a synthetic dataset in the C2DSR format, with image and text features\n"
    "  train       train HAF-VT, evaluate every epoch, test the best checkpoint\n"
    "  eval        evaluate a checkpoint on the valid or test split (c2dsr or full protocol)\n"
    "  recommend   top-K items of a domain for a history of ASINs or merged ids\n"
    "  info        summarize a .npy or .safetensors file\n"
    "  text-features  item text features from titles (hashed TF-IDF + random projection)\n"
    "  bench-gemm  time the built-in SGEMM on the model's matrix shapes\n";

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        std::printf("%s", kUsage);
        return argc < 2 ? 2 : 0;
    }
    const std::string cmd = argv[1];
    try {
        if (cmd == "synth") return cmd_synth(argc - 2, argv + 2);
        if (cmd == "train") return cmd_train(argc - 2, argv + 2);
        if (cmd == "eval") return cmd_eval(argc - 2, argv + 2);
        if (cmd == "recommend") return cmd_recommend(argc - 2, argv + 2);
        if (cmd == "info") return cmd_info(argc - 2, argv + 2);
        if (cmd == "bench-gemm") return bench_gemm_main(argc - 2, argv + 2);
        if (cmd == "text-features") return text_features_main(argc - 2, argv + 2);
        if (cmd == "reference-input") return reference_input_main(argc - 2, argv + 2);  // hidden: tools/make_refs.sh
        HAFVT_FAIL_INPUT("hafvt: unknown command '", cmd, "'; expected one of synth, train, eval, recommend, info, "
                         "text-features, bench-gemm (see hafvt --help)");
    } catch (const InputError& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "error: out of memory; try a smaller --batch or --eval-batch\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "internal error: %s\n", e.what());
        return 1;
    }
}
