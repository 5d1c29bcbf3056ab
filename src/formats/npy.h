// npy.h: numpy's .npy format (versions 1.0, 2.0, 3.0), read and written by our own code.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hafvt {

class AtomicFile;  // core/common.h

struct NpyHeader {
    int major = 1, minor = 0;      // format version
    std::string descr;             // e.g. "<f4"
    bool fortran_order = false;
    std::vector<size_t> shape;
    size_t data_offset = 0;        // byte offset of the payload in the file
};

// Parses and validates the header of an in-memory .npy file; InputError naming `path`
// (and the byte offset where it applies) on bad magic, unsupported version, malformed dict,
// header length beyond the file, etc.
NpyHeader npy_parse_header(const std::string& bytes, const std::string& path);

// Reads a float array: dtype <f4 or <f2 (converted to float32), C order, any rank >= 1.
// Refuses everything else (dtype, order, truncated or oversized payload) with an InputError that
// names the file and says what was expected versus found.
std::vector<float> npy_read_f32(const std::string& path, std::vector<size_t>* shape);
// Reads an int32 array (<i4, C order).
std::vector<int32_t> npy_read_i32(const std::string& path, std::vector<size_t>* shape);
// The same two from a whole file already in memory (`path` only names it in messages).
std::vector<float> npy_decode_f32(const std::string& bytes, const std::string& path, std::vector<size_t>* shape);
std::vector<int32_t> npy_decode_i32(const std::string& bytes, const std::string& path, std::vector<size_t>* shape);

// Write version-1.0 files (<f4 / <i4, C order) through AtomicFile (temporary name + rename).
void npy_write_f32(const std::string& path, const float* data, const std::vector<size_t>& shape);
// The same into an open AtomicFile at `path`, left for the caller to commit (with its other outputs).
void npy_write_f32(AtomicFile& f, const std::string& path, const float* data, const std::vector<size_t>& shape);
void npy_write_i32(const std::string& path, const int32_t* data, const std::vector<size_t>& shape);

// A shape as numpy prints it: "(5, 3)", "(7,)", "()".
std::string npy_shape_str(const std::vector<size_t>& shape);

// IEEE half to float (exact, handles subnormals, inf and NaN).
float half_to_float(uint16_t h);
// n little-endian halves (the bytes of a file, any alignment) to floats: the f16 path of the
// .npy and safetensors readers.
void halves_to_floats(float* out, const char* src, size_t n);

}  // namespace hafvt
