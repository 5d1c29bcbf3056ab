// bench_gemm.cpp: times sgemm on the products one training step of the model makes.
//
// The numpy twin tools/bench_gemm.py prints the same lines for numpy's BLAS (OpenBLAS), e.g.
//   gemm   3840 x  29207 x    256  NT  best of  3     283.750 ms     202.4 GFLOPS
// The machine may be shared, so each shape reports the best of several repetitions after one
// warm-up call (thread start, first touch of C, packing buffers).
#include "cli/bench_gemm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/flags.h"
#include "math/gemm_cpu.h"
#include "core/parallel.h"

namespace hafvt {

namespace {

struct GemmShape {
    int M, N, K;
    bool ta, tb;
    const char* what;
};

// The model's products (B=256 sequences x T=15 positions = 3840 rows, q=256, feature width 512).
const GemmShape kShapes[] = {
    {2048, 2048, 2048, false, false, "square reference"},
    {3840, 29207, 256, false, true, "head forward, Food-Kitchen X: logits = h W^T"},
    {2560, 64093, 512, false, true, "head forward, Movie-Book Y, width 512"},
    {3840, 256, 29207, false, false, "head backward dh = dlogits W"},
    {29207, 256, 3840, true, false, "head backward dW = dlogits^T h"},
    {3840, 768, 256, false, false, "encoder qkv projection"},
    {3840, 256, 256, false, false, "encoder output projection / FFN"},
    {256, 768, 3840, true, false, "weight gradient of qkv"},
    {256, 256, 3840, true, false, "weight gradient of a 256x256 layer"},
};

// Reps so that one shape takes about a second at 200 GFLOPS, between 2 and 10.
int default_reps(const GemmShape& s) {
    const double flops = 2.0 * s.M * s.N * s.K;
    return std::max(2, std::min(10, (int)(2e11 / flops)));
}

// Fills with a cheap deterministic pattern in [-1, 1) (values do not change the timing).
void fill(std::vector<float>& v, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1u;
    for (float& f : v) {
        x = x * 1664525u + 1013904223u;
        f = (float)(x >> 8) * (1.0f / 8388608.0f) - 1.0f;
    }
}

// Best wall time of `reps` calls, in seconds.
double time_shape(const GemmShape& s, int reps) {
    // Stored shapes: A [M,K] or [K,M]; B [K,N] or [N,K]; leading dimensions are the minimal ones.
    const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    std::vector<float> A((size_t)s.M * s.K), B((size_t)s.K * s.N), C((size_t)s.M * s.N);
    fill(A, 1);
    fill(B, 2);
    sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), s.N);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        Timer t;
        sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), s.N);
        best = std::min(best, t.seconds());
    }
    return best;
}

void print_line(const GemmShape& s, int reps, double sec) {
    const double gflops = 2.0 * s.M * s.N * s.K / sec * 1e-9;
    std::printf("gemm %6d x %6d x %6d  %c%c  best of %2d  %10.3f ms  %8.1f GFLOPS\n", s.M, s.N, s.K,
                s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', reps, sec * 1e3, gflops);
    std::fflush(stdout);
}

// Parses a non-negative integer argument or throws InputError naming it.
int parse_int(const char* arg, const char* name, int lo, int hi) {
    char* end = nullptr;
    const long v = std::strtol(arg, &end, 10);
    HAFVT_INPUT(end != arg && *end == '\0' && v >= lo && v <= hi, "bench-gemm: ", name,
                " must be an integer in [", lo, ", ", hi, "], got '", arg, "'");
    return (int)v;
}

}  // namespace

int bench_gemm_main(int argc, char** argv) {
    std::vector<std::string> pos;
    if (!parse_flags("bench-gemm", "[M N K tA tB [reps]]   (tA, tB: 0 or 1; without arguments the model's shapes)", argc, argv,
                     {}, &pos))
        return 0;
    HAFVT_INPUT(pos.empty() || pos.size() == 5 || pos.size() == 6, "hafvt bench-gemm: expected no arguments or M N K tA tB [reps], found ",
                pos.size(), " arguments");
    std::vector<GemmShape> shapes;
    int reps = 0;  // 0: per-shape default
    if (!pos.empty()) {
        shapes.push_back({parse_int(pos[0].c_str(), "M", 1, 1 << 30), parse_int(pos[1].c_str(), "N", 1, 1 << 30),
                          parse_int(pos[2].c_str(), "K", 1, 1 << 30), parse_int(pos[3].c_str(), "tA", 0, 1) == 1,
                          parse_int(pos[4].c_str(), "tB", 0, 1) == 1, "from the command line"});
        if (pos.size() == 6) reps = parse_int(pos[5].c_str(), "reps", 1, 100000);
    } else {
        shapes.assign(std::begin(kShapes), std::end(kShapes));
    }
#ifdef _OPENMP
    std::printf("hafvt sgemm, %d OpenMP threads\n", omp_get_max_threads());
#else
    std::printf("hafvt sgemm, no OpenMP (1 thread)\n");
#endif
    for (const GemmShape& s : shapes) {
        const int r = reps ? reps : default_reps(s);
        print_line(s, r, time_shape(s, r));
    }
    return 0;
}

}  // namespace hafvt
