// test_ops.cpp: finite-difference checks of every encoder layer's backward (ops_cpu.h),
// on small random shapes and the edge cases: T = 1, a row that is all PAD, 1 and 2 heads.
// Tolerance: worst |num - ana| / max(|num|, |ana|, 1e-3) <= 1e-2. The forward runs in float, so
// the central difference with h = 1e-2 carries an absolute round-off of about 1e-5..5e-5 and a truncation error
// of order h^2 = 1e-4; derivatives below 1e-2 are therefore judged absolutely (floor 1e-2), and 1e-2
// leaves room for that and still catches any wrong term (those give errors of order 1).
#include <cstring>

#include "fd_check.h"
#include "math/ops_cpu.h"
#include "test_util.h"

using namespace hafvt;

static constexpr double kTol = 1e-2;

TEST_CASE("embedding and positional add: gradients, PAD row and position 0 get none") {
    const size_t V = 7, C = 5, N = 6;
    const int32_t pad = 6;
    std::vector<int32_t> ids = {1, 3, 6, 1, 0, 6};
    std::vector<int32_t> pos = {1, 2, 0, 3, 4, 0};
    auto table = fd::randn(V * C, 1), P = fd::randn(5 * C, 2), G = fd::randn(N * C, 3);
    std::memset(P.data(), 0, C * sizeof(float));  // row 0 of P is zero
    const float scale = 2.0f;
    std::vector<float> out(N * C);
    auto loss = [&] {
        embedding_forward(out.data(), ids.data(), table.data(), scale, pad, N, C);
        posadd_forward(out.data(), pos.data(), P.data(), N, C);
        return fd::dot(out.data(), G);
    };
    loss();
    for (size_t c = 0; c < C; c++) {
        CHECK(out[2 * C + c] == 0.0f);  // PAD position: zero row, nothing added
        CHECK(out[0 * C + c] == doctest::Approx(table[1 * C + c] * scale + P[1 * C + c]));
    }
    std::vector<float> dtable(V * C), dP(5 * C);
    embedding_backward(dtable.data(), G.data(), ids.data(), scale, pad, N, C);
    posadd_backward(dP.data(), G.data(), pos.data(), N, C);
    for (size_t c = 0; c < C; c++) {
        CHECK(dtable[pad * C + c] == 0.0f);
        CHECK(dP[c] == 0.0f);
    }
    // the PAD row and P row 0 are held constant: check only the others
    CHECK(fd::check("embedding", loss, table.data(), dtable.data(), pad * C).max_err < kTol);
    CHECK(fd::check("posadd", loss, P.data() + C, dP.data() + C, 4 * C).max_err < kTol);
}

TEST_CASE("layernorm backward matches finite differences") {
    for (size_t C : {1, 4, 16}) {
        const size_t N = 5;
        auto x = fd::randn(N * C, 10 + C), w = fd::randn(C, 11), b = fd::randn(C, 12);
        auto G = fd::randn(N * C, 13);
        std::vector<float> out(N * C), mean(N), rstd(N);
        auto loss = [&] {
            layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
            return fd::dot(out.data(), G);
        };
        loss();
        std::vector<float> dx(N * C), dw(C), db(C);
        layernorm_backward(dx.data(), dw.data(), db.data(), G.data(), x.data(), w.data(), mean.data(),
                           rstd.data(), N, C);
        CHECK(fd::check("layernorm", loss, x.data(), dx.data(), N * C).max_err < kTol);
        CHECK(fd::check("layernorm", loss, w.data(), dw.data(), C).max_err < kTol);
        CHECK(fd::check("layernorm", loss, b.data(), db.data(), C).max_err < kTol);
    }
}

TEST_CASE("linear backward matches finite differences, with and without bias") {
    const size_t N = 7, C = 6, OC = 9;
    for (bool with_bias : {true, false}) {
        auto x = fd::randn(N * C, 20), w = fd::randn(C * OC, 21), b = fd::randn(OC, 22);
        auto G = fd::randn(N * OC, 23);
        std::vector<float> out(N * OC);
        const float* bias = with_bias ? b.data() : nullptr;
        auto loss = [&] {
            linear_forward(out.data(), x.data(), w.data(), bias, N, C, OC);
            return fd::dot(out.data(), G);
        };
        loss();
        std::vector<float> dx(N * C), dw(C * OC), db(OC);
        linear_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, G.data(), x.data(),
                        w.data(), N, C, OC);
        CHECK(fd::check("linear", loss, x.data(), dx.data(), N * C).max_err < kTol);
        CHECK(fd::check("linear", loss, w.data(), dw.data(), C * OC).max_err < kTol);
        if (with_bias) CHECK(fd::check("linear", loss, b.data(), db.data(), OC).max_err < kTol);
    }
}

