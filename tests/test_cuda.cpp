// test_cuda.cpp: every CUDA op against the CPU op of the same name on small random cases (the
// edge cases of the CPU gradient tests: T = 1, an all-PAD row, 1 and 2 heads, a zero vector in
// l2norm, a clamped scale, dropout on and off) and at the shapes the model runs ("cuda large:"),
// plus sgemm_cuda against sgemm for all transposes, the fused head against the unfused CPU head,
// three Adam steps, and the whole model (one training step against the CPU, and the PyTorch
// fixture). The kernels that claim determinism (attention, the fused head, the embedding
// scatter, the dot product) are run twice and compared bitwise, and under the host emulation
// (tests/cuda_emu) once more with the threads of every block in reverse order.
//
// Compiled by g++ in every build, and run against the host emulation in make debug and make
// test-emu, against a GPU in make test-gpu. Without a device the cases count as skipped
// (cuda_test_util.h); with REQUIRE_GPU=1 they fail instead. In a build without CUDA one case says
// so, and fails only under REQUIRE_GPU=1. Tolerances are |got - want| <= atol + rtol |want|; the
// GPU sums in a different order than the CPU (and cuBLAS blocks K differently), so nothing is
// compared bitwise with the CPU except the dropout masks and pure copies.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/common.h"
#include "cuda_test_util.h"
#include "test_util.h"

using testutil::require_gpu;

#ifndef HAFVT_CUDA

TEST_CASE("cuda: not built") {
    MESSAGE("CUDA was not built (USE_CUDA=0 or no nvcc): the CUDA op tests are not compiled");
    if (require_gpu()) FAIL("REQUIRE_GPU=1 but this build has no CUDA support");
}

#else

#ifdef HAFVT_CUDA_EMU
#include <cuda_runtime.h>  // the emulation's (tests/cuda_emu): set_order
#endif
#include "math/adam.h"
#include "model/backend.h"
#include "math/gemm_cpu.h"
#include "math/heads.h"
#include "math/ops_cpu.h"

using namespace hafvt;
using testutil::check_tensor;
using Vec = std::vector<float>;

