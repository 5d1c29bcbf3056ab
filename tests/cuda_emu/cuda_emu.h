// cuda_emu.h: a host emulation of the subset of CUDA that cuda/*.cu uses, so that the unchanged
// kernels compile with g++ and run on the CPU in the test suite (never in build/hafvt).
//
// What it provides (cuda_runtime.h and cublas_v2.h in this folder include it):
//   - the qualifiers (__global__, __device__, __host__, __forceinline__; __shared__ as `static`:
//     blocks run one after another on one host thread, so a kernel's static shared arrays are
//     the block's shared memory), dim3/uint3, threadIdx/blockIdx/blockDim/gridDim;
//   - dynamic shared memory: a fresh heap buffer of exactly the launch's size per block (so
//     AddressSanitizer sees an access past it), reached through HAFVT_DYNAMIC_SHARED;
//   - __syncthreads, __shfl_{xor,down,up,}_sync, atomicAdd, and the math functions of <cmath>;
//   - the runtime calls of the project (memory, copies, memset, memGetInfo, streams, events,
//     errors), all synchronous, with device memory tracked so that a copy or a kernel pointer
//     outside a device allocation is an error, and a memory size (HAFVT_EMU_MEM_MB, default
//     16384) past which cudaMalloc fails as a full device does;
//   - launches checked as a device refuses them (at most 1024 threads per block, block z <= 64,
//     grid y/z <= 65535, no zero dimension, dynamic shared memory <= 48 KiB unless raised with
//     cudaFuncSetAttribute, up to 227 KiB);
//   - cublasSgemm by a plain column-major loop in double that enforces cuBLAS's argument rules.
//
// Threads of a block are cooperative fibers (a context switch of our own on x86-64, ucontext
// elsewhere) that run until they reach a barrier, a warp shuffle, or their end; then the next
// runs. The order in which a block's threads run
// between two meeting points is HAFVT_EMU_ORDER=forward (default), reverse or shuffle[:seed]
// (a new permutation every round), or set_order() from a test; a missing barrier shows up as a
// difference between two orders. A barrier not reached by every thread of the block, or a
// shuffle not reached by every lane of the warp, is a fault: the launch stops, the message is
// printed and kept (last_fault()), and the next cudaGetLastError/cudaDeviceSynchronize returns
// cudaErrorLaunchFailure. The fibers are announced to AddressSanitizer, so the emulated suite
// runs under ASan+UBSan.
//
// HAFVT_EMU_GPU=0 in the environment hides the device (cudaGetDeviceCount gives 0): the CLI
// tests use it so that `--device auto` of an emulated build stays on the CPU.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#define CUDA_EMU 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 u) : x(u.x), y(u.y), z(u.z) {}
};

namespace cuda_emu {

enum class Order { forward, reverse, shuffle };
void set_order(Order order, uint64_t seed = 1);
Order order();
const char* order_name();
// The message of the last kernel fault ("" when none since the last clear_fault()).
std::string last_fault();
void clear_fault();
// Kernel launches so far (for tests that count them).
uint64_t launches();

// The state the kernel's built-in variables read.
struct ThreadState;
extern ThreadState* g_thread;
extern uint3 g_block_idx;
extern dim3 g_block_dim, g_grid_dim;
const uint3& thread_idx();
void* dynamic_shared();

void syncthreads();
// Exchanges 8 bytes within the warp; kind 0 xor, 1 down, 2 up, 3 idx (arg = lane mask, delta,
// delta, source lane).
uint64_t shuffle(unsigned mask, uint64_t bits, int kind, int arg, int width);

template <typename T>
T shuffle_value(unsigned mask, T v, int kind, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a small value");
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = shuffle(mask, bits, kind, arg, width);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

// A launch: checks the configuration, then runs every block (threads as fibers) before it
// returns. A refused configuration sets the last error and runs nothing.
using KernelBody = void (*)(void* closure);
void run_launch(const char* name, const void* fn, dim3 grid, dim3 block, size_t shmem,
                KernelBody body, void* closure);
// True when p is null or points into (or one past) a device allocation.
bool device_pointer_ok(const void* p);
void report_bad_argument(const char* kernel, size_t index, const void* p);

template <typename... P>
struct Launch {
    void (*fn)(P...);
    const char* name;
    dim3 grid, block;
    size_t shmem;

    template <typename T>
    static bool arg_ok(const T& a) {
        if constexpr (std::is_pointer<T>::value) return device_pointer_ok((const void*)a);
        else return true;
    }

    template <typename... A>
    void operator()(A&&... a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel called with the wrong number of arguments");
        // the arguments converted to the parameter types once, as the launch copies them
        std::tuple<P...> args(static_cast<P>(std::forward<A>(a))...);
        size_t i = 0;
        bool ok = true;
        std::apply([&](const auto&... x) { ((ok = check_one(x, i++) && ok), ...); }, args);
        if (!ok) return;
        struct Closure {
            void (*fn)(P...);
            std::tuple<P...>* args;
        } c{fn, &args};
        run_launch(name, (const void*)fn, grid, block, shmem,
                   [](void* p) {
                       Closure* cl = static_cast<Closure*>(p);
                       std::tuple<P...> mine = *cl->args;  // each thread its own copy
                       std::apply(cl->fn, mine);
                   },
                   &c);
    }

private:
    template <typename T>
    bool check_one(const T& a, size_t index) const {
        if (arg_ok(a)) return true;
        report_bad_argument(name, index, (const void*)&a);
        return false;
    }
};

template <typename... P>
Launch<P...> launch(const char* name, void (*fn)(P...), dim3 grid, dim3 block, size_t shmem) {
    return Launch<P...>{fn, name, grid, block, shmem};
}

}  // namespace cuda_emu

#define threadIdx (::cuda_emu::thread_idx())
#define blockIdx (static_cast<const uint3&>(::cuda_emu::g_block_idx))
#define blockDim (static_cast<const dim3&>(::cuda_emu::g_block_dim))
#define gridDim (static_cast<const dim3&>(::cuda_emu::g_grid_dim))

inline void __syncthreads() { ::cuda_emu::syncthreads(); }
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return ::cuda_emu::shuffle_value(mask, v, 0, lane_mask, width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return ::cuda_emu::shuffle_value(mask, v, 1, (int)delta, width);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return ::cuda_emu::shuffle_value(mask, v, 2, (int)delta, width);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    return ::cuda_emu::shuffle_value(mask, v, 3, src_lane, width);
}
// Fibers never run at the same time, so an atomic is a plain read-modify-write.
template <typename T>
T atomicAdd(T* addr, T v) {
    T old = *addr;
    *addr = old + v;
    return old;
}
