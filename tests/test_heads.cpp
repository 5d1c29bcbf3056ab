// test_heads.cpp: finite-difference checks of the cosine-softmax heads and the mixture
// cross-entropy (heads.h), composed as the model composes them:
//   h -> l2norm -> cosine logits (scale s = clamp(exp(log_s))) against l2norm(E) -> mixture CE.
// Edge cases: a zero vector among the candidates, a clamped scale, a modality with weight 0,
// an unsupervised row. Same tolerance as test_ops.cpp (1e-2 on the relative error, see there).
#include <cstring>

#include "fd_check.h"
#include "math/gemm_cpu.h"
#include "math/heads.h"
#include "math/ops_cpu.h"
#include "test_util.h"

using namespace hafvt;

static constexpr double kTol = 1e-2;

// One head setup with M modalities, each with its own h (R,C) and E (V,C) and log scale.
struct HeadCase {
    size_t M, R, V, C;
    std::vector<std::vector<float>> h, E;
    std::vector<float> log_s, logw, dloss;
    std::vector<int32_t> y;
    float lambda_h = 0.0f;  // the per-head cross-entropy's weight (SPEC §3.5)

    HeadCase(size_t M_, size_t R_, size_t V_, size_t C_, uint64_t seed) : M(M_), R(R_), V(V_), C(C_) {
        for (size_t m = 0; m < M; m++) {
            h.push_back(fd::randn(R * C, seed + 10 * m));
            E.push_back(fd::randn(V * C, seed + 10 * m + 1));
            log_s.push_back(std::log(3.0f + (float)m));
            logw.push_back(std::log(1.0f / (float)M));
        }
        for (size_t r = 0; r < R; r++) y.push_back((int32_t)((r * 7 + 3) % V));
        dloss = fd::randn(R, seed + 99);
    }

    // Forward: returns sum_r dloss[r] * loss[r]; with grads != null also runs the backward.
    double run(std::vector<std::vector<float>>* dh, std::vector<std::vector<float>>* dE,
               std::vector<float>* dlog_s, std::vector<float>* loss_out = nullptr) {
        std::vector<std::vector<float>> hn(M), En(M), hnorm(M), Enorm(M), logits(M);
        std::vector<float> s(M), dsdl(M);
        std::vector<const float*> zp(M);
        for (size_t m = 0; m < M; m++) {
            hn[m].resize(R * C); hnorm[m].resize(R);
            En[m].resize(V * C); Enorm[m].resize(V);
            logits[m].resize(R * V);
            l2norm_forward(hn[m].data(), hnorm[m].data(), h[m].data(), R, C);
            l2norm_forward(En[m].data(), Enorm[m].data(), E[m].data(), V, C);
            s[m] = logit_scale(log_s[m], &dsdl[m]);
            cosine_logits_forward(logits[m].data(), hn[m].data(), En[m].data(), s[m], R, V, C);
            zp[m] = logits[m].data();
        }
        std::vector<float> loss(R), lse(M * R);
        mixture_ce_forward(loss.data(), lse.data(), zp.data(), y.data(), logw.data(), lambda_h, M, R, V);
        if (loss_out) *loss_out = loss;
        double L = 0.0;
        for (size_t r = 0; r < R; r++) L += (double)dloss[r] * loss[r];
        if (!dh) return L;
        // backward, dlogits written over the logits as the model does
        std::vector<float*> dz(M);
        for (size_t m = 0; m < M; m++) dz[m] = logits[m].data();
        mixture_ce_backward(dz.data(), zp.data(), lse.data(), y.data(), logw.data(), lambda_h,
                            dloss.data(), M, R, V);
        for (size_t m = 0; m < M; m++) {
            std::vector<float> dhn(R * C), dEn(V * C);
            float ds = 0.0f;
            cosine_logits_backward(dhn.data(), dEn.data(), &ds, dz[m], hn[m].data(), En[m].data(), s[m], R, V, C);
            (*dh)[m].assign(R * C, 0.0f);
            (*dE)[m].assign(V * C, 0.0f);
            l2norm_backward((*dh)[m].data(), dhn.data(), hn[m].data(), hnorm[m].data(), R, C);
            l2norm_backward((*dE)[m].data(), dEn.data(), En[m].data(), Enorm[m].data(), V, C);
            (*dlog_s)[m] = ds * dsdl[m];
        }
        return L;
    }