namespace {

using testutil::gpu_ready;

// n draws of N(0, sd^2), a pure function of (seed, n).
Vec randn(size_t n, uint64_t seed, float sd = 1.0f) {
    Vec v(n);
    for (size_t i = 0; i < n; i++) v[i] = sd * rng_normal(seed, 99, i);
    return v;
}

Vec down(const DeviceBuffer& d) { return d.to_host(); }

// L2-normalized rows (N,C) on the CPU.
Vec normalized_rows(size_t N, size_t C, uint64_t seed) {
    Vec x = randn(N * C, seed), out(N * C), norm(N);
    l2norm_forward(out.data(), norm.data(), x.data(), N, C);
    return out;
}

// Under the emulation (tests/cuda_emu), runs fn once more with the threads of every block in
// reverse order and returns true; elsewhere returns false. Results must not depend on the order.
template <typename F>
bool in_reverse_order(F&& fn) {
#ifdef HAFVT_CUDA_EMU
    cuda_emu::Order saved = cuda_emu::order();
    cuda_emu::set_order(saved == cuda_emu::Order::reverse ? cuda_emu::Order::forward : cuda_emu::Order::reverse);
    fn();
    cuda_emu::set_order(saved);
    return true;
#else
    (void)fn;
    return false;
#endif
}

bool bitwise_equal(const Vec& a, const Vec& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("cuda: device check") {
    std::string why;
    bool ok = cuda_device_available(&why);
    CHECK(!why.empty());
    if (ok) MESSAGE("CUDA device: " << why);
    else if (!gpu_ready()) MESSAGE("CUDA cases skipped: " << why);
}

CUDA_TEST_CASE("cuda: sgemm_cuda matches sgemm for all four transposes") {
    if (!gpu_ready()) return;
    const int M = 37, N = 29, K = 41;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            for (float beta : {0.0f, 0.3f}) {
                CAPTURE(ta);
                CAPTURE(tb);
                CAPTURE(beta);
                // padded leading dimensions, to catch a swapped lda/ldb
                int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
                Vec A = randn((size_t)(ta ? K : M) * lda, 1), B = randn((size_t)(tb ? N : K) * ldb, 2);
                Vec C = randn((size_t)M * ldc, 3);
                if (beta == 0.0f) C[7] = NAN;  // beta == 0 must not read C
                DeviceBuffer dA(A), dB(B), dC(C);
                sgemm(ta, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
                sgemm_cuda(ta, tb, M, N, K, 0.7f, dA.data(), lda, dB.data(), ldb, beta, dC.data(), ldc);
                CHECK(check_tensor("C", down(dC), C, 1e-5, 1e-5));
            }
        }
    }
}

CUDA_TEST_CASE("cuda: embedding and positional table, forward and backward") {
    if (!gpu_ready()) return;
    const size_t C = 40, V = 11;  // table rows; the last is PAD
    const int32_t pad = 10;
    for (size_t T : {5, 1}) {
        CAPTURE(T);
        const size_t B = 3, N = B * T;
        std::vector<int32_t> ids(N), pos(N);
        for (size_t n = 0; n < N; n++) {
            ids[n] = (n % 4 == 1) ? pad : (int32_t)((n * 7) % 5);  // repeats and PADs
            pos[n] = ids[n] == pad ? 0 : (int32_t)(n % T + 1);
        }
        Vec table = randn(V * C, 4), P = randn((T + 1) * C, 5), dout = randn(N * C, 6);
        Vec dtable = randn(V * C, 7), dP = randn((T + 1) * C, 8);  // backward accumulates
        DeviceBufferI32 d_ids(ids), d_pos(pos);
        DeviceBuffer d_table(table), d_P(P), d_dout(dout), d_out(N * C);
        DeviceBuffer d_dtable(dtable), d_dP(dP);

        Vec out(N * C);
        embedding_forward(out.data(), ids.data(), table.data(), 3.0f, pad, N, C);
        posadd_forward(out.data(), pos.data(), P.data(), N, C);
        embedding_forward_cuda(d_out.data(), d_ids.data(), d_table.data(), 3.0f, pad, N, C);
        posadd_forward_cuda(d_out.data(), d_pos.data(), d_P.data(), N, C);
        CHECK(check_tensor("out", down(d_out), out, 0.0));

        embedding_backward(dtable.data(), dout.data(), ids.data(), 3.0f, pad, N, C);
        posadd_backward(dP.data(), dout.data(), pos.data(), N, C);
        embedding_backward_cuda(d_dtable.data(), d_dout.data(), d_ids.data(), 3.0f, pad, N, C);
        posadd_backward_cuda(d_dP.data(), d_dout.data(), d_pos.data(), N, C);
        CHECK(check_tensor("dtable", down(d_dtable), dtable, 1e-5, 1e-6));
        CHECK(check_tensor("dP", down(d_dP), dP, 1e-5, 1e-6));
    }
}

namespace {

// The embedding scatter (and the positional one) with N rows over a table of V rows of width C,
// ids repeating and with PADs, against the CPU; then bitwise the same on a second run and in
// the other thread order.
void check_scatter(size_t N, size_t V, size_t C, uint64_t seed) {
    CAPTURE(N);
    CAPTURE(V);
    CAPTURE(C);
    const int32_t pad = (int32_t)V - 1;
    std::vector<int32_t> ids(N), pos(N);
    for (size_t n = 0; n < N; n++) {
        uint64_t r = rng_below(seed, 5, n, V + V / 8);
        ids[n] = r >= V - 1 ? pad : (int32_t)r;  // about 1 in 9 PAD
        pos[n] = ids[n] == pad ? 0 : (int32_t)(n % 15 + 1);
    }
    ids[N / 2] = ids[0];  // a sure repeat
    Vec dout = randn(N * C, seed + 1), dtable0 = randn(V * C, seed + 2), dP0 = randn(16 * C, seed + 3);
    Vec dtable = dtable0, dP = dP0;
    embedding_backward(dtable.data(), dout.data(), ids.data(), 0.5f, pad, N, C);
    posadd_backward(dP.data(), dout.data(), pos.data(), N, C);
    DeviceBufferI32 d_ids(ids), d_pos(pos);
    DeviceBuffer d_dout(dout);
    Vec first_table, first_P;
    auto run = [&](const char* what) {
        CAPTURE(what);
        DeviceBuffer d_dtable(dtable0), d_dP(dP0);
        embedding_backward_cuda(d_dtable.data(), d_dout.data(), d_ids.data(), 0.5f, pad, N, C);
        posadd_backward_cuda(d_dP.data(), d_dout.data(), d_pos.data(), N, C);
        Vec t = down(d_dtable), q = down(d_dP);
        if (first_table.empty()) {
            CHECK(check_tensor("dtable", t, dtable, 1e-5, 1e-5));
            CHECK(check_tensor("dP", q, dP, 1e-5, 1e-5));
            first_table = t, first_P = q;
        } else {
            CHECK(bitwise_equal(t, first_table));
            CHECK(bitwise_equal(q, first_P));
        }
    };
    run("first run");
    run("second run");
    in_reverse_order([&] { run("threads in reverse order"); });
}

}  // namespace

// C > 128 (several channel blocks), ids >= 64, repeats; 3,000 rows sort in shared memory,
// 5,000 (8,192 keys) in the workspace.
CUDA_TEST_CASE("cuda: embedding scatter with C > 128, ids >= 64 and repeats, bitwise deterministic") {
    if (!gpu_ready()) return;
    check_scatter(300, 200, 136, 61);
    check_scatter(3000, 500, 40, 62);
    check_scatter(5000, 300, 8, 63);
}

CUDA_TEST_CASE("cuda large: embedding scatter at the model's size (B 256 x T 15 rows, q 256)") {
    if (!gpu_ready()) return;
    check_scatter(3840, 29208, 256, 64);
}

// dst += sum a b over n elements in two stages (the scale gradient of the heads): against a
// double sum on the CPU, bitwise the same on a second run and in the other order.
CUDA_TEST_CASE("cuda: the two-stage dot product is deterministic") {
    if (!gpu_ready()) return;
    for (size_t n : {(size_t)1, (size_t)1000, (size_t)300000}) {
        CAPTURE(n);
        Vec a = randn(n, 70), b = randn(n, 71);
        double want = 0.5;
        for (size_t i = 0; i < n; i++) want += (double)a[i] * (double)b[i];
        DeviceBuffer d_a(a), d_b(b);
        Vec first;
        auto run = [&] {
            DeviceBuffer d_dst(Vec{0.5f});
            dot_sum_add_cuda(d_dst.data(), d_a.data(), d_b.data(), n);
            return down(d_dst);
        };
        first = run();
        CHECK(std::fabs(first[0] - want) <= 1e-6 * (1.0 + std::fabs(want)));
        CHECK(bitwise_equal(run(), first));
        in_reverse_order([&] { CHECK(bitwise_equal(run(), first)); });
    }
}

// A refused launch throws at once and names the kernel (cuda_launch_check); HAFVT_CUDA_SYNC
// (cuda_set_sync_launches) makes every launch wait for its kernel.
CUDA_TEST_CASE("cuda: a failing launch is reported at the launch, naming the kernel") {
    if (!gpu_ready()) return;
    const bool saved = cuda_sync_launches();
    cuda_set_sync_launches(true);
    CHECK(cuda_sync_launches());
    Vec x = randn(64, 72);
    DeviceBuffer d_x(x), d_out(64);
    gelu_forward_cuda(d_out.data(), d_x.data(), 64);  // a good launch passes the synchronous check
    Vec want(64);
    gelu_forward(want.data(), x.data(), 64);
    CHECK(check_tensor("gelu", down(d_out), want, 1e-6, 1e-5));
#ifdef HAFVT_CUDA_EMU
    // the emulation refuses a host pointer given to a kernel, as a device faults on it
    std::string msg;
    try {
        gelu_forward_cuda(d_out.data(), x.data(), 64);
    } catch (const InternalError& e) {
        msg = e.what();
    }
    CHECK(msg.find("gelu_forward_kernel") != std::string::npos);
#endif
    cuda_set_sync_launches(saved);
}

CUDA_TEST_CASE("cuda: padmask and dropout (masks bit-identical to the CPU)") {
    if (!gpu_ready()) return;
    const size_t N = 7, C = 1431, n = N * C;  // n > 10^4, not a multiple of the block
    const uint64_t seed = 2040, step = 123456789, site = 5;
    // masks: dropout of ones gives exactly f(i) on both sides
    Vec ones(n, 1.0f), mask(n);
    DeviceBuffer d_ones(ones), d_mask(n);
    dropout_forward(mask.data(), ones.data(), n, 0.3f, seed, step, site);
    dropout_forward_cuda(d_mask.data(), d_ones.data(), n, 0.3f, seed, step, site);
    Vec got_mask = down(d_mask);
    CHECK(check_tensor("mask", got_mask, mask, 0.0));
    CHECK(std::memcmp(got_mask.data(), mask.data(), n * sizeof(float)) == 0);

    for (float p : {0.0f, 0.3f}) {
        CAPTURE(p);
        Vec x = randn(n, 9), dout = randn(n, 10), dinp = randn(n, 11), out(n);
        DeviceBuffer d_x(x), d_dout(dout), d_dinp(dinp), d_out(n);
        dropout_forward(out.data(), x.data(), n, p, seed, step, site);
        dropout_forward_cuda(d_out.data(), d_x.data(), n, p, seed, step, site);
        CHECK(check_tensor("out", down(d_out), out, 0.0));
        dropout_forward_cuda(d_x.data(), d_x.data(), n, p, seed, step, site);  // in place
        CHECK(check_tensor("out in place", down(d_x), out, 0.0));
        dropout_backward(dinp.data(), dout.data(), n, p, seed, step, site);
        dropout_backward_cuda(d_dinp.data(), d_dout.data(), n, p, seed, step, site);
        CHECK(check_tensor("dinp", down(d_dinp), dinp, 1e-6, 1e-6));
    }

    // an all-PAD row and a partly valid batch
    std::vector<uint8_t> valid = {1, 0, 1, 1, 0, 0, 1};
    Vec x = randn(n, 12);
    DeviceBuffer d_x(x);
    DeviceBufferU8 d_valid(valid);
    padmask_forward(x.data(), valid.data(), N, C);
    padmask_forward_cuda(d_x.data(), d_valid.data(), N, C);
    CHECK(check_tensor("masked", down(d_x), x, 0.0));
}

CUDA_TEST_CASE("cuda: layernorm forward and backward") {
    if (!gpu_ready()) return;
    struct Shape { size_t N, C; };
    for (Shape sh : {Shape{7, 48}, Shape{300, 256}, Shape{1, 5}}) {  // 300 rows: 3 column chunks
        size_t N = sh.N, C = sh.C;
        CAPTURE(N);
        CAPTURE(C);
        Vec x = randn(N * C, 13, 2.0f), w = randn(C, 14), b = randn(C, 15), dout = randn(N * C, 16);
        for (size_t c = 0; c < C; c++) x[c] += 3.0f;  // a row with a large mean
        Vec dinp = randn(N * C, 17), dw = randn(C, 18), db = randn(C, 19);
        Vec out(N * C), mean(N), rstd(N);
        DeviceBuffer d_x(x), d_w(w), d_b(b), d_dout(dout), d_dinp(dinp), d_dw(dw), d_db(db);
        DeviceBuffer d_out(N * C), d_mean(N), d_rstd(N);

        layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
        layernorm_forward_cuda(d_out.data(), d_mean.data(), d_rstd.data(), d_x.data(), d_w.data(),
                               d_b.data(), N, C);
        CHECK(check_tensor("out", down(d_out), out, 1e-5, 1e-5));
        CHECK(check_tensor("mean", down(d_mean), mean, 1e-6, 1e-5));
        CHECK(check_tensor("rstd", down(d_rstd), rstd, 1e-6, 1e-5));

        const Vec dw0 = dw, db0 = db;  // the starting gradients, before the CPU adds to dw and db
        layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                           mean.data(), rstd.data(), N, C);
        layernorm_backward_cuda(d_dinp.data(), d_dw.data(), d_db.data(), d_dout.data(), d_x.data(),
                                d_w.data(), d_mean.data(), d_rstd.data(), N, C);
        CHECK(check_tensor("dinp", down(d_dinp), dinp, 1e-5, 1e-4));
        CHECK(check_tensor("dweight", down(d_dw), dw, 1e-4, 1e-4));  // sums over N rows
        CHECK(check_tensor("dbias", down(d_db), db, 1e-4, 1e-4));

        // deterministic: a second backward from the same starting gradients gives bitwise the same
        Vec dw1 = down(d_dw), db1 = down(d_db);
        DeviceBuffer d_dw2(dw0), d_db2(db0), d_dinp2(N * C);
        layernorm_backward_cuda(d_dinp2.data(), d_dw2.data(), d_db2.data(), d_dout.data(),
                                d_x.data(), d_w.data(), d_mean.data(), d_rstd.data(), N, C);
        CHECK(check_tensor("dweight rerun", down(d_dw2), dw1, 0.0));
        CHECK(check_tensor("dbias rerun", down(d_db2), db1, 0.0));
    }
}

