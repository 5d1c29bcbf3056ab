// fold.cpp: `hafvt fold-valid` (see fold.h).
#include "data/fold.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "core/common.h"
#include "core/flags.h"
#include "core/json.h"
#include "core/lines.h"
#include "data/dataset.h"
#include "train/run_dir.h"

namespace hafvt {

std::vector<bool> fold_choice(size_t n, double fraction, uint64_t seed) {
    std::vector<bool> moved(n, false);
    if (n < 2) return moved;
    size_t k = (size_t)std::llround(fraction * (double)n);
    k = std::min(std::max<size_t>(k, 1), n - 1);
    // the first k of a Fisher-Yates permutation
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    for (size_t i = 0; i < k; i++) {
        const size_t j = i + (size_t)(rng_u64(seed, rng_stream(RNG_FOLD, 0), i) % (n - i));
        std::swap(idx[i], idx[j]);
        moved[idx[i]] = true;
    }
    return moved;
}

namespace {

// The non-blank lines of a sequence file's text (already checked by parse_sequences), verbatim
// but for their line end.
std::vector<std::string> file_lines(const std::string& text, const std::string& path) {
    std::vector<std::string> out;
    LineReader lr(text, path, /*strip_blanks=*/false);
    Span line;
    while (lr.next(line)) {
        std::string ln = line.str();
        if (ln.find_first_not_of(" \t") != std::string::npos) out.push_back(std::move(ln));
    }
    return out;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string s;
    for (const std::string& l : lines) s += l + "\n";
    return s;
}

const char* kFoldSynopsis = "--data DIR --out DIR2 [--train-file F] [--fraction 0.8] [--seed 1]";

}  // namespace

int fold_valid_main(int argc, char** argv) {
    std::string data, out, train_file;
    float fraction = 0.8f;
    uint64_t seed = 1;
    std::vector<Flag> flags = {
        {"data", Kind::STR, &data, "dataset folder in the C2DSR format (required)"},
        {"out", Kind::STR, &out, "the new dataset folder (required; created, files in it replaced)"},
        {"train-file", Kind::STR, &train_file, "the training split in --data that the moved lines join (default: none, the new training split is the moved lines only)"},
        {"fraction", Kind::FLOAT, &fraction, "share of the validation lines moved into training (default 0.8)"},
        {"seed", Kind::U64, &seed, "seed of the choice (default 1)"},
    };
    if (!parse_flags("fold-valid", kFoldSynopsis, argc, argv, flags, nullptr)) return 0;
    HAFVT_INPUT(!data.empty(), "hafvt fold-valid: --data DIR is required");
    HAFVT_INPUT(!out.empty(), "hafvt fold-valid: --out DIR2 is required");
    HAFVT_INPUT(fraction > 0.0 && fraction < 1.0, "hafvt fold-valid: --fraction: expected a number in (0, 1), found ",
                fraction);
    make_dirs(out);
    char a[4096], b[4096];
    HAFVT_INPUT(!(realpath(data.c_str(), a) && realpath(out.c_str(), b) && std::string(a) == b),
                "hafvt fold-valid: --out must be another folder than --data (", data, ")");

    // every input read and checked with the trainer's own parsers (errors name file and line)
    const ItemCatalog cat = read_catalog(data);
    const size_t T = 1000000;  // no truncation: only the checks matter here
    std::vector<std::string> train;
    if (!train_file.empty()) {
        const std::string path = data + "/" + train_file, text = read_file(path);
        parse_sequences(text, path, cat, T, true);
        train = file_lines(text, path);
    }
    const size_t train_before = train.size();
    const std::string valid_path = data + "/validdata_new.txt", test_path = data + "/testdata_new.txt";
    const std::string valid_text = read_file(valid_path), test_text = read_file(test_path);
    parse_sequences(valid_text, valid_path, cat, T, false);
    parse_sequences(test_text, test_path, cat, T, false);
    const std::vector<std::string> valid = file_lines(valid_text, valid_path);
    HAFVT_INPUT(valid.size() >= 2, valid_path, ": expected at least 2 lines to split, found ", valid.size());

    const std::vector<bool> moved = fold_choice(valid.size(), (double)fraction, seed);
    std::vector<std::string> kept;
    for (size_t i = 0; i < valid.size(); i++) (moved[i] ? train : kept).push_back(valid[i]);
    const size_t n_moved = train.size() - train_before;

    Json info = Json::object();
    info.set("generator", "hafvt fold-valid");
    info.set("source", data);
    info.set("train_file", train_file.empty() ? std::string("(none)") : train_file);
    info.set("fraction", std::round((double)fraction * 1e6) / 1e6);
    info.set("seed", (unsigned long long)seed);
    info.set("valid_lines", (double)valid.size());
    info.set("moved_to_train", (double)n_moved);
    info.set("valid_kept", (double)kept.size());
    info.set("train_lines_before", (double)train_before);
    info.set("train_lines", (double)train.size());
    info.set("note", "traindata_new.txt = the source's training lines, then validation lines moved whole (every position "
                     "a training target); validdata_new.txt = the other validation lines; testdata_new.txt and the item "
                     "lists unchanged");

    AtomicFile f_a(out + "/Alist.txt"), f_b(out + "/Blist.txt"), f_train(out + "/traindata_new.txt"),
        f_valid(out + "/validdata_new.txt"), f_test(out + "/testdata_new.txt"), f_info(out + "/fold.json");
    f_a.write(read_file(data + "/Alist.txt"));
    f_b.write(read_file(data + "/Blist.txt"));
    f_train.write(joined(train));
    f_valid.write(joined(kept));
    f_test.write(test_text);
    f_info.write(info.dump() + "\n");
    commit_together({&f_a, &f_b, &f_train, &f_valid, &f_test, &f_info});

    std::printf("moved %zu of %zu validation lines (%.0f%%, seed %llu) into training\n", n_moved, valid.size(),
                100.0 * (double)n_moved / (double)valid.size(), (unsigned long long)seed);
    std::printf("%s/traindata_new.txt: %zu lines (%zu from %s + %zu moved); validdata_new.txt: %zu lines; "
                "testdata_new.txt and the item lists unchanged; fold.json says so\n",
                out.c_str(), train.size(), train_before, train_file.empty() ? "no training file" : train_file.c_str(),
                n_moved, kept.size());
    return 0;
}

}  // namespace hafvt
