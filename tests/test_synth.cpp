// test_synth.cpp: the synthetic dataset generator (SPEC §8): determinism, the C2DSR format as our
// reader sees it, feature files, and the two regimes (popular head, rare long tail).
#include "test_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "core/common.h"
#include "data/dataset.h"
#include "formats/npy.h"
#include "data/synth.h"

using namespace hafvt;

namespace {

const char* const kFiles[] = {"Alist.txt",         "Blist.txt",        "traindata_new.txt",
                              "validdata_new.txt", "testdata_new.txt", "img.npy",
                              "txt.npy",           "img_ids.txt",      "txt_ids.txt",
                              "synth.json",        "synth_items.tsv"};

// Removes a generated folder (only the files the generator writes).
void remove_output(const std::string& dir) {
    for (const char* f : kFiles) std::remove((dir + "/" + f).c_str());
    rmdir(dir.c_str());
}

std::string generate(const std::string& tag, uint64_t seed, const std::string& sub = "") {
    SynthOptions o;
    o.out = testutil::temp_dir(tag) + sub;
    o.size = "small";
    o.seed = seed;
    synth_generate(o);
    return o.out;
}

// The number after `"key": ` in synth.json (flat keys only).
double json_value(const std::string& json, const std::string& key) {
    size_t p = json.find("\"" + key + "\": ");
    REQUIRE_MESSAGE(p != std::string::npos, "synth.json lacks ", key);
    return std::strtod(json.c_str() + p + key.size() + 4, nullptr);
}

// synth_items.tsv: per merged id, the topic and the head flag.
void read_truth(const std::string& dir, std::vector<int>& topic, std::vector<int>& head) {
    std::string text = read_file(dir + "/synth_items.tsv");
    size_t p = text.find('\n') + 1;  // skip the header
    while (p < text.size()) {
        size_t e = text.find('\n', p);
        std::string line = text.substr(p, e - p);
        size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1), t3 = line.find('\t', t2 + 1);
        REQUIRE((size_t)std::atoi(line.c_str()) == topic.size());
        topic.push_back(std::atoi(line.c_str() + t2 + 1));
        head.push_back(std::atoi(line.c_str() + t3 + 1));
        p = e + 1;
    }
}

}  // namespace

TEST_CASE("synth: same seed gives identical files, another seed differs") {
    std::string a = generate("synth_a", 2040), b = generate("synth_b", 2040), c = generate("synth_c", 7);
    for (const char* f : kFiles) {
        INFO("file ", f);
        std::string fa = read_file(a + "/" + f);
        CHECK(fa.size() > 0);
        CHECK(fa == read_file(b + "/" + f));
    }
    CHECK(read_file(a + "/traindata_new.txt") != read_file(c + "/traindata_new.txt"));
    CHECK(read_file(a + "/img.npy") != read_file(c + "/img.npy"));
    CHECK(read_file(a + "/testdata_new.txt") != read_file(c + "/testdata_new.txt"));
    for (const std::string& d : {a, b, c}) remove_output(d);
}

TEST_CASE("synth: unknown size is an input error; nested output folders are created") {
    SynthOptions o;
    o.out = testutil::temp_dir("synth_bad");
    o.size = "huge";
    CHECK_THROWS_AS(synth_generate(o), InputError);
    o.size = "small";
    o.out += "/nested/deeper";
    synth_generate(o);
    CHECK(read_file(o.out + "/synth.json").size() > 0);
    remove_output(o.out);
    rmdir(o.out.substr(0, o.out.size() - 7).c_str());  // drop "/deeper", then the folder above
    rmdir(o.out.substr(0, o.out.size() - 14).c_str());
}