    // h: the finite-difference step (fd::check's default 1e-2; a larger one where the loss is
    // larger, as with the per-head term on top of the mixture, so that its float round-off
    // divided by 2h stays below the tolerance)
    double check_all(const std::string& tag, size_t skip_E_row = (size_t)-1, float h = 1e-2f) {
        std::vector<std::vector<float>> dh(M), dE(M);
        std::vector<float> dls(M);
        run(&dh, &dE, &dls);
        auto loss = [&] { return run(nullptr, nullptr, nullptr); };
        double worst = 0.0;
        for (size_t m = 0; m < M; m++) {
            worst = std::max(worst, fd::check(tag + ":h", loss, this->h[m].data(), dh[m].data(), R * C, h).max_err);
            for (size_t v = 0; v < V; v++) {
                if (v == skip_E_row) continue;
                worst = std::max(worst, fd::check(tag + ":E", loss, E[m].data() + v * C, dE[m].data() + v * C, C, h).max_err);
            }
            worst = std::max(worst, fd::check(tag + ":log_s", loss, &log_s[m], &dls[m], 1, h).max_err);
        }
        return worst;
    }
};

// Three heads, the third of weight 0, against the first two alone: the same loss, and no gradient
// reaches the third (its h, E and log scale), under the per-head term too (lambda_h > 0).
static void check_weight0(float lambda_h, const std::string& tag, float h) {
    HeadCase three(3, 4, 7, 5, 320), two(2, 4, 7, 5, 320);
    three.logw = {std::log(0.4f), std::log(0.6f), -INFINITY};
    two.logw = {std::log(0.4f), std::log(0.6f)};
    three.lambda_h = two.lambda_h = lambda_h;
    std::vector<float> l3, l2;
    std::vector<std::vector<float>> dh(3), dE(3);
    std::vector<float> dls(3);
    three.run(&dh, &dE, &dls, &l3);
    two.run(nullptr, nullptr, nullptr, &l2);
    CHECK(testutil::check_tensor("loss", l3, l2, 1e-6, 1e-6));
    for (float v : dh[2]) CHECK(v == 0.0f);
    for (float v : dE[2]) CHECK(v == 0.0f);
    CHECK(dls[2] == 0.0f);
    CHECK(three.check_all(tag, (size_t)-1, h) < kTol);
}

TEST_CASE("cosine heads + mixture CE: gradients of h, E and log_s for 1, 2 and 3 modalities") {
    for (size_t M : {1, 2, 3}) {
        HeadCase hc(M, 4, 9, 6, 100 + M);
        CHECK(hc.check_all("cosine_mixture") < kTol);
    }
}

TEST_CASE("per-head cross-entropy (lambda_h > 0): gradients of h, E and log_s for 1, 2 and 3 modalities") {
    for (size_t M : {1, 2, 3}) {
        HeadCase hc(M, 4, 9, 6, 140 + M);
        hc.lambda_h = 0.7f;
        CHECK(hc.check_all("per_head_ce", (size_t)-1, 2e-2f) < kTol);
    }
    // a weight-0 head takes no part in the per-head term either: loss and gradients as without it
    check_weight0(1.5f, "per_head_ce_weight0", 2e-2f);
}

TEST_CASE("mixture loss equals -log of the weighted probability of the target (+ lambda_h sum_m w_m CE_m)") {
  for (float lambda_h : {0.0f, 0.6f}) {
    CAPTURE(lambda_h);
    HeadCase hc(2, 3, 5, 4, 200);
    hc.logw = {std::log(0.25f), std::log(0.75f)};
    hc.lambda_h = lambda_h;
    std::vector<float> loss;
    hc.run(nullptr, nullptr, nullptr, &loss);
    // recompute P(y) = sum_m w_m softmax(s_m cos)[y] in double, directly from the definition
    for (size_t r = 0; r < hc.R; r++) {
        double P = 0.0, aux = 0.0;
        for (size_t m = 0; m < 2; m++) {
            double w = m == 0 ? 0.25 : 0.75, s = std::exp((double)hc.log_s[m]);
            std::vector<double> z(hc.V);
            double hn = 0;
            for (size_t c = 0; c < hc.C; c++) hn += (double)hc.h[m][r * hc.C + c] * hc.h[m][r * hc.C + c];
            for (size_t v = 0; v < hc.V; v++) {
                double en = 0, d = 0;
                for (size_t c = 0; c < hc.C; c++) {
                    en += (double)hc.E[m][v * hc.C + c] * hc.E[m][v * hc.C + c];
                    d += (double)hc.h[m][r * hc.C + c] * hc.E[m][v * hc.C + c];
                }
                z[v] = s * d / std::sqrt(hn * en);
            }
            double sum = 0;
            for (double zv : z) sum += std::exp(zv);
            P += w * std::exp(z[(size_t)hc.y[r]]) / sum;
            aux += w * -std::log(std::exp(z[(size_t)hc.y[r]]) / sum);
        }
        CHECK(loss[r] == doctest::Approx(-std::log(P) + lambda_h * aux).epsilon(1e-5));
    }
  }
}

