// test_text_features.cpp: `hafvt text-features` (src/data/text_features.*): tokenization, rows (zero for
// missing titles, unit norm otherwise, near duplicates closer than unrelated titles), determinism,
// refusal of bad title files, and that the output trains (`hafvt train --txt ... --txt-ids ...`).
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/common.h"
#include "data/dataset.h"
#include "formats/npy.h"
#include "cli_util.h"
#include "test_util.h"
#include "data/text_features.h"

using namespace hafvt;
using testutil::hafvt_bin;
using testutil::run_shell;

namespace {

void write_text(const std::string& path, const std::string& s) {
    std::ofstream f(path, std::ios::binary);
    f << s;
}

double dot(const float* a, const float* b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

bool all_zero(const float* a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != 0.0f) return false;
    return true;
}

// A synthetic title for an item of topic k: two topic words, a shared word and an item word, so
// items of one topic have similar titles.
std::string synthetic_title(size_t id, int topic) {
    static const char* const words[] = {"coffee", "ceramic", "organic", "green", "tea", "kettle", "steel",
                                        "knife", "honey", "almond", "pasta", "skillet", "vanilla", "grinder"};
    const size_t nw = sizeof(words) / sizeof(words[0]);
    return cat(words[(size_t)topic % nw], " ", words[((size_t)topic * 5 + 3) % nw], " Deluxe item", id);
}

// A tiny synthetic dataset in `dir` and a title file for every 3rd X item and every 2nd Y item.
// Returns the catalog; `titled` marks the items that have a title.
ItemCatalog make_titled_dataset(const std::string& dir, const std::string& titles_path, std::vector<bool>* titled) {
    std::string log;
    REQUIRE(run_shell(hafvt_bin() + " synth --out " + dir + " --size tiny", &log) == 0);
    ItemCatalog c = read_catalog(dir);
    // topics from the generator's truth file: merged_id asin topic head
    std::vector<int> topic(c.num_items(), 0);
    std::istringstream truth(read_file(dir + "/synth_items.tsv"));
    std::string line;
    std::getline(truth, line);
    while (std::getline(truth, line)) {
        size_t id;
        char asin[64];
        int k, head;
        if (std::sscanf(line.c_str(), "%zu %63s %d %d", &id, asin, &k, &head) == 4 && id < c.num_items()) topic[id] = k;
    }
    std::string tsv = "local_id\tmerged_id\tasin\ttitle\n";
    titled->assign(c.num_items(), false);
    for (size_t i = 0; i < c.num_items(); i++) {
        bool x = i < c.NX;
        if ((x && i % 3 != 0) || (!x && i % 2 != 0)) continue;
        (*titled)[i] = true;
        tsv += cat(x ? i : i - c.NX, "\t", i, "\t", c.asin[i], "\t", synthetic_title(i, topic[i]), "\n");
    }
    write_text(titles_path, tsv);
    return c;
}

}  // namespace

TEST_CASE("text features: words are lowercase runs of letters and digits") {
    std::vector<std::string> w = title_words("Hario Ceramic-Coffee MILL, 2x (Pack of 12) caf\xc3\xa9");
    std::vector<std::string> want = {"hario", "ceramic", "coffee", "mill", "2x", "pack", "of", "12", "caf\xc3\xa9"};
    CHECK(w == want);
    CHECK(title_words(" -- !! ").empty());
}