CUDA_TEST_CASE("cuda: linear forward and backward, with and without bias") {
    if (!gpu_ready()) return;
    const size_t N = 33, C = 40, OC = 24;
    for (bool with_bias : {true, false}) {
        CAPTURE(with_bias);
        Vec x = randn(N * C, 20), W = randn(C * OC, 21, 0.2f), bias = randn(OC, 22);
        Vec dout = randn(N * OC, 23), dinp = randn(N * C, 24), dW = randn(C * OC, 25), db = randn(OC, 26);
        Vec out(N * OC);
        DeviceBuffer d_x(x), d_W(W), d_bias(bias), d_dout(dout), d_dinp(dinp), d_dW(dW), d_db(db);
        DeviceBuffer d_out(N * OC);
        const float* bp = with_bias ? bias.data() : nullptr;
        const float* d_bp = with_bias ? d_bias.data() : nullptr;
        linear_forward(out.data(), x.data(), W.data(), bp, N, C, OC);
        linear_forward_cuda(d_out.data(), d_x.data(), d_W.data(), d_bp, N, C, OC);
        CHECK(check_tensor("out", down(d_out), out, 1e-5, 1e-5));
        // columns 8..24 of the layer into columns 3.. of a wider output
        const size_t c0 = 8, ldo = 30;
        Vec cols(N * ldo, 5.0f);
        DeviceBuffer d_cols(cols);
        linear_forward_cols(cols.data() + 3, ldo, x.data(), W.data() + c0, OC, bp ? bp + c0 : nullptr, N, C, OC - c0);
        linear_forward_cols_cuda(d_cols.data() + 3, ldo, d_x.data(), d_W.data() + c0, OC, d_bp ? d_bp + c0 : nullptr,
                                 N, C, OC - c0);
        CHECK(check_tensor("cols", down(d_cols), cols, 1e-5, 1e-5));

        // with bias: every gradient; without: no bias and no input gradient (dinp = null)
        linear_backward(with_bias ? dinp.data() : nullptr, dW.data(), with_bias ? db.data() : nullptr,
                        dout.data(), x.data(), W.data(), N, C, OC);
        linear_backward_cuda(with_bias ? d_dinp.data() : nullptr, d_dW.data(),
                             with_bias ? d_db.data() : nullptr, d_dout.data(), d_x.data(),
                             d_W.data(), N, C, OC);
        CHECK(check_tensor("dinp", down(d_dinp), dinp, 1e-5, 1e-5));
        CHECK(check_tensor("dW", down(d_dW), dW, 1e-5, 1e-5));
        CHECK(check_tensor("dbias", down(d_db), db, 1e-5, 1e-5));
    }
}

