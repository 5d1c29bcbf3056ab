// test_gemm.cpp: the blocked, parallel sgemm against the double-accumulating sgemm_naive.
//
// Tolerance: summing K products in float (one FMA per term) errs by at most about K * u * S_ij,
// S_ij = sum_k |a_ik| |b_kj|, u = FLT_EPSILON / 2 (the classic gamma_K bound), plus a few roundings
// for alpha and beta. We allow atol = (K + 4) * FLT_EPSILON * (|alpha| * S + |beta| * max |C|) with
// S = max_i sum_k |op(A)_ik| * max |B| >= max S_ij, cheap to compute. A wrong index, a lost or
// doubled term or a wrong alpha/beta moves an element by ~|a||b| ~ 0.25, far above it.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/common.h"
#include "math/gemm_cpu.h"
#include "test_util.h"

#ifdef _OPENMP
#include "core/parallel.h"
#endif

namespace {

using hafvt::sgemm;
using hafvt::sgemm_naive;

// One product: stored operands with leading dimensions `pad` above the minimum, C pre-filled
// (NaN when beta == 0, so a kernel that reads it fails), and C's padding columns set to a sentinel
// that must survive.
struct GemmCase {
    bool ta, tb;
    int M, N, K;
    float alpha, beta;
    int pad;
    int lda() const { return (ta ? M : K) + pad; }
    int ldb() const { return (tb ? K : N) + pad; }
    int ldc() const { return N + pad; }
};

struct GemmData {
    std::vector<float> A, B, C0;
};

std::vector<float> uniform(size_t n, uint64_t seed) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = 2.0f * hafvt::rng_uniform(seed, 7, i) - 1.0f;
    return v;
}

GemmData make_data(const GemmCase& c, uint64_t seed) {
    GemmData d;
    d.A = uniform((size_t)(c.ta ? c.K : c.M) * c.lda(), seed);
    d.B = uniform((size_t)(c.tb ? c.N : c.K) * c.ldb(), seed + 1);
    d.C0 = uniform((size_t)c.M * c.ldc(), seed + 2);
    for (int i = 0; i < c.M; i++)
        for (int j = 0; j < c.ldc(); j++) {
            float& x = d.C0[(size_t)i * c.ldc() + j];
            if (j >= c.N) x = 7.0f;
            else if (c.beta == 0.0f) x = std::numeric_limits<float>::quiet_NaN();
        }
    return d;
}

// atol of the header comment.
double tolerance(const GemmCase& c, const GemmData& d) {
    double row_max = 0.0, bmax = 0.0, cmax = 0.0;
    for (int i = 0; i < c.M; i++) {
        double s = 0.0;
        for (int k = 0; k < c.K; k++)
            s += std::fabs(c.ta ? d.A[(size_t)k * c.lda() + i] : d.A[(size_t)i * c.lda() + k]);
        row_max = std::max(row_max, s);
    }
    for (float b : d.B) bmax = std::max(bmax, (double)std::fabs(b));
    if (c.beta != 0.0f)
        for (float x : d.C0) cmax = std::max(cmax, (double)std::fabs(x));
    const double scale = std::fabs(c.alpha) * row_max * bmax + std::fabs(c.beta) * cmax;
    return (c.K + 4) * (double)FLT_EPSILON * scale + 1e-30;
}

std::vector<float> run_sgemm(const GemmCase& c, const GemmData& d) {
    std::vector<float> C = d.C0;
    sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, d.A.data(), c.lda(), d.B.data(), c.ldb(), c.beta,
          C.data(), c.ldc());
    return C;
}

// Runs sgemm and sgemm_naive on the same data; returns sgemm's C for further checks.
std::vector<float> check_case(const GemmCase& c, uint64_t seed) {
    const GemmData d = make_data(c, seed);
    std::vector<float> got = run_sgemm(c, d), want = d.C0;
    sgemm_naive(c.ta, c.tb, c.M, c.N, c.K, c.alpha, d.A.data(), c.lda(), d.B.data(), c.ldb(), c.beta,
                want.data(), c.ldc());
    const std::string name = hafvt::cat("C", c.ta ? "T" : "N", c.tb ? "T" : "N", "_", c.M, "x", c.N,
                                        "x", c.K, "_a", c.alpha, "_b", c.beta, "_pad", c.pad);
    CHECK_MESSAGE(testutil::check_tensor(name, got, want, tolerance(c, d)), name);
    return got;
}