TEST_CASE("edge cases: zero candidate vector, clamped scale, weight-0 modality, unsupervised row") {
    SUBCASE("a zero vector among the candidates has cosine 0 and finite gradients") {
        HeadCase hc(2, 3, 6, 5, 300);
        for (size_t c = 0; c < hc.C; c++) hc.E[0][4 * hc.C + c] = 0.0f;
        std::vector<std::vector<float>> dh(2), dE(2);
        std::vector<float> dls(2);
        hc.run(&dh, &dE, &dls);
        for (float v : dE[0]) CHECK(std::isfinite(v));
        CHECK(hc.check_all("cosine_zero_vector", 4) < kTol);
    }
    SUBCASE("a clamped scale gets no gradient") {
        HeadCase hc(1, 3, 6, 5, 310);
        hc.log_s[0] = std::log(150.0f);  // exp(log_s) > 100: clamped to 100
        float d;
        CHECK(logit_scale(hc.log_s[0], &d) == 100.0f);
        CHECK(d == 0.0f);
        CHECK(logit_scale(std::log(0.5f), &d) == 1.0f);
        CHECK(d == 0.0f);
        std::vector<std::vector<float>> dh(1), dE(1);
        std::vector<float> dls(1);
        hc.run(&dh, &dE, &dls);
        CHECK(dls[0] == 0.0f);
        CHECK(hc.check_all("cosine_clamped") < kTol);
    }
    SUBCASE("a modality with weight 0 changes nothing and gets no gradient") { check_weight0(0.0f, "mixture_weight0", 1e-2f); }
    SUBCASE("an unsupervised row (y < 0) has loss 0 and no gradient") {
        HeadCase hc(2, 3, 6, 5, 330);
        hc.y[1] = -1;
        std::vector<float> loss;
        std::vector<std::vector<float>> dh(2), dE(2);
        std::vector<float> dls(2);
        hc.run(&dh, &dE, &dls, &loss);
        CHECK(loss[1] == 0.0f);
        for (size_t m = 0; m < 2; m++)
            for (size_t c = 0; c < hc.C; c++) CHECK(dh[m][1 * hc.C + c] == 0.0f);
        CHECK(hc.check_all("mixture_masked_row") < kTol);
    }
}

static std::vector<float> unit_rows(size_t n, size_t C, uint64_t seed);

// The evaluation's logits of several row sets (views) against one table, stacked: bitwise those
// of one cosine_logits_forward per set, with the table packed for the call (large calls) or not
// (small ones), or kept in a slot: reused while the table is the same, packed again for another.
TEST_CASE("cosine_logits_forward_sets equals one cosine_logits_forward per set, bitwise") {
    for (size_t V : {(size_t)40, (size_t)3000}) {
        for (int slot : {-1, 3}) {
            CAPTURE(V);
            CAPTURE(slot);
            const size_t C = 64, n = 3;
            // the large case is above kHeadPackWork; set 0 ends inside a micro-tile of rows, so one
            // tile holds rows of two sets with their own scales
            const size_t R[n] = {100, 0, 57}, rows = 157;
            const float s[n] = {12.5f, 3.0f, 100.0f};
            const std::vector<float> hn = unit_rows(rows, C, 6);
            const std::vector<float> tables[2] = {unit_rows(V, C, 5), unit_rows(V, C, 9)};
            for (int t : {0, 0, 1}) {  // the same table twice, then another one (alive at once)
                CAPTURE(t);
                const std::vector<float>& En = tables[t];
                std::vector<float> got(rows * V, -1.0f), want(rows * V, -2.0f);
                for (size_t i = 0, r0 = 0; i < n; r0 += R[i++])
                    cosine_logits_forward(want.data() + r0 * V, hn.data() + r0 * C, En.data(), s[i], R[i], V, C);
                cosine_logits_forward_sets(got.data(), hn.data(), En.data(), s, R, n, V, C, slot);
                CHECK(got == want);
            }
            packed_tables_release();
        }
    }
    std::vector<float> z(4), h(4, 0.5f), E(4, 0.5f);
    const size_t R1[1] = {1};
    const float s1[1] = {1.0f};
    CHECK_THROWS_AS(cosine_logits_forward_sets(z.data(), h.data(), E.data(), s1, R1, 1, 1, 4, kTableSlots), InternalError);
}