TEST_CASE("gelu and residual backward match finite differences") {
    const size_t n = 64;
    auto x = fd::randn(n, 30, 2.0f), y = fd::randn(n, 31), G = fd::randn(n, 32);
    std::vector<float> out(n), out2(n);
    auto loss = [&] {
        gelu_forward(out.data(), x.data(), n);
        residual_forward(out2.data(), out.data(), y.data(), n);
        return fd::dot(out2.data(), G);
    };
    loss();
    CHECK(out[0] == doctest::Approx(0.5 * x[0] * (1 + std::tanh(0.7978845608 * (x[0] + 0.044715 * x[0] * x[0] * x[0])))));
    std::vector<float> dgelu(n), dx(n), dy(n);
    residual_backward(dgelu.data(), dy.data(), G.data(), n);
    gelu_backward(dx.data(), dgelu.data(), x.data(), n);
    CHECK(fd::check("gelu", loss, x.data(), dx.data(), n).max_err < kTol);
    CHECK(fd::check("residual", loss, y.data(), dy.data(), n).max_err < kTol);
}

TEST_CASE("dropout: backward uses the forward's mask; p = 0 is the identity") {
    const size_t n = 200;
    auto x = fd::randn(n, 40), G = fd::randn(n, 41);
    std::vector<float> out(n);
    for (float p : {0.0f, 0.3f}) {
        auto loss = [&] {
            dropout_forward(out.data(), x.data(), n, p, 2040, 5, 3);
            return fd::dot(out.data(), G);
        };
        loss();
        size_t zeros = 0;
        for (size_t i = 0; i < n; i++) {
            zeros += out[i] == 0.0f;
            if (out[i] != 0.0f) CHECK(out[i] == doctest::Approx(x[i] / (1.0f - p)));
        }
        if (p == 0.0f) CHECK(zeros == 0);
        else CHECK(zeros > 30);
        std::vector<float> dx(n);
        dropout_backward(dx.data(), G.data(), n, p, 2040, 5, 3);
        CHECK(fd::check("dropout", loss, x.data(), dx.data(), n).max_err < kTol);
    }
}

TEST_CASE("dropout masks: same (seed, step) same mask, otherwise different; keep rate") {
    const size_t n = 100000;
    const float p = 0.3f;
    std::vector<float> ones(n, 1.0f), a(n), b(n), c(n), d(n);
    dropout_forward(a.data(), ones.data(), n, p, 2040, 7, 1);
    dropout_forward(b.data(), ones.data(), n, p, 2040, 7, 1);
    dropout_forward(c.data(), ones.data(), n, p, 2040, 8, 1);  // next step
    dropout_forward(d.data(), ones.data(), n, p, 2041, 7, 1);  // other seed
    CHECK(std::memcmp(a.data(), b.data(), n * sizeof(float)) == 0);
    size_t kept = 0, diff_step = 0, diff_seed = 0;
    for (size_t i = 0; i < n; i++) {
        kept += a[i] != 0.0f;
        diff_step += (a[i] != 0.0f) != (c[i] != 0.0f);
        diff_seed += (a[i] != 0.0f) != (d[i] != 0.0f);
    }
    double rate = (double)kept / (double)n;
    MESSAGE("keep rate ", rate, " (expected ", 1.0 - p, ")");
    CHECK(std::fabs(rate - (1.0 - p)) < 0.01);
    // independent masks disagree on 2 p (1-p) = 42% of elements
    CHECK(diff_step > n / 3);
    CHECK(diff_seed > n / 3);
}

// Attention over qkv with some PAD positions; checks every gradient of qkv.
static void check_attention(size_t B, size_t T, size_t C, size_t NH, const std::vector<uint8_t>& valid,
                            float p_drop, uint64_t seed) {
    auto qkv = fd::randn(B * T * 3 * C, seed), G = fd::randn(B * T * C, seed + 1);
    std::vector<float> out(B * T * C), att(B * NH * T * T);
    auto loss = [&] {
        attention_forward(out.data(), att.data(), qkv.data(), nullptr, valid.data(), B, T, C, NH, p_drop, 2040, 3, 9);
        return fd::dot(out.data(), G);
    };
    loss();
    // PAD queries output zero; every valid query's probabilities sum to one over allowed keys
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            if (!valid[b * T + t]) {
                for (size_t c = 0; c < C; c++) CHECK(out[(b * T + t) * C + c] == 0.0f);
                continue;
            }
            for (size_t h = 0; h < NH; h++) {
                double s = 0.0;
                for (size_t j = 0; j < T; j++) {
                    float a = att[((b * NH + h) * T + t) * T + j];
                    if (j > t || !valid[b * T + j]) CHECK(a == 0.0f);
                    s += a;
                }
                CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
            }
        }
    std::vector<float> dqkv(B * T * 3 * C);
    attention_backward(dqkv.data(), G.data(), qkv.data(), att.data(), valid.data(), B, T, C, NH, p_drop, 2040, 3, 9);
    CHECK(fd::check("attention", loss, qkv.data(), dqkv.data(), qkv.size(), 1e-2f, 1e-2, 2000).max_err < kTol);
}

