// common.h: errors, checks, a timer and the counter-based RNG shared by host and device.
//
// Two kinds of failure leave the program:
//   InputError    bad input from a user (file, flag): main() prints it and exits with status 2.
//   InternalError a broken invariant inside the program: main() prints it and exits with status 1.
// Both carry the C++ source location (file:line) where they were raised and a hint.
#pragma once
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define HAFVT_HD __host__ __device__ __forceinline__
#else
#define HAFVT_HD inline
#endif

namespace hafvt {

// Bad input: what() is the message and the source place ("[file.cpp:N]", for tests and logs);
// the command line prints `message` alone (the place helps a bug report, not a user's typo).
struct InputError : std::runtime_error {
    explicit InputError(const std::string& msg) : std::runtime_error(msg), message(msg) {}
    InputError(const std::string& msg, const std::string& where)
        : std::runtime_error(msg + " " + where), message(msg), place(where) {}
    std::string message, place;
};
// An allocation the device's memory cannot hold: bad input (a configuration too large for the
// device); the command line adds which settings to lower.
struct DeviceMemoryError : InputError {
    DeviceMemoryError(const std::string& msg, const std::string& where) : InputError(msg, where) {}
};
struct InternalError : std::runtime_error {
    explicit InternalError(const std::string& msg) : std::runtime_error(msg) {}
};

// Builds a message from any streamable pieces: cat("row ", 3, " of ", path).
template <typename... Args>
std::string cat(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

[[noreturn]] void throw_internal(const char* file, int line, const std::string& what);
[[noreturn]] void throw_input(const char* file, int line, const std::string& what);
[[noreturn]] void throw_device_memory(const char* file, int line, const std::string& what);

// Fault-injection hook for crash-safety tests: returns true when the environment variable
// HAFVT_FAULT equals `point` (e.g. "before_rename"), or is `point@N` and this is the N-th call.
// Points: before_rename (AtomicFile::commit), nan_loss (one training step's loss).
bool fault_injected(const char* point);

}  // namespace hafvt

// HAFVT_CHECK: an internal invariant. HAFVT_INPUT: a check on user input (exit status 2).
// The message should say where (file, line/row/byte), what was expected and what was found.
#define HAFVT_CHECK(cond, ...)                                                          \
    do {                                                                                \
        if (!(cond)) ::hafvt::throw_internal(__FILE__, __LINE__,                        \
                                             ::hafvt::cat("check failed: " #cond "; ", __VA_ARGS__)); \
    } while (0)
#define HAFVT_INPUT(cond, ...)                                                          \
    do {                                                                                \
        if (!(cond)) ::hafvt::throw_input(__FILE__, __LINE__, ::hafvt::cat(__VA_ARGS__)); \
    } while (0)
#define HAFVT_FAIL_INPUT(...) ::hafvt::throw_input(__FILE__, __LINE__, ::hafvt::cat(__VA_ARGS__))

namespace hafvt {

// Host memory for arrays: zeroed, 64-byte aligned, released by aligned_free (throws
// std::bad_alloc when the system has none left). On Linux a block of kHugeBlock bytes or more is
// mapped on its own (mmap: the kernel's zero pages, no memset), from a 2 MB boundary and marked
// for transparent huge pages (madvise MADV_HUGEPAGE; the kernel decides, and ignores it when its
// THP setting is "never"): the passes over a step's logits, the gradients and the optimizer's
// moments then take a TLB entry and a page fault per 2 MB instead of per 4 KB. The length is not rounded up to 2 MB (the part past the last whole 2 MB takes 4 KB pages
// as it is touched), so the resident memory grows by at most the untouched rest of a touched 2 MB.
// Smaller blocks, blocks with huge = false, and every block elsewhere, come from calloc.
constexpr size_t kHugeBlock = (size_t)4 << 20;
void* aligned_calloc(size_t bytes, bool huge = true);
void aligned_free(void* p);

// Wall-clock timer in seconds.
struct Timer {
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    void reset() { t0 = std::chrono::steady_clock::now(); }
    double seconds() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
};

// ---------------------------------------------------------------------------------------------
// Counter-based RNG: every random number is a pure function of (seed, stream, counter), so the
// CPU and the GPU draw identical dropout masks, and a resumed run redraws exactly what an
// uninterrupted run drew. The mixer is splitmix64's finalizer applied in a chain; it passes the
// uniformity and independence tests in tests/test_common.cpp for our uses (masks, init, shuffles).
// ---------------------------------------------------------------------------------------------
HAFVT_HD uint64_t rng_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
HAFVT_HD uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    return rng_mix64(rng_mix64(rng_mix64(seed) ^ stream) ^ counter);
}
// Uniform in [0, 1) with 24 random bits (exactly representable in float).
HAFVT_HD float rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return (float)(rng_u64(seed, stream, counter) >> 40) * (1.0f / 16777216.0f);
}
// Standard normal by Box-Muller on the two 32-bit halves of one draw.
HAFVT_HD float rng_normal(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint64_t r = rng_u64(seed, stream, counter);
    double u1 = ((double)(r >> 40) + 0.5) * (1.0 / 16777216.0);            // (0, 1)
    double u2 = (double)((r >> 8) & 0xFFFFFFu) * (1.0 / 16777216.0);       // [0, 1)
    return (float)(::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2));
}
// Uniform integer in [0, n) (n > 0), by 64-bit multiply-shift (bias < 2^-32 for our n).
HAFVT_HD uint64_t rng_below(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t n) {
    uint64_t r = rng_u64(seed, stream, counter) >> 32;
    return (r * n) >> 32;
}

// Named streams keep independent uses of one seed apart. A stream id is (kind << 48) | index.
enum RngKind : uint64_t {
    RNG_INIT = 1,       // parameter initialization, index = parameter number
    RNG_SHUFFLE = 2,    // training order, index = epoch
    RNG_DROPOUT = 3,    // dropout masks, index = optimizer step; counter = (site << 40) | element
    RNG_NEGATIVES = 4,  // c2dsr negatives, index = split
    RNG_SYNTH = 5,      // synthetic data generator
    RNG_SLICE = 6,      // the dropout seed of slice s > 0 of a batch (micro-batches, ranks), index = s
    RNG_FOLD = 7,       // hafvt fold-valid: the validation lines moved into training
};
HAFVT_HD uint64_t rng_stream(RngKind kind, uint64_t index) { return ((uint64_t)kind << 48) ^ index; }

}  // namespace hafvt