// A kept slot serves the next call with the same table (the caller's promise: unchanged until
// packed_tables_release), which is what makes it pay: changing the table's values in place
// without a release is exactly what the slot does not see.
TEST_CASE("cosine_logits_forward_sets: a slot keeps its packing until packed_tables_release") {
    const size_t V = 3000, C = 64, R[1] = {100};
    const float s[1] = {10.0f};
    const std::vector<float> hn = unit_rows(R[0], C, 1);
    std::vector<float> En = unit_rows(V, C, 2), first(R[0] * V), again(R[0] * V), fresh(R[0] * V);
    cosine_logits_forward_sets(first.data(), hn.data(), En.data(), s, R, 1, V, C, 0);
    const std::vector<float> En2 = unit_rows(V, C, 3);
    std::copy(En2.begin(), En2.end(), En.begin());  // same pointer, new values
    cosine_logits_forward_sets(again.data(), hn.data(), En.data(), s, R, 1, V, C, 0);
    CHECK(again == first);  // the kept packing
    packed_tables_release();
    cosine_logits_forward_sets(fresh.data(), hn.data(), En.data(), s, R, 1, V, C, 0);
    std::vector<float> want(R[0] * V);
    cosine_logits_forward(want.data(), hn.data(), En.data(), s[0], R[0], V, C);
    CHECK(fresh == want);
    CHECK(fresh != first);
    packed_tables_release();
}

TEST_CASE("mixture_prob_accumulate sums weighted softmaxes") {
    const size_t R = 2, V = 3;
    std::vector<float> z0 = {0, 1, 2, 3, 3, 3}, z1 = {1, 1, 1, 0, 0, 5};
    const float* zp[2] = {z0.data(), z1.data()};
    float logw[2] = {std::log(0.5f), std::log(0.5f)};
    std::vector<float> out(R * V, 1.0f);
    mixture_prob_accumulate(out.data(), zp, logw, 2.0f, 2, R, V);
    double e0 = std::exp(0), e1 = std::exp(1), e2 = std::exp(2), sum = e0 + e1 + e2;
    CHECK(out[0] == doctest::Approx(1.0 + 2.0 * (0.5 * e0 / sum + 0.5 / 3.0)));
    CHECK(out[4] == doctest::Approx(1.0 + 2.0 * (0.5 / 3.0 + 0.5 / (2 + std::exp(5.0)))));
}

// The lines' scores: bitwise one mixture_prob_accumulate per view into a zeroed output, each line's
// row written whole (the tail up to ldo zeroed), a line without a view zero, other rows untouched.
TEST_CASE("mixture_score_lines equals one mixture_prob_accumulate per view, bitwise") {
    const size_t M = 2, V = 300, ldo = 310, nv = 3, L = 4, Rtot = 7;
    const std::vector<float> z0 = fd::randn(Rtot * V, 81), z1 = fd::randn(Rtot * V, 82);
    const float* zp[2] = {z0.data(), z1.data()};
    const float logw[2] = {std::log(0.25f), std::log(0.75f)};
    const float coef[nv] = {1.0f, 0.5f, 2.0f};
    // lines 0..3 go to output rows 5, 1, 2, 6; view rows: line 2 has no view at all
    const int32_t out_rows[L] = {5, 1, 2, 6};
    const int32_t rows[nv * L] = {0, 1, -1, 2,  /* view 0 */ -1, 3, -1, -1,  /* view 1 */ 4, 5, -1, 6 /* view 2 */};
    std::vector<float> got(8 * ldo, 9.0f), want(8 * ldo, 9.0f);
    for (size_t l = 0; l < L; l++) std::fill(want.begin() + out_rows[l] * ldo, want.begin() + (out_rows[l] + 1) * ldo, 0.0f);
    for (size_t v = 0; v < nv; v++)
        for (size_t l = 0; l < L; l++) {
            const int32_t r = rows[v * L + l];
            if (r < 0) continue;
            const float* zr[2] = {z0.data() + r * V, z1.data() + r * V};
            mixture_prob_accumulate(want.data() + out_rows[l] * ldo, zr, logw, coef[v], M, 1, V);
        }
    mixture_score_lines(got.data(), ldo, out_rows, rows, nv, L, zp, logw, coef, M, V);
    CHECK(got == want);
    for (size_t j = 0; j < ldo; j++) CHECK(got[2 * ldo + j] == 0.0f);  // line 2: no view
    double sum = 0.0;  // line 1: views 0, 1, 2, each P a distribution: 1 + 0.5 + 2
    for (size_t j = 0; j < V; j++) sum += got[1 * ldo + j];
    CHECK(sum == doctest::Approx(3.5).epsilon(1e-5));
}

