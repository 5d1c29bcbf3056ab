// cuda_test_util.h: DeviceArray, an owning device array for the tests' inputs and outputs, and
// how the test cases that need a CUDA device decide to run. They are declared
// with CUDA_TEST_CASE: registered as skipped (doctest's skip decorator, so they count as skipped
// in the summary, not as passed) when no device answers, unless REQUIRE_GPU=1 asks for them; then
// gpu_ready() at their start fails them when the device is missing. In a build against the host
// emulation (tests/cuda_emu, make debug) the emulated device answers.
#pragma once
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace testutil {

inline bool require_gpu() {
    const char* e = std::getenv("REQUIRE_GPU");
    return e && *e && std::strcmp(e, "0") != 0;
}

}  // namespace testutil

#ifdef HAFVT_CUDA
#include "../cuda/ops_cuda.h"

namespace hafvt {

// An owning, zero-initialized device array (RAII, movable, not copyable).
template <typename T>
class DeviceArray {
public:
    DeviceArray() = default;
    explicit DeviceArray(size_t n) { resize(n); }
    explicit DeviceArray(const std::vector<T>& host) { upload(host); }
    ~DeviceArray() { cuda_free(ptr_); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    DeviceArray(DeviceArray&& o) noexcept : ptr_(o.ptr_), n_(o.n_) { o.ptr_ = nullptr, o.n_ = 0; }
    DeviceArray& operator=(DeviceArray&& o) noexcept {
        std::swap(ptr_, o.ptr_);
        std::swap(n_, o.n_);
        return *this;
    }

    // Reallocates and zeroes when n differs from the size.
    void resize(size_t n) {
        if (n == n_) return;
        cuda_free(ptr_);
        ptr_ = nullptr;
        n_ = 0;
        ptr_ = static_cast<T*>(cuda_malloc(n * sizeof(T)));
        n_ = n;
        zero();
    }
    void zero() { cuda_memset_zero(ptr_, n_ * sizeof(T)); }
    // Copies n host elements in (resizing to n) / the whole array out.
    void upload(const T* host, size_t n) {
        resize(n);
        cuda_memcpy_h2d(ptr_, host, n * sizeof(T));
    }
    void upload(const std::vector<T>& host) { upload(host.data(), host.size()); }
    void download(T* host) const { cuda_memcpy_d2h(host, ptr_, n_ * sizeof(T)); }
    std::vector<T> to_host() const {
        std::vector<T> h(n_);
        download(h.data());
        return h;
    }

    T* data() { return ptr_; }
    const T* data() const { return ptr_; }
    size_t size() const { return n_; }

private:
    T* ptr_ = nullptr;
    size_t n_ = 0;
};
using DeviceBuffer = DeviceArray<float>;
using DeviceBufferI32 = DeviceArray<int32_t>;
using DeviceBufferU8 = DeviceArray<uint8_t>;

}  // namespace hafvt

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
