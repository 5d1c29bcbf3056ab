// cuda_emu.cpp: the host emulation of CUDA declared in cuda_emu.h, cuda_runtime.h, cublas_v2.h.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#define CUDA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDA_EMU_ASAN 1
#endif
#endif
#ifdef CUDA_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace cuda_emu {

// ---- errors ----------------------------------------------------------------------------------

// HAFVT_EMU_KERNELS_LOG=FILE: at exit, every process appends the names of the kernels it ran to
// FILE, one per line (make debug checks that every __global__ function of cuda/ is among them).
static std::set<std::string> g_ran;
static struct KernelLog {
    ~KernelLog() {
        const char* path = std::getenv("HAFVT_EMU_KERNELS_LOG");
        if (!path || !*path || g_ran.empty()) return;
        if (FILE* f = std::fopen(path, "a")) {
            for (const std::string& k : g_ran) std::fprintf(f, "%s\n", k.c_str());
            std::fclose(f);
        }
    }
} g_kernel_log;

static cudaError_t g_last_error = cudaSuccess;  // returned (and cleared) by cudaGetLastError
static std::string g_fault;                     // the last fault's message
static uint64_t g_launches = 0;

// Records an error with its explanation; the explanation goes to stderr at once, because the
// program's own message only carries the error's name.
static cudaError_t fail(cudaError_t e, const std::string& why) {
    if (g_last_error == cudaSuccess) g_last_error = e;
    g_fault = why;
    std::fprintf(stderr, "cuda_emu: %s\n", why.c_str());
    return e;
}

std::string last_fault() { return g_fault; }
void clear_fault() {
    g_fault.clear();
    g_last_error = cudaSuccess;
}
uint64_t launches() { return g_launches; }

// ---- scheduling order ------------------------------------------------------------------------

static Order g_order = Order::forward;
static uint64_t g_order_seed = 1;
static bool g_order_read = false;

static void read_order_env() {
    if (g_order_read) return;
    g_order_read = true;
    const char* e = std::getenv("HAFVT_EMU_ORDER");
    if (!e || !*e || std::strcmp(e, "forward") == 0) return;
    if (std::strcmp(e, "reverse") == 0) {
        g_order = Order::reverse;
    } else if (std::strncmp(e, "shuffle", 7) == 0) {
        g_order = Order::shuffle;
        if (e[7] == ':') g_order_seed = std::strtoull(e + 8, nullptr, 10);
    } else {
        std::fprintf(stderr, "cuda_emu: HAFVT_EMU_ORDER: expected forward, reverse or shuffle[:seed], found '%s'\n", e);
        std::exit(2);
    }
}

void set_order(Order order, uint64_t seed) {
    g_order_read = true;
    g_order = order;
    g_order_seed = seed;
}
Order order() {
    read_order_env();
    return g_order;
}
const char* order_name() {
    switch (order()) {
        case Order::forward: return "forward";
        case Order::reverse: return "reverse";
        default: return "shuffle";
    }
}

// ---- device memory ---------------------------------------------------------------------------

static std::mutex g_mem_mutex;
static std::map<uintptr_t, size_t> g_allocs;  // base -> bytes
static size_t g_used = 0;

static size_t memory_limit() {
    static size_t lim = 0;
    if (!lim) {
        const char* e = std::getenv("HAFVT_EMU_MEM_MB");
        double mb = e && *e ? std::atof(e) : 16384.0;
        lim = (size_t)(mb * 1048576.0);
        if (!lim) lim = 1;
    }
    return lim;
}

// The allocation holding [p, p + bytes) (bytes 0: p may be one past the end); end() if none.
static std::map<uintptr_t, size_t>::const_iterator find_alloc(const void* p, size_t bytes) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return g_allocs.end();
    --it;
    if (a >= it->first && a + bytes <= it->first + it->second) return it;
    return g_allocs.end();
}

static bool in_device(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    return find_alloc(p, bytes) != g_allocs.end();
}

static bool is_device_start(const void* p) {  // p points into some allocation (not one past)
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = find_alloc(p, 1);
    return it != g_allocs.end();
}