CUDA_TEST_CASE("cuda: scatter_rows") {
    if (!gpu_ready()) return;
    const size_t R = 40, C = 13, N = 100;
    std::vector<int32_t> rows(R);
    for (size_t r = 0; r < R; r++) rows[r] = (int32_t)((r * 37 + 5) % N);  // distinct
    Vec src = randn(R * C, 48), dst = randn(N * C, 49);
    DeviceBuffer d_src(src), d_dst(dst);
    DeviceBufferI32 d_rows(rows);
    scatter_rows(dst.data(), src.data(), rows.data(), R, C);
    scatter_rows_cuda(d_dst.data(), d_src.data(), d_rows.data(), R, C);
    CHECK(check_tensor("scatter", down(d_dst), dst, 0.0));
}

CUDA_TEST_CASE("cuda: gelu and residual") {
    if (!gpu_ready()) return;
    const size_t n = 1000;
    Vec x = randn(n, 27, 3.0f), y = randn(n, 28), dout = randn(n, 29);
    Vec dinp = randn(n, 30), da = randn(n, 31), db = randn(n, 32), out(n), sum(n);
    DeviceBuffer d_x(x), d_y(y), d_dout(dout), d_dinp(dinp), d_da(da), d_db(db), d_out(n), d_sum(n);
    gelu_forward(out.data(), x.data(), n);
    gelu_forward_cuda(d_out.data(), d_x.data(), n);
    CHECK(check_tensor("gelu", down(d_out), out, 1e-6, 1e-5));
    gelu_backward(dinp.data(), dout.data(), x.data(), n);
    gelu_backward_cuda(d_dinp.data(), d_dout.data(), d_x.data(), n);
    CHECK(check_tensor("dgelu", down(d_dinp), dinp, 1e-6, 1e-5));
    residual_forward(sum.data(), x.data(), y.data(), n);
    residual_forward_cuda(d_sum.data(), d_x.data(), d_y.data(), n);
    CHECK(check_tensor("residual", down(d_sum), sum, 0.0));
    residual_backward(da.data(), db.data(), dout.data(), n);
    residual_backward_cuda(d_da.data(), d_db.data(), d_dout.data(), n);
    CHECK(check_tensor("da", down(d_da), da, 0.0));
    CHECK(check_tensor("db", down(d_db), db, 0.0));
}

