// test_cuda_emu.cpp: the host emulation of CUDA (tests/cuda_emu) itself: what a device would
// refuse or fault on must be refused or reported here too, and not hang or pass silently; the
// built-in variables, shared memory, shuffles and barriers must behave as on a device; and the
// order of the threads between barriers must matter when a barrier is missing. Compiled only in
// builds against the emulation (make debug, make test-emu).
#include <doctest/doctest.h>

#ifdef HAFVT_CUDA_EMU

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

namespace {

// A device array of n floats filled from host values (test-local, on the raw runtime calls).
struct Dev {
    float* p = nullptr;
    size_t n = 0;
    explicit Dev(const std::vector<float>& h) : n(h.size()) {
        REQUIRE(cudaMalloc((void**)&p, n * sizeof(float)) == cudaSuccess);
        REQUIRE(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    }
    explicit Dev(size_t n_) : Dev(std::vector<float>(n_, 0.0f)) {}
    ~Dev() { cudaFree(p); }
    std::vector<float> host() const {
        std::vector<float> h(n);
        REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
        return h;
    }
};

// Runs a launch expression and returns the error it left (and clears the emulation's fault).
template <typename F>
cudaError_t launch_error(F&& f) {
    cuda_emu::clear_fault();
    f();
    return cudaGetLastError();
}

struct OrderGuard {  // restores the forward order at the end of a case
    cuda_emu::Order saved = cuda_emu::order();
    ~OrderGuard() { cuda_emu::set_order(saved, 1); }
};

__global__ void index_kernel(float* out) {
    size_t b = blockIdx.x + (size_t)gridDim.x * (blockIdx.y + (size_t)gridDim.y * blockIdx.z);
    size_t t = threadIdx.x + (size_t)blockDim.x * (threadIdx.y + (size_t)blockDim.y * threadIdx.z);
    size_t nt = (size_t)blockDim.x * blockDim.y * blockDim.z;
    out[b * nt + t] = (float)(b * 1000 + t);
}

// Reverses the block's values through shared memory; `with_barrier` = 0 leaves the barrier out.
__global__ void reverse_kernel(float* out, const float* in, int with_barrier) {
    __shared__ float sh[256];
    unsigned t = threadIdx.x, n = blockDim.x;
    sh[t] = in[blockIdx.x * n + t];
    if (with_barrier) __syncthreads();
    out[blockIdx.x * n + t] = sh[n - 1 - t];
}

__global__ void dynamic_shared_kernel(float* out, size_t n) {
    float* sh = static_cast<float*>(cuda_emu::dynamic_shared());  // extern __shared__ float sh[]
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) sh[i] = (float)i;
    __syncthreads();
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += sh[i];
    out[threadIdx.x] = s;
}

// Threads with an odd index return before the barrier the others wait at.
__global__ void divergent_barrier_kernel(float* out) {
    if (threadIdx.x % 2) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// Half of the warp calls the shuffle.
__global__ void divergent_shuffle_kernel(float* out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

__global__ void shuffle_kernel(float* out) {
    unsigned t = threadIdx.x;
    float v = (float)t;
    out[4 * t + 0] = __shfl_xor_sync(0xffffffffu, v, 5);
    out[4 * t + 1] = __shfl_down_sync(0xffffffffu, v, 3);
    out[4 * t + 2] = __shfl_up_sync(0xffffffffu, v, 2, 8);
    out[4 * t + 3] = __shfl_sync(0xffffffffu, v, 7);
}

__global__ void nothing_kernel(float* out) {
    if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = 1.0f;
}

}  // namespace

TEST_CASE("cuda emu: built-in variables cover every thread of a 3-d grid of 3-d blocks") {
    const dim3 grid(3, 2, 2), block(4, 3, 2);
    const size_t blocks = 12, threads = 24;
    Dev out(blocks * threads);
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(index_kernel, grid, block, 0)(out.p); }) == cudaSuccess);
    std::vector<float> h = out.host();
    for (size_t b = 0; b < blocks; b++)
        for (size_t t = 0; t < threads; t++) CHECK(h[b * threads + t] == (float)(b * 1000 + t));
}

