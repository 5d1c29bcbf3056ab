// backend.h: where the model's layers run. A Backend is a table of the ops of ops_cpu.h and
// heads.h (each entry has the parameter list of the CPU op of the same name) plus the memory
// calls of its address space. Model (model.cpp) makes every layer call through one, so the same
// sequence of layer calls trains on the CPU or on a CUDA device:
//   host_backend()            the CPU ops on host memory (the default)
//   cuda_backend()            the *_cuda ops of cuda/ops_cuda.h on device memory; nullptr in a
//                             build without CUDA
//   emulated_device_backend() the CPU ops on host memory, but marked `device`: Model then keeps
//                             its own copies of the parameters, gradients and Adam moments in
//                             the backend's memory (to_device, to_host, Adam on the backend), as
//                             on a GPU, so that residency is tested on every machine against the
//                             host backend and the PyTorch fixture; only the kernels need a GPU.
//                             HAFVT_FAULT=device_alloc@N fails its N-th allocation as a full
//                             GPU does (InputError "out of device memory", exit 2).
// `device` decides only where the parameters live; every backend runs the same layer calls.
// alloc of a device backend throws DeviceMemoryError (core/common.h) when the device is out of
// memory (a configuration too large for it; cuda_malloc names the size, the free and the total
// memory); the command line adds which settings to lower.
#pragma once
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "math/adam.h"
#include "math/heads.h"
#include "math/ops_cpu.h"

namespace hafvt {

// The ops a backend provides, stated once: X(op) for each op of ops_cpu.h, heads.h and adam.h that
// Model calls. A backend's table holds the CPU op of that name or its twin `op##_cuda`
// (cuda/ops_cuda.h), which must have the same type (backend.cpp checks it at compile time).
#define HAFVT_BACKEND_OPS(X)                                                                     \
    X(embedding_forward) X(embedding_backward) X(gather_rows) X(scatter_add_rows) X(scatter_rows) \
    X(posadd_forward) X(posadd_backward)                                                         \
    X(padmask_forward) X(padmask_backward) X(dropout_forward) X(dropout_backward)                \
    X(layernorm_forward) X(layernorm_backward) X(linear_forward) X(linear_forward_cols)          \
    X(linear_backward)                                                                           \
    X(gelu_forward) X(gelu_backward) X(residual_forward) X(residual_backward)                    \
    X(attention_forward) X(attention_last_forward) X(attention_backward)                         \
    X(l2norm_forward) X(l2norm_backward)                                                         \
    X(cosine_logits_forward) X(cosine_logits_forward_sets) X(packed_tables_release)              \
    X(mixture_prob_accumulate) X(mixture_score_lines)                                            \
    X(fused_mixture_head) X(adam_update)

struct Backend {
    const char* name;
    bool device;  // true: Model keeps its own copies of the parameters in the backend's memory

    // memory: alloc returns zeroed memory (nullptr for 0 bytes); copies are host<->backend
    void* (*alloc)(size_t bytes);
    void (*release)(void* ptr);
    void (*to_backend)(void* dst, const void* host, size_t bytes);
    void (*to_host)(void* host, const void* src, size_t bytes);
    void (*copy)(void* dst, const void* src, size_t bytes);  // within the backend's memory
    void (*zero)(void* ptr, size_t bytes);

    // the layers (ops_cpu.h, heads.h, adam.h), all pointers in the backend's memory: one member
    // per op of HAFVT_BACKEND_OPS, with the CPU op's type
#define HAFVT_BACKEND_MEMBER(op) decltype(&hafvt::op) op;
    HAFVT_BACKEND_OPS(HAFVT_BACKEND_MEMBER)
#undef HAFVT_BACKEND_MEMBER
};

const Backend& host_backend();
const Backend& emulated_device_backend();
const Backend* cuda_backend();  // nullptr without CUDA support in the build

// The longest sequence (--T) the CUDA attention kernels take: cuda/attention.cu holds a sequence's
// T x T scores of one head in shared memory (its kMaxT).
constexpr size_t kCudaMaxT = 64;

// What the device setting decides, as a pure function of what it looks at (unit-tested in every
// build): `want` (cpu, cuda, auto or emulate), the model's T, and `probe`, which says whether a
// CUDA device answers (cuda_device_available; null in a build without CUDA) and is called only
// when needed. Returns the backend to run on and sets *line to the line to print ("" for none).
// InputError for another name, for `cuda` with T above kCudaMaxT (in any build: no GPU could run
// it), and for `cuda` without a CUDA build or device. `auto` falls back to the CPU, saying why in
// *line, when there is no CUDA build or device or when T is above kCudaMaxT. The messages name
// the settings as the caller names them (`names`: flags, or the keys of a stored configuration).
struct DeviceSettingNames {
    std::string device, T, tf32;
};
enum class DeviceKind { CPU, CUDA, EMULATE };
DeviceKind decide_device(const std::string& want, size_t T, bool tf32, bool (*probe)(std::string* why),
                         const DeviceSettingNames& names, std::string* line);

// The device setting for a model of sequence length T: decide_device with this build's probe;
// prints its line to `info` (nullptr: silent), and sets up the CUDA backend (TF32 or not) when it
// is chosen.
const Backend& choose_backend(const std::string& want, bool tf32, size_t T, const DeviceSettingNames& names,
                              std::FILE* info = stdout);


// An owning array in a backend's memory (RAII, movable), zeroed when (re)sized.
template <typename T>
class BackendArray {
public:
    BackendArray() = default;
    ~BackendArray() { reset(); }
    BackendArray(const BackendArray&) = delete;
    BackendArray& operator=(const BackendArray&) = delete;
    BackendArray(BackendArray&& o) noexcept { swap(o); }
    BackendArray& operator=(BackendArray&& o) noexcept {
        swap(o);
        return *this;
    }

    // Reallocates and zeroes when n or the backend differ; keeps the contents otherwise.
    void resize(const Backend& be, size_t n) {
        if (be_ == &be && n == n_) return;
        reset();
        ptr_ = static_cast<T*>(be.alloc(n * sizeof(T)));
        be_ = &be;
        n_ = n;
    }
    // At least n elements (grows only; the contents are not kept when it grows).
    void reserve(const Backend& be, size_t n) {
        if (be_ != &be || n_ < n) resize(be, n);
    }
    void zero() {
        if (n_) be_->zero(ptr_, n_ * sizeof(T));
    }
    // Copies n host elements in (growing to at least n) and returns the backend pointer.
    T* upload(const Backend& be, const T* host, size_t n) {
        reserve(be, n);
        if (n) be.to_backend(ptr_, host, n * sizeof(T));
        return ptr_;
    }
    void download(T* host, size_t n) const {
        if (n) be_->to_host(host, ptr_, n * sizeof(T));
    }
    T* data() { return ptr_; }
    const T* data() const { return ptr_; }
    size_t size() const { return n_; }

private:
    void reset() {
        if (be_ && ptr_) be_->release(ptr_);
        ptr_ = nullptr;
        n_ = 0;
    }
    void swap(BackendArray& o) {
        std::swap(be_, o.be_);
        std::swap(ptr_, o.ptr_);
        std::swap(n_, o.n_);
    }
    const Backend* be_ = nullptr;
    T* ptr_ = nullptr;
    size_t n_ = 0;
};

}  // namespace hafvt
