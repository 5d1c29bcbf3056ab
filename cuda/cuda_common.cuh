// cuda_common.cuh: what the .cu files share and src/ never sees: the checks that turn CUDA and
// cuBLAS failures into hafvt::InternalError with file:line, launch helpers, the global cuBLAS
// handle and workspace, the device copy of the dropout factor, and warp/block reductions.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/common.h"
#include "math/op_math.h"
#include "ops_cuda.h"

// Every CUDA runtime call goes through HAFVT_CUDA_CHECK, every cuBLAS call through
// HAFVT_CUBLAS_CHECK, every kernel launch through HAFVT_LAUNCH.
#define HAFVT_CUDA_CHECK(call)                                                                    \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess)                                                                    \
            ::hafvt::throw_internal(__FILE__, __LINE__,                                           \
                                    ::hafvt::cat("CUDA error ", cudaGetErrorName(e_), " (",       \
                                                 cudaGetErrorString(e_), ") in " #call));         \
    } while (0)
#define HAFVT_CUBLAS_CHECK(call)                                                                  \
    do {                                                                                          \
        cublasStatus_t s_ = (call);                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                          \
            ::hafvt::throw_internal(__FILE__, __LINE__,                                           \
                                    ::hafvt::cat("cuBLAS error ", cublasGetStatusName(s_), " (",  \
                                                 cublasGetStatusString(s_), ") in " #call));      \
    } while (0)

// HAFVT_LAUNCH(kernel, grid, block, shared_bytes, args...) launches kernel<<<grid, block,
// shared_bytes>>>(args...) and checks the launch (cuda_launch_check). It is the one spelling of a
// launch in cuda/, so that the same sources also build with g++ against the host emulation of
// tests/cuda_emu (CUDA_EMU), where a launch is a call that runs the blocks as fibers.
// HAFVT_DYNAMIC_SHARED(type, name) declares the block's dynamic shared memory as `type name[]`.
#ifdef CUDA_EMU
#define HAFVT_LAUNCH(kernel, grid, block, shmem, ...)                                             \
    do {                                                                                          \
        CUDA_EMU_LAUNCH(kernel, grid, block, shmem)(__VA_ARGS__);                                 \
        ::hafvt::cuda_launch_check(#kernel, __FILE__, __LINE__);                                  \
    } while (0)
#define HAFVT_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::cuda_emu::dynamic_shared())
#else
#define HAFVT_LAUNCH(kernel, grid, block, shmem, ...)                                             \
    do {                                                                                          \
        kernel<<<grid, block, shmem>>>(__VA_ARGS__);                                              \
        ::hafvt::cuda_launch_check(#kernel, __FILE__, __LINE__);                                  \
    } while (0)
#define HAFVT_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace hafvt {

// After a launch: a refused launch (bad configuration, too much shared memory) throws at once,
// naming the kernel. With HAFVT_CUDA_SYNC=1 in the environment (or cuda_set_sync_launches), it
// also waits for the kernel, so that a fault inside it is reported here and not at a later copy.
void cuda_launch_check(const char* kernel, const char* file, int line);

constexpr int kWarp = 32;
constexpr int kBlock = 256;  // threads of the elementwise and per-row kernels

// Blocks for n elements at kBlock threads, capped so that the grid-stride loops cover the rest.
inline unsigned grid_for(size_t n) {
    size_t b = (n + kBlock - 1) / kBlock;
    if (b < 1) b = 1;
    if (b > 65535u * 8u) b = 65535u * 8u;
    return (unsigned)b;
}

// The global cuBLAS handle (created at the first call, after the device check).
cublasHandle_t cublas_handle();

// A grow-only device scratch area of at least `floats` floats. One op uses it at a time: all work
// is on the default stream, and growing it frees the old area only after a device-wide wait.
float* cuda_workspace(size_t floats);
size_t cuda_workspace_floats();  // its capacity now

// y[i] += alpha * x[i] over n elements (cuda/heads.cu).
void axpy_cuda(float* y, float alpha, const float* x, size_t n);

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum / max over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the result. `scratch` is shared memory of 32 floats; the function syncs before returning.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp, nw = blockDim.x / kWarp;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[wid] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp, nw = blockDim.x / kWarp;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[wid] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : -INFINITY;
    return warp_max(v);
}

// Up to 8 device pointers passed by value to a kernel (the M heads of a mixture).
struct PtrPack {
    const float* p[8];
};

}  // namespace hafvt
