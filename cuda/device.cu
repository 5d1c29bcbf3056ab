// device.cu: the device check, memory and copies, the global cuBLAS handle with the row-major
// SGEMM on top of it, and the shared workspace.
#include <cstdlib>
#include <cstring>

#include "cuda_common.cuh"

namespace hafvt {

// The device this process uses: its ordinal modulo the devices the driver reports (an MPI rank
// passes its rank on the machine, so that each rank of a machine takes its own GPU).
static int g_ordinal = 0;
void cuda_use_device(int ordinal) { g_ordinal = ordinal < 0 ? 0 : ordinal; }

bool cuda_device_available(std::string* why) {
    // Probed once: the driver's answer does not change while the program runs.
    static int state = -1;  // -1 unknown, 0 no, 1 yes
    static std::string reason;
    if (state < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) {
            reason = cat("no CUDA device: cudaGetDeviceCount failed with ", cudaGetErrorName(e),
                         " (", cudaGetErrorString(e), ")");
            cudaGetLastError();  // clear the sticky-free error so later calls start clean
            state = 0;
        } else if (n == 0) {
            reason = "no CUDA device: the driver reports 0 devices";
            state = 0;
        } else {
            const int dev = g_ordinal % n;
            cudaDeviceProp prop;
            e = cudaGetDeviceProperties(&prop, dev);
            if (e == cudaSuccess) e = cudaSetDevice(dev);
            if (e == cudaSuccess) e = cudaFree(nullptr);  // creates the context now
            if (e != cudaSuccess) {
                reason = cat("CUDA device ", dev, " unusable: ", cudaGetErrorName(e), " (",
                             cudaGetErrorString(e), ")");
                cudaGetLastError();
                state = 0;
            } else if (prop.major * 10 + prop.minor < 75) {  // the oldest cubin of CUDA_ARCHS (sm_75)
                reason = cat("CUDA device ", dev, " (", prop.name, ") has compute capability ", prop.major,
                             ".", prop.minor, "; this build needs 7.5 or newer");
                state = 0;
            } else {
                reason = cat(dev ? cat("device ", dev, ": ") : std::string(), prop.name, " (compute capability ", prop.major, ".", prop.minor, ", ",
                             prop.totalGlobalMem >> 20, " MiB)");
                state = 1;
            }
        }
    }
    if (why) *why = reason;
    return state == 1;
}

void* cuda_malloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();  // an allocation failure is not sticky: clear it for the next call
        if (e == cudaErrorMemoryAllocation) {
            // a configuration too large for this device: the user's to fix (exit 2), not a bug
            size_t free_b = 0, total_b = 0;
            const bool info = cudaMemGetInfo(&free_b, &total_b) == cudaSuccess;
            cudaGetLastError();
            auto mib = [](size_t b) {
                char s[32];
                std::snprintf(s, sizeof s, "%.1f MiB", (double)b / 1048576.0);
                return std::string(s);
            };
            throw_device_memory(__FILE__, __LINE__,
                                cat("out of device memory: allocating ", mib(bytes), " with ",
                                    info ? cat(mib(free_b), " free of ", mib(total_b), " (cudaMemGetInfo)")
                                         : std::string("an unknown amount free (cudaMemGetInfo failed)")));
        }
        throw_internal(__FILE__, __LINE__,
                       cat("cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(e)));
    }
    return p;
}

void cuda_free(void* ptr) {
    if (ptr) cudaFree(ptr);  // called from destructors: an error here is not worth a throw
}

void cuda_memcpy_h2d(void* dst, const void* src, size_t bytes) {
    if (bytes) HAFVT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void cuda_memcpy_d2h(void* dst, const void* src, size_t bytes) {
    if (bytes) HAFVT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void cuda_memcpy_d2d(void* dst, const void* src, size_t bytes) {
    if (bytes) HAFVT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}
void cuda_memset_zero(void* ptr, size_t bytes) {
    if (bytes) HAFVT_CUDA_CHECK(cudaMemset(ptr, 0, bytes));
}
void cuda_synchronize() { HAFVT_CUDA_CHECK(cudaDeviceSynchronize()); }

static int g_sync_launches = -1;  // -1: not yet read from HAFVT_CUDA_SYNC

void cuda_set_sync_launches(bool on) { g_sync_launches = on ? 1 : 0; }

bool cuda_sync_launches() {
    if (g_sync_launches < 0) {
        const char* e = std::getenv("HAFVT_CUDA_SYNC");
        g_sync_launches = e && *e && std::strcmp(e, "0") != 0 ? 1 : 0;
    }
    return g_sync_launches == 1;
}

void cuda_launch_check(const char* kernel, const char* file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw_internal(file, line, cat("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                                       ") at the launch of ", kernel));
    if (!cuda_sync_launches()) return;
    e = cudaDeviceSynchronize();
    if (e != cudaSuccess)
        throw_internal(file, line, cat("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                                       ") in kernel ", kernel, " (HAFVT_CUDA_SYNC=1)"));
}

// ---- cuBLAS ----------------------------------------------------------------------------------

static bool g_tf32 = false;
static cublasHandle_t g_handle = nullptr;

static void apply_math_mode() {
    HAFVT_CUBLAS_CHECK(cublasSetMathMode(g_handle, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                          : CUBLAS_DEFAULT_MATH));
}

cublasHandle_t cublas_handle() {
    // Never destroyed: destroying it from a static destructor can run after the driver unloaded.
    if (!g_handle) {
        std::string why;
        HAFVT_CHECK(cuda_device_available(&why), "a CUDA op was called without a device: ", why);
        HAFVT_CUBLAS_CHECK(cublasCreate(&g_handle));
        apply_math_mode();
    }
    return g_handle;
}

void cuda_set_tf32(bool on) {
    g_tf32 = on;
    if (g_handle) apply_math_mode();
}

// A row-major matrix X with leading dimension ld is, read column-major, X^T with the same ld.
// So C = op(A) op(B) (row-major) is C^T = op(B)^T op(A)^T (column-major): call cuBLAS with the
// operands swapped, M and N swapped, and each operand's own transpose flag.
void sgemm_cuda(bool transA, bool transB, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    HAFVT_CUBLAS_CHECK(cublasSgemm(cublas_handle(), opB, opA, N, M, K, &alpha, B, ldb, A, lda,
                                   &beta, C, ldc));
}

// ---- workspace -------------------------------------------------------------------------------

static float* g_ws = nullptr;
static size_t g_ws_cap = 0;

size_t cuda_workspace_floats() { return g_ws_cap; }

float* cuda_workspace(size_t floats) {
    float*& ptr = g_ws;
    size_t& cap = g_ws_cap;
    if (floats > cap) {
        if (ptr) {
            HAFVT_CUDA_CHECK(cudaDeviceSynchronize());  // queued kernels may still use it
            HAFVT_CUDA_CHECK(cudaFree(ptr));
            ptr = nullptr;
            cap = 0;
        }
        size_t grow = floats + floats / 4;  // some headroom against repeated growth
        ptr = static_cast<float*>(cuda_malloc(grow * sizeof(float)));
        cap = grow;
    }
    return ptr;
}

}  // namespace hafvt
