// cuda_test_util.h: how the test cases that need a CUDA device decide to run. They are declared
// with CUDA_TEST_CASE: registered as skipped (doctest's skip decorator, so they count as skipped
// in the summary, not as passed) when no device answers, unless REQUIRE_GPU=1 asks for them; then
// gpu_ready() at their start fails them when the device is missing. In a build against the host
// emulation (tests/cuda_emu, make debug) the emulated device answers.
#pragma once
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace testutil {

inline bool require_gpu() {
    const char* e = std::getenv("REQUIRE_GPU");
    return e && *e && std::strcmp(e, "0") != 0;
}

}  // namespace testutil

#ifdef HAFVT_CUDA
#include "../cuda/ops_cuda.h"

namespace testutil {

inline bool skip_gpu_cases() {
    static const bool skip = !require_gpu() && !hafvt::cuda_device_available(nullptr);
    return skip;
}

// True when the case should run; under REQUIRE_GPU=1 a missing device is a failure.
inline bool gpu_ready() {
    std::string why;
    if (hafvt::cuda_device_available(&why)) return true;
    if (require_gpu()) FAIL_CHECK("REQUIRE_GPU=1 but no usable CUDA device: " << why);
    return false;
}

}  // namespace testutil

#define CUDA_TEST_CASE(name) TEST_CASE(name * doctest::skip(::testutil::skip_gpu_cases()))
#else
// A build without CUDA: the cases are registered as skipped, and fail under REQUIRE_GPU=1.
namespace testutil {
inline bool gpu_ready() {
    if (require_gpu()) FAIL_CHECK("REQUIRE_GPU=1 but this build has no CUDA support");
    return false;
}
}  // namespace testutil
#define CUDA_TEST_CASE(name) TEST_CASE(name * doctest::skip(!::testutil::require_gpu()))
#endif