TEST_CASE("attention backward: 1 and 2 heads, left padding, an all-PAD row, T = 1, dropout") {
    // B = 3, T = 4: row 0 full, row 1 left-padded by 2, row 2 all PAD
    std::vector<uint8_t> valid = {1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0};
    check_attention(3, 4, 4, 1, valid, 0.0f, 50);
    check_attention(3, 4, 4, 2, valid, 0.0f, 51);
    check_attention(3, 4, 6, 2, valid, 0.3f, 52);
    check_attention(2, 1, 4, 2, {1, 0}, 0.0f, 53);  // T = 1
}

// The last position's attention (evaluation's last block): its query from a separate (B, C)
// array, the q of qkv never read (NaN here); bitwise attention_forward's rows (b, T-1) with the
// queries in place, a zero row for a sequence whose last position is PAD.
TEST_CASE("attention_last_forward equals attention_forward at the last positions, bitwise") {
    // B = 4, T = 5: full, left-padded by 2, all PAD, only the last item; 1 and 2 heads; head size
    // above and below the 16 lanes of the dot product
    const size_t B = 4, T = 5;
    const std::vector<uint8_t> valid = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    for (size_t C : {(size_t)8, (size_t)40})
        for (size_t NH : {(size_t)1, (size_t)2}) {
            CAPTURE(C);
            CAPTURE(NH);
            const std::vector<float> qkv = fd::randn(B * T * 3 * C, 60 + C + NH);
            std::vector<float> out(B * T * C), att(B * NH * T * T);
            attention_forward(out.data(), att.data(), qkv.data(), nullptr, valid.data(), B, T, C, NH, 0.0f, 1, 2, 3);
            std::vector<float> q(B * C), kv = qkv;
            for (size_t b = 0; b < B; b++)
                for (size_t c = 0; c < C; c++) {
                    q[b * C + c] = qkv[(b * T + T - 1) * 3 * C + c];
                    for (size_t t = 0; t < T; t++) kv[(b * T + t) * 3 * C + c] = NAN;
                }
            std::vector<float> out_last(B * C, -1.0f), att_last(B * NH * T * T, -1.0f);
            attention_last_forward(out_last.data(), att_last.data(), q.data(), kv.data(), nullptr, valid.data(), B, T, C,
                                   NH);
            for (size_t b = 0; b < B; b++) {
                for (size_t c = 0; c < C; c++) CHECK(out_last[b * C + c] == out[(b * T + T - 1) * C + c]);
                for (size_t h = 0; h < NH; h++)
                    for (size_t t = 0; t < T; t++)
                        for (size_t j = 0; j < T; j++) {
                            const size_t i = ((b * NH + h) * T + t) * T + j;
                            if (t == T - 1) CHECK(att_last[i] == att[i]);
                            else CHECK(att_last[i] == -1.0f);  // the other rows left as they were
                        }
            }
            for (size_t c = 0; c < C; c++) CHECK(out_last[2 * C + c] == 0.0f);  // the all-PAD sequence
        }
}

// The encoders' form: qkv and out hold the valid rows only, each position's row given by its slot
// (PAD positions' slots are never read: out of range here); bitwise the padded layout's valid rows,
// with dropout, for the whole attention and for the last positions'.
TEST_CASE("attention through the positions' slots equals the padded layout, bitwise") {
    const size_t B = 4, T = 5, C = 40, NH = 2;
    const std::vector<uint8_t> valid = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    std::vector<int32_t> slot(B * T, 1 << 30), rows;
    for (size_t n = 0; n < B * T; n++)
        if (valid[n]) slot[n] = (int32_t)rows.size(), rows.push_back((int32_t)n);
    const size_t Nv = rows.size();
    const std::vector<float> qkv = fd::randn(B * T * 3 * C, 80);
    std::vector<float> qkv_v(Nv * 3 * C);
    for (size_t r = 0; r < Nv; r++)
        std::copy_n(qkv.begin() + (ptrdiff_t)((size_t)rows[r] * 3 * C), 3 * C, qkv_v.begin() + (ptrdiff_t)(r * 3 * C));
    for (float p_drop : {0.0f, 0.3f}) {
        CAPTURE(p_drop);
        std::vector<float> out(B * T * C), att(B * NH * T * T), out_v(Nv * C, -1.0f), att_v(B * NH * T * T, -1.0f);
        attention_forward(out.data(), att.data(), qkv.data(), nullptr, valid.data(), B, T, C, NH, p_drop, 5, 6, 7);
        attention_forward(out_v.data(), att_v.data(), qkv_v.data(), slot.data(), valid.data(), B, T, C, NH, p_drop, 5,
                          6, 7);
        for (size_t r = 0; r < Nv; r++)
            for (size_t c = 0; c < C; c++) CHECK(out_v[r * C + c] == out[(size_t)rows[r] * C + c]);
        CHECK(att_v == att);
    }
    std::vector<float> q(B * C), out_last(B * C), att_last(B * NH * T * T), out_last_v(B * C, -1.0f),
        att_last_v(B * NH * T * T);
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++) q[b * C + c] = qkv[(b * T + T - 1) * 3 * C + c];
    attention_last_forward(out_last.data(), att_last.data(), q.data(), qkv.data(), nullptr, valid.data(), B, T, C, NH);
    attention_last_forward(out_last_v.data(), att_last_v.data(), q.data(), qkv_v.data(), slot.data(), valid.data(), B, T,
                           C, NH);
    CHECK(out_last_v == out_last);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++)
            for (size_t j = 0; j < T; j++) {
                const size_t i = ((b * NH + h) * T + T - 1) * T + j;
                CHECK(att_last_v[i] == att_last[i]);
            }
}

