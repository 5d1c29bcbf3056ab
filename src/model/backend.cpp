// backend.cpp: the three backends of backend.h.
#include "model/backend.h"

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/common.h"
#ifdef HAFVT_CUDA
#include "../../cuda/ops_cuda.h"
#endif

namespace hafvt {

namespace {

// Zeroed 64-byte aligned memory from calloc, on 4 KB pages: the host backend's arrays are mostly
// the activations, which grow with a batch's valid rows (a new block when a batch has more than
// any before it), and a huge page is zeroed whole at its first touch, where a block's 4 KB pages
// are zeroed as far as the batch reaches.
void* host_alloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    try {
        return aligned_calloc(bytes, false);
    } catch (const std::bad_alloc&) {
        throw InternalError(cat("out of host memory allocating ", bytes, " bytes"));
    }
}
void host_release(void* p) { aligned_free(p); }
void host_copy(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
// Large blocks (the gradients, a batch's scores) are zeroed by all threads, in 1 MB pieces.
void host_zero(void* p, size_t bytes) {
    constexpr size_t piece = (size_t)1 << 20;
    const size_t n = (bytes + piece - 1) / piece;
#pragma omp parallel for schedule(static) if (n > 4)
    for (size_t i = 0; i < n; i++) std::memset(static_cast<char*>(p) + i * piece, 0, std::min(piece, bytes - i * piece));
}

// The emulated device's memory is the host's. HAFVT_FAULT=device_alloc@N makes its N-th allocation
// fail as on a full GPU (cuda_malloc's InputError, exit 2): tests/test_train.cpp checks how train
// and eval report it.
void* emulated_alloc(size_t bytes) {
    if (bytes && fault_injected("device_alloc"))
        throw_device_memory(__FILE__, __LINE__, cat("out of device memory: allocating ", bytes,
                                                    " bytes (fault injected: HAFVT_FAULT=device_alloc)"));
    return host_alloc(bytes);
}

// The CPU ops, with `device` deciding whether Model keeps its own copies of the parameters.
Backend make_host(const char* name, bool device) {
    Backend b{};
    b.name = name;
    b.device = device;
    b.alloc = device ? emulated_alloc : host_alloc;
    b.release = host_release;
    b.to_backend = b.to_host = b.copy = host_copy;
    b.zero = host_zero;
#define HAFVT_HOST_OP(op) b.op = op;
    HAFVT_BACKEND_OPS(HAFVT_HOST_OP)
#undef HAFVT_HOST_OP
    return b;
}

}  // namespace

const Backend& host_backend() {
    static const Backend b = make_host("cpu", false);
    return b;
}

const Backend& emulated_device_backend() {
    static const Backend b = make_host("cpu (emulated device)", true);
    return b;
}

#ifdef HAFVT_CUDA
namespace {
void* device_alloc(size_t bytes) {
    void* p = cuda_malloc(bytes);
    if (p) cuda_memset_zero(p, bytes);
    return p;
}
}  // namespace

// Every CUDA twin has exactly the CPU op's type.
#define HAFVT_SAME_TYPE(op) static_assert(std::is_same<decltype(&op), decltype(&op##_cuda)>::value, #op "_cuda differs from " #op);
HAFVT_BACKEND_OPS(HAFVT_SAME_TYPE)
#undef HAFVT_SAME_TYPE

const Backend* cuda_backend() {
    static const Backend b = [] {
        Backend t{};
        t.name = "cuda";
        t.device = true;
        t.alloc = device_alloc;
        t.release = cuda_free;
        t.to_backend = cuda_memcpy_h2d;
        t.to_host = cuda_memcpy_d2h;
        t.copy = cuda_memcpy_d2d;
        t.zero = cuda_memset_zero;
#define HAFVT_CUDA_OP(op) t.op = op##_cuda;
        HAFVT_BACKEND_OPS(HAFVT_CUDA_OP)
#undef HAFVT_CUDA_OP
        return t;
    }();
    return &b;
}
#else
const Backend* cuda_backend() { return nullptr; }
#endif

// The device setting: the backend of the model (backend.h). `auto` takes CUDA when this is a CUDA
// build, a device answers and the GPU attention takes T, else the CPU, and says why in one line;
// `cuda` without a device, or with a longer T, is an error. `emulate` keeps the parameters in a
// device backend's memory with the CPU ops (emulated_device_backend; for tests).
DeviceKind decide_device(const std::string& want, size_t T, bool tf32, bool (*probe)(std::string* why),
                         const DeviceSettingNames& n, std::string* line) {
    line->clear();
    HAFVT_INPUT(want == "auto" || want == "cpu" || want == "cuda" || want == "emulate",
                n.device, ": expected cpu, cuda, auto or emulate, found '", want, "'");
    if (want == "cpu") return DeviceKind::CPU;
    if (want == "emulate") return DeviceKind::EMULATE;
    HAFVT_INPUT(want != "cuda" || T <= kCudaMaxT, n.T, ": expected <= ", kCudaMaxT, " with ", n.device, " cuda (the GPU ",
                "attention keeps a sequence's T x T scores in shared memory), found ", T, "; use ", n.device,
                " cpu (or auto) for longer sequences");
    if (!probe) {
        HAFVT_INPUT(want != "cuda", n.device, " cuda: expected a CUDA build, found a CPU-only build (USE_CUDA=0 or no nvcc)");
        *line = "device: this build has no CUDA (USE_CUDA=0 or no nvcc); running on the CPU";
        return DeviceKind::CPU;
    }
    std::string why;
    if (!probe(&why)) {
        HAFVT_INPUT(want != "cuda", n.device, " cuda: expected a CUDA device, found none (", why, "); use ", n.device,
                    " cpu or auto");
        *line = cat("device: ", why, "; running on the CPU");  // the probe's reason says "no CUDA device" itself
        return DeviceKind::CPU;
    }
    if (T > kCudaMaxT) {
        *line = cat("device: ", n.T, " ", T, " is above ", kCudaMaxT,
                    ", the longest sequence the GPU attention takes; running on the CPU, not on ", why);
        return DeviceKind::CPU;
    }
    *line = cat("device: CUDA, ", why, "; matmuls in ", tf32 ? cat("TF32 (", n.tf32, ")") : std::string("FP32"));
    return DeviceKind::CUDA;
}

const Backend& choose_backend(const std::string& want, bool tf32, size_t T, const DeviceSettingNames& names, std::FILE* info) {
#ifdef HAFVT_CUDA
    bool (*probe)(std::string*) = cuda_device_available;
#else
    bool (*probe)(std::string*) = nullptr;
#endif
    std::string line;
    const DeviceKind kind = decide_device(want, T, tf32, probe, names, &line);
    if (!line.empty() && info) std::fprintf(info, "%s\n", line.c_str());
    if (kind == DeviceKind::EMULATE) return emulated_device_backend();
    if (kind == DeviceKind::CPU) return host_backend();
#ifdef HAFVT_CUDA
    cuda_set_tf32(tf32);
    return *cuda_backend();
#else
    throw_internal(__FILE__, __LINE__, "the CUDA backend chosen in a build without CUDA");
#endif
}

}  // namespace hafvt
