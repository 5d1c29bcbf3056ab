// endian.h: where numbers meet file bytes. .npy and safetensors hold little-endian data by
// definition; every copy of an array between their bytes and host values goes through copy_le
// (the single integers of their headers, and float16 values, are assembled byte by byte), so the
// readers and writers produce and accept the same bytes on a big-endian host (make test-cross
// ARCH=s390x).
#pragma once
#include <cstddef>
#include <cstring>
#include <string>

namespace hafvt {

constexpr bool kBigEndianHost = __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;

// n values of `width` bytes (2, 4 or 8) from little-endian bytes to host values, or from host
// values to little-endian bytes (the same operation): a copy on a little-endian host, each
// value's bytes reversed on a big-endian one. dst and src do not overlap.
inline void copy_le(void* dst, const void* src, size_t n, size_t width) {
    if (!kBigEndianHost) {
        if (n) std::memcpy(dst, src, n * width);
        return;
    }
    unsigned char* d = static_cast<unsigned char*>(dst);
    const unsigned char* s = static_cast<const unsigned char*>(src);
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < width; b++) d[i * width + b] = s[i * width + width - 1 - b];
}

// n host values of `width` bytes as the little-endian bytes a file holds.
inline std::string le_bytes(const void* src, size_t n, size_t width) {
    std::string out(n * width, '\0');
    copy_le(&out[0], src, n, width);
    return out;
}

}  // namespace hafvt