namespace hafvt {

// A file written to a temporary name in the same folder and renamed over `path` by commit(),
// so a crash or a kill never leaves a half-written file under the final name. If the object is
// destroyed without commit(), the temporary is removed. HAFVT_FAULT=before_rename makes
// commit() throw after writing and before renaming (used by the crash-safety tests).
class AtomicFile {
public:
    explicit AtomicFile(const std::string& path);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    void write(const void* data, size_t bytes);
    void write(const std::string& s) { write(s.data(), s.size()); }
    void commit();  // finish() then rename_into_place()
    void finish();             // flush, sync and close the temporary
    void rename_into_place();  // after finish(): rename the temporary to the path

private:
    std::string path_, tmp_;
    std::FILE* f_ = nullptr;
    bool finished_ = false;  // finished, not yet renamed
};

// Commits several files as one: all are written out first, then all renamed, so that a failure
// while writing leaves none of them (a command with several outputs commits all or nothing).
void commit_together(const std::vector<AtomicFile*>& files);

// Writes a whole file atomically.
void write_file_atomic(const std::string& path, const std::string& contents);
// Reads a whole file; InputError naming the file when it cannot be read or is a directory.
std::string read_file(const std::string& path);

// The name of `known` closest to `typed` (edit distance, at most a third of its length, and at
// most 3), for "did you mean" hints; "" when none is that close.
std::string nearest_name(const std::string& typed, const std::vector<std::string>& known);
// "; did you mean X?" with `prefix` and `suffix` around X, or "" when no known name is close.
std::string did_you_mean(const std::string& typed, const std::vector<std::string>& known, const std::string& prefix = "",
                         const std::string& suffix = "");

// A number printed with a printf format of one double ("%.6g", "%.3f").
std::string format_number(const char* format, double v);

// One byte in hex for messages: "0x00".
std::string byte_hex(unsigned char c);
// A message made safe to print: control bytes other than tab, DEL and bytes that are not part of
// valid UTF-8 become \xNN, valid UTF-8 is kept. Every error line goes through it (cli/main.cpp), so input
// bytes quoted in a message never reach the terminal raw.
std::string printable(const std::string& s);

}  // namespace hafvt
