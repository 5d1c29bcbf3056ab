// test_common.cpp: the counter-based RNG, the error types and the atomic file writer.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "core/common.h"
#include "core/tensor.h"
#include "train/metrics.h"
#include "test_util.h"

using namespace hafvt;

TEST_CASE("rng: pure function of (seed, stream, counter), uniform and normal moments") {
    CHECK(rng_u64(1, 2, 3) == rng_u64(1, 2, 3));
    CHECK(rng_u64(1, 2, 3) != rng_u64(1, 2, 4));
    CHECK(rng_u64(1, 2, 3) != rng_u64(1, 3, 3));
    CHECK(rng_u64(1, 2, 3) != rng_u64(2, 2, 3));
    const size_t n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    size_t below = 0;
    for (size_t i = 0; i < n; i++) {
        float u = rng_uniform(7, 1, i);
        REQUIRE(u >= 0.0f);
        REQUIRE(u < 1.0f);
        su += u;
        double z = rng_normal(7, 2, i);
        sn += z;
        sn2 += z * z;
        below += rng_below(7, 3, i, 10) < 3;
    }
    CHECK(su / n == doctest::Approx(0.5).epsilon(0.01));
    CHECK(std::fabs(sn / n) < 0.01);
    CHECK(sn2 / n == doctest::Approx(1.0).epsilon(0.02));
    CHECK((double)below / n == doctest::Approx(0.3).epsilon(0.02));
}

TEST_CASE("TensorTable: one buffer, named views, like() copies the layout") {
    TensorTable t;
    t.add("a", {3, 4});
    t.add("b", {5});
    t.allocate();
    Tensor a = t.get("a"), b = t.get("b");
    CHECK(a.numel() == 12);
    CHECK(a.shape_str() == "[3, 4]");
    CHECK(b.data >= a.data + 12);
    CHECK(b.data + 5 <= t.data() + t.size());
    a.data[0] = 3.0f;
    TensorTable g = t.like();
    CHECK(g.get("a").data[0] == 0.0f);
    CHECK(g.entries().size() == 2);
    CHECK_THROWS_AS(t.get("zzz"), InternalError);
}

TEST_CASE("aligned_calloc: zeroed, 64-byte aligned, the whole size usable, small and large blocks") {
    // below and above kHugeBlock (a large block is mapped on its own on Linux), sizes that are not
    // a multiple of a page or of 2 MB; a block's last byte is written and read back
    const size_t sizes[] = {1, 63, 4096, kHugeBlock - 1, kHugeBlock, kHugeBlock + 12345, (size_t)9 << 20};
    std::vector<unsigned char*> blocks;
    for (size_t n : sizes) {
        auto* p = static_cast<unsigned char*>(aligned_calloc(n));
        REQUIRE(p != nullptr);
        CHECK((uintptr_t)p % 64 == 0);
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i += (n > 4096 ? 509 : 1)) nonzero += p[i] != 0;
        nonzero += p[n - 1] != 0;
        CHECK_MESSAGE(nonzero == 0, n, " bytes");
        std::memset(p, 0xA5, n);
        CHECK(p[n - 1] == 0xA5);
        blocks.push_back(p);
    }
    // the blocks do not overlap: each still holds its own pattern after all were written
    for (size_t b = 0; b < blocks.size(); b++) {
        std::memset(blocks[b], (int)b + 1, sizes[b]);
    }
    for (size_t b = 0; b < blocks.size(); b++) {
        CHECK(blocks[b][0] == b + 1);
        CHECK(blocks[b][sizes[b] - 1] == b + 1);
        aligned_free(blocks[b]);
    }
    aligned_free(nullptr);
    // a block freed and taken again comes back zeroed
    for (size_t n : {(size_t)100, kHugeBlock + 1}) {
        auto* p = static_cast<unsigned char*>(aligned_calloc(n));
        std::memset(p, 7, n);
        aligned_free(p);
        auto* q = static_cast<unsigned char*>(aligned_calloc(n));
        CHECK(q[0] == 0);
        CHECK(q[n - 1] == 0);
        aligned_free(q);
    }
}

TEST_CASE("AtomicFile: commit renames, a fault before rename keeps the old file") {
    std::string dir = testutil::temp_dir("atomic");
    std::string path = dir + "/f.txt";
    write_file_atomic(path, "first");
    CHECK(read_file(path) == "first");
    setenv("HAFVT_FAULT", "before_rename", 1);
    CHECK_THROWS_AS(write_file_atomic(path, "second"), InputError);
    unsetenv("HAFVT_FAULT");
    CHECK(read_file(path) == "first");
    {
        AtomicFile f(path);
        f.write("never committed");
    }
    CHECK(read_file(path) == "first");
    // no temporary left behind
    std::string cmd = "ls " + dir + " | wc -l";
    FILE* p = popen(cmd.c_str(), "r");
    int count = 0;
    REQUIRE(fscanf(p, "%d", &count) == 1);
    pclose(p);
    CHECK(count == 1);
    CHECK_THROWS_AS(read_file(dir), InputError);
    CHECK_THROWS_AS(read_file(dir + "/missing"), InputError);
}

#include "math/vmath.h"

TEST_CASE("vexp and vtanh: accurate to float precision over the range the model uses") {
    double worst_exp = 0, worst_tanh = 0;
    for (int i = -870000; i <= 880000; i += 7) {
        float x = (float)i * 1e-4f;
        double want = std::exp((double)x);
        worst_exp = std::max(worst_exp, std::fabs(vexp(x) - want) / want);
    }
    for (int i = -200000; i <= 200000; i += 3) {
        float u = (float)i * 1e-4f;
        worst_tanh = std::max(worst_tanh, std::fabs(vtanh(u) - std::tanh((double)u)));
    }
    MESSAGE("vexp max relative error ", worst_exp, ", vtanh max absolute error ", worst_tanh);
    CHECK(worst_exp < 3e-7);
    CHECK(worst_tanh < 3e-7);
    CHECK(vexp(-1000.0f) < 1e-37f);  // clamped, never NaN or negative
    CHECK(vexp(-1000.0f) >= 0.0f);
    CHECK(vtanh(50.0f) == 1.0f);
    CHECK(vtanh(-50.0f) == -1.0f);
    // a NaN in is a NaN out, with no undefined shift on the way (UBSan checks it under make debug)
    volatile float nan_in = NAN;
    CHECK(std::isnan(vexp(nan_in)));
    CHECK(std::isnan(vexp(-nan_in)));
}

TEST_CASE("rank rule: ties and NaN scores count against the target, never for it") {
    // scores of 5 candidates; the target is item 2
    std::vector<float> s = {0.1f, 0.5f, 0.3f, 0.3f, NAN};
    CHECK(rank_full(s.data(), 5, 2, nullptr) == 4);  // 0.5, the tie 0.3 and the NaN rank at or above it
    const std::vector<int32_t> skip = {4};
    CHECK(rank_full(s.data(), 5, 2, &skip) == 3);    // the skipped NaN candidate is left out
    s[2] = NAN;                                      // a NaN target ranks last, not first
    CHECK(rank_full(s.data(), 5, 2, nullptr) == 5);
    const int32_t neg[3] = {0, 1, 3};
    CHECK(rank_sampled(s.data(), 2, neg, 3) == 4);
    s[2] = 0.2f;
    CHECK(rank_sampled(s.data(), 2, neg, 3) == 3);   // 0.5 and 0.3 above, 0.1 below
    RankStats r;
    r.add(rank_full(s.data(), 5, 2, nullptr));
    CHECK(std::isfinite(r.mrr));
}
