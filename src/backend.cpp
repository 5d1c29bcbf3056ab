// backend.cpp: the three backends of backend.h.
#include "backend.h"

#include <cstdlib>
#include <cstring>

#include "common.h"
#ifdef HAFVT_CUDA
#include "../cuda/ops_cuda.h"
#endif

namespace hafvt {

namespace {

// 64-byte aligned zeroed memory from calloc, which skips the memset for fresh pages of a large
// block (they come zeroed from the kernel): the aligned pointer is preceded by calloc's own.
void* host_alloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* raw = std::calloc(1, bytes + 64 + sizeof(void*));
    if (!raw) throw InternalError(cat("out of host memory allocating ", bytes, " bytes"));
    uintptr_t aligned = ((uintptr_t)raw + sizeof(void*) + 63) & ~(uintptr_t)63;
    reinterpret_cast<void**>(aligned)[-1] = raw;
    return reinterpret_cast<void*>(aligned);
}
void host_release(void* p) {
    if (p) std::free(reinterpret_cast<void**>(p)[-1]);
}
void host_copy(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void host_zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }

// The emulated device's memory is the host's. HAFVT_FAULT=device_alloc@N makes its N-th allocation
// fail as on a full GPU (cuda_malloc's InputError, exit 2): tests/test_train.cpp checks how train
// and eval report it.
void* emulated_alloc(size_t bytes) {
    if (bytes && fault_injected("device_alloc"))
        HAFVT_FAIL_INPUT("out of device memory: allocating ", bytes, " bytes (fault injected: HAFVT_FAULT=device_alloc); ",
                         "try a smaller --batch or --eval-batch");
    return host_alloc(bytes);
}

// The CPU ops, with `device` deciding which path of Model runs.
Backend make_host(const char* name, bool device) {
    return Backend{name, device, device ? emulated_alloc : host_alloc, host_release, host_copy, host_copy, host_zero,
                   embedding_forward, embedding_backward, posadd_forward, posadd_backward,
                   padmask_forward, padmask_backward, dropout_forward, dropout_backward,
                   layernorm_forward, layernorm_backward, linear_forward, linear_backward,
                   gelu_forward, gelu_backward, residual_forward, residual_backward,
                   attention_forward, attention_backward, l2norm_forward, l2norm_backward,
                   cosine_logits_forward, mixture_prob_accumulate, fused_mixture_head, adam_update};
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

const Backend* cuda_backend() {
    static const Backend b{"cuda", true, device_alloc, cuda_free, cuda_memcpy_h2d, cuda_memcpy_d2h,
                           cuda_memset_zero,
                           embedding_forward_cuda, embedding_backward_cuda, posadd_forward_cuda,
                           posadd_backward_cuda, padmask_forward_cuda, padmask_backward_cuda,
                           dropout_forward_cuda, dropout_backward_cuda, layernorm_forward_cuda,
                           layernorm_backward_cuda, linear_forward_cuda, linear_backward_cuda,
                           gelu_forward_cuda, gelu_backward_cuda, residual_forward_cuda,
                           residual_backward_cuda, attention_forward_cuda, attention_backward_cuda,
                           l2norm_forward_cuda, l2norm_backward_cuda, cosine_logits_forward_cuda,
                           mixture_prob_accumulate_cuda, fused_mixture_head_cuda, adam_update_cuda};
    return &b;
}
#else
const Backend* cuda_backend() { return nullptr; }
#endif

}  // namespace hafvt