bool bitwise_equal(const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("sgemm matches the naive product on awkward shapes, all transposes") {
    // Every (M, N, K) from these sizes: 1 (degenerate), 3, 17, 33 (a tile and a bit), 257 (several
    // tiles plus an edge). Products below 32k multiply-adds take the direct path, the rest the
    // packed one, so both are covered. beta=0 runs on a NaN-filled C with minimal ld; beta=1
    // accumulates with ld 3 larger than minimal.
    const int sizes[] = {1, 3, 17, 33, 257};
    uint64_t seed = 100;
    for (int t = 0; t < 4; t++)
        for (int M : sizes)
            for (int N : sizes)
                for (int K : sizes) {
                    const bool ta = t & 1, tb = t & 2;
                    check_case({ta, tb, M, N, K, -0.75f, 0.0f, 0}, seed++);
                    check_case({ta, tb, M, N, K, 1.25f, 1.0f, 3}, seed++);
                }
}

TEST_CASE("sgemm: general beta, alpha == 0 and K == 0") {
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        check_case({ta, tb, 40, 70, 50, 0.5f, -1.5f, 2}, 300 + t);  // packed path
        check_case({ta, tb, 5, 6, 7, 2.0f, 0.25f, 1}, 310 + t);     // direct path
    }
    // alpha == 0: C = beta * C, and A, B are not used (BLAS convention).
    GemmCase c{false, false, 20, 30, 40, 0.0f, 0.5f, 0};
    GemmData d = make_data(c, 320);
    d.A.assign(d.A.size(), std::numeric_limits<float>::quiet_NaN());
    std::vector<float> got = run_sgemm(c, d), want = d.C0;
    for (float& x : want) x *= 0.5f;
    CHECK(testutil::check_tensor("alpha0", got, want, 0.0));
    // K == 0 with beta == 0 writes zeros over the NaNs.
    c = {false, true, 9, 11, 0, 1.0f, 0.0f, 1};
    d = make_data(c, 330);
    got = run_sgemm(c, d);
    want = d.C0;
    for (float& x : want) x = x == 7.0f ? x : 0.0f;  // the padding sentinel stays
    CHECK(testutil::check_tensor("K0", got, want, 0.0));
}

TEST_CASE("sgemm: larger products through the blocked, parallel path") {
    // 300 x 500 x 700 crosses the K block (384); the tall and the wide products give each thread
    // a slab longer than one M block (1536 rows) or one N block (480 columns).
    for (int t = 0; t < 4; t++) {
        const bool ta = t & 1, tb = t & 2;
        check_case({ta, tb, 300, 500, 700, 0.5f, t % 2 ? 1.0f : 0.0f, 5}, 400 + t);
        check_case({ta, tb, 3300, 40, 20, 1.0f, 0.0f, 1}, 410 + t);
        check_case({ta, tb, 20, 2100, 30, 1.0f, 1.0f, 0}, 420 + t);
    }
}

TEST_CASE("sgemm is deterministic: repeated calls and any thread count give the same bits") {
    const GemmCase c{false, true, 333, 517, 401, 1.0f, 1.0f, 0};
    const GemmData d = make_data(c, 500);
    const std::vector<float> first = run_sgemm(c, d), second = run_sgemm(c, d);
    CHECK(bitwise_equal(first, second));
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<float> serial = run_sgemm(c, d);
    omp_set_num_threads(3);
    const std::vector<float> three = run_sgemm(c, d);
    omp_set_num_threads(saved);
    CHECK(bitwise_equal(first, serial));
    CHECK(bitwise_equal(first, three));
    // Called from inside a parallel region, sgemm runs on the calling thread and is still right.
    std::vector<float> inner[2];
#pragma omp parallel num_threads(2)
    inner[omp_get_thread_num()] = run_sgemm(c, d);
    CHECK(bitwise_equal(first, inner[0]));
    if (!inner[1].empty()) CHECK(bitwise_equal(first, inner[1]));
#endif
}

TEST_CASE("sgemm_packed: B packed once gives bitwise sgemm's C, for every shape, A transpose and thread count") {
    // Shapes on both sides of the direct path (32k multiply-adds), across the K block (384) and
    // the N block (480), split along M or along N between threads, padded leading dimensions;
    // one packing serves two products with different A, alpha and beta, as in the head. 300 x 320
    // x 1300 is split along M though N is the longer side (K >= 4 N: the head's G = dZ En), where
    // sgemm splits it along N.
    const GemmCase cases[] = {{false, true, 5, 6, 7, 1.0f, 0.0f, 1},       {false, false, 40, 70, 50, 0.5f, 1.0f, 2},
                              {true, true, 300, 500, 700, -0.5f, 0.0f, 3}, {false, false, 300, 40, 1100, 1.0f, 1.0f, 0},
                              {true, false, 33, 2100, 30, 2.0f, 0.0f, 1},  {false, true, 1700, 257, 129, 1.0f, 0.5f, 0},
                              {false, false, 300, 320, 1300, 1.0f, 0.0f, 2}};
    const int threads[] = {1, 2, 3};
    uint64_t seed = 900;
    for (const GemmCase& c : cases) {
        const GemmData d = make_data(c, seed++);
        GemmCase c2 = c;
        c2.alpha = 0.75f, c2.beta = 1.0f, c2.ta = !c.ta;
        GemmData d2 = make_data(c2, seed++);
        d2.B = d.B;  // the same B, packed once
        hafvt::PackedB pb;
        for (int nt : threads) {
#ifdef _OPENMP
            const int saved = omp_get_max_threads();
            omp_set_num_threads(nt);
#else
            if (nt > 1) continue;
#endif
            pb.pack(c.tb, c.K, c.N, d.B.data(), c.ldb());
            for (const auto& [cc, dd] : {std::pair<const GemmCase&, const GemmData&>{c, d}, {c2, d2}}) {
                std::vector<float> got = dd.C0;
                hafvt::sgemm_packed(cc.ta, cc.M, cc.N, cc.K, cc.alpha, dd.A.data(), cc.lda(), pb, cc.beta, got.data(),
                                    cc.ldc());
                const std::string name = hafvt::cat(cc.ta ? "T" : "N", cc.tb ? "T" : "N", "_", cc.M, "x", cc.N, "x",
                                                    cc.K, " threads ", nt);
                CHECK_MESSAGE(bitwise_equal(got, run_sgemm(cc, dd)), name);
            }
#ifdef _OPENMP
            omp_set_num_threads(saved);
#endif
        }
    }
    // a product of another shape than the packing is refused
    const GemmCase c{false, false, 10, 20, 30, 1.0f, 0.0f, 0};
    const GemmData d = make_data(c, 990);
    hafvt::PackedB pb;
    pb.pack(false, 30, 20, d.B.data(), 20);
    std::vector<float> C(10 * 21);
    CHECK_THROWS(hafvt::sgemm_packed(false, 10, 21, 30, 1.0f, d.A.data(), 30, pb, 0.0f, C.data(), 21));
}