namespace {

struct AttShape {
    size_t B, T, C, NH;
};

// Attention forward and backward on the device against the CPU, then again from the same inputs
// (and, under the emulation, in the other thread order): bitwise the same, as the kernels claim.
void check_attention(AttShape sh, float p) {
    size_t B = sh.B, T = sh.T, C = sh.C, NH = sh.NH;
    CAPTURE(B);
    CAPTURE(T);
    CAPTURE(C);
    CAPTURE(NH);
    CAPTURE(p);
    // row 0 all valid; row 1 left-padded (or all PAD when T = 1); row 2 all PAD
    std::vector<uint8_t> valid(B * T, 1);
    for (size_t t = 0; t < T; t++) {
        if (B > 1 && (T == 1 || t < T / 3 + 1)) valid[T + t] = 0;
        if (B > 2) valid[2 * T + t] = 0;
    }
    Vec qkv = randn(B * T * 3 * C, 33), dout = randn(B * T * C, 34);
    Vec dqkv0 = randn(B * T * 3 * C, 35), dqkv = dqkv0, out(B * T * C), att(B * NH * T * T);
    DeviceBuffer d_qkv(qkv), d_dout(dout), d_dqkv(dqkv), d_out(B * T * C), d_att(att.size());
    DeviceBufferU8 d_valid(valid);
    attention_forward(out.data(), att.data(), qkv.data(), nullptr, valid.data(), B, T, C, NH, p, 7, 11, 3);
    attention_forward_cuda(d_out.data(), d_att.data(), d_qkv.data(), nullptr, d_valid.data(), B, T, C, NH, p, 7, 11, 3);
    Vec g_out = down(d_out), g_att = down(d_att);
    CHECK(check_tensor("out", g_out, out, 1e-5, 1e-5));
    CHECK(check_tensor("att", g_att, att, 1e-6, 1e-5));
    // the encoders' form: the valid rows only, through the positions' slots (a PAD position's slot
    // out of range: never read); bitwise the padded layout's valid rows on the device
    std::vector<int32_t> slot(B * T, 1 << 30), rows;
    for (size_t n = 0; n < B * T; n++)
        if (valid[n]) slot[n] = (int32_t)rows.size(), rows.push_back((int32_t)n);
    const size_t Nv = rows.size();
    Vec qkv_v(std::max<size_t>(1, Nv) * 3 * C);
    for (size_t r = 0; r < Nv; r++)
        std::copy_n(qkv.begin() + (ptrdiff_t)((size_t)rows[r] * 3 * C), 3 * C, qkv_v.begin() + (ptrdiff_t)(r * 3 * C));
    DeviceBuffer d_qkv_v(qkv_v), d_out_v(std::max<size_t>(1, Nv) * C), d_att_v(att.size());
    DeviceBufferI32 d_slot(slot);
    attention_forward_cuda(d_out_v.data(), d_att_v.data(), d_qkv_v.data(), d_slot.data(), d_valid.data(), B, T, C, NH,
                           p, 7, 11, 3);
    {
        const Vec g_out_v = down(d_out_v);
        Vec want(g_out_v.size(), 0.0f);
        for (size_t r = 0; r < Nv; r++)
            std::copy_n(g_out.begin() + (ptrdiff_t)((size_t)rows[r] * C), C, want.begin() + (ptrdiff_t)(r * C));
        if (Nv) CHECK(bitwise_equal(g_out_v, want));
        CHECK(bitwise_equal(down(d_att_v), g_att));
    }
    // the last positions' attention, its queries apart (evaluation's last block)
    Vec q(B * C), out_last(B * C), att_last(att.size(), 0.0f);
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++) q[b * C + c] = qkv[(b * T + T - 1) * 3 * C + c];
    DeviceBuffer d_q(q), d_out_last(B * C), d_att_last(att_last);
    attention_last_forward(out_last.data(), att_last.data(), q.data(), qkv.data(), nullptr, valid.data(), B, T, C, NH);
    attention_last_forward_cuda(d_out_last.data(), d_att_last.data(), d_q.data(), d_qkv.data(), nullptr, d_valid.data(),
                                B, T, C, NH);
    CHECK(check_tensor("out_last", down(d_out_last), out_last, 1e-5, 1e-5));
    CHECK(check_tensor("att_last", down(d_att_last), att_last, 1e-6, 1e-5));
    {
        DeviceBuffer d_out_last_v(B * C), d_att_last_v(att_last);
        attention_last_forward_cuda(d_out_last_v.data(), d_att_last_v.data(), d_q.data(), d_qkv_v.data(), d_slot.data(),
                                    d_valid.data(), B, T, C, NH);
        CHECK(bitwise_equal(down(d_out_last_v), down(d_out_last)));
        CHECK(bitwise_equal(down(d_att_last_v), down(d_att_last)));
    }
    attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), valid.data(), B, T, C, NH, p, 7, 11, 3);
    attention_backward_cuda(d_dqkv.data(), d_dout.data(), d_qkv.data(), d_att.data(), d_valid.data(), B, T, C, NH, p,
                            7, 11, 3);
    Vec g_dqkv = down(d_dqkv);
    CHECK(check_tensor("dqkv", g_dqkv, dqkv, 1e-5, 1e-4));

    auto rerun = [&](const char* what) {
        CAPTURE(what);
        DeviceBuffer r_out(B * T * C), r_att(att.size()), r_dqkv(dqkv0);
        attention_forward_cuda(r_out.data(), r_att.data(), d_qkv.data(), nullptr, d_valid.data(), B, T, C, NH, p, 7, 11,
                               3);
        attention_backward_cuda(r_dqkv.data(), d_dout.data(), d_qkv.data(), r_att.data(), d_valid.data(), B, T, C, NH,
                                p, 7, 11, 3);
        CHECK(bitwise_equal(down(r_out), g_out));
        CHECK(bitwise_equal(down(r_att), g_att));
        CHECK(bitwise_equal(down(r_dqkv), g_dqkv));
    };
    rerun("second run");
    in_reverse_order([&] { rerun("threads in reverse order"); });
}

}  // namespace

CUDA_TEST_CASE("cuda: attention forward and backward (T = 1, PAD rows, 1 and 2 heads, dropout)") {
    if (!gpu_ready()) return;
    for (AttShape sh : {AttShape{3, 6, 16, 1}, AttShape{3, 6, 16, 2}, AttShape{2, 1, 8, 2}, AttShape{2, 64, 32, 2}})
        for (float p : {0.0f, 0.3f}) check_attention(sh, p);
}

// The head sizes the model runs (q / heads: 32 to 512) at T = 1, 15 (the paper's) and 64 (the
// kernel's limit).
CUDA_TEST_CASE("cuda: attention at the model's head sizes 32-128, T = 1, 15 and 64, bitwise deterministic") {
    if (!gpu_ready()) return;
    for (AttShape sh : {AttShape{3, 15, 64, 2}, AttShape{2, 15, 128, 1}, AttShape{3, 1, 64, 1}, AttShape{2, 64, 64, 2}})
        check_attention(sh, 0.3f);
}

CUDA_TEST_CASE("cuda large: attention with head sizes 256 and 512 at T = 15 and 64") {
    if (!gpu_ready()) return;
    for (AttShape sh : {AttShape{3, 15, 512, 2}, AttShape{2, 15, 512, 1}, AttShape{2, 64, 512, 1}})
        check_attention(sh, 0.3f);
}

CUDA_TEST_CASE("cuda: l2norm forward and backward (with a zero row)") {
    if (!gpu_ready()) return;
    const size_t N = 5, C = 37;
    Vec x = randn(N * C, 36), dout = randn(N * C, 37), dinp = randn(N * C, 38);
    for (size_t c = 0; c < C; c++) x[2 * C + c] = 0.0f;  // a missing feature: clamped norm
    Vec out(N * C), norm(N);
    DeviceBuffer d_x(x), d_dout(dout), d_dinp(dinp), d_out(N * C), d_norm(N);
    l2norm_forward(out.data(), norm.data(), x.data(), N, C);
    l2norm_forward_cuda(d_out.data(), d_norm.data(), d_x.data(), N, C);
    CHECK(check_tensor("out", down(d_out), out, 1e-6, 1e-5));
    CHECK(check_tensor("norm", down(d_norm), norm, 1e-6, 1e-5));
    l2norm_backward(dinp.data(), dout.data(), out.data(), norm.data(), N, C);
    l2norm_backward_cuda(d_dinp.data(), d_dout.data(), d_out.data(), d_norm.data(), N, C);
    CHECK(check_tensor("dinp", down(d_dinp), dinp, 1e-5, 1e-5));  // the zero row is dout / 1e-12
}