TEST_CASE("text features: zero rows, unit norms, near duplicates, determinism") {
    const std::vector<std::string> titles = {
        "Hario Ceramic Coffee Mill Skerton",                    // 0
        "",                                                     // 1: no title
        "Hario Ceramic Coffee Mill Skerton Plus",               // 2: near duplicate of 0
        "Stainless Steel Chef Knife, 8 Inch",                   // 3: unrelated
        "Organic Green Tea Bags (Pack of 100)",                 // 4: unrelated
        "?!  --",                                               // 5: no word: zero row
        "Hario Skerton ceramic coffee mill",                    // 6: same words, other order
    };
    const size_t dim = 64, n = titles.size();
    std::vector<float> f = text_features(titles, dim, 2040);
    REQUIRE(f.size() == n * dim);
    const float* r = f.data();
    CHECK(all_zero(r + 1 * dim, dim));
    CHECK(all_zero(r + 5 * dim, dim));
    for (size_t i : {0, 2, 3, 4, 6}) CHECK(std::fabs(dot(r + i * dim, r + i * dim, dim) - 1.0) < 1e-5);
    const double near = dot(r, r + 2 * dim, dim), reorder = dot(r, r + 6 * dim, dim);
    const double far1 = dot(r, r + 3 * dim, dim), far2 = dot(r, r + 4 * dim, dim);
    INFO("cos near ", near, " reordered ", reorder, " unrelated ", far1, " ", far2);
    CHECK(near > 0.6);
    CHECK(reorder > 0.6);
    CHECK(near > far1 + 0.3);
    CHECK(near > far2 + 0.3);
    // a pure function of (titles, dim, seed); another seed draws another projection
    std::vector<float> again = text_features(titles, dim, 2040);
    CHECK(std::memcmp(again.data(), f.data(), f.size() * sizeof(float)) == 0);
    std::vector<float> other = text_features(titles, dim, 7);
    CHECK(std::memcmp(other.data(), f.data(), f.size() * sizeof(float)) != 0);
    // the cosine structure survives the change of projection
    CHECK(dot(other.data(), other.data() + 2 * dim, dim) > dot(other.data(), other.data() + 3 * dim, dim) + 0.3);
}

TEST_CASE("text features: bad title files are refused with file and line") {
    ItemCatalog c;
    c.NX = 2;
    c.NY = 2;
    c.asin = {"AX0", "AX1", "BY0", "BY1"};
    for (size_t i = 0; i < c.asin.size(); i++) c.by_asin[c.asin[i]] = (int32_t)i;
    const std::string dir = testutil::temp_dir("titles");
    const std::string header = "local_id\tmerged_id\tasin\ttitle\n";
    const std::string good = "0\t0\tAX0\tfirst title\n";
    struct Case {
        const char* name;
        std::string body;
        const char* says;  // a piece of the message
    };
    const std::vector<Case> cases = {
        {"wrong asin", header + good + "1\t3\tBY0\tsome title\n", "expected ASIN 'BY1'"},
        {"merged id out of range", header + good + "0\t4\tBY0\tx\n", "merged_id: expected 0..3"},
        {"merged id not a number", header + good + "0\tseven\tAX1\tx\n", "found 'seven'"},
        {"missing column", header + good + "1\t1\tAX1 no tab before the title\n", "expected 4 tab-separated columns"},
        {"local id mismatch", header + good + "0\t3\tBY1\tx\n", "local_id: expected 1"},
        {"duplicate item", header + good + "0\t0\tAX0\tagain\n", "expected one title per item"},
    };
    for (const Case& k : cases) {
        CAPTURE(k.name);
        const std::string path = dir + "/bad.tsv";
        write_text(path, k.body);
        TitleSet set;
        std::string msg;
        try {
            read_titles(set, path, c);
        } catch (const InputError& e) {
            msg = e.what();
        }
        CAPTURE(msg);
        CHECK(msg.find(path + ": line 3") != std::string::npos);
        CHECK(msg.find(k.says) != std::string::npos);
    }
    // a wrong header is refused at line 1; a good file reads
    write_text(dir + "/nohead.tsv", good);
    TitleSet set;
    CHECK_THROWS_WITH_AS(read_titles(set, dir + "/nohead.tsv", c), doctest::Contains("nohead.tsv: line 1: expected the header"),
                         InputError);
    write_text(dir + "/ok.tsv", header + good + "1\t3\tBY1\ttab\tinside\r\n");
    TitleSet ok;
    read_titles(ok, dir + "/ok.tsv", c);
    CHECK(ok.rows == 2);
    CHECK(ok.title[0] == "first title");
    CHECK(ok.title[3] == "tab\tinside");
    CHECK(ok.title[1].empty());
    run_shell("rm -rf " + dir, nullptr);
}