// n random rows of width C, L2-normalized: a head's hn or En.
static std::vector<float> unit_rows(size_t n, size_t C, uint64_t seed) {
    std::vector<float> x = fd::randn(n * C, seed), out(n * C), nrm(n);
    l2norm_forward(out.data(), nrm.data(), x.data(), n, C);
    return out;
}

// keep: consecutive calls with the same tables and keep pack each table once (the packed copies
// are reused); each call's results are bitwise those of a call that packs for itself (keep = 0).
// A new keep after the tables' values changed in place packs them again; keep = 0 always packs.
TEST_CASE("fused head: keep reuses the packed tables across calls, bitwise the calls that pack their own") {
    const size_t R = 70, V = 700, M = 2;
    const size_t Cs[2] = {64, 96};  // R V sum(C) above kHeadPackWork: the tables are packed
    REQUIRE(R * V * (Cs[0] + Cs[1]) >= kHeadPackWork);
    const float sc[2] = {10.0f, 20.0f};
    const std::vector<float> logw = {std::log(0.4f), std::log(0.6f)};
    std::vector<std::vector<float>> En = {unit_rows(V, Cs[0], 61), unit_rows(V, Cs[1], 62)};
    const float* ep[2] = {En[0].data(), En[1].data()};
    struct Out {
        std::vector<float> loss, ds, dh0, dh1, dE0;
    };
    // one call on the rows of `seed` (both gradients of the first table, the second frozen)
    auto call = [&](uint64_t seed, uint64_t keep) {
        std::vector<float> h0 = unit_rows(R, Cs[0], seed), h1 = unit_rows(R, Cs[1], seed + 1);
        std::vector<int32_t> y(R);
        for (size_t r = 0; r < R; r++) y[r] = r % 9 == 4 ? -1 : (int32_t)((r * 37 + seed) % V);
        const std::vector<float> dloss(R, 1.0f / R);
        Out o{std::vector<float>(R), std::vector<float>(M), std::vector<float>(R * Cs[0]),
              std::vector<float>(R * Cs[1]), std::vector<float>(V * Cs[0])};
        const float* hp[2] = {h0.data(), h1.data()};
        float* dhp[2] = {o.dh0.data(), o.dh1.data()};
        float* dep[2] = {o.dE0.data(), nullptr};
        fused_mixture_head(o.loss.data(), dhp, dep, o.ds.data(), hp, ep, sc, Cs, y.data(), logw.data(), 0.0f,
                           dloss.data(), M, R, V, 0, keep);
        return o;
    };
    auto same = [](const Out& a, const Out& b) {
        return a.loss == b.loss && a.ds == b.ds && a.dh0 == b.dh0 && a.dh1 == b.dh1 && a.dE0 == b.dE0;
    };
    const Out ref1 = call(100, 0), ref2 = call(200, 0);
    CHECK(same(call(100, 7), ref1));  // packs
    CHECK(same(call(200, 7), ref2));  // reuses the packing of the call before
    CHECK(same(call(100, 7), ref1));
    // the first table's values change in place: a new keep packs again, keep = 0 packs every time
    for (float& x : En[0]) x = -x;
    const Out ref3 = call(100, 0);
    CHECK_FALSE(same(ref3, ref1));
    CHECK(same(call(100, 8), ref3));
    CHECK(same(call(200, 8), call(200, 0)));
    CHECK(same(call(100, 0), ref3));
}

