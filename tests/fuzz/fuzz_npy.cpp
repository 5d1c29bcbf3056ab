// fuzz_npy.cpp: libFuzzer target for the .npy reader (npy.cpp), the code behind --img/--txt and
// the negatives files. Every input must either decode or raise InputError; anything else (a
// sanitizer report, an InternalError, an uncaught exception) is a bug and crashes the run.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/common.h"
#include "formats/npy.h"

using namespace hafvt;

// Cross-checks what a successful decode returns against the header it came from.
static void check_shape(const std::vector<size_t>& shape, size_t numel) {
    size_t n = 1;
    for (size_t d : shape) n *= d;
    if (n != numel) __builtin_trap();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string bytes((const char*)data, size);
    try {
        NpyHeader h = npy_parse_header(bytes, "fuzz.npy");
        if (h.data_offset > bytes.size()) __builtin_trap();
    } catch (const InputError&) {
        return 0;  // a refused header: both decoders below must refuse it too
    }
    // The same bytes through both typed readers; each refuses what is not its dtype.
    try {
        std::vector<size_t> shape;
        std::vector<float> x = npy_decode_f32(bytes, "fuzz.npy", &shape);
        check_shape(shape, x.size());
    } catch (const InputError&) {
    }
    try {
        std::vector<size_t> shape;
        std::vector<int32_t> x = npy_decode_i32(bytes, "fuzz.npy", &shape);
        check_shape(shape, x.size());
    } catch (const InputError&) {
    }
    return 0;
}