bool device_pointer_ok(const void* p) { return p == nullptr || in_device(p, 0); }

void report_bad_argument(const char* kernel, size_t index, const void* arg) {
    const void* p = *static_cast<const void* const*>(arg);
    std::ostringstream s;
    s << "launch of " << kernel << ": argument " << index << " (" << p
      << ") is not in device memory (a host pointer, or past the end of a device allocation)";
    fail(cudaErrorInvalidValue, s.str());
}

// ---- fibers ----------------------------------------------------------------------------------

// The context switch. On x86-64 a few instructions that save the callee-saved registers, the SSE
// and x87 control words and the stack pointer, and load another's (no system call, unlike
// swapcontext, which also saves the signal mask: the emulation switches millions of times). On
// other machines ucontext.
#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
extern "C" void cuda_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl cuda_emu_switch
    .type cuda_emu_switch, @function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch, .-cuda_emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
struct Context {
    void* sp = nullptr;
};
static void ctx_switch(Context& from, Context& to) { cuda_emu_switch(&from.sp, to.sp); }
// A context that starts `entry` (which never returns) on the stack [stack, stack + bytes).
static void ctx_make(Context& c, char* stack, size_t bytes, void (*entry)()) {
    uintptr_t top = ((uintptr_t)(stack + bytes)) & ~(uintptr_t)15;
    uint64_t* sp = reinterpret_cast<uint64_t*>(top);
    *--sp = 0;                 // where entry's return address would be: entry sees rsp = 8 mod 16
    *--sp = (uint64_t)entry;   // popped by ret
    for (int i = 0; i < 6; i++) *--sp = 0;  // rbp rbx r12-r15
    uint32_t csr[2];
    asm volatile("stmxcsr %0" : "=m"(csr[0]));
    asm volatile("fnstcw %0" : "=m"(csr[1]));
    *--sp = (uint64_t)csr[0] | ((uint64_t)(csr[1] & 0xffff) << 32);
    c.sp = sp;
}
#else
struct Context {
    ucontext_t uc;
};
static void ctx_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
static void ctx_make(Context& c, char* stack, size_t bytes, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

enum class St { ready, barrier, shuffle, done };

struct ThreadState {
    uint3 idx;
    unsigned lin;
    St st;
    bool started;
    Context ctx;
    char* stack;
    void* fake_stack;
    unsigned mask;
    int kind, arg, width;
    uint64_t bits_in, bits_out;
};

ThreadState* g_thread = nullptr;
uint3 g_block_idx = {0, 0, 0};
dim3 g_block_dim, g_grid_dim;

static KernelBody g_body = nullptr;
static void* g_closure = nullptr;
static void* g_dyn_shared = nullptr;
static Context g_sched;
#ifdef CUDA_EMU_ASAN
static const void* g_main_bottom = nullptr;  // the scheduler's stack, for the fiber annotations
static size_t g_main_size = 0;
static void* g_sched_fake = nullptr;
#endif

#ifdef CUDA_EMU_ASAN
static constexpr size_t kStackBytes = 512 * 1024;
#else
static constexpr size_t kStackBytes = 64 * 1024;
#endif
static std::vector<char*> g_stack_pool;  // free stacks (the usable area, above a guard page)

static char* take_stack() {
    if (!g_stack_pool.empty()) {
        char* s = g_stack_pool.back();
        g_stack_pool.pop_back();
        return s;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        std::fprintf(stderr, "cuda_emu: out of memory for a fiber stack\n");
        std::abort();
    }
    mprotect(m, page, PROT_NONE);  // a stack overflow faults instead of corrupting memory
    return static_cast<char*>(m) + page;
}

const uint3& thread_idx() {
    if (!g_thread) {
        std::fprintf(stderr, "cuda_emu: threadIdx read outside a kernel\n");
        std::abort();
    }
    return g_thread->idx;
}

void* dynamic_shared() { return g_dyn_shared; }

static void fiber_entry() {
#ifdef CUDA_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_main_bottom, &g_main_size);
#endif
    g_body(g_closure);
    g_thread->st = St::done;
#ifdef CUDA_EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, g_main_bottom, g_main_size);
#endif
    // Never resumed; no local variable here, so no poisoned redzone stays on the reused stack.
    static Context gone;
    ctx_switch(gone, g_sched);
    std::abort();
}

// From a fiber: back to the scheduler until this thread is released.
static void yield_fiber() {
    ThreadState* me = g_thread;
#ifdef CUDA_EMU_ASAN
    __sanitizer_start_switch_fiber(&me->fake_stack, g_main_bottom, g_main_size);
#endif
    ctx_switch(me->ctx, g_sched);
#ifdef CUDA_EMU_ASAN
    __sanitizer_finish_switch_fiber(me->fake_stack, &g_main_bottom, &g_main_size);
#endif
    g_thread = me;
}

// From the scheduler: run thread t until it blocks or ends.
static void resume(ThreadState& t) {
    if (!t.started) {
        t.started = true;
        t.stack = take_stack();
        ctx_make(t.ctx, t.stack, kStackBytes, fiber_entry);
    }
    g_thread = &t;
#ifdef CUDA_EMU_ASAN
    __sanitizer_start_switch_fiber(&g_sched_fake, t.stack, kStackBytes);
#endif
    ctx_switch(g_sched, t.ctx);
#ifdef CUDA_EMU_ASAN
    __sanitizer_finish_switch_fiber(g_sched_fake, nullptr, nullptr);
#endif
    g_thread = nullptr;
}

void syncthreads() {
    if (!g_thread) {
        std::fprintf(stderr, "cuda_emu: __syncthreads outside a kernel\n");
        std::abort();
    }
    g_thread->st = St::barrier;
    yield_fiber();
}

uint64_t shuffle(unsigned mask, uint64_t bits, int kind, int arg, int width) {
    if (!g_thread) {
        std::fprintf(stderr, "cuda_emu: a warp shuffle outside a kernel\n");
        std::abort();
    }
    ThreadState& t = *g_thread;
    t.st = St::shuffle;
    t.mask = mask;
    t.kind = kind;
    t.arg = arg;
    t.width = width;
    t.bits_in = bits;
    yield_fiber();
    return g_thread->bits_out;
}

static std::string dim_str(uint3 d) {
    std::ostringstream s;
    s << "(" << d.x << "," << d.y << "," << d.z << ")";
    return s.str();
}

// Resolves the shuffles of every warp whose 32 lanes all wait at one; returns false (with
// `fault` set) when a warp's shuffle cannot complete.
static bool resolve_shuffles(std::vector<ThreadState>& th, bool& any, std::string& fault) {
    const size_t n = th.size();
    for (size_t w0 = 0; w0 < n; w0 += 32) {
        size_t w1 = std::min(n, w0 + 32), at = 0;
        for (size_t i = w0; i < w1; i++) at += th[i].st == St::shuffle;
        if (at == 0) continue;
        std::ostringstream s;
        if (w1 - w0 < 32) {
            s << "warp " << w0 / 32 << " has only " << w1 - w0 << " threads (the block is not a multiple of 32) "
              << "and its lanes call a full-warp shuffle";
            fault = s.str();
            return false;
        }
        if (at < 32) {
            size_t done = 0, bar = 0;
            for (size_t i = w0; i < w1; i++) done += th[i].st == St::done, bar += th[i].st == St::barrier;
            s << "a warp shuffle reached by " << at << " of the 32 lanes of warp " << w0 / 32 << " ("
              << done << " lanes had exited, " << bar << " wait at __syncthreads)";
            fault = s.str();
            return false;
        }
        const ThreadState& a = th[w0];
        for (size_t i = w0; i < w1; i++) {
            const ThreadState& b = th[i];
            bool same = b.kind == a.kind && b.width == a.width && b.mask == a.mask && (a.kind == 3 || b.arg == a.arg);
            if (!same || b.mask != 0xffffffffu || (b.width & (b.width - 1)) || b.width < 1 || b.width > 32) {
                s << "warp " << w0 / 32 << ": lanes meet at different shuffles (kind, mask, width or offset differ)"
                  << " or the mask is not the full warp";
                fault = s.str();
                return false;
            }
        }
        for (size_t i = w0; i < w1; i++) {
            int lane = (int)(i - w0), wd = th[i].width, seg = lane & ~(wd - 1), src = lane;
            switch (th[i].kind) {
                case 0: src = lane ^ th[i].arg; if ((src & ~(wd - 1)) > seg) src = lane; break;
                case 1: src = lane + th[i].arg; if (src >= seg + wd) src = lane; break;
                case 2: src = lane - th[i].arg; if (src < seg) src = lane; break;
                default: src = seg + (((th[i].arg % wd) + wd) % wd); break;
            }
            th[i].bits_out = th[w0 + (size_t)src].bits_in;
        }
        for (size_t i = w0; i < w1; i++) th[i].st = St::ready;
        any = true;
    }
    return true;
}

static void release_stacks(std::vector<ThreadState>& th, bool abandoned) {
    for (ThreadState& t : th) {
        if (!t.started) continue;
#ifdef CUDA_EMU_ASAN
        // an abandoned fiber leaves its frames' redzones poisoned
        if (abandoned) ASAN_UNPOISON_MEMORY_REGION(t.stack, kStackBytes);
#else
        (void)abandoned;
#endif
        g_stack_pool.push_back(t.stack);
        t.started = false;
    }
}

// Runs one block; returns false with `fault` set when it cannot complete.
static bool run_block(const char* name, size_t shmem, uint64_t block_no, std::string& fault) {
    static std::vector<ThreadState> th;
    const unsigned bx = g_block_dim.x, by = g_block_dim.y;
    const size_t n = (size_t)g_block_dim.x * g_block_dim.y * g_block_dim.z;
    th.assign(n, ThreadState{});
    for (size_t i = 0; i < n; i++) {
        th[i].idx = uint3{(unsigned)(i % bx), (unsigned)((i / bx) % by), (unsigned)(i / ((size_t)bx * by))};
        th[i].lin = (unsigned)i;
        th[i].st = St::ready;
    }
    // shared memory starts as garbage on a device: NaN bytes, so a read before a write shows
    g_dyn_shared = std::malloc(shmem);
    if (shmem) std::memset(g_dyn_shared, 0xff, shmem);

    std::vector<size_t> order(n);
    std::mt19937_64 rng(g_order_seed * 0x9E3779B97F4A7C15ull ^ (g_launches << 20) ^ block_no);
    bool ok = true;
    for (uint64_t round = 0;; round++) {
        for (size_t i = 0; i < n; i++) order[i] = i;
        if (g_order == Order::reverse) std::reverse(order.begin(), order.end());
        if (g_order == Order::shuffle) std::shuffle(order.begin(), order.end(), rng);
        for (size_t i : order)
            if (th[i].st == St::ready) resume(th[i]);
        bool any = false;
        if (!resolve_shuffles(th, any, fault)) {
            ok = false;
            break;
        }
        if (any) continue;
        size_t done = 0, bar = 0;
        for (const ThreadState& t : th) done += t.st == St::done, bar += t.st == St::barrier;
        if (done == n) break;
        if (done > 0) {
            std::ostringstream s;
            size_t first = 0;
            while (th[first].st != St::done) first++;
            s << "__syncthreads reached by " << bar << " of the " << n << " threads of the block; " << done
              << " had exited (the first: thread " << dim_str(th[first].idx) << ")";
            fault = s.str();
            ok = false;
            break;
        }
        for (ThreadState& t : th) t.st = St::ready;  // every thread is at the barrier
    }
    std::free(g_dyn_shared);
    g_dyn_shared = nullptr;
    release_stacks(th, !ok);
    if (!ok) {
        std::ostringstream s;
        s << "kernel " << name << ", block " << dim_str(g_block_idx) << " of grid " << dim_str(uint3{g_grid_dim.x, g_grid_dim.y, g_grid_dim.z})
          << ", " << n << " threads, order " << order_name() << ": " << fault;
        fault = s.str();
    }
    return ok;
}

static std::map<const void*, size_t> g_shmem_optin;  // kernel -> cudaFuncAttributeMaxDynamicSharedMemorySize
static constexpr size_t kShmemDefault = 48 * 1024, kShmemOptinMax = 227 * 1024;

void run_launch(const char* name, const void* fn, dim3 grid, dim3 block, size_t shmem, KernelBody body,
                void* closure) {
    read_order_env();
    if (g_thread) {
        std::fprintf(stderr, "cuda_emu: a kernel launched from a kernel (%s)\n", name);
        std::abort();
    }
    std::ostringstream why;
    why << "launch of " << name << " <<<" << dim_str(uint3{grid.x, grid.y, grid.z}) << ", "
        << dim_str(uint3{block.x, block.y, block.z}) << ", " << shmem << ">>> refused: ";
    if (!grid.x || !grid.y || !grid.z || !block.x || !block.y || !block.z) {
        fail(cudaErrorInvalidConfiguration, why.str() + "a zero dimension");
        return;
    }
    size_t threads = (size_t)block.x * block.y * block.z;
    if (block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024) {
        fail(cudaErrorInvalidConfiguration, why.str() + "more than 1024 threads per block (or block y > 1024, z > 64)");
        return;
    }
    if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
        fail(cudaErrorInvalidConfiguration, why.str() + "grid y or z above 65535 (or x above 2^31-1)");
        return;
    }
    auto opt = g_shmem_optin.find(fn);
    size_t limit = opt == g_shmem_optin.end() ? kShmemDefault : opt->second;
    if (shmem > limit) {
        std::ostringstream s;
        s << "dynamic shared memory of " << shmem << " bytes, above the " << limit << " allowed"
          << (opt == g_shmem_optin.end() ? " without cudaFuncAttributeMaxDynamicSharedMemorySize" : "");
        fail(cudaErrorInvalidValue, why.str() + s.str());
        return;
    }
    g_ran.insert(name);
    g_body = body;
    g_closure = closure;
    g_grid_dim = grid;
    g_block_dim = block;
    uint64_t block_no = 0;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++, block_no++) {
                g_block_idx = uint3{x, y, z};
                std::string fault;
                if (!run_block(name, shmem, block_no, fault)) {
                    fail(cudaErrorLaunchFailure, fault);
                    g_launches++;
                    return;
                }
            }
    g_launches++;
}

}  // namespace cuda_emu