TEST_CASE("cuda emu: a missing barrier changes the result between thread orders") {
    OrderGuard guard;
    const size_t n = 256, blocks = 2;
    std::vector<float> in(n * blocks);
    for (size_t i = 0; i < in.size(); i++) in[i] = (float)i;
    Dev din(in), dout(n * blocks);
    std::vector<float> want(n * blocks);
    for (size_t b = 0; b < blocks; b++)
        for (size_t t = 0; t < n; t++) want[b * n + t] = in[b * n + n - 1 - t];
    std::vector<std::vector<float>> without;
    for (cuda_emu::Order o : {cuda_emu::Order::forward, cuda_emu::Order::reverse, cuda_emu::Order::shuffle}) {
        cuda_emu::set_order(o, 3);
        CAPTURE(cuda_emu::order_name());
        CHECK(launch_error([&] { CUDA_EMU_LAUNCH(reverse_kernel, blocks, n, 0)(dout.p, din.p, 1); }) == cudaSuccess);
        CHECK(dout.host() == want);  // with the barrier: right in every order
        CHECK(launch_error([&] { CUDA_EMU_LAUNCH(reverse_kernel, blocks, n, 0)(dout.p, din.p, 0); }) == cudaSuccess);
        without.push_back(dout.host());
    }
    // without it, each order reads a different mix of old and new shared values
    CHECK(without[0] != want);
    CHECK(without[0] != without[1]);
    CHECK(without[1] != without[2]);
}

TEST_CASE("cuda emu: dynamic shared memory has the launch's size, up to 48 KiB without the opt-in") {
    const size_t floats = 1000;
    Dev out(64);
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(dynamic_shared_kernel, 1, 64, floats * 4)(out.p, floats); }) ==
          cudaSuccess);
    CHECK(out.host() == std::vector<float>(64, (float)(floats * (floats - 1) / 2)));
    // 48 KiB is allowed, one float more is refused and runs nothing
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(nothing_kernel, 1, 32, 48 * 1024)(out.p); }) == cudaSuccess);
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(nothing_kernel, 1, 32, 48 * 1024 + 4)(out.p); }) ==
          cudaErrorInvalidValue);
    CHECK(cuda_emu::last_fault().find("without cudaFuncAttributeMaxDynamicSharedMemorySize") != std::string::npos);
    // with the attribute up to 227 KiB; beyond it the attribute itself is refused
    CHECK(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024) ==
          cudaSuccess);
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(dynamic_shared_kernel, 1, 64, 100 * 1024)(out.p, (size_t)25600); }) ==
          cudaSuccess);
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(dynamic_shared_kernel, 1, 64, 100 * 1024 + 4)(out.p, (size_t)1); }) ==
          cudaErrorInvalidValue);
    CHECK(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024 + 4) ==
          cudaErrorInvalidValue);
    cudaGetLastError();
}

TEST_CASE("cuda emu: launch configurations a device refuses are refused") {
    Dev out(1);
    auto err = [&](dim3 g, dim3 b) {
        return launch_error([&] { CUDA_EMU_LAUNCH(nothing_kernel, g, b, 0)(out.p); });
    };
    CHECK(err(dim3(1), dim3(1024)) == cudaSuccess);
    CHECK(err(dim3(1), dim3(1025)) == cudaErrorInvalidConfiguration);
    CHECK(err(dim3(1), dim3(32, 32, 2)) == cudaErrorInvalidConfiguration);  // 2048 threads
    CHECK(err(dim3(1), dim3(1, 1, 65)) == cudaErrorInvalidConfiguration);
    CHECK(err(dim3(1, 65535), dim3(1)) == cudaSuccess);
    CHECK(err(dim3(1, 65536), dim3(1)) == cudaErrorInvalidConfiguration);
    CHECK(err(dim3(1, 1, 65536), dim3(1)) == cudaErrorInvalidConfiguration);
    CHECK(err(dim3(0), dim3(32)) == cudaErrorInvalidConfiguration);
    CHECK(err(dim3(1), dim3(32, 0)) == cudaErrorInvalidConfiguration);
    CHECK(cuda_emu::last_fault().find("zero dimension") != std::string::npos);
}