// The chunked head (online logsumexp over chunks of items, logits recomputed in the backward pass
// when there is more than one chunk; the algorithm of the CUDA fused head), against the unfused
// composition mixture_head_unfused, bitwise when there is one chunk: 1, 2 and 3 modalities of different widths, unsupervised
// rows, targets on chunk borders, a frozen table (dEn null), ds null, and the loss-only call.
TEST_CASE("fused head: the chunked CPU head equals the unfused head for every chunk size, bitwise with one chunk") {
    const size_t R = 11, V = 300;
    const size_t Cs[3] = {16, 24, 8};
    const float sc[3] = {10.0f, 3.0f, 50.0f};
    std::vector<int32_t> y = {0, 127, 128, 299, -1, 5, 255, 256, -1, 44, 200};
    std::vector<float> dloss = fd::randn(R, 7);
    for (float& d : dloss) d = std::fabs(d) + 0.1f;
    for (size_t M = 1; M <= 3; M++)
    for (float lambda_h : {0.0f, 0.8f}) {
        CAPTURE(M);
        CAPTURE(lambda_h);
        std::vector<std::vector<float>> hn(M), En(M);
        std::vector<float> logw;
        for (size_t m = 0; m < M; m++) {
            hn[m] = unit_rows(R, Cs[m], 20 + m), En[m] = unit_rows(V, Cs[m], 30 + m);
            logw.push_back(std::log((1.0f + m) / (M * (M + 1) / 2.0f)));
        }
        const float* hp[3] = {};
        const float* ep[3] = {};
        for (size_t m = 0; m < M; m++) hp[m] = hn[m].data(), ep[m] = En[m].data();
        // reference: the unfused head, every gradient
        std::vector<std::vector<float>> dh0(M), dE0(M);
        for (size_t m = 0; m < M; m++) dh0[m] = fd::randn(R * Cs[m], 40 + m), dE0[m] = fd::randn(V * Cs[m], 50 + m);
        std::vector<std::vector<float>> dh = dh0, dE = dE0;
        std::vector<float> loss(R), ds(M, 0.25f);
        float* dhp[3] = {};
        float* dep[3] = {};
        for (size_t m = 0; m < M; m++) dhp[m] = dh[m].data(), dep[m] = m == 1 ? nullptr : dE[m].data();
        mixture_head_unfused(loss.data(), dhp, dep, ds.data(), hp, ep, sc, Cs, y.data(), logw.data(), lambda_h, dloss.data(), M,
                             R, V);
        for (size_t Vc : {(size_t)128, (size_t)300, (size_t)1000, (size_t)0, (size_t)1}) {
            CAPTURE(Vc);
            std::vector<std::vector<float>> gh = dh0, gE = dE0;
            std::vector<float> gloss(R), gds(M, 0.25f);
            float* ghp[3] = {};
            float* gep[3] = {};
            for (size_t m = 0; m < M; m++) ghp[m] = gh[m].data(), gep[m] = m == 1 ? nullptr : gE[m].data();
            fused_mixture_head(gloss.data(), ghp, gep, gds.data(), hp, ep, sc, Cs, y.data(), logw.data(), lambda_h, dloss.data(),
                               M, R, V, Vc);
            if (Vc == 0 || Vc >= V) {  // one chunk: the same row operations in the same order
                CHECK(gloss == loss);
                CHECK(gds == ds);
                CHECK(gh == dh);
                for (size_t m = 0; m < M; m++) CHECK(gE[m] == (m == 1 ? dE0[m] : dE[m]));
            }
            CHECK(testutil::check_tensor("loss", gloss, loss, 1e-5, 1e-5));
            CHECK(testutil::check_tensor("ds", gds, ds, 1e-4, 1e-4));
            for (size_t m = 0; m < M; m++) {
                CAPTURE(m);
                CHECK(testutil::check_tensor("dhn", gh[m], dh[m], 1e-5, 1e-4));
                CHECK(testutil::check_tensor("dEn", gE[m], m == 1 ? dE0[m] : dE[m], 1e-5, 1e-4));
            }
            // ds null: the other gradients are the same
            std::vector<std::vector<float>> nh = dh0;
            for (size_t m = 0; m < M; m++) ghp[m] = nh[m].data(), gep[m] = nullptr;
            fused_mixture_head(gloss.data(), ghp, gep, nullptr, hp, ep, sc, Cs, y.data(), logw.data(), lambda_h, dloss.data(), M,
                               R, V, Vc);
            for (size_t m = 0; m < M; m++) CHECK(testutil::check_tensor("dhn without ds", nh[m], dh[m], 1e-5, 1e-4));
            // loss only: no gradient output is touched
            std::vector<float> lloss(R, -1.0f), lds(M, 0.25f);
            for (size_t m = 0; m < M; m++) ghp[m] = gh[m].data(), gep[m] = m == 1 ? nullptr : gE[m].data();
            std::vector<std::vector<float>> before_h = gh, before_E = gE;
            fused_mixture_head(lloss.data(), ghp, gep, lds.data(), hp, ep, sc, Cs, y.data(), logw.data(), lambda_h, nullptr, M, R,
                               V, Vc);
            CHECK(testutil::check_tensor("loss only", lloss, loss, 1e-5, 1e-5));
            CHECK(lds == std::vector<float>(M, 0.25f));
            CHECK(gh == before_h);
            CHECK(gE == before_E);
        }
    }
}