TEST_CASE("linear_forward_cols: columns of a wider layer, bitwise linear_forward's") {
    const size_t N = 37, C = 24, OC = 90;
    const std::vector<float> x = fd::randn(N * C, 70), W = fd::randn(C * OC, 71), bias = fd::randn(OC, 72);
    for (bool with_bias : {true, false}) {
        std::vector<float> full(N * OC);
        linear_forward(full.data(), x.data(), W.data(), with_bias ? bias.data() : nullptr, N, C, OC);
        // columns 30..90 into a wider output at column 5 (ldo 70), the rest left as it was
        const size_t c0 = 30, n = OC - c0, ldo = 70, at = 5;
        std::vector<float> part(N * ldo, 9.0f);
        linear_forward_cols(part.data() + at, ldo, x.data(), W.data() + c0, OC, with_bias ? bias.data() + c0 : nullptr,
                            N, C, n);
        for (size_t r = 0; r < N; r++)
            for (size_t j = 0; j < ldo; j++) {
                if (j >= at && j < at + n) CHECK(part[r * ldo + j] == full[r * OC + c0 + j - at]);
                else CHECK(part[r * ldo + j] == 9.0f);
            }
    }
}

TEST_CASE("scatter_rows places rows and leaves the others") {
    const size_t C = 3;
    const std::vector<float> src = {1, 2, 3, 4, 5, 6};
    const int32_t rows[2] = {3, 1};
    std::vector<float> dst(5 * C, -1.0f);
    scatter_rows(dst.data(), src.data(), rows, 2, C);
    CHECK(dst == std::vector<float>{-1, -1, -1, 4, 5, 6, -1, -1, -1, 1, 2, 3, -1, -1, -1});
}

TEST_CASE("l2norm backward matches finite differences; a zero row stays zero and finite") {
    const size_t N = 4, C = 5;
    auto x = fd::randn(N * C, 60), G = fd::randn(N * C, 61);
    for (size_t c = 0; c < C; c++) x[2 * C + c] = 0.0f;  // a zero vector
    std::vector<float> out(N * C), norm(N);
    auto loss = [&] {
        l2norm_forward(out.data(), norm.data(), x.data(), N, C);
        return fd::dot(out.data(), G);
    };
    loss();
    for (size_t c = 0; c < C; c++) CHECK(out[2 * C + c] == 0.0f);
    double s = 0;
    for (size_t c = 0; c < C; c++) s += out[c] * out[c];
    CHECK(s == doctest::Approx(1.0));
    std::vector<float> dx(N * C);
    l2norm_backward(dx.data(), G.data(), out.data(), norm.data(), N, C);
    for (float v : dx) CHECK(std::isfinite(v));
    // rows 0, 1 and 3 (the zero row's derivative is that of the clamp, 1/eps, not FD-checkable)
    CHECK(fd::check("l2norm", loss, x.data(), dx.data(), 2 * C).max_err < kTol);
    CHECK(fd::check("l2norm", loss, x.data() + 3 * C, dx.data() + 3 * C, C).max_err < kTol);
}

TEST_CASE("padmask zeroes PAD rows in the forward and in the gradient") {
    const size_t N = 3, C = 2;
    std::vector<float> x = {1, 2, 3, 4, 5, 6};
    std::vector<uint8_t> valid = {1, 0, 1};
    padmask_forward(x.data(), valid.data(), N, C);
    CHECK(x == std::vector<float>{1, 2, 0, 0, 5, 6});
    std::vector<float> g = {1, 1, 1, 1, 1, 1};
    padmask_backward(g.data(), valid.data(), N, C);
    CHECK(g == std::vector<float>{1, 1, 0, 0, 1, 1});
}