CUDA_TEST_CASE("cuda: cosine logits (the scores of evaluation)") {
    if (!gpu_ready()) return;
    const size_t R = 9, V = 50, C = 24;
    // s from a clamped log-scale (exp(5) > 100) and from an ordinary one
    for (float log_s : {5.0f, 2.0f}) {
        float s = logit_scale(log_s, nullptr);
        CAPTURE(s);
        Vec hn = normalized_rows(R, C, 39), En = normalized_rows(V, C, 40), logits(R * V);
        DeviceBuffer d_hn(hn), d_En(En), d_logits(R * V);
        cosine_logits_forward(logits.data(), hn.data(), En.data(), s, R, V, C);
        cosine_logits_forward_cuda(d_logits.data(), d_hn.data(), d_En.data(), s, R, V, C);
        CHECK(check_tensor("logits", down(d_logits), logits, 1e-4, 1e-5));
    }
}

CUDA_TEST_CASE("cuda: cosine logits of several row sets against one table") {
    if (!gpu_ready()) return;
    const size_t V = 50, C = 24, n = 3, rows = 13;
    const size_t R[n] = {9, 0, 4};
    const float s[n] = {logit_scale(5.0f, nullptr), 1.0f, logit_scale(2.0f, nullptr)};
    Vec En = normalized_rows(V, C, 41), hn = normalized_rows(rows, C, 42), logits(rows * V);
    DeviceBuffer d_En(En), d_hn(hn), d_logits(rows * V);
    for (int slot : {-1, 2}) {  // the slot is the CPU's packing: nothing on a device
        CAPTURE(slot);
        cosine_logits_forward_sets(logits.data(), hn.data(), En.data(), s, R, n, V, C, slot);
        cosine_logits_forward_sets_cuda(d_logits.data(), d_hn.data(), d_En.data(), s, R, n, V, C, slot);
        CHECK(check_tensor("logits", down(d_logits), logits, 1e-4, 1e-5));
    }
    packed_tables_release();
    packed_tables_release_cuda();
}

CUDA_TEST_CASE("cuda: the evaluation mixture") {
    if (!gpu_ready()) return;
    const size_t M = 3, R = 10, V = 70;
    Vec logw = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    Vec z = randn(M * R * V, 44, 5.0f);
    DeviceBuffer d_z(z), d_logw(logw);
    const float* zp[3] = {z.data(), z.data() + R * V, z.data() + 2 * R * V};
    const float* d_zp[3] = {d_z.data(), d_z.data() + R * V, d_z.data() + 2 * R * V};
    // out += alpha * sum_m w_m p_m
    Vec out = randn(R * V, 46);
    DeviceBuffer d_out(out);
    mixture_prob_accumulate(out.data(), zp, logw.data(), 0.7f, M, R, V);
    mixture_prob_accumulate_cuda(d_out.data(), d_zp, d_logw.data(), 0.7f, M, R, V);
    CHECK(check_tensor("prob", down(d_out), out, 1e-6, 1e-5));
}

CUDA_TEST_CASE("cuda: the lines' scores over their views") {
    if (!gpu_ready()) return;
    const size_t M = 2, V = 90, ldo = 95, nv = 3, L = 4, Rtot = 7;
    Vec logw = {std::log(0.4f), std::log(0.6f)};
    Vec z = randn(M * Rtot * V, 51, 5.0f);
    DeviceBuffer d_z(z), d_logw(logw);
    const float* zp[2] = {z.data(), z.data() + Rtot * V};
    const float* d_zp[2] = {d_z.data(), d_z.data() + Rtot * V};
    const float coef[nv] = {1.0f, 0.5f, 2.0f};
    std::vector<int32_t> out_rows = {5, 1, 2, 6}, rows = {0, 1, -1, 2, -1, 3, -1, -1, 4, 5, -1, 6};
    DeviceBufferI32 d_out_rows(out_rows), d_rows(rows);
    Vec out = randn(8 * ldo, 52);
    DeviceBuffer d_out(out);
    mixture_score_lines(out.data(), ldo, out_rows.data(), rows.data(), nv, L, zp, logw.data(), coef, M, V);
    mixture_score_lines_cuda(d_out.data(), ldo, d_out_rows.data(), d_rows.data(), nv, L, d_zp, d_logw.data(), coef, M,
                             V);
    CHECK(check_tensor("scores", down(d_out), out, 1e-6, 1e-5));
}

