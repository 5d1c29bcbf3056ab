// test_clip_tool.cpp: tools/clip_features.py with --encoder fake writes img/txt features and
// alignment files that `hafvt train` loads (the CLIP encoders themselves need torch and weights,
// which the tests do not have). Skipped when /usr/bin/python3 cannot import numpy.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/common.h"
#include "data/dataset.h"
#include "formats/npy.h"
#include "cli_util.h"
#include "test_util.h"

using namespace hafvt;
using testutil::hafvt_bin;
using testutil::run_shell;

namespace {

bool python_has(const char* module) {
    return run_shell(cat("/usr/bin/python3 -c 'import ", module, "'"), nullptr) == 0;
}

}  // namespace

TEST_CASE("tools/clip_features.py --encoder fake: files the trainer loads") {
    if (!python_has("numpy")) {
        MESSAGE("skipped: /usr/bin/python3 cannot import numpy (apt-get install python3-numpy)");
        return;
    }
    const std::string dir = testutil::temp_dir("cliptool");
    const std::string data = dir + "/data", items = dir + "/items.tsv", tool = "/usr/bin/python3 tools/clip_features.py";
    std::string log;
    REQUIRE(run_shell(hafvt_bin() + " synth --out " + data + " --size tiny", &log) == 0);
    ItemCatalog c = read_catalog(data);
    const size_t NI = c.num_items();

    // item list: every 4th item left out; of the others, images for even ids, titles for ids not divisible by 3
    std::vector<bool> has_img(NI, false), has_txt(NI, false);
    std::string tsv = "merged_id\tasin\timage_path\ttitle\n";
    for (size_t i = 0; i < NI; i++) {
        if (i % 4 == 3) continue;
        has_img[i] = i % 2 == 0;
        has_txt[i] = i % 3 != 0;
        tsv += cat(i, "\t", c.asin[i], "\t", has_img[i] ? cat("images/", c.asin[i], ".jpg") : "", "\t",
                   has_txt[i] ? cat("Product ", i, " stainless kettle") : "", "\n");
    }
    std::ofstream(items) << tsv;

    const std::string run = tool + " --data " + data + " --items " + items + " --encoder fake --dim 24 --batch 50 --out-dir ";
    int rc = run_shell(run + dir + "/f", &log);
    INFO(log);
    REQUIRE(rc == 0);
    // same inputs, other batch size: identical files
    REQUIRE(run_shell(tool + " --data " + data + " --items " + items + " --encoder fake --dim 24 --batch 7 --out-dir " + dir + "/g",
                      nullptr) == 0);
    for (const char* f : {"img.npy", "txt.npy", "img_ids.txt", "txt_ids.txt"})
        CHECK(read_file(dir + "/f/" + f) == read_file(dir + "/g/" + f));
    CHECK(read_file(dir + "/f/txt_ids.txt") == read_file(data + "/txt_ids.txt"));

    // shapes, zero rows exactly for the missing inputs, unit rows otherwise
    for (const char* kind : {"img", "txt"}) {
        CAPTURE(kind);
        std::vector<size_t> shape;
        std::vector<float> f = npy_read_f32(dir + "/f/" + kind + ".npy", &shape);
        REQUIRE(shape == std::vector<size_t>{NI, 24});
        const std::vector<bool>& has = kind[0] == 'i' ? has_img : has_txt;
        size_t bad = 0;
        for (size_t i = 0; i < NI; i++) {
            double ss = 0.0;
            for (size_t k = 0; k < 24; k++) ss += (double)f[i * 24 + k] * f[i * 24 + k];
            bad += has[i] ? std::fabs(ss - 1.0) > 1e-5 : ss != 0.0;
        }
        CHECK(bad == 0);
    }

    // the trainer loads both tables
    const std::string f = dir + "/f/";
    rc = run_shell(hafvt_bin() + " train --data " + data + " --img " + f + "img.npy --txt " + f + "txt.npy --img-ids " + f +
                       "img_ids.txt --txt-ids " + f + "txt_ids.txt --q 16 --blocks 1 --epochs 1 --skip-test --threads 2 --out " +
                       dir + "/run",
                   &log);
    INFO(log);
    CHECK(rc == 0);

    // refusals: a wrong ASIN names the file and line; a missing CLIP package says what to install
    std::ofstream(dir + "/bad.tsv") << cat("merged_id\tasin\timage_path\ttitle\n0\t", c.asin[0], "\t\tok\n1\t", c.asin[2], "\t\tx\n");
    CHECK(run_shell(tool + " --data " + data + " --items " + dir + "/bad.tsv --encoder fake --out-dir " + dir + "/h", &log) == 2);
    CHECK(log.find(dir + "/bad.tsv: line 3: merged_id 1: expected ASIN") != std::string::npos);
    if (!python_has("open_clip")) {
        CHECK(run_shell(tool + " --data " + data + " --items " + items + " --encoder open_clip --out-dir " + dir + "/h", &log) == 2);
        CHECK(log.find("install open_clip_torch or transformers") != std::string::npos);
    }
    run_shell("rm -rf " + dir, nullptr);
}