TEST_CASE("hafvt text-features: shape, coverage, determinism, refusal, and the output trains") {
    const std::string dir = testutil::temp_dir("textfeat");
    const std::string data = dir + "/data", titles = dir + "/titles.tsv";
    std::vector<bool> titled;
    ItemCatalog c = make_titled_dataset(data, titles, &titled);
    const std::string bin = hafvt_bin();
    std::string log;
    const std::string base = bin + " text-features --data " + data + " --titles " + titles + " --dim 32";
    REQUIRE(run_shell(base + " --out " + dir + "/a.npy", &log) == 0);
    INFO(log);
    size_t nx = 0, ny = 0;
    for (size_t i = 0; i < c.num_items(); i++) (i < c.NX ? nx : ny) += titled[i];
    CHECK(log.find(cat("coverage X (Alist): ", nx, "/", c.NX)) != std::string::npos);
    CHECK(log.find(cat("coverage Y (Blist): ", ny, "/", c.NY)) != std::string::npos);
    // byte-identical on a second run; the default alignment file sits next to the features
    REQUIRE(run_shell(base + " --out " + dir + "/b.npy --ids-out " + dir + "/b_ids.txt", nullptr) == 0);
    CHECK(read_file(dir + "/a.npy") == read_file(dir + "/b.npy"));
    CHECK(read_file(dir + "/a_ids.txt") == read_file(dir + "/b_ids.txt"));
    CHECK(read_file(dir + "/a_ids.txt") == read_file(data + "/txt_ids.txt"));  // the generator's own alignment
    std::vector<size_t> shape;
    std::vector<float> f = npy_read_f32(dir + "/a.npy", &shape);
    REQUIRE(shape == std::vector<size_t>{c.num_items(), 32});
    size_t bad = 0;
    for (size_t i = 0; i < c.num_items(); i++) {
        const float* r = f.data() + i * 32;
        bool ok = titled[i] ? std::fabs(dot(r, r, 32) - 1.0) < 1e-5 : all_zero(r, 32);
        bad += !ok;
    }
    CHECK(bad == 0);
    // a bad file: exit status 2 and a message naming it
    write_text(dir + "/bad.tsv", cat("local_id\tmerged_id\tasin\ttitle\n0\t0\t", c.asin[1], "\tx\n"));
    CHECK(run_shell(bin + " text-features --data " + data + " --titles " + dir + "/bad.tsv --out " + dir + "/c.npy", &log) == 2);
    CHECK(log.find(dir + "/bad.tsv: line 2: merged_id 0: expected ASIN") != std::string::npos);
    // the features load and train
    const std::string train = bin + " train --data " + data + " --txt " + dir + "/a.npy --txt-ids " + dir +
                              "/a_ids.txt --modalities id,txt --q 16 --blocks 1 --epochs 1 --skip-test --threads 2 --out " +
                              dir + "/run";
    int rc = run_shell(train, &log);
    INFO(log);
    CHECK(rc == 0);
    run_shell("rm -rf " + dir, nullptr);
}

TEST_CASE("hafvt text-features on the Food-Kitchen titles (../shared)") {
    const std::string shared = testutil::shared_dir();
    if (shared.empty()) {
        MESSAGE("skipped: ../shared not found (set HAFVT_SHARED to the shared folder)");
        return;
    }
    const std::string fk = shared + "/data/c2dsr/Food-Kitchen", t = shared + "/data/llmcdsr-titles/Food-Kitchen";
    const std::string dir = testutil::temp_dir("textfk");
    std::string log;
    int rc = run_shell(hafvt_bin() + " text-features --data " + fk + " --titles " + t + "/titles_A.tsv --titles " + t +
                             "/titles_B.tsv --dim 16 --out " + dir + "/fk.npy",
                         &log);
    INFO(log);
    CHECK(rc == 0);
    CHECK(log.find("read 30787 titles") != std::string::npos);
    CHECK(log.find("coverage X (Alist): 8435/29207") != std::string::npos);
    CHECK(log.find("coverage Y (Blist): 22352/34886") != std::string::npos);
    std::vector<size_t> shape;
    npy_read_f32(dir + "/fk.npy", &shape);
    CHECK(shape == std::vector<size_t>{29207 + 34886, 16});
    run_shell("rm -rf " + dir, nullptr);
}