CUDA_TEST_CASE("cuda: fused mixture head equals the unfused CPU head") {
    if (!gpu_ready()) return;
    const size_t M = 3, R = 13, V = 300;
    const size_t Cm[3] = {16, 24, 8};
    const float s[3] = {10.0f, 3.0f, 50.0f};
    Vec logw = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    std::vector<int32_t> y = {0, 127, 128, 299, -1, 5, 255, 256, -1, 44, 200, 1, 298};
    Vec dloss = randn(R, 47);
    for (float& d : dloss) d = std::fabs(d) + 0.1f;

    // CPU reference: cosine logits, mixture CE forward/backward (in place), cosine backward
    std::vector<Vec> hn(M), En(M), z(M), dhn(M), dEn(M);
    for (size_t m = 0; m < M; m++) {
        hn[m] = normalized_rows(R, Cm[m], 50 + m);
        En[m] = normalized_rows(V, Cm[m], 60 + m);
        dhn[m] = randn(R * Cm[m], 70 + m);
        dEn[m] = randn(V * Cm[m], 80 + m);
        z[m].resize(R * V);
        cosine_logits_forward(z[m].data(), hn[m].data(), En[m].data(), s[m], R, V, Cm[m]);
    }
    Vec ds = {0.1f, 0.2f, 0.3f}, loss(R), lse(M * R);
    const float* zp[3] = {z[0].data(), z[1].data(), z[2].data()};
    float* dzp[3] = {z[0].data(), z[1].data(), z[2].data()};
    mixture_ce_forward(loss.data(), lse.data(), zp, y.data(), logw.data(), 0.0f, M, R, V);
    mixture_ce_backward(dzp, zp, lse.data(), y.data(), logw.data(), 0.0f, dloss.data(), M, R, V);
    Vec dEn1_before = dEn[1];
    for (size_t m = 0; m < M; m++)
        cosine_logits_backward(dhn[m].data(), m == 1 ? nullptr : dEn[m].data(), &ds[m], z[m].data(),
                               hn[m].data(), En[m].data(), s[m], R, V, Cm[m]);

    // chunks of 128 (three, the last of 44), one exact chunk, and the default (one chunk)
    for (size_t Vc : {(size_t)128, (size_t)300, (size_t)0}) {
        CAPTURE(Vc);
        std::vector<DeviceBuffer> d_hn, d_En, d_dhn, d_dEn;
        for (size_t m = 0; m < M; m++) {
            d_hn.emplace_back(hn[m]);
            d_En.emplace_back(En[m]);
            d_dhn.emplace_back(randn(R * Cm[m], 70 + m));  // the same starting gradients
            d_dEn.emplace_back(randn(V * Cm[m], 80 + m));
        }
        DeviceBuffer d_logw(logw), d_dloss(dloss), d_loss(R), d_ds(Vec{0.1f, 0.2f, 0.3f});
        DeviceBufferI32 d_y(y);
        const float* hp[3] = {d_hn[0].data(), d_hn[1].data(), d_hn[2].data()};
        const float* ep[3] = {d_En[0].data(), d_En[1].data(), d_En[2].data()};
        float* dhp[3] = {d_dhn[0].data(), d_dhn[1].data(), d_dhn[2].data()};
        float* dep[3] = {d_dEn[0].data(), nullptr, d_dEn[2].data()};  // a frozen table
        fused_mixture_head_cuda(d_loss.data(), dhp, dep, d_ds.data(), hp, ep, s, Cm, d_y.data(),
                                d_logw.data(), 0.0f, d_dloss.data(), M, R, V, Vc);
        CHECK(check_tensor("loss", down(d_loss), loss, 1e-5, 1e-5));
        CHECK(check_tensor("ds", down(d_ds), ds, 1e-4, 1e-4));
        for (size_t m = 0; m < M; m++) {
            CAPTURE(m);
            CHECK(check_tensor("dhn", down(d_dhn[m]), dhn[m], 1e-5, 1e-4));
            CHECK(check_tensor("dEn", down(d_dEn[m]), m == 1 ? dEn1_before : dEn[m], 1e-5, 1e-4));
        }
        // loss only (no dloss): same loss, gradients untouched
        DeviceBuffer d_loss2(R);
        fused_mixture_head_cuda(d_loss2.data(), dhp, dep, d_ds.data(), hp, ep, s, Cm, d_y.data(),
                                d_logw.data(), 0.0f, nullptr, M, R, V, Vc);
        CHECK(check_tensor("loss only", down(d_loss2), loss, 1e-5, 1e-5));
        CHECK(check_tensor("ds untouched", down(d_ds), ds, 1e-4, 1e-4));
    }
}

namespace {

// The fused head of M modalities (widths Cm) over R rows and V items, for each chunk in `chunks`
// (0 = chosen from the free memory), against the unfused CPU head: every gradient, a frozen table
// (dEn null for m = 1), then with ds null (the other gradients unchanged), then the loss-only call
// (no gradient output touched), and bitwise the same on a second run and in the other order.
// gtol: the tolerance (atol = gtol, rtol = 10 gtol) of dhn and dEn, sums over V (dhn) or R (dEn)
// float terms scaled by s up to 50, whose float32 round-off on the CPU side grows with the length.
void check_fused(size_t M, size_t R, size_t V, const size_t* Cm, std::vector<size_t> chunks, uint64_t seed,
                 double gtol, float lambda_h = 0.0f) {
    CAPTURE(M);
    CAPTURE(lambda_h);
    CAPTURE(R);
    CAPTURE(V);
    const float s[3] = {10.0f, 3.0f, 50.0f};
    Vec logw;
    for (size_t m = 0; m < M; m++) logw.push_back(std::log((1.0f + m) / (M * (M + 1) / 2.0f)));
    std::vector<int32_t> y(R);
    for (size_t r = 0; r < R; r++) y[r] = r % 7 == 3 ? -1 : (int32_t)rng_below(seed, 9, r, V);
    y[0] = 0;
    y[R - 1] = (int32_t)V - 1;
    Vec dloss = randn(R, seed + 1);
    for (float& d : dloss) d = std::fabs(d) + 0.1f;
    std::vector<Vec> hn(M), En(M), dhn0(M), dEn0(M);
    for (size_t m = 0; m < M; m++) {
        hn[m] = normalized_rows(R, Cm[m], seed + 10 + m);
        En[m] = normalized_rows(V, Cm[m], seed + 20 + m);
        dhn0[m] = randn(R * Cm[m], seed + 30 + m);
        dEn0[m] = randn(V * Cm[m], seed + 40 + m);
    }
    // the CPU reference
    std::vector<Vec> dhn = dhn0, dEn = dEn0;
    Vec loss(R), ds(M, 0.25f);
    const float* hp[3] = {};
    const float* ep[3] = {};
    float* dhp[3] = {};
    float* dep[3] = {};
    for (size_t m = 0; m < M; m++) {
        hp[m] = hn[m].data(), ep[m] = En[m].data(), dhp[m] = dhn[m].data();
        dep[m] = m == 1 ? nullptr : dEn[m].data();
    }
    mixture_head_unfused(loss.data(), dhp, dep, ds.data(), hp, ep, s, Cm, y.data(), logw.data(), lambda_h, dloss.data(), M, R, V);

    std::vector<DeviceBuffer> d_hn, d_En;
    for (size_t m = 0; m < M; m++) d_hn.emplace_back(hn[m]), d_En.emplace_back(En[m]);
    DeviceBuffer d_logw(logw), d_dloss(dloss);
    DeviceBufferI32 d_y(y);
    const float* g_hp[3] = {};
    const float* g_ep[3] = {};
    for (size_t m = 0; m < M; m++) g_hp[m] = d_hn[m].data(), g_ep[m] = d_En[m].data();

    for (size_t Vc : chunks) {
        CAPTURE(Vc);
        Vec first_loss, first_ds;
        std::vector<Vec> first_dhn(M), first_dEn(M);
        // with_ds false: ds null; with dloss false: the loss-only call
        auto run = [&](const char* what, bool with_ds, bool with_dloss) {
            CAPTURE(what);
            std::vector<DeviceBuffer> g_dhn, g_dEn;
            for (size_t m = 0; m < M; m++) g_dhn.emplace_back(dhn0[m]), g_dEn.emplace_back(dEn0[m]);
            DeviceBuffer g_loss(R), g_ds(Vec(M, 0.25f));
            float* gd_h[3] = {};
            float* gd_e[3] = {};
            for (size_t m = 0; m < M; m++) gd_h[m] = g_dhn[m].data(), gd_e[m] = m == 1 ? nullptr : g_dEn[m].data();
            fused_mixture_head_cuda(g_loss.data(), gd_h, gd_e, with_ds ? g_ds.data() : nullptr, g_hp, g_ep, s, Cm,
                                    d_y.data(), d_logw.data(), lambda_h, with_dloss ? d_dloss.data() : nullptr, M, R, V, Vc);
            Vec l = down(g_loss), d = down(g_ds);
            CHECK(check_tensor("loss", l, loss, 1e-5, 1e-5));
            if (!with_dloss) {  // nothing but the loss is written
                CHECK(d == Vec(M, 0.25f));
                for (size_t m = 0; m < M; m++) {
                    CHECK(bitwise_equal(down(g_dhn[m]), dhn0[m]));
                    CHECK(bitwise_equal(down(g_dEn[m]), dEn0[m]));
                }
                return;
            }
            if (with_ds) CHECK(check_tensor("ds", d, ds, 1e-4, 1e-4));
            else CHECK(d == Vec(M, 0.25f));
            for (size_t m = 0; m < M; m++) {
                CAPTURE(m);
                Vec h = down(g_dhn[m]), e = down(g_dEn[m]);
                CHECK(check_tensor("dhn", h, dhn[m], gtol, 10 * gtol));
                CHECK(check_tensor("dEn", e, m == 1 ? dEn0[m] : dEn[m], gtol, 10 * gtol));
                if (!with_ds) continue;
                if (first_dhn[m].empty()) {
                    first_dhn[m] = h, first_dEn[m] = e;
                } else {
                    CHECK(bitwise_equal(h, first_dhn[m]));
                    CHECK(bitwise_equal(e, first_dEn[m]));
                }
            }
            if (!with_ds) return;
            if (first_loss.empty()) {
                first_loss = l, first_ds = d;
            } else {
                CHECK(bitwise_equal(l, first_loss));
                CHECK(bitwise_equal(d, first_ds));
            }
        };
        run("all gradients", true, true);
        run("ds null", false, true);
        run("loss only", true, false);
        run("second run", true, true);
        in_reverse_order([&] { run("threads in reverse order", true, true); });
    }
}

}  // namespace