TEST_CASE("tools/clip_features.py: --what picks the tables; bad item lists are refused") {
    if (!python_has("numpy")) {
        MESSAGE("skipped: /usr/bin/python3 cannot import numpy (apt-get install python3-numpy)");
        return;
    }
    const std::string dir = testutil::temp_dir("cliptool2");
    const std::string data = dir + "/data", tool = "/usr/bin/python3 tools/clip_features.py --encoder fake --dim 8";
    std::string log;
    REQUIRE(run_shell(hafvt_bin() + " synth --out " + data + " --size tiny", &log) == 0);
    ItemCatalog c = read_catalog(data);
    const std::string header = "merged_id\tasin\timage_path\ttitle\n";

    // titles only: txt.npy and txt_ids.txt, no image table
    std::ofstream(dir + "/t.tsv") << header << cat(c.NX, "\t", c.asin[c.NX], "\t\tcast iron pan\n");
    int rc = run_shell(tool + " --what txt --data " + data + " --items " + dir + "/t.tsv --out-dir " + dir + "/o", &log);
    INFO(log);
    REQUIRE(rc == 0);
    CHECK(log.find(cat("coverage X 0/", c.NX, ", Y 1/", c.NY)) != std::string::npos);
    std::vector<size_t> shape;
    std::vector<float> f = npy_read_f32(dir + "/o/txt.npy", &shape);
    REQUIRE(shape == std::vector<size_t>{c.num_items(), 8});
    size_t nonzero = 0;
    for (float v : f) nonzero += v != 0.0f;
    CHECK(nonzero == 8);                                        // one row, the Y item's
    CHECK(f[c.NX * 8] != 0.0f);
    FILE* img = std::fopen((dir + "/o/img.npy").c_str(), "rb");
    CHECK(img == nullptr);
    if (img) std::fclose(img);

    // refusals name the file and the line
    struct Bad {
        std::string body, says;
    };
    const std::vector<Bad> bad = {
        {cat("merged_id\tasin\ttitle\n0\t", c.asin[0], "\tx\n"), "line 1: expected the header"},
        {header + cat(c.num_items(), "\tZZ\t\tx\n"), cat("line 2: merged_id: expected 0..", c.num_items() - 1)},
        {header + cat("0\t", c.asin[0], "\tonly three\n"), "line 2: expected 4 tab-separated columns"},
        {header + cat("0\t", c.asin[0], "\t\ta\n0\t", c.asin[0], "\t\tb\n"), "line 3: merged_id 0: expected one row per item"},
    };
    for (const Bad& b : bad) {
        std::ofstream(dir + "/bad.tsv") << b.body;
        CHECK(run_shell(tool + " --data " + data + " --items " + dir + "/bad.tsv --out-dir " + dir + "/o2", &log) == 2);
        CAPTURE(log);
        CHECK(log.find(dir + "/bad.tsv: " + b.says) != std::string::npos);
    }
    run_shell("rm -rf " + dir, nullptr);
}

TEST_CASE("tools/clip_features.py --titles: title files alone give the text table; bad ones are refused") {
    if (!python_has("numpy")) {
        MESSAGE("skipped: /usr/bin/python3 cannot import numpy (apt-get install python3-numpy)");
        return;
    }
    const std::string dir = testutil::temp_dir("cliptool3");
    const std::string data = dir + "/data", tool = "/usr/bin/python3 tools/clip_features.py --encoder fake --dim 8";
    std::string log;
    REQUIRE(run_shell(hafvt_bin() + " synth --out " + data + " --size tiny", &log) == 0);
    ItemCatalog c = read_catalog(data);
    const std::string header = "local_id\tmerged_id\tasin\ttitle\n";
    // two files (an X title, a Y title), as ../shared/data/llmcdsr-titles has them
    std::ofstream(dir + "/a.tsv") << header << cat("2\t2\t", c.asin[2], "\tgreen tea\n");
    std::ofstream(dir + "/b.tsv") << header << cat("0\t", c.NX, "\t", c.asin[c.NX], "\tchef knife\n");
    const std::string args = " --data " + data + " --titles " + dir + "/a.tsv --titles " + dir + "/b.tsv --out-dir " + dir + "/o";
    int rc = run_shell(tool + " --what txt" + args, &log);
    INFO(log);
    REQUIRE(rc == 0);
    CHECK(log.find(cat("coverage X 1/", c.NX, ", Y 1/", c.NY)) != std::string::npos);
    std::vector<size_t> shape;
    std::vector<float> f = npy_read_f32(dir + "/o/txt.npy", &shape);
    REQUIRE(shape == std::vector<size_t>{c.num_items(), 8});
    size_t nonzero_rows = 0;
    for (size_t i = 0; i < c.num_items(); i++) {
        double n2 = 0.0;
        for (size_t k = 0; k < 8; k++) n2 += (double)f[i * 8 + k] * f[i * 8 + k];
        nonzero_rows += n2 > 0.0;
        if (i == 2 || i == c.NX) CHECK(std::fabs(n2 - 1.0) < 1e-5);
    }
    CHECK(nonzero_rows == 2);
    // title files have no images; a wrong ASIN and a wrong header name the file and the line
    CHECK(run_shell(tool + args, &log) == 2);
    CHECK(log.find("--titles has no images: use --what txt") != std::string::npos);
    std::ofstream(dir + "/bad.tsv") << header << cat("1\t1\t", c.asin[2], "\tx\n");
    CHECK(run_shell(tool + " --what txt --data " + data + " --titles " + dir + "/bad.tsv --out-dir " + dir + "/o2", &log) == 2);
    CHECK(log.find(dir + "/bad.tsv: line 2: merged_id 1: expected ASIN") != std::string::npos);
    std::ofstream(dir + "/nohead.tsv") << cat("1\t1\t", c.asin[1], "\tx\n");
    CHECK(run_shell(tool + " --what txt --data " + data + " --titles " + dir + "/nohead.tsv --out-dir " + dir + "/o2", &log) == 2);
    CHECK(log.find(dir + "/nohead.tsv: line 1: expected the header") != std::string::npos);
    run_shell("rm -rf " + dir, nullptr);
}
