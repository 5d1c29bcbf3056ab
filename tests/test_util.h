// test_util.h: helpers shared by the test files.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "core/common.h"

namespace hafvt {
struct Backend;
}

namespace testutil {

// Compares got against want elementwise with |got - want| <= atol + rtol * |want|.
// Prints the max |diff| and the first mismatches; returns true when all match.
inline bool check_tensor(const std::string& name, const float* got, const float* want, size_t n,
                         double atol, double rtol = 0.0) {
    double maxdiff = 0.0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = std::fabs((double)got[i] - (double)want[i]);
        bool ok = d <= atol + rtol * std::fabs((double)want[i]);
        if (!(d <= maxdiff)) maxdiff = d;  // NaN-aware
        if (!ok) {
            if (bad < 5) std::printf("  %s[%zu]: got %.8g want %.8g\n", name.c_str(), i, got[i], want[i]);
            bad++;
        }
    }
    if (bad) std::printf("  %s: %zu of %zu mismatch, max |diff| %.3g\n", name.c_str(), bad, n, maxdiff);
    return bad == 0;
}
inline bool check_tensor(const std::string& name, const std::vector<float>& got,
                         const std::vector<float>& want, double atol, double rtol = 0.0) {
    REQUIRE(got.size() == want.size());
    return check_tensor(name, got.data(), want.data(), got.size(), atol, rtol);
}

// The shared data folder (../shared from the repository root), or "" when absent.
inline std::string shared_dir() {
    const char* env = std::getenv("HAFVT_SHARED");
    std::string d = env ? env : "../shared";
    struct stat st;
    return stat((d + "/data").c_str(), &st) == 0 ? d : "";
}

// A fresh empty temporary folder for one test.
inline std::string temp_dir(const std::string& tag) {
    std::string tmpl = "/tmp/hafvt_test_" + tag + "_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    char* d = mkdtemp(buf.data());
    REQUIRE(d != nullptr);
    return d;
}

// Runs fn and requires an InputError whose message contains every piece of `want`.
inline void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& want) {
    std::string msg;
    try {
        fn();
    } catch (const hafvt::InputError& e) {
        msg = e.what();
    }
    INFO("message: " << msg);
    REQUIRE(!msg.empty());
    for (const std::string& w : want) {
        INFO("expected to contain: " << w);
        CHECK(msg.find(w) != std::string::npos);
    }
}

// tests/test_reference.cpp: the whole model on backend `be` (backend.h) against the PyTorch
// fixture: losses, gradients, scores and three Adam steps.
void check_model_against_pytorch(const hafvt::Backend& be);
// tests/test_model.cpp: three training steps and an evaluation on the host backend and on `be`.
void compare_model_backends(const hafvt::Backend& be, double atol, double rtol);
// tests/test_model.cpp: the parts of Model::explain on `be`: they add up to the scores and to
// each view's coefficient and each modality's weight, the attention rows are distributions over
// the XY items, and both equal the host backend's within atol + rtol |want|.
void check_explanation(const hafvt::Backend& be, double atol, double rtol);

// Whether this test build runs under AddressSanitizer (make debug), whose shadow memory needs a
// large address space.
inline bool sanitized() {
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

}  // namespace testutil