TEST_CASE("synth: small dataset parses and has both regimes") {
    const std::string dir = generate("synth_small", 2040);
    const std::string json = read_file(dir + "/synth.json");
    const size_t T = 15;
    ItemCatalog cat = read_catalog(dir);
    const size_t NX = cat.NX, NY = cat.NY, N = NX + NY;
    CHECK(NX == (size_t)json_value(json, "NX"));
    CHECK(NY == (size_t)json_value(json, "NY"));
    CHECK(cat.asin[0] == "SX00000001");
    CHECK(cat.asin[NX] == "SY00000001");

    SequenceSet tr = read_sequences(dir + "/traindata_new.txt", cat, T, true);
    SequenceSet va = read_sequences(dir + "/validdata_new.txt", cat, T, false);
    SequenceSet te = read_sequences(dir + "/testdata_new.txt", cat, T, false);
    CHECK(tr.seqs.size() == (size_t)json_value(json, "train_lines"));
    CHECK(tr.skipped_short == 0);
    CHECK(tr.truncated == 0);
    CHECK(va.seqs.size() == (size_t)json_value(json, "valid_lines"));
    CHECK(te.seqs.size() == (size_t)json_value(json, "test_lines"));
    CHECK(va.targets_x == (size_t)json_value(json, "valid_targets_x"));
    CHECK(te.targets_y == (size_t)json_value(json, "test_targets_y"));

    // Lengths as in C2DSR: train 6..16 items, valid/test 6..15 with >= 3 items of each domain.
    size_t bad_train = 0, bad_eval = 0;
    for (const auto& s : tr.seqs) bad_train += s.size() < 6 || s.size() > 16;
    for (const SequenceSet* set : {&va, &te})
        for (const auto& s : set->seqs) {
            size_t nx = 0;
            for (int32_t id : s) nx += cat.in_x(id);
            bad_eval += s.size() < 6 || s.size() > 15 || nx < 3 || s.size() - nx < 3;
        }
    CHECK(bad_train == 0);
    CHECK(bad_eval == 0);
    // The files exercise the stable sort: lines written out of time order, tied last timestamps.
    CHECK(json_value(json, "shuffled_lines") > 500);
    CHECK(json_value(json, "last_tied_lines") > 100);

    // Features: [N, E] float32, finite, a few missing (all-zero) text rows; ids align with Alist+Blist.
    std::vector<size_t> shape;
    std::vector<float> img = npy_read_f32(dir + "/img.npy", &shape);
    REQUIRE(shape.size() == 2);
    CHECK(shape[0] == N);
    CHECK(shape[1] == (size_t)json_value(json, "E"));
    const size_t E = shape[1];
    std::vector<float> txt = npy_read_f32(dir + "/txt.npy", &shape);
    REQUIRE(shape == std::vector<size_t>{N, E});
    size_t zero_rows = 0;
    for (size_t i = 0; i < N; i++) {
        bool zero = true;
        for (size_t k = 0; k < E; k++) zero = zero && txt[i * E + k] == 0.0f;
        zero_rows += zero;
    }
    CHECK(zero_rows == (size_t)json_value(json, "missing_txt_rows"));
    CHECK(zero_rows > 0);
    CHECK(zero_rows < N / 20);
    size_t non_finite = 0;
    for (size_t i = 0; i < N * E; i++) non_finite += !std::isfinite(img[i]) || !std::isfinite(txt[i]);
    CHECK(non_finite == 0);
    std::string ids;
    for (const auto& a : cat.asin) ids += a + "\n";
    CHECK(read_file(dir + "/img_ids.txt") == ids);
    CHECK(read_file(dir + "/txt_ids.txt") == ids);

    // Popular head and rare tail in the train file.
    std::vector<size_t> count(N, 0);
    size_t total = 0;
    for (const auto& s : tr.seqs)
        for (int32_t id : s) count[id]++, total++;
    size_t rare = 0;
    for (size_t c : count) rare += c <= 6;
    CHECK(rare >= N / 2);
    std::vector<size_t> sorted = count;
    std::sort(sorted.rbegin(), sorted.rend());
    size_t top = 0;
    for (size_t i = 0; i < N / 10; i++) top += sorted[i];
    CHECK(top >= total * 2 / 5);

    // Generator truth: head counts match synth.json; tail test targets are 40-75% of the lines.
    std::vector<int> topic, head;
    read_truth(dir, topic, head);
    REQUIRE(topic.size() == N);
    size_t head_x = 0, head_y = 0;
    for (size_t i = 0; i < N; i++) (i < NX ? head_x : head_y) += head[i];
    CHECK(head_x == (size_t)json_value(json, "head_items_x"));
    CHECK(head_y == (size_t)json_value(json, "head_items_y"));
    double tail_frac = json_value(json, "test_tail_target_fraction");
    CHECK(tail_frac > 0.4);
    CHECK(tail_frac < 0.75);

    // Features reveal the topic: same-topic pairs are clearly more similar than different-topic
    // pairs, in each modality, across domains too (topic centroids are shared).
    for (const std::vector<float>* f : {&img, &txt}) {
        std::vector<float> u(*f);
        for (size_t i = 0; i < N; i++) {
            double nrm = 0.0;
            for (size_t k = 0; k < E; k++) nrm += (double)u[i * E + k] * u[i * E + k];
            for (size_t k = 0; k < E; k++) u[i * E + k] /= (float)std::max(std::sqrt(nrm), 1e-12);
        }
        double sum[2] = {0, 0};
        size_t n[2] = {0, 0};
        for (size_t i = 0; i < 600; i++)
            for (size_t j = NX; j < NX + 600; j++) {
                double c = 0.0;
                for (size_t k = 0; k < E; k++) c += (double)u[i * E + k] * u[j * E + k];
                int same = topic[i] == topic[j];
                sum[same] += c;
                n[same]++;
            }
        REQUIRE(n[1] > 100);
        double same = sum[1] / (double)n[1], diff = sum[0] / (double)n[0];
        INFO("same-topic cosine ", same, " different-topic ", diff);
        CHECK(same > diff + 0.08);
        CHECK(std::fabs(diff) < 0.03);
    }
    remove_output(dir);
}