using namespace cuda_emu;

// ---- runtime API -----------------------------------------------------------------------------

const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInitializationError: return "cudaErrorInitializationError";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
        case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    }
    return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
        default: return "an error of the emulated CUDA runtime";
    }
}

cudaError_t cudaGetLastError() {
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError() { return g_last_error; }

// The emulated device belongs to the process that runs the emulation: HAFVT_EMU_GPU is read once,
// at start-up, and then set to 0 for the child processes (the CLI tests run build/.../hafvt, whose
// `--device auto` must stay on the CPU, as on a machine without a GPU). A test that wants a child
// on the emulated device puts HAFVT_EMU_GPU=1 in front of its command.
static bool read_hidden() {
    const char* e = std::getenv("HAFVT_EMU_GPU");
    bool hidden = e && std::strcmp(e, "0") == 0;
    setenv("HAFVT_EMU_GPU", "0", 1);
    return hidden;
}
static const bool g_hidden = read_hidden();
static bool device_hidden() { return g_hidden; }

cudaError_t cudaGetDeviceCount(int* n) {
    *n = device_hidden() ? 0 : 1;
    return *n ? cudaSuccess : cudaErrorNoDevice;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
    if (device != 0 || device_hidden()) return cudaErrorInvalidDevice;
    std::memset(p, 0, sizeof *p);
    std::snprintf(p->name, sizeof p->name, "hafvt CUDA emulator (host fibers, order %s)", order_name());
    p->totalGlobalMem = memory_limit();
    p->sharedMemPerBlock = 48 * 1024;
    p->sharedMemPerBlockOptin = 227 * 1024;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 && !device_hidden() ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaGetDevice(int* device) {
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
    // work is synchronous: what is pending is a kernel fault or a refused launch not yet read
    return cudaGetLastError();
}
cudaError_t cudaDeviceReset() {
    clear_fault();
    return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
    *ptr = nullptr;
    if (bytes == 0) return cudaSuccess;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    if (bytes > memory_limit() - g_used) return cudaErrorMemoryAllocation;  // not sticky, as on a device
    void* p = std::malloc(bytes);
    if (!p) return cudaErrorMemoryAllocation;
    std::memset(p, 0xff, bytes);  // device memory is not zeroed: NaN bytes, so reading it unwritten shows
    g_allocs[(uintptr_t)p] = bytes;
    g_used += bytes;
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
    if (!ptr) return cudaSuccess;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = g_allocs.find((uintptr_t)ptr);
    if (it == g_allocs.end()) {
        std::fprintf(stderr, "cuda_emu: cudaFree of %p, which is not the start of a device allocation\n", ptr);
        return cudaErrorInvalidDevicePointer;
    }
    g_used -= it->second;
    g_allocs.erase(it);
    std::free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    *free_bytes = memory_limit() - g_used;
    *total_bytes = memory_limit();
    return cudaSuccess;
}

static const char* kind_name(cudaMemcpyKind k) {
    switch (k) {
        case cudaMemcpyHostToHost: return "HostToHost";
        case cudaMemcpyHostToDevice: return "HostToDevice";
        case cudaMemcpyDeviceToHost: return "DeviceToHost";
        case cudaMemcpyDeviceToDevice: return "DeviceToDevice";
        default: return "Default";
    }
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return cudaSuccess;
    bool dd = in_device(dst, bytes), sd = in_device(src, bytes);
    bool dst_any = is_device_start(dst), src_any = is_device_start(src);
    bool ok = false;
    switch (kind) {
        case cudaMemcpyHostToDevice: ok = dd && !src_any; break;
        case cudaMemcpyDeviceToHost: ok = sd && !dst_any; break;
        case cudaMemcpyDeviceToDevice: ok = dd && sd; break;
        case cudaMemcpyHostToHost: ok = !dst_any && !src_any; break;
        case cudaMemcpyDefault: ok = (dd || !dst_any) && (sd || !src_any); break;
    }
    if (!ok) {
        std::ostringstream s;
        s << "cudaMemcpy" << kind_name(kind) << " of " << bytes << " bytes from " << src << " ("
          << (sd ? "device" : src_any ? "past the end of a device allocation" : "host") << ") to " << dst << " ("
          << (dd ? "device" : dst_any ? "past the end of a device allocation" : "host") << ")";
        return fail(cudaErrorInvalidValue, s.str());
    }
    std::memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
    if (bytes == 0) return cudaSuccess;
    if (!in_device(ptr, bytes)) {
        std::ostringstream s;
        s << "cudaMemset of " << bytes << " bytes at " << ptr << ": not inside one device allocation";
        return fail(cudaErrorInvalidValue, s.str());
    }
    std::memset(ptr, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t) { return cudaMemset(ptr, value, bytes); }

struct CUstream_st {
    int unused;
};
struct CUevent_st {
    std::chrono::steady_clock::time_point t;
    bool recorded;
};

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
    *stream = new CUstream_st{0};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    delete stream;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaEventCreate(cudaEvent_t* event) {
    *event = new CUevent_st{std::chrono::steady_clock::now(), false};
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
    delete event;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
    if (!event) return cudaErrorInvalidResourceHandle;
    event->t = std::chrono::steady_clock::now();
    event->recorded = true;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) { return event ? cudaSuccess : cudaErrorInvalidResourceHandle; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start || !end || !start->recorded || !end->recorded) return cudaErrorInvalidResourceHandle;
    *ms = std::chrono::duration<float, std::milli>(end->t - start->t).count();
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttributeRaw(const void* fn, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || (size_t)value > kShmemOptinMax)
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: the dynamic shared memory limit is at most 227 KiB");
    g_shmem_optin[fn] = (size_t)value;
    return cudaSuccess;
}

// ---- cuBLAS ----------------------------------------------------------------------------------

struct cublasContext {
    cublasMath_t mode;
};
static std::set<cublasHandle_t> g_handles;

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
    *handle = new cublasContext{CUBLAS_DEFAULT_MATH};
    g_handles.insert(*handle);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (!g_handles.erase(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!g_handles.count(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_DEFAULT_MATH && mode != CUBLAS_TF32_TENSOR_OP_MATH && mode != CUBLAS_PEDANTIC_MATH &&
        mode != CUBLAS_TENSOR_OP_MATH)
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
    if (!g_handles.count(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    *mode = handle->mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t) {
    return g_handles.count(handle) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

const char* cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "success";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
        case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
        default: return "an error of the emulated cuBLAS";
    }
}

static float to_tf32(float x) {
    if (!std::isfinite(x)) return x;
    uint32_t b;
    std::memcpy(&b, &x, 4);
    b = (b + 0x1000u) & ~0x1fffu;  // 10 mantissa bits, rounded to nearest
    std::memcpy(&x, &b, 4);
    return x;
}

static cublasStatus_t gemm_fail(cublasStatus_t st, const std::string& why) {
    std::fprintf(stderr, "cuda_emu: cublasSgemm: %s\n", why.c_str());
    return st;
}

// Column-major: C (m,n) = alpha op(A) (m,k) op(B) (k,n) + beta C, each element a double sum in
// increasing p.
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                           const float* beta, float* C, int ldc) {
    if (!g_handles.count(handle)) return gemm_fail(CUBLAS_STATUS_NOT_INITIALIZED, "not a live handle");
    const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    std::ostringstream s;
    s << "transa " << (ta ? 'T' : 'N') << " transb " << (tb ? 'T' : 'N') << " m " << m << " n " << n << " k " << k
      << " lda " << lda << " ldb " << ldb << " ldc " << ldc;
    const int rowsA = ta ? k : m, rowsB = tb ? n : k;  // the stored matrices' column heights
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, rowsA) || ldb < std::max(1, rowsB) || ldc < std::max(1, m))
        return gemm_fail(CUBLAS_STATUS_INVALID_VALUE, "invalid sizes or leading dimensions: " + s.str());
    if (!alpha || !beta) return gemm_fail(CUBLAS_STATUS_INVALID_VALUE, "null alpha or beta");
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const int colsA = ta ? m : k, colsB = tb ? k : n;
    auto covers = [](const float* p, int rows, int cols, int ld) {
        if (rows == 0 || cols == 0) return true;
        return in_device(p, ((size_t)(cols - 1) * ld + rows) * sizeof(float));
    };
    if (!covers(A, rowsA, colsA, lda) || !covers(B, rowsB, colsB, ldb) || !covers(C, m, n, ldc))
        return gemm_fail(CUBLAS_STATUS_EXECUTION_FAILED,
                         "a matrix is not inside one device allocation (illegal address): " + s.str());
    const bool tf32 = handle->mode == CUBLAS_TF32_TENSOR_OP_MATH;
    // op(A) by rows and op(B) by columns, each contiguous in p
    std::vector<float> Ar((size_t)m * k), Bc((size_t)n * k);
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++) {
            float a = ta ? A[p + (size_t)i * lda] : A[i + (size_t)p * lda];
            Ar[(size_t)i * k + p] = tf32 ? to_tf32(a) : a;
        }
    for (int j = 0; j < n; j++)
        for (int p = 0; p < k; p++) {
            float b = tb ? B[j + (size_t)p * ldb] : B[p + (size_t)j * ldb];
            Bc[(size_t)j * k + p] = tf32 ? to_tf32(b) : b;
        }
    const double al = *alpha, be = *beta;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < n; j++) {
        const float* b = &Bc[(size_t)j * k];
        for (int i = 0; i < m; i++) {
            const float* a = &Ar[(size_t)i * k];
            double acc = 0.0;
            for (int p = 0; p < k; p++) acc += (double)a[p] * (double)b[p];
            float& c = C[i + (size_t)j * ldc];
            c = (float)(be == 0.0 ? al * acc : al * acc + be * (double)c);
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}