TEST_CASE("cuda emu: a barrier or a shuffle not reached by every thread is a fault, not a hang") {
    Dev out(64);
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(divergent_barrier_kernel, 2, 64, 0)(out.p); }) ==
          cudaErrorLaunchFailure);
    CHECK(cuda_emu::last_fault().find("__syncthreads reached by 32 of the 64 threads") != std::string::npos);
    CHECK(cuda_emu::last_fault().find("divergent_barrier_kernel") != std::string::npos);
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(divergent_shuffle_kernel, 1, 64, 0)(out.p); }) ==
          cudaErrorLaunchFailure);
    CHECK(cuda_emu::last_fault().find("reached by 16 of the 32 lanes") != std::string::npos);
    // a full-warp shuffle in a block that is not a multiple of 32
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(shuffle_kernel, 1, 48, 0)(out.p); }) == cudaErrorLaunchFailure);
    // the emulation goes on working after a fault (its stacks are reused)
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(index_kernel, 1, 64, 0)(out.p); }) == cudaSuccess);
    CHECK(out.host()[63] == 63.0f);
}

TEST_CASE("cuda emu: warp shuffles (xor, down, up with a width, indexed)") {
    Dev out(4 * 64);
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(shuffle_kernel, 1, 64, 0)(out.p); }) == cudaSuccess);
    std::vector<float> h = out.host();
    for (int t = 0; t < 64; t++) {
        CAPTURE(t);
        int lane = t % 32, base = t - lane;
        CHECK(h[4 * t + 0] == (float)(base + (lane ^ 5)));
        CHECK(h[4 * t + 1] == (float)(lane + 3 < 32 ? t + 3 : t));
        CHECK(h[4 * t + 2] == (float)(lane % 8 >= 2 ? t - 2 : t));  // up within groups of 8
        CHECK(h[4 * t + 3] == (float)(base + 7));
    }
}

