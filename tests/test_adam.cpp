// test_adam.cpp: Adam against two steps computed by hand (torch.optim.Adam with coupled L2).
#include "math/adam.h"
#include "test_util.h"

using namespace hafvt;

TEST_CASE("adam: two hand-computed steps with coupled L2") {
    // w = 1, lr = 0.1, betas (0.9, 0.98), eps 1e-8, l2 = 0.1; grads 0.5 then -0.25.
    // step 1: g = 0.5 + 0.1*1 = 0.6; m = 0.06; v = 0.02*0.36 = 0.0072;
    //         w = 1 - (0.1/0.1) * 0.06 / (sqrt(0.0072)/sqrt(0.02) + 1e-8) = 1 - 0.06/0.6 = 0.9
    // step 2: g = -0.25 + 0.1*0.9 = -0.16; m = 0.054 - 0.016 = 0.038;
    //         v = 0.98*0.0072 + 0.02*0.0256 = 0.007568;
    //         w = 0.9 - (0.1/0.19) * 0.038 / (sqrt(0.007568)/sqrt(0.0396)) = 0.8542504
    AdamConfig cfg;
    cfg.lr = 0.1f;
    cfg.l2 = 0.1f;
    float w = 1.0f, m = 0.0f, v = 0.0f, g = 0.5f;
    adam_update(&w, &m, &v, &g, 1, cfg, 1);
    CHECK(m == doctest::Approx(0.06).epsilon(1e-6));
    CHECK(v == doctest::Approx(0.0072).epsilon(1e-6));
    CHECK(w == doctest::Approx(0.9).epsilon(1e-6));
    g = -0.25f;
    adam_update(&w, &m, &v, &g, 1, cfg, 2);
    CHECK(m == doctest::Approx(0.038).epsilon(1e-5));
    CHECK(v == doctest::Approx(0.007568).epsilon(1e-5));
    CHECK(w == doctest::Approx(0.8542504).epsilon(1e-6));
}

TEST_CASE("adam: many parameters update independently, zero gradient and weight stay put") {
    AdamConfig cfg;
    std::vector<float> w = {0.0f, 2.0f, -1.0f}, m(3), v(3), g = {0.0f, 1.0f, -1.0f};
    adam_update(w.data(), m.data(), v.data(), g.data(), 3, cfg, 1);
    CHECK(w[0] == 0.0f);                           // the PAD row of E_id: stays exactly zero
    CHECK(w[1] == doctest::Approx(2.0 - 1e-3));    // the first step moves by lr * sign(g)
    CHECK(w[2] == doctest::Approx(-1.0 + 1e-3));
}