// Chunks of 128 (three, the last of 44), one exact chunk, and the default (from free memory).
CUDA_TEST_CASE("cuda: fused head of 1, 2 and 3 modalities, ds null, loss only, bitwise deterministic, lambda_h > 0") {
    if (!gpu_ready()) return;
    const size_t Cm[3] = {16, 24, 8};
    for (size_t M = 1; M <= 3; M++) check_fused(M, 13, 300, Cm, {128, 300, 0}, 80 + M, 1e-5);
    // the per-head cross-entropy of SPEC §3.5 (lambda_h > 0) in the same head
    for (size_t M = 1; M <= 3; M++) check_fused(M, 13, 300, Cm, {128, 0}, 85 + M, 1e-5, 0.8f);
}

// The model's size: V in the tens of thousands, R in the thousands, the default chunk.
CUDA_TEST_CASE("cuda large: fused head at the model's size (R 1,500, V 20,000, default chunk)") {
    if (!gpu_ready()) return;
    const size_t Cm[3] = {16, 8, 8};
    // sums of 20,000 terms: the tolerance of the whole-model comparison (atol 1e-4, rtol 1e-3)
    for (size_t M = 1; M <= 3; M++) check_fused(M, 1500, 20000, Cm, {0}, 90 + M, 1e-4);
}

CUDA_TEST_CASE("cuda: Adam, three steps") {
    if (!gpu_ready()) return;
    const size_t n = 1003;
    AdamConfig cfg;
    cfg.l2 = 1e-2f;  // large enough to matter
    Vec w = randn(n, 90, 0.5f), m(n, 0.0f), v(n, 0.0f);
    DeviceBuffer d_w(w), d_m(n), d_v(n), d_g(n);
    for (long t = 1; t <= 3; t++) {
        Vec g = randn(n, 90 + (uint64_t)t);
        d_g.upload(g);
        adam_update(w.data(), m.data(), v.data(), g.data(), n, cfg, t);
        adam_update_cuda(d_w.data(), d_m.data(), d_v.data(), d_g.data(), n, cfg, t);
    }
    CHECK(check_tensor("params", down(d_w), w, 1e-6, 1e-5));
    CHECK(check_tensor("m", down(d_m), m, 1e-6, 1e-5));
    CHECK(check_tensor("v", down(d_v), v, 1e-7, 1e-5));
}

// The whole model on the device path with the CUDA backend (backend.h): the same Model code that
// the emulated device backend checks bit for bit against the host path in test_model.cpp, here
// with the CUDA kernels and cuBLAS. Tolerances: the GPU sums in another order through two blocks,
// the heads and three Adam steps; atol 1e-4, rtol 1e-3 leaves a factor of about 5 over the
// float32 round-off measured for the CPU against PyTorch's float64 (tests/test_reference.cpp),
// while a wrong term is off by 1e-2 or more.
CUDA_TEST_CASE("cuda: one whole training step, three Adam steps and the scores match the CPU") {
    if (!gpu_ready()) return;
    testutil::compare_model_backends(*cuda_backend(), 1e-4, 1e-3);
}

// recommend --explain on the device: the parts add up to the scores and equal the CPU's.
CUDA_TEST_CASE("cuda: explain's parts and attention match the CPU") {
    if (!gpu_ready()) return;
    testutil::check_explanation(*cuda_backend(), 1e-5, 1e-4);
}

CUDA_TEST_CASE("cuda: the whole model on the device matches the PyTorch fixture") {
    if (!gpu_ready()) return;
    testutil::check_model_against_pytorch(*cuda_backend());
}

#endif  // HAFVT_CUDA
