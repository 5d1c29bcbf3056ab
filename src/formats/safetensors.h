// safetensors.h: the safetensors format (8-byte little-endian header length, JSON header, raw
// little-endian data), read and written by our own code. Used for checkpoints and test fixtures.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hafvt {

// A shape as the header writes it (and Tensor::shape_str prints it): "[3, 4]".
std::string shape_str(const std::vector<size_t>& shape);

struct StEntry {
    std::string name;
    std::string dtype;            // "F32", "F16", "I32", "I64"
    std::vector<size_t> shape;
    size_t begin = 0, end = 0;    // byte offsets into the data section
};

struct StFile {
    std::string path;
    std::map<std::string, std::string> metadata;  // "__metadata__" (string -> string)
    std::vector<StEntry> entries;                 // in header order
    std::string data;                             // the data section (after the header)

    bool has(const std::string& name) const;
    const StEntry& entry(const std::string& name) const;  // InputError when missing
    // Any float dtype (F32, F16) converted to float; InputError for other dtypes.
    std::vector<float> read_f32(const std::string& name) const;
    // I32 or I64 converted to int64.
    std::vector<int64_t> read_int(const std::string& name) const;
};

// Reads and validates a whole file: header length within the file and at most 100 MB, valid JSON
// object, every entry with a known dtype, shape product * dtype size == end - begin, offsets within
// the data section, no overlaps; InputError naming the file, byte and tensor otherwise.
StFile safetensors_read(const std::string& path);
// The same from a whole file already in memory (`path` only names it in messages).
StFile safetensors_parse(std::string bytes, const std::string& path);

struct StTensorOut {
    std::string name;
    std::vector<size_t> shape;
    const void* data = nullptr;
    std::string dtype = "F32";  // "F32" or "I32"
};

// Writes through AtomicFile (temporary name + rename). Keys are written in the given order.
void safetensors_write(const std::string& path, const std::vector<StTensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata);

// A one-screen human summary of a .npy or .safetensors file (for `hafvt info`).
std::string describe_file(const std::string& path);

}  // namespace hafvt
