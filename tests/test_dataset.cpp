// test_dataset.cpp: the C2DSR reader on the real data (the paper's Table 1 counts), the stable
// timestamp sort, the three views with their targets, malformed inputs, and the epoch shuffle.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "core/common.h"
#include "data/dataset.h"
#include "test_util.h"

using namespace hafvt;

namespace {

void write_text(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    REQUIRE(f.good());
    f << text;
}

// Runs f and returns the InputError's message, or "" when it did not throw one.
template <typename F>
std::string input_error(F f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A catalog of NX X items and NY Y items with made-up ASINs, without files.
ItemCatalog small_catalog(size_t NX, size_t NY) {
    ItemCatalog cat;
    cat.NX = NX;
    cat.NY = NY;
    for (size_t i = 0; i < NX + NY; i++) {
        cat.asin.push_back("I" + std::to_string(i));
        cat.by_asin[cat.asin.back()] = (int32_t)i;
    }
    return cat;
}

// One row (b) of a (B,T) array as a vector, for whole-row comparisons.
std::vector<int32_t> row(const std::vector<int32_t>& a, size_t b, size_t T) {
    return std::vector<int32_t>(a.begin() + b * T, a.begin() + (b + 1) * T);
}

const int32_t P = 10;  // PAD of the 5+5 catalog

}  // namespace

TEST_CASE("dataset: real C2DSR data reproduces the paper's Table 1 counts") {
    std::string shared = testutil::shared_dir();
    if (shared.empty()) {
        MESSAGE("skipped: ../shared not found (set HAFVT_SHARED)");
        return;
    }
    struct Case {
        const char* name;
        size_t nx, ny, vx, vy, tx, ty;
    };
    const Case cases[] = {{"Food-Kitchen", 29207, 34886, 2722, 5451, 2747, 5659},
                          {"Movie-Book", 36845, 63937, 2032, 5612, 1978, 5730}};
    const size_t T = 15;
    for (const Case& c : cases) {
        const std::string name = c.name;
        CAPTURE(name);
        std::string dir = shared + "/data/c2dsr/" + name;
        ItemCatalog cat = read_catalog(dir);
        CHECK(cat.NX == c.nx);
        CHECK(cat.NY == c.ny);
        CHECK(cat.asin.size() == c.nx + c.ny);
        CHECK(cat.find(cat.asin[c.nx]) == (int32_t)c.nx);
        CHECK(cat.find("not-an-asin") == -1);

        Timer timer;
        SequenceSet valid = read_sequences(dir + "/validdata_new.txt", cat, T, false);
        double secs = timer.seconds();
        MESSAGE(name, " validdata_new.txt: ", valid.lines, " lines read in ", secs * 1e3, " ms");
        SequenceSet test = read_sequences(dir + "/testdata_new.txt", cat, T, false);
        CHECK(valid.targets_x == c.vx);
        CHECK(valid.targets_y == c.vy);
        CHECK(test.targets_x == c.tx);
        CHECK(test.targets_y == c.ty);
        CHECK(valid.seqs.size() == c.vx + c.vy);
        CHECK(test.seqs.size() == c.tx + c.ty);
        CHECK(valid.truncated == 0);  // valid/test lines have at most 15 items

        // Every eval batch over the file builds; views hold exactly the inputs.
        Batch batch;
        make_eval_batch(batch, valid.seqs, 0, 256, true, cat, T);
        CHECK(batch.B == 256);
        for (size_t b = 0; b < batch.B; b++) {
            const std::vector<int32_t>& s = valid.seqs[b];
            CHECK(batch.eval_target[b] == s.back());
            size_t n_xy = 0;
            for (size_t t = 0; t < T; t++) n_xy += batch.view[VIEW_XY].ids[b * T + t] != cat.pad();
            CHECK(n_xy == s.size() - 1);
        }
    }

    // The real partial Food-Kitchen training file loads whole.
    std::string dir = shared + "/data/c2dsr/Food-Kitchen";
    ItemCatalog cat = read_catalog(dir);
    SequenceSet train = read_sequences(dir + "/traindata_subset.txt", cat, T, true);
    CHECK(train.lines == 5731);
    CHECK(train.seqs.size() == 5731);
    CHECK(train.skipped_short == 0);
    CHECK(train.truncated == 0);
    CHECK(train.targets_x + train.targets_y == 0);
}

TEST_CASE("dataset: tokens are sorted by timestamp with a stable sort") {
    std::string dir = testutil::temp_dir("ds_sort");
    ItemCatalog cat = small_catalog(5, 5);
    // Line 1: the last two items tie at t=200, file order 7 then 1 -> target 1 (X). An unstable
    //         or reversed tie order would make the target 7 (Y).
    // Line 2: all six items tie: the file order is kept exactly.
    // Line 3 is blank (skipped, not counted); line 4 ties in the middle, out of order in the file.
    write_text(dir + "/valid.txt",
               "0\t0\t3|100|2000-01-01 00:00:00|\t7|200|x|\t1|200|x|\t5|50|x|\n"
               "1\t1\t9|5|\t2|5|\t8|5|\t0|5|\t6|5|\t4|5|\n"
               "\n"
               "2\t2\t4|30\t9|10\t2|20\t8|10\t3|30\n");
    SequenceSet set = read_sequences(dir + "/valid.txt", cat, 15, false);
    CHECK(set.lines == 3);
    REQUIRE(set.seqs.size() == 3);
    CHECK(set.seqs[0] == std::vector<int32_t>{5, 3, 7, 1});
    CHECK(set.seqs[1] == std::vector<int32_t>{9, 2, 8, 0, 6, 4});
    CHECK(set.seqs[2] == std::vector<int32_t>{9, 8, 2, 4, 3});
    CHECK(set.targets_x == 3);  // 1, 4, 3
    CHECK(set.targets_y == 0);
}

TEST_CASE("dataset: train views, positions and targets on a hand-built sequence") {
    ItemCatalog cat = small_catalog(5, 5);
    SequenceSet set;
    set.train = true;
    set.seqs = {
        {0, 5, 1, 6, 7, 2},  // x0 y5 x1 y6 y7 x2
        {0, 5, 1, 6, 7},     // last X input (1) has no later X item: unsupervised
        {5, 6, 7},           // no X item at all: X view empty
        {5, 6, 0},           // X view empty although the last target is X
        {3},                 // one item: no input, every view empty
    };
    const size_t T = 8;
    const size_t idx[] = {0, 1, 2, 3, 4};
    Batch batch;
    make_train_batch(batch, set, idx, 5, cat, T, 0);
    CHECK(batch.B == 5);
    CHECK(batch.T == T);
    const ViewBatch& X = batch.view[VIEW_X];
    const ViewBatch& Y = batch.view[VIEW_Y];
    const ViewBatch& XY = batch.view[VIEW_XY];
    using V = std::vector<int32_t>;

    // Row 0: XY inputs s_1..s_5 predict s_2..s_6.
    CHECK(row(XY.ids, 0, T) == V{P, P, P, 0, 5, 1, 6, 7});
    CHECK(row(XY.pos, 0, T) == V{0, 0, 0, 1, 2, 3, 4, 5});
    CHECK(row(XY.target, 0, T) == V{-1, -1, -1, 5, 1, 6, 7, 2});
    CHECK(row(X.ids, 0, T) == V{P, P, P, P, P, P, 0, 1});
    CHECK(row(X.pos, 0, T) == V{0, 0, 0, 0, 0, 0, 1, 2});
    CHECK(row(X.target, 0, T) == V{-1, -1, -1, -1, -1, -1, 1, 2});  // x1 predicts s_n = x2
    CHECK(row(Y.ids, 0, T) == V{P, P, P, P, P, 5, 6, 7});
    CHECK(row(Y.pos, 0, T) == V{0, 0, 0, 0, 0, 1, 2, 3});
    CHECK(row(Y.target, 0, T) == V{-1, -1, -1, -1, -1, 6, 7, -1});  // no Y after y7

    // Row 1: the X position of x1 has no next X item.
    CHECK(row(XY.ids, 1, T) == V{P, P, P, P, 0, 5, 1, 6});
    CHECK(row(XY.target, 1, T) == V{-1, -1, -1, -1, 5, 1, 6, 7});
    CHECK(row(X.ids, 1, T) == V{P, P, P, P, P, P, 0, 1});
    CHECK(row(X.target, 1, T) == V{-1, -1, -1, -1, -1, -1, 1, -1});
    CHECK(row(Y.ids, 1, T) == V{P, P, P, P, P, P, 5, 6});
    CHECK(row(Y.target, 1, T) == V{-1, -1, -1, -1, -1, -1, 6, 7});

    // Row 2: X view empty: all PAD, position 0, unsupervised.
    CHECK(row(X.ids, 2, T) == V(T, P));
    CHECK(row(X.pos, 2, T) == V(T, 0));
    CHECK(row(X.target, 2, T) == V(T, -1));
    CHECK(row(Y.ids, 2, T) == V{P, P, P, P, P, P, 5, 6});
    CHECK(row(Y.target, 2, T) == V{-1, -1, -1, -1, -1, -1, 6, 7});

    // Row 3: the X target 0 is still the XY target of y6; the Y position of y6 has no next Y.
    CHECK(row(X.ids, 3, T) == V(T, P));
    CHECK(row(XY.target, 3, T) == V{-1, -1, -1, -1, -1, -1, 6, 0});
    CHECK(row(Y.target, 3, T) == V{-1, -1, -1, -1, -1, -1, 6, -1});

    // Row 4: nothing at all.
    for (int v = 0; v < 3; v++) {
        CHECK(row(batch.view[v].ids, 4, T) == V(T, P));
        CHECK(batch.view[v].nonempty[4] == 0);
    }
    CHECK(X.nonempty == std::vector<uint8_t>{1, 1, 0, 0, 0});
    CHECK(Y.nonempty == std::vector<uint8_t>{1, 1, 1, 1, 0});
    CHECK(XY.nonempty == std::vector<uint8_t>{1, 1, 1, 1, 0});

    SUBCASE("loss_window keeps the last K supervised positions of each view") {
        make_train_batch(batch, set, idx, 2, cat, T, 1);
        CHECK(batch.B == 2);
        CHECK(row(batch.view[VIEW_XY].target, 0, T) == V{-1, -1, -1, -1, -1, -1, -1, 2});
        CHECK(row(batch.view[VIEW_X].target, 0, T) == V{-1, -1, -1, -1, -1, -1, -1, 2});
        // y7 is unsupervised, so the last supervised Y position is y6's.
        CHECK(row(batch.view[VIEW_Y].target, 0, T) == V{-1, -1, -1, -1, -1, -1, 7, -1});
        CHECK(row(batch.view[VIEW_X].target, 1, T) == V{-1, -1, -1, -1, -1, -1, 1, -1});
        make_train_batch(batch, set, idx, 2, cat, T, 2);
        CHECK(row(batch.view[VIEW_Y].target, 0, T) == V{-1, -1, -1, -1, -1, 6, 7, -1});
        CHECK(row(batch.view[VIEW_XY].target, 0, T) == V{-1, -1, -1, -1, -1, -1, 7, 2});
        // Ids and positions are untouched by the window.
        CHECK(row(batch.view[VIEW_XY].ids, 0, T) == V{P, P, P, 0, 5, 1, 6, 7});
    }

    SUBCASE("a batch of the same size reuses the vectors' storage") {
        const int32_t* before = batch.view[VIEW_Y].target.data();
        const size_t idx2[] = {4, 3, 2, 1, 0};
        make_train_batch(batch, set, idx2, 5, cat, T, 0);
        CHECK(batch.view[VIEW_Y].target.data() == before);
        CHECK(row(batch.view[VIEW_XY].ids, 4, T) == V{P, P, P, 0, 5, 1, 6, 7});
    }
}

TEST_CASE("dataset: truncation to the last T+1 items, read and batched") {
    std::string dir = testutil::temp_dir("ds_trunc");
    ItemCatalog cat = small_catalog(5, 5);
    write_text(dir + "/train.txt",
               "0\t0\t0|1|\t5|2|\t1|3|\t6|4|\t7|5|\t2|6|\n"  // x0 y5 x1 y6 y7 x2
               "0\t1\t3|1|\n"                                 // one item: skipped
               "0\t2\n");                                     // no item: skipped
    const size_t T = 3;
    SequenceSet set = read_sequences(dir + "/train.txt", cat, T, true);
    CHECK(set.lines == 3);
    CHECK(set.skipped_short == 2);
    CHECK(set.truncated == 1);
    REQUIRE(set.seqs.size() == 1);
    CHECK(set.seqs[0] == std::vector<int32_t>{1, 6, 7, 2});

    using V = std::vector<int32_t>;
    Batch batch;
    const size_t idx[] = {0};
    make_train_batch(batch, set, idx, 1, cat, T, 0);
    CHECK(batch.view[VIEW_XY].ids == V{1, 6, 7});
    CHECK(batch.view[VIEW_XY].pos == V{1, 2, 3});
    CHECK(batch.view[VIEW_XY].target == V{6, 7, 2});
    CHECK(batch.view[VIEW_X].ids == V{P, P, 1});
    CHECK(batch.view[VIEW_X].pos == V{0, 0, 1});
    CHECK(batch.view[VIEW_X].target == V{-1, -1, 2});
    CHECK(batch.view[VIEW_Y].ids == V{P, 6, 7});
    CHECK(batch.view[VIEW_Y].pos == V{0, 1, 2});
    CHECK(batch.view[VIEW_Y].target == V{-1, 7, -1});

    // A set read with a larger T is cut to the last T+1 items when batched.
    SequenceSet wide;
    wide.train = true;
    wide.seqs = {{0, 5, 1, 6, 7, 2}};
    Batch batch2;
    make_train_batch(batch2, wide, idx, 1, cat, T, 0);
    for (int v = 0; v < 3; v++) {
        CHECK(batch2.view[v].ids == batch.view[v].ids);
        CHECK(batch2.view[v].pos == batch.view[v].pos);
        CHECK(batch2.view[v].target == batch.view[v].target);
    }
}

TEST_CASE("dataset: eval batches") {
    ItemCatalog cat = small_catalog(5, 5);
    std::vector<std::vector<int32_t>> seqs = {{0, 5, 1, 6, 7, 2}, {5, 6, 7}, {3, 8}};
    using V = std::vector<int32_t>;
    Batch batch;
    const size_t T = 3;
    make_eval_batch(batch, seqs, 0, 3, true, cat, T);
    CHECK(batch.B == 3);
    CHECK(batch.eval_target == V{2, 7, 8});
    // Row 0: inputs x0 y5 x1 y6 y7, the last T = 3 kept.
    CHECK(row(batch.view[VIEW_XY].ids, 0, T) == V{1, 6, 7});
    CHECK(row(batch.view[VIEW_XY].pos, 0, T) == V{1, 2, 3});
    CHECK(row(batch.view[VIEW_X].ids, 0, T) == V{P, P, 1});
    CHECK(row(batch.view[VIEW_X].pos, 0, T) == V{0, 0, 1});
    CHECK(row(batch.view[VIEW_Y].ids, 0, T) == V{P, 6, 7});
    // Row 1: inputs y5 y6, no X view.
    CHECK(row(batch.view[VIEW_XY].ids, 1, T) == V{P, 5, 6});
    CHECK(row(batch.view[VIEW_X].ids, 1, T) == V{P, P, P});
    CHECK(batch.view[VIEW_X].nonempty == std::vector<uint8_t>{1, 0, 1});
    CHECK(batch.view[VIEW_Y].nonempty == std::vector<uint8_t>{1, 1, 0});
    // Eval views carry no supervised positions.
    for (int v = 0; v < 3; v++) CHECK(batch.view[v].target == V(3 * T, -1));

    // Without a target (recommend): the whole history is the input.
    make_eval_batch(batch, seqs, 1, 3, false, cat, T);
    CHECK(batch.B == 2);
    CHECK(batch.eval_target == V{-1, -1});
    CHECK(row(batch.view[VIEW_XY].ids, 0, T) == V{5, 6, 7});
    CHECK(row(batch.view[VIEW_XY].ids, 1, T) == V{P, 3, 8});
    CHECK(row(batch.view[VIEW_X].ids, 1, T) == V{P, P, 3});
    CHECK(row(batch.view[VIEW_Y].ids, 1, T) == V{P, P, 8});
}

TEST_CASE("dataset: item lists") {
    std::string dir = testutil::temp_dir("ds_cat");
    SUBCASE("CRLF line ends and a missing final newline are accepted") {
        write_text(dir + "/Alist.txt", "17\tA0\t0\r\n18\tA1\t1\r\n");
        write_text(dir + "/Blist.txt", "40\tB0\t0\r\n41\tB1\t1\r\n42\tB2\t2");
        ItemCatalog cat = read_catalog(dir);
        CHECK(cat.NX == 2);
        CHECK(cat.NY == 3);
        CHECK(cat.pad() == 5);
        CHECK(cat.asin == std::vector<std::string>{"A0", "A1", "B0", "B1", "B2"});
        CHECK(cat.find("B2") == 4);
        CHECK(cat.find("A1") == 1);
        CHECK(cat.in_x(1));
        CHECK(!cat.in_x(2));
    }
    SUBCASE("non-contiguous local ids") {
        write_text(dir + "/Alist.txt", "17\tA0\t0\n18\tA1\t2\n");
        write_text(dir + "/Blist.txt", "40\tB0\t0\n");
        std::string msg = input_error([&] { read_catalog(dir); });
        CHECK(contains(msg, "Alist.txt:2"));
        CHECK(contains(msg, "expected local_id 1"));
        CHECK(contains(msg, "'2'"));
    }
    SUBCASE("an ASIN in both files") {
        write_text(dir + "/Alist.txt", "17\tA0\t0\n18\tSAME\t1\n");
        write_text(dir + "/Blist.txt", "40\tB0\t0\n41\tSAME\t1\n");
        std::string msg = input_error([&] { read_catalog(dir); });
        CHECK(contains(msg, "Blist.txt:2"));
        CHECK(contains(msg, "SAME"));
        CHECK(contains(msg, "Alist.txt item 1"));
    }
    SUBCASE("wrong number of fields, empty ASIN") {
        write_text(dir + "/Alist.txt", "17\tA0\t0\n18\tA1\n");
        write_text(dir + "/Blist.txt", "40\tB0\t0\n");
        std::string msg = input_error([&] { read_catalog(dir); });
        CHECK(contains(msg, "Alist.txt:2"));
        CHECK(contains(msg, "3 tab-separated fields"));
        write_text(dir + "/Alist.txt", "17\tA0\t0\n");
        write_text(dir + "/Blist.txt", "40\tB0\t0\n41\t\t1\n");
        msg = input_error([&] { read_catalog(dir); });
        CHECK(contains(msg, "Blist.txt:2"));
        CHECK(contains(msg, "ASIN"));
    }
    SUBCASE("a missing file names it and says what DIR must be") {
        write_text(dir + "/Alist.txt", "17\tA0\t0\n");
        std::string msg = input_error([&] { read_catalog(dir); });
        CHECK(contains(msg, dir + "/Blist.txt"));
        CHECK(contains(msg, "C2DSR dataset folder"));
        msg = input_error([&] { read_catalog(dir + "/nowhere"); });
        CHECK(contains(msg, "Alist.txt"));
    }
    SUBCASE("an empty item list") {
        write_text(dir + "/Alist.txt", "");
        write_text(dir + "/Blist.txt", "40\tB0\t0\n");
        std::string msg = input_error([&] { read_catalog(dir); });
        CHECK(contains(msg, "Alist.txt"));
        CHECK(contains(msg, "empty"));
    }
}

TEST_CASE("dataset: malformed sequence files name the file, line and token") {
    std::string dir = testutil::temp_dir("ds_bad");
    ItemCatalog cat = small_catalog(5, 5);
    const std::string good = "0\t0\t1|10|d|\t6|20|d|\n";
    // Each case: the bad line (written as line 3, after a good line and a blank line), whether
    // it is read as a train file, and the words the message must hold.
    struct Case {
        const char* what;
        std::string line;
        bool train;
        std::vector<std::string> words;
    };
    const Case cases[] = {
        {"non-numeric id", "0\t1\t1|10|\tab|20|", false, {"token 2", "'ab|20|'", "integer item id"}},
        {"id out of range", "0\t1\t1|10|\t10|20|", true, {"token 2", "'10|20|'", "out of range"}},
        {"negative id", "0\t1\t-1|10|\t2|20|", false, {"token 1", "out of range"}},
        {"negative timestamp", "0\t1\t1|10|\t2|-5|", false, {"token 2", "'2|-5|'", "non-negative timestamp"}},
        {"timestamp overflow", "0\t1\t1|99999999999999999999|\t2|5|", false, {"token 1", "64-bit"}},
        {"non-numeric timestamp", "0\t1\t1|1x0|\t2|5|", false, {"token 1", "'1|1x0|'", "timestamp"}},
        {"empty timestamp", "0\t1\t1||\t2|5|", false, {"token 1", "timestamp"}},
        {"missing '|'", "0\t1\t1|10|\t2", false, {"token 2", "'2'", "no '|'"}},
        {"eval line without items", "0\t1", false, {"at least 2 items", "found 0"}},
        {"eval line with one item", "0\t1\t2|5|", false, {"at least 2 items", "found 1"}},
        {"no tab at all", "hello", true, {"no tab"}},
        {"non-numeric user", "u7\t1\t1|10|\t2|5|", true, {"user id", "'u7'"}},
    };
    for (const Case& c : cases) {
        CAPTURE(c.what);
        std::string path = dir + "/seqs.txt";
        write_text(path, good + "\n" + c.line + "\n" + good);
        std::string msg = input_error([&] { read_sequences(path, cat, 15, c.train); });
        CHECK(contains(msg, path + ":3:"));
        for (const std::string& w : c.words) {
            CAPTURE(w);
            CHECK(contains(msg, w));
        }
    }

    SUBCASE("empty files and directories") {
        write_text(dir + "/empty.txt", "");
        std::string msg = input_error([&] { read_sequences(dir + "/empty.txt", cat, 15, true); });
        CHECK(contains(msg, "empty.txt"));
        CHECK(contains(msg, "no sequences"));
        msg = input_error([&] { read_sequences(dir + "/empty.txt", cat, 15, false); });
        CHECK(contains(msg, "no sequences"));
        write_text(dir + "/short.txt", "0\t0\t1|5|\n\n0\t1\n");
        msg = input_error([&] { read_sequences(dir + "/short.txt", cat, 15, true); });
        CHECK(contains(msg, "short.txt"));
        CHECK(contains(msg, "2 lines with fewer than 2 items"));
        msg = input_error([&] { read_sequences(dir, cat, 15, true); });
        CHECK(contains(msg, dir));
        CHECK(contains(msg, "directory"));
        msg = input_error([&] { read_sequences(dir + "/missing.txt", cat, 15, true); });
        CHECK(contains(msg, "missing.txt"));
    }

    SUBCASE("CRLF, trailing tabs and a missing final newline are accepted") {
        write_text(dir + "/crlf.txt", "0\t0\t1|10|d|\t6|20|d|\r\n0\t1\t6|10|\t2|3|\t\r\n0\t2\t7|1|\t3|2|");
        SequenceSet set = read_sequences(dir + "/crlf.txt", cat, 15, false);
        CHECK(set.lines == 3);
        REQUIRE(set.seqs.size() == 3);
        CHECK(set.seqs[0] == std::vector<int32_t>{1, 6});
        CHECK(set.seqs[1] == std::vector<int32_t>{2, 6});
        CHECK(set.seqs[2] == std::vector<int32_t>{7, 3});
        CHECK(set.targets_x == 1);
        CHECK(set.targets_y == 2);
    }
}

TEST_CASE("dataset: shuffled_order") {
    const size_t n = 1000;
    std::vector<size_t> a = shuffled_order(n, 2040, 0);
    std::vector<size_t> sorted = a;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < n; i++) REQUIRE(sorted[i] == i);
    CHECK(shuffled_order(n, 2040, 0) == a);
    CHECK(shuffled_order(n, 2040, 1) != a);
    CHECK(shuffled_order(n, 2041, 0) != a);
    size_t fixed = 0;
    for (size_t i = 0; i < n; i++) fixed += a[i] == i;
    CHECK(fixed < 10);  // a real shuffle leaves about one element in place
    CHECK(shuffled_order(0, 1, 0).empty());
    CHECK(shuffled_order(1, 1, 0) == std::vector<size_t>{0});
    CHECK(std::string(kViewNames[VIEW_X]) == "x");
    CHECK(std::string(kViewNames[VIEW_Y]) == "y");
    CHECK(std::string(kViewNames[VIEW_XY]) == "xy");
}
