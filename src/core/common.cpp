// common.cpp: the out-of-line parts of common.h.
#include "core/common.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace hafvt {

static std::string where(const char* file, int line) {
    const char* base = std::strrchr(file, '/');
    return cat("[", base ? base + 1 : file, ":", line, "] ");
}

void throw_internal(const char* file, int line, const std::string& what) {
    throw InternalError(what + " " + where(file, line) +
                        "(an internal error: please report it with the command that caused it)");
}

void throw_input(const char* file, int line, const std::string& what) {
    throw InputError(what, where(file, line));
}
void throw_device_memory(const char* file, int line, const std::string& what) {
    throw DeviceMemoryError(what, where(file, line));
}

// Each block starts with this header, 64 bytes before the pointer handed out: where the block
// begins (calloc's pointer, or the mapping) and the mapping's length (0: a calloc block).
namespace {
struct BlockHeader {
    void* base;
    size_t mapped;
};
constexpr size_t kHeader = 64;
static_assert(sizeof(BlockHeader) <= kHeader, "the header fits in front of the block");
constexpr size_t kHugePage = (size_t)2 << 20;
}  // namespace

void* aligned_calloc(size_t bytes, bool huge) {
#if defined(__linux__)
    if (huge && bytes >= kHugeBlock) {
        // map one huge page more than needed, keep the part from a 2 MB boundary, unmap the rest;
        // the length is not rounded up to 2 MB: the tail past the last whole huge page takes
        // 4 KB pages as it is touched
        const size_t len = (bytes + kHeader + 4095) / 4096 * 4096;
        void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) throw std::bad_alloc();
        const uintptr_t r = (uintptr_t)raw, b = (r + kHugePage - 1) / kHugePage * kHugePage;
        if (b > r) munmap(raw, b - r);
        if (r + kHugePage > b) munmap((void*)(b + len), r + kHugePage - b);
        madvise((void*)b, len, MADV_HUGEPAGE);  // advice: a kernel without THP maps 4 KB pages
        *reinterpret_cast<BlockHeader*>(b) = {(void*)b, len};
        return (void*)(b + kHeader);
    }
#endif
    void* raw = std::calloc(1, bytes + 2 * kHeader);
    if (!raw) throw std::bad_alloc();
    const uintptr_t p = ((uintptr_t)raw + kHeader + 63) / 64 * 64;
    *reinterpret_cast<BlockHeader*>(p - kHeader) = {raw, 0};
    return (void*)p;
}

void aligned_free(void* p) {
    if (!p) return;
    const BlockHeader h = *reinterpret_cast<const BlockHeader*>((uintptr_t)p - kHeader);
#if defined(__linux__)
    if (h.mapped) {
        munmap(h.base, h.mapped);
        return;
    }
#endif
    std::free(h.base);
}

bool fault_injected(const char* point) {
    // HAFVT_FAULT=point fires at every call; point@N only at the N-th call for that point
    const char* v = std::getenv("HAFVT_FAULT");
    const size_t n = std::strlen(point);
    if (!v || std::strncmp(v, point, n) != 0) return false;
    if (v[n] == '\0') return true;
    if (v[n] != '@') return false;
    static long calls = 0;  // one point per process: HAFVT_FAULT names a single one
    return ++calls == std::atol(v + n + 1);
}

}  // namespace hafvt

#include <cerrno>
#include <sys/stat.h>
#include <unistd.h>

namespace hafvt {

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
    tmp_ = cat(path, ".tmp.", (long)getpid());
    f_ = std::fopen(tmp_.c_str(), "wb");
    HAFVT_INPUT(f_, path, ": cannot open for writing (", std::strerror(errno), ")");
}

AtomicFile::~AtomicFile() {
    if (f_) std::fclose(f_);
    if (f_ || finished_) std::remove(tmp_.c_str());  // not committed: the temporary goes
}

void AtomicFile::write(const void* data, size_t bytes) {
    HAFVT_CHECK(f_, "write after commit to ", path_);
    if (bytes && std::fwrite(data, 1, bytes, f_) != bytes)
        HAFVT_FAIL_INPUT(path_, ": write failed after ", bytes, " bytes (", std::strerror(errno), "); is the disk full?");
}

void AtomicFile::commit() {
    finish();
    rename_into_place();
}

void AtomicFile::finish() {
    HAFVT_CHECK(f_, "double commit of ", path_);
    bool ok = std::fflush(f_) == 0 && fsync(fileno(f_)) == 0;
    ok = (std::fclose(f_) == 0) && ok;
    f_ = nullptr;
    finished_ = true;
    if (!ok) {
        std::remove(tmp_.c_str());
        finished_ = false;
        HAFVT_FAIL_INPUT(path_, ": could not finish writing (", std::strerror(errno), ")");
    }
}