TEST_CASE("cuda emu: memory, copies and kernel arguments are checked against device allocations") {
    Dev a(std::vector<float>(10, 1.0f));
    std::vector<float> host(10, 0.0f);
    cuda_emu::clear_fault();
    // device memory starts as NaN bytes, not zeros
    float* raw = nullptr;
    REQUIRE(cudaMalloc((void**)&raw, 8) == cudaSuccess);
    float got[2];
    REQUIRE(cudaMemcpy(got, raw, 8, cudaMemcpyDeviceToHost) == cudaSuccess);
    CHECK(std::isnan(got[0]));
    CHECK(cudaFree(raw) == cudaSuccess);
    CHECK(cudaFree(raw) == cudaErrorInvalidDevicePointer);  // twice
    // wrong directions and ranges
    CHECK(cudaMemcpy(host.data(), a.p, 40, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    cudaGetLastError();
    CHECK(cudaMemcpy(host.data(), a.p, 44, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);  // past the end
    cudaGetLastError();
    CHECK(cudaMemset(host.data(), 0, 4) == cudaErrorInvalidValue);
    cudaGetLastError();
    // a host pointer given to a kernel
    CHECK(launch_error([&] { CUDA_EMU_LAUNCH(nothing_kernel, 1, 32, 0)(host.data()); }) == cudaErrorInvalidValue);
    CHECK(cuda_emu::last_fault().find("not in device memory") != std::string::npos);
    // the memory size: an allocation beyond what is free fails as on a full device
    size_t free_b = 0, total_b = 0;
    REQUIRE(cudaMemGetInfo(&free_b, &total_b) == cudaSuccess);
    CHECK(free_b <= total_b);
    void* big = nullptr;
    CHECK(cudaMalloc(&big, free_b + 1) == cudaErrorMemoryAllocation);
    CHECK(big == nullptr);
}

TEST_CASE("cuda emu: cublasSgemm computes column-major products and enforces cuBLAS's argument rules") {
    cublasHandle_t h = nullptr;
    REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    // column-major A (2x3, lda 3), B (3x2, ldb 3): C = A B (2x2, ldc 2)
    std::vector<float> A = {1, 4, -1, 2, 5, -1, 3, 6, -1}, B = {1, 0, 2, 0, 1, 3}, C0(4, 7.0f);
    Dev dA(A), dB(B), dC(C0);
    const float one = 1.0f, zero = 0.0f, half = 0.5f;
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA.p, 3, dB.p, 3, &zero, dC.p, 2) ==
          CUBLAS_STATUS_SUCCESS);
    CHECK(dC.host() == std::vector<float>{7, 16, 11, 23});
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA.p, 3, dB.p, 3, &half, dC.p, 2) ==
          CUBLAS_STATUS_SUCCESS);
    CHECK(dC.host() == std::vector<float>{10.5f, 24, 16.5f, 34.5f});
    // C^T = B^T A^T through the transposes
    Dev dCt(4);
    CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_T, 2, 2, 3, &one, dB.p, 3, dA.p, 3, &zero, dCt.p, 2) ==
          CUBLAS_STATUS_SUCCESS);
    CHECK(dCt.host() == std::vector<float>{7, 11, 16, 23});
    // leading dimensions below the stored heights, negative sizes
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA.p, 1, dB.p, 3, &zero, dC.p, 2) ==
          CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, 2, 2, 3, &one, dA.p, 3, dB.p, 1, &zero, dC.p, 2) ==
          CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA.p, 3, dB.p, 3, &zero, dC.p, 1) ==
          CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, 2, 3, &one, dA.p, 3, dB.p, 3, &zero, dC.p, 2) ==
          CUBLAS_STATUS_INVALID_VALUE);
    // a matrix that runs past its allocation (k = 4 reads a fourth column of A)
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 4, &one, dA.p, 3, dB.p, 4, &zero, dC.p, 2) ==
          CUBLAS_STATUS_EXECUTION_FAILED);
    // beta = 0 never reads C
    std::vector<float> nanC(4, NAN);
    Dev dN(nanC);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA.p, 3, dB.p, 3, &zero, dN.p, 2) ==
          CUBLAS_STATUS_SUCCESS);
    CHECK(dN.host() == std::vector<float>{7, 16, 11, 23});
    // TF32 rounds the inputs to 10 mantissa bits
    std::vector<float> x = {1.0f + 1.0f / 4096.0f}, yv = {1.0f};
    Dev dx(x), dy(yv), dz(1);
    CHECK(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dx.p, 1, dy.p, 1, &zero, dz.p, 1) ==
          CUBLAS_STATUS_SUCCESS);
    CHECK(dz.host()[0] == 1.0f);
    CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dx.p, 1, dy.p, 1, &zero, dz.p, 1) ==
          CUBLAS_STATUS_SUCCESS);
    CHECK(dz.host()[0] == x[0]);
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, dx.p, 1, dy.p, 1, &zero, dz.p, 1) ==
          CUBLAS_STATUS_NOT_INITIALIZED);
}

TEST_CASE("cuda emu: streams and events behave synchronously") {
    cudaStream_t s = nullptr;
    cudaEvent_t a = nullptr, b = nullptr;
    REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
    REQUIRE(cudaEventCreate(&a) == cudaSuccess);
    REQUIRE(cudaEventCreate(&b) == cudaSuccess);
    float ms = -1.0f;
    CHECK(cudaEventElapsedTime(&ms, a, b) == cudaErrorInvalidResourceHandle);  // not recorded yet
    CHECK(cudaEventRecord(a, s) == cudaSuccess);
    CHECK(cudaEventRecord(b, s) == cudaSuccess);
    CHECK(cudaEventSynchronize(b) == cudaSuccess);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(cudaEventElapsedTime(&ms, a, b) == cudaSuccess);
    CHECK(ms >= 0.0f);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaStreamDestroy(s);
}

#endif  // HAFVT_CUDA_EMU
