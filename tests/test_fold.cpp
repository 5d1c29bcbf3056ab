// hafvt fold-valid (src/data/fold.h): the seeded choice, whole lines moved verbatim, the other
// files unchanged, fold.json's counts, the result read by the trainer, bad input refused with
// nothing written.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "cli_util.h"
#include "core/common.h"
#include "core/json.h"
#include "data/dataset.h"
#include "data/fold.h"
#include "test_util.h"

using namespace hafvt;
using namespace testutil;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at < text.size()) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        if (end > at) out.push_back(text.substr(at, end - at));
        at = end + 1;
    }
    return out;
}

}  // namespace

TEST_CASE("fold-valid: the choice moves round(f n) lines, clamped to leave one on each side, by seed") {
    for (size_t n : {2, 3, 10, 8173}) {
        for (double f : {0.01, 0.5, 0.8, 0.99}) {
            CAPTURE(n);
            CAPTURE(f);
            const std::vector<bool> m = fold_choice(n, f, 7);
            const size_t k = (size_t)std::count(m.begin(), m.end(), true);
            size_t want = (size_t)std::llround(f * (double)n);
            want = std::min(std::max<size_t>(want, 1), n - 1);
            CHECK(k == want);
            CHECK(fold_choice(n, f, 7) == m);  // the same seed, the same lines
        }
    }
    const std::vector<bool> a = fold_choice(1000, 0.5, 1), b = fold_choice(1000, 0.5, 2);
    CHECK(a != b);
    // not the first k lines: the choice is spread over the file
    const size_t first_half = (size_t)std::count(a.begin(), a.begin() + 500, true);
    CHECK(first_half > 200);
    CHECK(first_half < 300);
}

TEST_CASE("hafvt fold-valid: whole lines moved, other files unchanged, the trainer reads it") {
    const std::string src = tiny_dataset(), dir = testutil::temp_dir("fold"), out = dir + "/folded";
    RunResult r = run_hafvt("fold-valid --data " + src + " --train-file traindata_new.txt --out " + out + " --fraction 0.75 --seed 3");
    INFO(r.out);
    REQUIRE(r.status == 0);
    const std::vector<std::string> train0 = lines_of(read_file(src + "/traindata_new.txt")),
                                   valid0 = lines_of(read_file(src + "/validdata_new.txt")),
                                   train1 = lines_of(read_file(out + "/traindata_new.txt")),
                                   valid1 = lines_of(read_file(out + "/validdata_new.txt"));
    const size_t moved = (size_t)std::llround(0.75 * (double)valid0.size());
    CHECK(train1.size() == train0.size() + moved);
    CHECK(valid1.size() == valid0.size() - moved);
    // the training lines first, unchanged; then the moved lines, each a validation line, in file order
    REQUIRE(train1.size() >= train0.size());
    CHECK(std::equal(train0.begin(), train0.end(), train1.begin()));
    std::map<std::string, int> count;
    for (const std::string& l : valid0) count[l]++;
    for (size_t i = train0.size(); i < train1.size(); i++) count[train1[i]]--;
    for (const std::string& l : valid1) count[l]--;
    bool every_line_once = true;
    for (const auto& kv : count) every_line_once = every_line_once && kv.second == 0;
    CHECK(every_line_once);
    // the kept lines stay in their order; the test split and the item lists are byte-identical
    std::vector<std::string> kept;
    const std::vector<bool> m = fold_choice(valid0.size(), 0.75f, 3);
    for (size_t i = 0; i < valid0.size(); i++)
        if (!m[i]) kept.push_back(valid0[i]);
    CHECK(kept == valid1);
    for (const char* f : {"Alist.txt", "Blist.txt", "testdata_new.txt"}) CHECK(read_file(src + "/" + f) == read_file(out + "/" + f));
    const Json info = Json::parse(read_file(out + "/fold.json"), "fold.json");
    CHECK(info["moved_to_train"]->as_int() == (int64_t)moved);
    CHECK(info["valid_kept"]->as_int() == (int64_t)valid1.size());
    CHECK(info["train_lines_before"]->as_int() == (int64_t)train0.size());
    CHECK(info["seed"]->as_int() == 3);
    // the trainer reads the new training split: every moved line is a training sequence
    const ItemCatalog cat = read_catalog(out);
    const SequenceSet t0 = read_sequences(src + "/traindata_new.txt", cat, 15, true),
                      t1 = read_sequences(out + "/traindata_new.txt", cat, 15, true);
    CHECK(t1.seqs.size() == t0.seqs.size() + moved);
    r = run_hafvt("train --data " + out + " --q 16 --blocks 1 --epochs 1 --skip-test --threads 2 --out " + dir + "/run");
    INFO(r.out);
    CHECK(r.status == 0);
    // without a training file (Movie-Book): the training split is the moved lines alone
    r = run_hafvt("fold-valid --data " + src + " --out " + dir + "/only --seed 3 --fraction 0.75");
    REQUIRE(r.status == 0);
    CHECK(lines_of(read_file(dir + "/only/traindata_new.txt")).size() == moved);
    run_shell("rm -rf " + dir, nullptr);
}

TEST_CASE("hafvt fold-valid: bad input is exit 2 with the file and line, and nothing is written") {
    const std::string src = tiny_dataset(), dir = testutil::temp_dir("foldbad"), bad = dir + "/bad", out = dir + "/out";
    run_shell("mkdir -p " + bad + " && cp " + src + "/*.txt " + bad + "/", nullptr);
    std::string valid = read_file(src + "/validdata_new.txt");
    const size_t second = valid.find('\n') + 1;
    valid.insert(second, "9\t2\t999999|5|x|\t1|6|x|\n");  // line 2: an item id out of range
    write_file_atomic(bad + "/validdata_new.txt", valid);
    RunResult r = run_hafvt("fold-valid --data " + bad + " --out " + out);
    INFO(r.out);
    CHECK(r.status == 2);
    CHECK(r.out.find(bad + "/validdata_new.txt:2: token 1: item id out of range") != std::string::npos);
    struct stat st;
    CHECK(stat((out + "/traindata_new.txt").c_str(), &st) != 0);
    CHECK(stat((out + "/fold.json").c_str(), &st) != 0);
    CHECK(run_hafvt("fold-valid --data " + src + " --out " + out + " --fraction 1").status == 2);
    CHECK(run_hafvt("fold-valid --data " + src + " --out " + src).status == 2);
    run_shell("rm -rf " + dir, nullptr);
}