// The CPU head's row blocks: blocks of kSgemmKC rows (and a multiple of it) give bitwise the
// unfused head's loss and gradients, dE included (its product splits along K at multiples of the
// GEMM's depth); other block sizes (and chunks of items within the blocks) agree within rounding.
TEST_CASE("fused head: row blocks of the GEMM's depth equal the unfused head bitwise, any block within rounding") {
    const size_t R = 2 * kSgemmKC + 131, V = 190, M = 3;  // three blocks of 384 rows, the last short
    const size_t Cs[3] = {16, 24, 8};
    const float sc[3] = {10.0f, 3.0f, 50.0f};
    std::vector<int32_t> y(R);
    for (size_t r = 0; r < R; r++) y[r] = r % 17 == 3 ? -1 : (int32_t)((r * 37) % V);
    std::vector<float> dloss = fd::randn(R, 8);
    for (float& d : dloss) d = std::fabs(d) + 0.1f;
    std::vector<std::vector<float>> hn(M), En(M);
    std::vector<float> logw;
    for (size_t m = 0; m < M; m++) {
        hn[m] = unit_rows(R, Cs[m], 60 + m), En[m] = unit_rows(V, Cs[m], 70 + m);
        logw.push_back(std::log((1.0f + m) / 6.0f));
    }
    const float* hp[3] = {hn[0].data(), hn[1].data(), hn[2].data()};
    const float* ep[3] = {En[0].data(), En[1].data(), En[2].data()};
    for (float lambda_h : {0.0f, 0.5f}) {
        CAPTURE(lambda_h);
        auto run = [&](size_t Rb, size_t Vc, bool unfused) {
            struct Out { std::vector<float> loss, ds; std::vector<std::vector<float>> dh, dE; } o;
            o.loss.assign(R, 0.0f), o.ds.assign(M, 0.5f);
            float* dhp[3];
            float* dep[3];
            for (size_t m = 0; m < M; m++) {
                o.dh.push_back(fd::randn(R * Cs[m], 80 + m)), o.dE.push_back(fd::randn(V * Cs[m], 90 + m));
                dhp[m] = o.dh[m].data(), dep[m] = o.dE[m].data();
            }
            if (unfused)
                mixture_head_unfused(o.loss.data(), dhp, dep, o.ds.data(), hp, ep, sc, Cs, y.data(), logw.data(), lambda_h,
                                     dloss.data(), M, R, V);
            else
                fused_mixture_head_blocked(o.loss.data(), dhp, dep, o.ds.data(), hp, ep, sc, Cs, y.data(), logw.data(),
                                           lambda_h, dloss.data(), M, R, V, Rb, Vc);
            return o;
        };
        const auto ref = run(0, 0, true);
        for (size_t Rb : {(size_t)kSgemmKC, (size_t)2 * kSgemmKC, R}) {
            CAPTURE(Rb);
            const auto got = run(Rb, 0, false);
            CHECK(got.loss == ref.loss);
            CHECK(got.ds == ref.ds);
            CHECK(got.dh == ref.dh);
            CHECK(got.dE == ref.dE);
        }
        for (size_t Rb : {(size_t)1, (size_t)100, (size_t)500}) {
            for (size_t Vc : {(size_t)64, V}) {
                CAPTURE(Rb);
                CAPTURE(Vc);
                const auto got = run(Rb, Vc, false);
                CHECK(testutil::check_tensor("loss", got.loss, ref.loss, 1e-5, 1e-5));
                CHECK(testutil::check_tensor("ds", got.ds, ref.ds, 1e-4, 1e-4));
                for (size_t m = 0; m < M; m++) {
                    // (one-row blocks take the GEMM's unpacked path, another summation order, which
                    // head 3's scale of 50 magnifies)
                    CHECK(testutil::check_tensor("dhn", got.dh[m], ref.dh[m], 1e-4, 1e-4));
                    CHECK(testutil::check_tensor("dEn", got.dE[m], ref.dE[m], 1e-5, 1e-4));
                }
            }
        }
    }
}

