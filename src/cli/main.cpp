// main.cpp: the `hafvt` command line: synth, train, eval, recommend, report, compare, info (and
// bench-gemm, text-features).
// Every subcommand has --help. main() catches errors: bad input prints one line and exits 2,
// an internal failure exits 1.

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

#include "cli/bench_gemm.h"
#include "formats/checkpoint.h"
#include "core/common.h"
#include "core/lines.h"
#include "train/config.h"
#include "formats/safetensors.h"
#include "data/synth.h"
#include "train/evaluation.h"
#include "train/tune.h"
#include "train/report.h"
#include "data/fold.h"
#include "data/text_features.h"
#include "train/train.h"
#include "train/comm.h"

using namespace hafvt;

namespace {

int cmd_synth(int argc, char** argv) {
    SynthOptions o;
    std::string seed_s;
    uint64_t seed = o.seed;
    std::vector<Flag> flags = {
        {"out", Kind::STR, &o.out, "output folder (required)"},
        {"size", Kind::STR, &o.size, "tiny, small (default), medium or paper"},
        {"seed", Kind::U64, &seed, "generator seed (default 2040)"},
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
    // --config F.json first: its settings, then the flags on the command line over them
    std::string config;
    for (int i = 0; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--config" && i + 1 < argc) config = argv[i + 1];
        else if (a.rfind("--config=", 0) == 0) config = a.substr(9);
    }
    TrainConfig c;
    if (!config.empty()) apply_config_file(config, c);
    std::vector<Flag> flags = train_flags(c);
    flags.insert(flags.begin(), Flag{"config", Kind::STR, &config,
                                     "settings from a JSON file, e.g. a run's config.json (flags given override it)"});
    if (!parse_flags("train", "--data DIR [--img F.npy] [--txt F.npy] [--out RUN] [--config F.json] [...]", argc, argv, flags,
                     nullptr))
        return 0;
    return run_train(c);
}

// --img, --txt (one flag per frozen modality): the feature files to score with, instead of the run's.
void add_feature_flags(std::vector<Flag>& flags, TrainConfig& o) {
    static std::vector<std::string> help(kNumMods);
    for (int m = 0; m < kNumMods; m++) {
        if (m == MOD_ID) continue;
        help[(size_t)m] = cat(kModNames[m], " features .npy (default: the run's)");
        flags.push_back({kModNames[m], Kind::STR, &modality_file(o, m, false), help[(size_t)m].c_str()});
    }
}

int cmd_eval(int argc, char** argv) {
    TrainConfig o;
    ScoreWeights sw;
    std::string ckpt, split = "test", protocol = "full", json_path;
    std::vector<Flag> flags = {
        {"ckpt", Kind::STR, &ckpt, "checkpoint (.safetensors) written by hafvt train (required)"},
        {"json", Kind::STR, &json_path, "also write the figures, with the head and tail targets of the run's training file, as one JSON line (metrics.jsonl's form) to this file"},
        {"data", Kind::STR, &o.data, "dataset folder (default: the one the run used)"},
        {"split", Kind::STR, &split, "valid or test (default test)"},
        {"protocol", Kind::STR, &protocol, "full (default) or c2dsr"},
        {"exclude-history", Kind::BOOL, &o.exclude_history, "full protocol: do not rank the input items"},
        {"alpha", Kind::FLOAT, &o.alpha, "score with another id weight (default: the tuned or the run's)"},
        {"beta", Kind::FLOAT, &o.beta, "score with another img weight (default: the tuned or the run's); a weight of 0 drops that head"},
        {"lambda1", Kind::FLOAT, &sw.lambda1, "score with another weight of the other domain's view (default: the tuned or the run's)"},
        {"lambda2", Kind::FLOAT, &sw.lambda2, "score with another weight of the XY view (default: the tuned or the run's)"},
        {"trained-weights", Kind::BOOL, &sw.trained, "score with the run's weights, not those of hafvt tune (tuned.json)"},
        {"threads", Kind::INT, &o.threads, "CPU threads (default: all)"},
        {"eval-batch", Kind::SIZE, &o.eval_batch, "lines per evaluation batch (default: the run's)"},
        {"device", Kind::STR, &o.device, "cpu, cuda or auto (default: CUDA when a device answers)"},
    };
    add_feature_flags(flags, o);
    o.eval_batch = kUnsetSize;  // the run's unless given
    if (!parse_flags("eval", "--ckpt F --data DIR --split valid|test --protocol c2dsr|full", argc, argv, flags, nullptr)) return 0;
    HAFVT_INPUT(!ckpt.empty(), "hafvt eval: --ckpt F is required");
    EvalOutcome e = run_eval(ckpt, split, protocol, o, sw, !json_path.empty());
    if (!e.weights_note.empty()) std::printf("%s\n", e.weights_note.c_str());
    std::printf("%s", format_results({e.result}).c_str());
    std::printf("%zu lines in %.1f s (%.0f lines/s)\n", e.lines, e.seconds, (double)e.lines / e.seconds);
    if (!json_path.empty()) {
        Json j = eval_json(e.result, e.epoch, e.step, nullptr, e.seconds);
        j.set("weights", e.weights_note.empty() ? std::string("trained") : e.weights_note);
        write_file_atomic(json_path, j.dump() + "\n");
        std::printf("wrote %s\n", json_path.c_str());
    }
    return 0;
}

}  // namespace

namespace {

// The history of `recommend` from stdin: tokens separated by blanks or newlines, read up to 16 MiB
// (a history is a few items; /dev/zero or a binary file is refused, not read forever), and text
// only (a NUL or another control byte is refused with its line and column).
std::vector<std::string> read_history_stdin() {
    constexpr size_t kMaxBytes = (size_t)16 << 20;
    std::string text;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) {
        for (size_t i = 0; i < n; i++) {  // refused as it arrives: /dev/zero is not read for 16 MiB
            const unsigned char c = (unsigned char)buf[i];
            HAFVT_INPUT(text_byte(c) || c == '\n' || c == '\r', "stdin: byte ", text.size() + i,
                        ": expected a history of ASINs or merged ids (text), found the control byte ", byte_hex(c));
        }
        text.append(buf, n);
        HAFVT_INPUT(text.size() <= kMaxBytes, "stdin: expected a history of at most 16 MiB of ASINs or merged ids, found more");
    }
    std::vector<std::string> hist;
    LineReader lr(text, "stdin");
    for (Span line; lr.next(line);)
        for (std::string& t : split_tokens(line.p, line.n, " \t")) hist.push_back(std::move(t));
    return hist;
}

int cmd_recommend(int argc, char** argv) {
    TrainConfig o;
    RecommendOptions ro;
    std::string ckpt, histories, split;
    o.device = "cpu";
    std::vector<Flag> flags = {
        {"ckpt", Kind::STR, &ckpt, "checkpoint written by hafvt train (required)"},
        {"data", Kind::STR, &o.data, "dataset folder (default: the one the run used)"},
        {"domain", Kind::STR, &ro.domain, "X or Y: the domain to recommend from (default X)"},
        {"k", Kind::SIZE, &ro.k, "how many items (default 10)"},
        {"exclude-history", Kind::BOOL, &ro.exclude_history, "do not recommend items of the history"},
        {"explain", Kind::BOOL, &ro.explain, "add each item's score split by view and by modality, and the items the "
                                             "XY encoder's last position attended to most"},
        {"histories", Kind::STR, &histories, "a file of histories, one a line ([user<TAB>]items): TSV user, rank, merged_id, asin, score"},
        {"split", Kind::STR, &split, "valid or test: the top k of every line of the split, with a hit column"},
        {"eval-batch", Kind::SIZE, &o.eval_batch, "histories per batch (default: the run's)"},
        {"device", Kind::STR, &o.device, "cpu (default), cuda or auto"},
        {"trained-weights", Kind::BOOL, &ro.weights.trained, "score with the run's weights, not those of hafvt tune (tuned.json)"},
    };
    add_feature_flags(flags, o);
    o.eval_batch = kUnsetSize;  // the run's unless given
    std::vector<std::string> hist;
    if (!parse_flags("recommend", "--ckpt F --data DIR --domain X|Y --k 10 [--explain] [ITEM ...]  (ITEMs: ASINs or merged ids; "
                     "read from stdin when none are given)\n       hafvt recommend --ckpt F --histories H.txt | --split valid|test "
                     "[--k 10] [--explain] > top.tsv", argc, argv, flags, &hist)) return 0;
    HAFVT_INPUT(!ckpt.empty(), "hafvt recommend: --ckpt F is required");
    HAFVT_INPUT(histories.empty() || split.empty(), "hafvt recommend: expected one of --histories and --split, found both");
    HAFVT_INPUT((histories.empty() && split.empty()) || hist.empty(), "hafvt recommend: expected items on the command line or ",
                "--histories or --split, found items and ", histories.empty() ? "--split" : "--histories");
    if (!histories.empty() || !split.empty()) {
        Timer t;
        const size_t n = split.empty() ? recommend_many(ckpt, o, ro, histories, stdout) : recommend_split(ckpt, o, split, ro, stdout);
        std::fflush(stdout);
        std::fprintf(stderr, "%zu histories in %.2f s (%.0f histories/s)\n", n, t.seconds(), (double)n / t.seconds());
        return 0;
    }
    if (hist.empty()) hist = read_history_stdin();
    recommend(ckpt, o, ro, hist, stdout);
    return 0;
}

int cmd_tune(int argc, char** argv) {
    TrainConfig o;
    std::string ckpt, split = "valid", protocol = "full";
    bool skip_test = false;
    std::vector<Flag> flags = {
        {"ckpt", Kind::STR, &ckpt, "checkpoint written by hafvt train, usually RUN/best.safetensors (required)"},
        {"data", Kind::STR, &o.data, "dataset folder (default: the one the run used)"},
        {"split", Kind::STR, &split, "the split the weights are chosen on: valid (the only one; the test split is scored once after)"},
        {"protocol", Kind::STR, &protocol, "full (default) or c2dsr: the MRR that chooses"},
        {"skip-test", Kind::BOOL, &skip_test, "do not score the test split with the chosen weights"},
        {"threads", Kind::INT, &o.threads, "CPU threads (default: all)"},
        {"eval-batch", Kind::SIZE, &o.eval_batch, "lines per batch (default: the run's)"},
        {"device", Kind::STR, &o.device, "cpu, cuda or auto (default: CUDA when a device answers)"},
    };
    add_feature_flags(flags, o);
    o.eval_batch = kUnsetSize;
    if (!parse_flags("tune", "--ckpt RUN/best.safetensors [--protocol full|c2dsr]\n\nChooses the mixture weights alpha, beta "
                     "(steps of 0.05) and the score weights lambda1, lambda2 of a trained run on the validation split, writes "
                     "them to RUN/tuned.json for eval and recommend, and scores the test split once with them.",
                     argc, argv, flags, nullptr))
        return 0;
    HAFVT_INPUT(!ckpt.empty(), "hafvt tune: --ckpt F is required");
    HAFVT_INPUT(split == "valid", "hafvt tune: --split: expected valid (the test split is never tuned on), found '", split, "'");
    return run_tune(ckpt, o, protocol, skip_test, stdout);
}

// The run folders named on the command line of report and compare, read back.
std::vector<RunRecord> read_runs(const char* cmd, const std::vector<std::string>& dirs) {
    HAFVT_INPUT(!dirs.empty(), "hafvt ", cmd, ": expected one or more run folders (written by hafvt train --out), found none");
    std::vector<RunRecord> runs;
    for (const std::string& d : dirs) runs.push_back(read_run(d));
    // the same folder name twice (runs/a and other/a): the names as given tell them apart
    for (size_t i = 0; i < runs.size(); i++)
        for (size_t j = 0; j < runs.size(); j++)
            if (i != j && runs[i].name == runs[j].name) runs[i].name = runs[i].dir;
    return runs;
}

int cmd_report(int argc, char** argv) {
    std::string out;
    std::vector<Flag> flags = {
        {"out", Kind::STR, &out, "the HTML file to write (default: RUN/report.html for one run, report.html for several)"},
    };
    std::vector<std::string> dirs;
    if (!parse_flags("report", "RUN [RUN ...] [--out report.html]", argc, argv, flags, &dirs)) return 0;
    const std::vector<RunRecord> runs = read_runs("report", dirs);
    if (out.empty()) out = runs.size() == 1 ? dirs[0] + "/report.html" : "report.html";
    write_file_atomic(out, report_html(runs));
    std::printf("wrote %s (%zu run%s)\n", out.c_str(), runs.size(), runs.size() == 1 ? "" : "s");
    return 0;
}

int cmd_compare(int argc, char** argv) {
    std::vector<std::string> dirs;
    if (!parse_flags("compare", "RUN [RUN ...]  (prints a Markdown table)", argc, argv, {}, &dirs)) return 0;
    std::printf("%s", compare_markdown(read_runs("compare", dirs)).c_str());
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
    "  tune        choose the mixture and score weights of a trained run on the valid split\n"
    "  recommend   top-K items of a domain for a history of ASINs or merged ids\n"
    "  report      one HTML page of one or several runs: learning curves, test tables, configuration\n"
    "  compare     the test metrics and differing settings of several runs, as a Markdown table\n"
    "  info        summarize a .npy or .safetensors file\n"
    "  text-features  item text features from titles (hashed TF-IDF + random projection)\n"
    "  fold-valid  a dataset whose training split adds a seeded share of the validation lines\n"
    "  bench-gemm  time the built-in SGEMM on the model's matrix shapes\n";

}  // namespace

static int run_command(int argc, char** argv) {
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
        if (cmd == "tune") return cmd_tune(argc - 2, argv + 2);
        if (cmd == "report") return cmd_report(argc - 2, argv + 2);
        if (cmd == "compare") return cmd_compare(argc - 2, argv + 2);
        if (cmd == "info") return cmd_info(argc - 2, argv + 2);
        if (cmd == "bench-gemm") return bench_gemm_main(argc - 2, argv + 2);
        if (cmd == "text-features") return text_features_main(argc - 2, argv + 2);
        if (cmd == "fold-valid") return fold_valid_main(argc - 2, argv + 2);
        HAFVT_FAIL_INPUT("hafvt: unknown command '", cmd, "'",
                         did_you_mean(cmd, {"synth", "train", "eval", "tune", "recommend", "report", "compare", "info", "text-features", "fold-valid", "bench-gemm"}),
                         " (expected one of synth, train, eval, tune, recommend, report, compare, info, text-features, fold-valid, bench-gemm; ",
                         "see hafvt --help)");
    } catch (const DeviceMemoryError& e) {
        std::fprintf(stderr, "error: %s; try a smaller --batch or --eval-batch\n", printable(e.message).c_str());
        return 2;
    } catch (const InputError& e) {
        std::fprintf(stderr, "error: %s\n", printable(e.message).c_str());
        return 2;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "error: out of memory; try a smaller --batch or --eval-batch\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "internal error: %s\n", printable(e.what()).c_str());
        return 1;
    }
}

int main(int argc, char** argv) {
    // one rank of an MPI job when mpirun started it (train.cpp splits the work, comm.h)
    const std::string mpi = comm_init(&argc, &argv);
    if (!mpi.empty() && comm().root()) std::printf("%s\n", mpi.c_str());
    // the other ranks print nothing: rank 0 speaks for the job (their errors still reach stderr)
    if (!comm().root() && !std::freopen("/dev/null", "w", stdout)) return comm_end(1);
    return comm_end(run_command(argc, argv));
}