void commit_together(const std::vector<AtomicFile*>& files) {
    for (AtomicFile* f : files) f->finish();  // every file written out before any is renamed
    for (AtomicFile* f : files) f->rename_into_place();
}

void AtomicFile::rename_into_place() {
    HAFVT_CHECK(finished_, "rename of ", path_, " before finish");
    finished_ = false;
    if (fault_injected("before_rename")) {
        std::remove(tmp_.c_str());
        HAFVT_FAIL_INPUT(path_, ": fault injected before rename (HAFVT_FAULT=before_rename)");
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
        std::remove(tmp_.c_str());
        HAFVT_FAIL_INPUT(path_, ": cannot rename temporary file into place (", std::strerror(errno), ")");
    }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
    AtomicFile f(path);
    f.write(contents);
    f.commit();
}

// What a file that is not a regular file is, for messages.
static const char* file_kind(mode_t m) {
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISDIR(m)) return "a directory";
    return "a special file";
}

std::string read_file(const std::string& path) {
    struct stat st;
    HAFVT_INPUT(stat(path.c_str(), &st) == 0, path, ": cannot open (", std::strerror(errno), ")");
    HAFVT_INPUT(!S_ISDIR(st.st_mode), path, ": expected a file, found a directory");
    // a device, FIFO or socket has no size to bound the read by (/dev/zero never ends, a FIFO may
    // block forever): every input of this program is a regular file
    HAFVT_INPUT(S_ISREG(st.st_mode), path, ": expected a regular file, found ", file_kind(st.st_mode));
    std::FILE* f = std::fopen(path.c_str(), "rb");
    HAFVT_INPUT(f, path, ": cannot open (", std::strerror(errno), ")");
    std::string s;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    bool err = std::ferror(f);
    std::fclose(f);
    HAFVT_INPUT(!err, path, ": read error");
    return s;
}

std::string format_number(const char* format, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

std::string byte_hex(unsigned char c) {
    const char* d = "0123456789abcdef";
    return cat("0x", d[c >> 4], d[c & 15]);
}

std::string printable(const std::string& s) {
    std::string out;
    const char* d = "0123456789abcdef";
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = (unsigned char)s[i];
        size_t len = 0;  // the length of the valid UTF-8 sequence starting at i (0: none)
        if ((c >= 0x20 && c < 0x7f) || c == '\t') len = 1;
        else if (c >= 0xc2 && c <= 0xf4) {
            const size_t want = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
            bool ok = i + want <= s.size();
            for (size_t k = 1; ok && k < want; k++) ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
            len = ok ? want : 0;
        }
        if (len) {
            out.append(s, i, len);
            i += len;
        } else {
            out += "\\x";
            out += d[c >> 4];
            out += d[c & 15];
            i++;
        }
    }
    return out;
}

std::string nearest_name(const std::string& typed, const std::vector<std::string>& known) {
    std::string best;
    size_t best_d = std::min<size_t>(3, std::max<size_t>(1, typed.size() / 3)) + 1;
    for (const std::string& k : known) {
        // edit distance with adjacent transpositions (optimal string alignment): "trian" is 1 from "train"
        const size_t n = typed.size(), m = k.size();
        std::vector<size_t> d((n + 1) * (m + 1));
        auto at = [&](size_t i, size_t j) -> size_t& { return d[i * (m + 1) + j]; };
        for (size_t i = 0; i <= n; i++) at(i, 0) = i;
        for (size_t j = 0; j <= m; j++) at(0, j) = j;
        for (size_t i = 1; i <= n; i++)
            for (size_t j = 1; j <= m; j++) {
                at(i, j) = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (typed[i - 1] == k[j - 1] ? 0 : 1)});
                if (i > 1 && j > 1 && typed[i - 1] == k[j - 2] && typed[i - 2] == k[j - 1])
                    at(i, j) = std::min(at(i, j), at(i - 2, j - 2) + 1);
            }
        if (at(n, m) < best_d) best_d = at(n, m), best = k;
    }
    return best;
}

std::string did_you_mean(const std::string& typed, const std::vector<std::string>& known, const std::string& prefix,
                         const std::string& suffix) {
    const std::string n = nearest_name(typed, known);
    return n.empty() ? "" : cat("; did you mean ", prefix, n, suffix, "?");
}

}  // namespace hafvt