TEST_CASE("fused head: the CPU head's blocks are kSgemmKC-row multiples with all items when they fit") {
    const size_t KC = kSgemmKC, M = 3, V = 34886, C = 1280;
    // the paper's XY view (2,295 rows): one 384-row block per 161 MB of budget
    const size_t R = 2295, fixed = (5 * M * R + R * C) * sizeof(float), block = M * KC * V * sizeof(float);
    HeadBlocks b = cpu_head_blocks(M, R, V, C, fixed + block);
    CHECK(b.rows == KC);
    CHECK(b.cols == V);
    b = cpu_head_blocks(M, R, V, C, fixed + 3 * block + block / 2);
    CHECK(b.rows == 3 * KC);
    CHECK(cpu_head_blocks(M, R, V, C, fixed + 100 * block).rows == R);  // everything fits: one block
    CHECK(cpu_head_blocks(M, 100, V, C, (size_t)1 << 30).rows == 100);  // fewer rows than a block
    b = cpu_head_blocks(M, 100, V, C, kCpuHeadBudget);
    CHECK(b.rows == 100);
    CHECK(b.cols == V);
    // the default budget at the paper's size: 384 rows, all items
    b = cpu_head_blocks(M, R, V, C, kCpuHeadBudget);
    CHECK(b.rows == KC);
    CHECK(b.cols == V);
    // 384 rows do not fit with all items: the largest multiple of 64 rows that does
    b = cpu_head_blocks(M, R, V, C, fixed + block / 2);
    CHECK(b.rows == KC / 2);
    CHECK(b.cols == V);
    const size_t row64 = M * kHeadMinRows * V * sizeof(float);
    b = cpu_head_blocks(M, R, V, C, fixed + row64 + row64 / 2);
    CHECK(b.rows == kHeadMinRows);
    CHECK(b.cols == V);
    // not even 64 rows with all items: 64 rows, the largest multiple of 256 items that fits
    b = cpu_head_blocks(M, R, V, C, fixed + row64 / 2);
    CHECK(b.rows == kHeadMinRows);
    CHECK(b.cols % 256 == 0);
    CHECK(b.cols < V);
    CHECK(M * kHeadMinRows * b.cols * sizeof(float) <= row64 / 2);
    CHECK(M * kHeadMinRows * (b.cols + 256) * sizeof(float) > row64 / 2);
    CHECK(cpu_head_blocks(M, R, V, C, 0).cols == 256);  // nothing fits: the smallest chunk
}

TEST_CASE("fused head: the chunk covers V when it fits, else the largest multiple of 256") {
    // M = 3 heads of R = 1000 rows over V = 30000 items, widths 256 + 512 + 512
    const size_t M = 3, R = 1000, V = 30000, C = 1280;
    const size_t all = (5 * M * R + R * C + M * R * V) * sizeof(float);
    CHECK(fused_head_chunk(M, R, V, C, all) == V);
    CHECK(fused_head_chunk(M, R, V, C, all - 1) < V);
    size_t half = fused_head_chunk(M, R, V, C, all / 2);
    CHECK(half % 256 == 0);
    CHECK(half >= 256);
    CHECK((5 * M * R + R * C + M * R * half) * sizeof(float) <= all / 2);
    CHECK((5 * M * R + R * C + M * R * (half + 256)) * sizeof(float) > all / 2);
    CHECK(fused_head_chunk(M, R, V, C, 0) == 256);  // nothing fits: the smallest chunk
    CHECK(fused_head_chunk(1, 5, 100, 8, 0) == 100);  // ... unless V itself is smaller
}