// Runs f(nt) with the OpenMP thread count nt (only nt = 1 without OpenMP).
template <class F>
static void with_threads(int nt, F f) {
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(nt);
    f();
    omp_set_num_threads(saved);
#else
    if (nt == 1) f();
#endif
}

TEST_CASE("sgemm_bias: the column bias added in the product gives bitwise the fill-then-sgemm C") {
    // the direct path, across the K block (the bias joins the first block only), edge tiles in M
    // and N, split along M or N, transposes and padded leading dimensions
    const GemmCase cases[] = {{false, false, 5, 6, 7, 1.0f, 0.0f, 1},   {false, false, 100, 70, 500, 1.0f, 0.0f, 0},
                              {true, true, 300, 500, 70, -0.5f, 0.0f, 3}, {false, false, 13, 1500, 1100, 2.0f, 0.0f, 2},
                              {true, false, 1700, 33, 129, 1.0f, 0.0f, 0}};
    uint64_t seed = 1200;
    for (const GemmCase& c : cases)
        for (int nt : {1, 2, 3})
            with_threads(nt, [&] {
                const GemmData d = make_data(c, seed++);
                const std::vector<float> bias = uniform((size_t)c.N, seed++);
                std::vector<float> want = d.C0, got = d.C0;
                for (int i = 0; i < c.M; i++)
                    std::copy(bias.begin(), bias.end(), want.begin() + (size_t)i * c.ldc());
                sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, d.A.data(), c.lda(), d.B.data(), c.ldb(), 1.0f, want.data(),
                      c.ldc());
                hafvt::sgemm_bias(c.ta, c.tb, c.M, c.N, c.K, c.alpha, d.A.data(), c.lda(), d.B.data(), c.ldb(),
                                  bias.data(), got.data(), c.ldc());
                CHECK_MESSAGE(bitwise_equal(got, want),
                              hafvt::cat(c.ta ? "T" : "N", c.tb ? "T" : "N", "_", c.M, "x", c.N, "x", c.K, " threads ", nt));
            });
    // K == 0: C is the bias in every row
    std::vector<float> C(6, -1.0f), bias = {1.0f, 2.0f, 3.0f};
    hafvt::sgemm_bias(false, false, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, bias.data(), C.data(), 3);
    CHECK(C == std::vector<float>{1, 2, 3, 1, 2, 3});
}

TEST_CASE("sgemm_packed_rows: each row scaled by its own alpha, bitwise sgemm_packed row by row") {
    // three row sets with their own scales, the boundaries inside micro-tiles of rows, the last
    // tile partial; both sides of the direct path; 1-3 threads
    for (int M : {7, 157, 613})
        for (int nt : {1, 2, 3})
            with_threads(nt, [&] {
                const GemmCase c{false, true, M, 2100, 96, 1.0f, 0.0f, 1};
                const GemmData d = make_data(c, 1300 + (uint64_t)M);
                std::vector<float> alpha((size_t)M);
                for (int i = 0; i < M; i++) alpha[(size_t)i] = i < M / 3 ? 12.5f : i < 2 * M / 3 ? 3.0f : 100.0f;
                hafvt::PackedB pb;
                pb.pack(true, c.K, c.N, d.B.data(), c.ldb());
                std::vector<float> got = d.C0, want = d.C0;
                hafvt::sgemm_packed_rows(false, M, c.N, c.K, alpha.data(), d.A.data(), c.lda(), pb, 0.0f, got.data(),
                                         c.ldc());
                for (int i = 0; i < M; i++)
                    hafvt::sgemm_packed(false, 1, c.N, c.K, alpha[(size_t)i], d.A.data() + (size_t)i * c.lda(), c.lda(),
                                        pb, 0.0f, want.data() + (size_t)i * c.ldc(), c.ldc());
                CHECK_MESSAGE(bitwise_equal(got, want), hafvt::cat("M ", M, " threads ", nt));
            });
}
