// test_tune.cpp: the grid of hafvt tune and its rank count on hand-made lines (src/train/tune.h);
// the whole command against eval is in test_train.cpp.
#include <cmath>

#include "core/json.h"
#include "train/config.h"
#include "train/tune.h"
#include "test_util.h"

using namespace hafvt;

TEST_CASE("tune: the grid covers the simplex of the enabled modalities and the lambdas of the views that exist") {
    const bool all[3] = {true, true, true}, id_txt[3] = {true, false, true}, id[3] = {true, false, false};
    const bool hier[3] = {true, true, true}, xy_only[3] = {false, false, true};
    const size_t L = kTuneLambdas.size();
    CHECK(tune_grid(all, hier, 1, 1).size() == 231 * L * L);  // 21 * 22 / 2 weight points
    CHECK(tune_grid(id_txt, hier, 1, 1).size() == 21 * L * L);
    CHECK(tune_grid(id, hier, 1, 1).size() == L * L);
    CHECK(tune_grid(all, xy_only, 0.7f, 1.3f).size() == 231);  // one view: no lambda varies
    for (const TunePoint& p : tune_grid(id_txt, hier, 1, 1)) {
        CHECK(p.beta == 0.0f);  // img off: its weight stays 0
        CHECK(p.alpha >= 0.0f);
        CHECK(p.alpha <= 1.0f);
    }
    for (const TunePoint& p : tune_grid(all, xy_only, 0.7f, 1.3f)) {
        CHECK(p.lambda1 == 0.7f);
        CHECK(p.lambda2 == 1.3f);
        CHECK(p.alpha + p.beta <= 1.0f + 1e-6f);
    }
}

TEST_CASE("tune: ranks from the stored candidates follow the rank rule for every weighting") {
    // two lines of domain X (D = 0), components (v * 3 + m): X view id = 0, img = 1, XY view id = 6
    TuneLines t;
    t.domain = {0, 0};
    t.active.assign(2 * 9, 0);
    for (size_t k : {0, 1, 6}) t.active[k] = 1;  // line 0: X and XY views, id and img
    t.active[9 + 0] = 1;                         // line 1: only the X view's id head
    t.always = {2, 0};                           // line 0: 2 candidates above the target always
    t.never = {5, 3};
    // line 0 keeps two candidates: d = (+0.5 id, -0.5 img) and (-0.3 id, +0.1 img, +0.05 XY id);
    // line 1 none
    t.mixed_at = {0, 2, 2};
    t.mixed.assign(2 * 9, 0.0f);
    auto d = [&](size_t k, size_t r) -> float& { return t.mixed[k * 2 + r]; };  // component-major
    d(0, 0) = 0.5f, d(1, 0) = -0.5f;
    d(0, 1) = -0.3f, d(1, 1) = 0.1f, d(6, 1) = 0.05f;
    auto mrr = [&](float alpha, float beta, float l1, float l2) {
        TunePoint p;
        p.alpha = alpha, p.beta = beta, p.lambda1 = l1, p.lambda2 = l2;
        tune_accumulate(t, p);
        CHECK(p.lines[0] == 2);
        return p.mrr[0];
    };
    // id alone (alpha 1): line 0 ranks 1 + 2 + 1 (the first candidate) = 4, line 1 ranks 1
    CHECK(mrr(1.0f, 0.0f, 1.0f, 1.0f) == doctest::Approx(100.0 * (1.0 / 4 + 1.0) / 2));
    // img alone (beta 1): the second candidate is above (0.1; the XY id head has weight 0), the
    // first below; line 1's only head has weight 0: every score ties, all 3 candidates above
    CHECK(mrr(0.0f, 1.0f, 1.0f, 1.0f) == doctest::Approx(100.0 * (1.0 / 4 + 1.0 / 4) / 2));
    // alpha = beta = 1/2: the first ties exactly (0.25 - 0.25 = 0) and a tie counts against the
    // target; the second is below (-0.15 + 0.05 + 0.025)
    CHECK(mrr(0.5f, 0.5f, 1.0f, 1.0f) == doctest::Approx(100.0 * (1.0 / 4 + 1.0) / 2));
    // lambda2 = 0 with the id head alone: the XY component no longer helps the second candidate
    CHECK(mrr(1.0f, 0.0f, 1.0f, 0.0f) == doctest::Approx(100.0 * (1.0 / 4 + 1.0) / 2));
}

TEST_CASE("tune: the whole grid at once gives every point's ranks as the point-by-point count") {
    // 40 lines of random candidates (both domains, some views silent), every grid point both ways
    TuneLines t;
    const size_t L = 40;
    uint64_t at = 0;
    t.mixed_at.push_back(0);
    for (size_t i = 0; i < L; i++) {
        t.domain.push_back((int)(i % 2));
        const size_t n = (size_t)rng_below(5, 1, i, 300);
        for (size_t k = 0; k < 9; k++) t.active.push_back(rng_below(5, 2, i * 9 + k, 4) != 0 || k == 6);  // XY id always
        t.always.push_back((uint32_t)rng_below(5, 3, i, 5));
        t.never.push_back((uint32_t)rng_below(5, 4, i, 50));
        for (size_t k = 0; k < 9; k++)
            for (size_t r = 0; r < n; r++) t.mixed.push_back(t.active[i * 9 + k] ? rng_normal(5, 6, at++) : 0.0f);
        t.mixed_at.push_back(t.mixed_at.back() + n);
    }
    const bool all[3] = {true, true, true}, hier[3] = {true, true, true};
    size_t n1 = 0, n2 = 0;
    std::vector<TunePoint> grid = tune_grid(all, hier, 1, 1, &n1, &n2), one = grid;
    tune_accumulate_grid(t, grid, n1, n2);
    size_t differ = 0;
    for (size_t g = 0; g < one.size(); g++) {
        tune_accumulate(t, one[g]);
        differ += one[g].rr[0] != grid[g].rr[0] || one[g].rr[1] != grid[g].rr[1];
        REQUIRE(one[g].lines[0] == grid[g].lines[0]);
    }
    // the two sum the same terms in other orders: a rank may move only where c . d is within float
    // rounding of 0, which random candidates (about 6,000, 11,319 points) essentially never hit
    CHECK(differ <= one.size() / 1000);
    MESSAGE(differ, " of ", one.size(), " points with another rank somewhere");
}

TEST_CASE("resume key: a stored configuration without a newer setting (lambda_h, id_warmup) keys as its default") {
    TrainConfig c;
    c.data = "d";
    Json full = config_to_json(c);
    Json old = Json::object();
    for (const auto& kv : full.items())
        if (kv.first != "lambda_h" && kv.first != "id_warmup") old.set(kv.first, kv.second);
    CHECK(resume_key(old) == resume_key(full));
    c.lambda_h = 1.0f;  // another objective: another key
    CHECK(resume_key(config_to_json(c)) != resume_key(full));
    c.lambda_h = 0.0f;
    c.id_warmup = 3;
    CHECK(resume_key(config_to_json(c)) != resume_key(full));
}
