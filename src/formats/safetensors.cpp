// safetensors.cpp: the safetensors format, read and written by our own code, and describe_file.
//
// Layout: uint64 little-endian N, then N bytes of a JSON object, then the data section.
//   {"__metadata__": {"key": "string", ...},
//    "name": {"dtype": "F32", "shape": [3, 4], "data_offsets": [begin, end]}, ...}
// Offsets are relative to the start of the data section. We pad the header with spaces to a
// multiple of 8 bytes so every tensor stays 8-byte aligned in the file, as the Python writer does.
#include "formats/safetensors.h"

#include "core/common.h"
#include "core/endian.h"
#include "core/json.h"
#include "formats/npy.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace hafvt {

std::string shape_str(const std::vector<size_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += cat(i ? ", " : "", shape[i]);
    return s + "]";
}

namespace {

const size_t k_max_header = 100u * 1000u * 1000u;  // the limit of the Python reader too

// Bytes per element of the dtypes we support; 0 for any other (BF16, F64, U8, BOOL, ...).
size_t dtype_size(const std::string& dtype) {
    if (dtype == "F32" || dtype == "I32") return 4;
    if (dtype == "F16") return 2;
    if (dtype == "I64") return 8;
    return 0;
}

// A JSON number that must be a non-negative integer (a dimension or an offset).
size_t json_size(const Json& j, const std::string& path, const std::string& tensor, const char* field) {
    HAFVT_INPUT(j.is_integer() && j.as_number() >= 0, path, ": tensor '", tensor, "': ", field,
                " must hold non-negative integers, found ", j.dump());
    return (size_t)j.as_int();
}

// One tensor's header entry, checked against the data section of `data_size` bytes.
StEntry parse_entry(const std::string& name, const Json& j, const std::string& path, size_t data_size) {
    StEntry e;
    e.name = name;
    HAFVT_INPUT(j.is_object(), path, ": tensor '", name, "': expected an object with dtype, shape and "
                "data_offsets, found ", j.type_name());
    for (const auto& kv : j.items())
        HAFVT_INPUT(kv.first == "dtype" || kv.first == "shape" || kv.first == "data_offsets", path,
                    ": tensor '", name, "': unexpected field '", kv.first, "'");
    const Json* dtype = j.get("dtype");
    const Json* shape = j.get("shape");
    const Json* offs = j.get("data_offsets");
    HAFVT_INPUT(dtype && dtype->is_string(), path, ": tensor '", name, "': missing string field 'dtype'");
    HAFVT_INPUT(shape && shape->is_array(), path, ": tensor '", name, "': missing array field 'shape'");
    HAFVT_INPUT(offs && offs->is_array() && offs->size() == 2, path, ": tensor '", name,
                "': expected data_offsets [begin, end], found ", offs ? offs->dump() : "nothing");
    e.dtype = dtype->as_string();
    size_t esize = dtype_size(e.dtype);
    HAFVT_INPUT(esize, path, ": tensor '", name, "': unsupported dtype '", e.dtype,
                "'; expected F32, F16, I32 or I64");
    HAFVT_INPUT(shape->size() <= 32, path, ": tensor '", name, "': shape has ", shape->size(),
                " dimensions; expected at most 32");
    for (const Json& d : shape->as_array()) e.shape.push_back(json_size(d, path, name, "shape"));
    // Bytes the shape needs; a zero dimension makes any product of the others harmless.
    bool has_zero = std::count(e.shape.begin(), e.shape.end(), (size_t)0) > 0;
    size_t bytes = has_zero ? 0 : esize;
    for (size_t v : e.shape) {
        HAFVT_INPUT(has_zero || bytes <= std::numeric_limits<size_t>::max() / v, path, ": tensor '", name,
                    "': shape ", shape_str(e.shape), " overflows 64 bits");
        bytes *= v;
    }
    e.begin = json_size(offs->as_array()[0], path, name, "data_offsets");
    e.end = json_size(offs->as_array()[1], path, name, "data_offsets");
    HAFVT_INPUT(e.begin > e.end || e.end <= data_size, path, ": truncated (or a corrupt header): tensor '", name,
                "' has data_offsets [", e.begin, ", ", e.end, "], expected end <= ", data_size,
                ", the bytes the data section holds");
    HAFVT_INPUT(e.begin <= e.end && e.end <= data_size, path, ": tensor '", name, "': data_offsets [",
                e.begin, ", ", e.end, "] must satisfy begin <= end <= ", data_size,
                " (the size of the data section)");
    HAFVT_INPUT(e.end - e.begin == bytes, path, ": tensor '", name, "': ", e.dtype, " shape ",
                shape_str(e.shape), " needs ", bytes, " bytes, but data_offsets [", e.begin, ", ",
                e.end, "] hold ", e.end - e.begin);
    return e;
}

}  // namespace

// Whole file in memory: the data section is kept as one string that read_f32/read_int slice.
StFile safetensors_read(const std::string& path) { return safetensors_parse(read_file(path), path); }

StFile safetensors_parse(std::string bytes, const std::string& path) {
    StFile f;
    f.path = path;
    HAFVT_INPUT(bytes.size() >= 8, path, ": not a safetensors file: expected at least 8 bytes "
                "(the header length), found ", bytes.size());
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)(uint8_t)bytes[(size_t)i] << (8 * i);
    HAFVT_INPUT(n <= k_max_header, path, ": header length at byte 0 says ", n,
                " bytes; expected at most ", k_max_header);
    HAFVT_INPUT(n <= bytes.size() - 8, path, ": header length at byte 0 says ", n, " bytes, but only ",
                bytes.size() - 8, " bytes follow byte 8");
    Json header = Json::parse(bytes.substr(8, n), path + " (safetensors header)", 8);
    HAFVT_INPUT(header.is_object(), path, ": safetensors header must be a JSON object, found ",
                header.type_name());
    f.data = bytes.substr(8 + n);
    bytes = std::string();  // release the copy

    for (const auto& kv : header.items()) {
        if (kv.first == "__metadata__") {
            HAFVT_INPUT(kv.second.is_object(), path, ": __metadata__ must be an object of strings, found ",
                        kv.second.type_name());
            for (const auto& m : kv.second.items()) {
                HAFVT_INPUT(m.second.is_string(), path, ": __metadata__ value of '", m.first,
                            "' must be a string, found ", m.second.type_name());
                f.metadata[m.first] = m.second.as_string();
            }
            continue;
        }
        f.entries.push_back(parse_entry(kv.first, kv.second, path, f.data.size()));
    }

    // Overlaps: sort by begin; each non-empty tensor must end before the next one starts.
    std::vector<const StEntry*> order;
    for (const StEntry& e : f.entries) if (e.end > e.begin) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const StEntry* a, const StEntry* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < order.size(); i++)
        HAFVT_INPUT(order[i - 1]->end <= order[i]->begin, path, ": tensors '", order[i - 1]->name,
                    "' (bytes ", order[i - 1]->begin, "-", order[i - 1]->end, ") and '", order[i]->name,
                    "' (bytes ", order[i]->begin, "-", order[i]->end, ") overlap in the data section");
    return f;
}

bool StFile::has(const std::string& name) const {
    for (const StEntry& e : entries) if (e.name == name) return true;
    return false;
}

const StEntry& StFile::entry(const std::string& name) const {
    for (const StEntry& e : entries) if (e.name == name) return e;
    HAFVT_FAIL_INPUT(path, ": no tensor named '", name, "' (the file has ", entries.size(), " tensors)");
}

// Copies rather than pointer casts: the data section has no alignment guarantee in memory, and its
// bytes are little-endian (copy_le).
std::vector<float> StFile::read_f32(const std::string& name) const {
    const StEntry& e = entry(name);
    const char* src = data.data() + e.begin;
    if (e.dtype == "F32") {
        std::vector<float> out((e.end - e.begin) / 4);
        copy_le(out.data(), src, out.size(), 4);
        return out;
    }
    HAFVT_INPUT(e.dtype == "F16", path, ": tensor '", name, "': expected dtype F32 or F16, found ", e.dtype);
    std::vector<float> out((e.end - e.begin) / 2);
    halves_to_floats(out.data(), src, out.size());
    return out;
}

std::vector<int64_t> StFile::read_int(const std::string& name) const {
    const StEntry& e = entry(name);
    const char* src = data.data() + e.begin;
    if (e.dtype == "I64") {
        std::vector<int64_t> out((e.end - e.begin) / 8);
        copy_le(out.data(), src, out.size(), 8);
        return out;
    }
    HAFVT_INPUT(e.dtype == "I32", path, ": tensor '", name, "': expected dtype I32 or I64, found ", e.dtype);
    std::vector<int64_t> out((e.end - e.begin) / 4);
    for (size_t i = 0; i < out.size(); i++) {
        int32_t v;
        copy_le(&v, src + 4 * i, 1, 4);
        out[i] = v;
    }
    return out;
}

// Header first (offsets are known from the shapes), then the tensors back to back, so that
// data_offsets are contiguous from 0 to the end of the file as Python's reader requires.
void safetensors_write(const std::string& path, const std::vector<StTensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    Json header = Json::object();
    if (!metadata.empty()) {
        Json meta = Json::object();
        for (const auto& kv : metadata) meta.set(kv.first, kv.second);
        header.set("__metadata__", std::move(meta));
    }
    std::vector<size_t> sizes;
    size_t offset = 0;
    for (const StTensorOut& t : tensors) {
        size_t esize = dtype_size(t.dtype);
        HAFVT_CHECK(esize, "unsupported dtype '", t.dtype, "' for tensor ", t.name, " writing ", path);
        HAFVT_CHECK(t.name != "__metadata__" && !header.get(t.name), "duplicate tensor name ", t.name);
        size_t bytes = esize;
        Json shape = Json::array();
        for (size_t d : t.shape) {
            bytes *= d;
            shape.push(d);
        }
        HAFVT_CHECK(t.data || bytes == 0, "null data for tensor ", t.name);
        Json e = Json::object();
        e.set("dtype", t.dtype).set("shape", std::move(shape));
        e.set("data_offsets", Json::array().push(offset).push(offset + bytes));
        header.set(t.name, std::move(e));
        sizes.push_back(bytes);
        offset += bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string len(8, '\0');
    for (size_t i = 0; i < 8; i++) len[i] = (char)((uint64_t)text.size() >> (8 * i));
    AtomicFile f(path);
    f.write(len);
    f.write(text);
    for (size_t i = 0; i < tensors.size(); i++) {
        const size_t esize = dtype_size(tensors[i].dtype);
        if (kBigEndianHost) f.write(le_bytes(tensors[i].data, sizes[i] / esize, esize));
        else f.write(tensors[i].data, sizes[i]);
    }
    f.commit();
}

// ---------------------------------------------------------------------------------------------
// describe_file: what `hafvt info` prints. Dispatches on the magic bytes, not the extension.
// ---------------------------------------------------------------------------------------------

namespace {

// Header facts, then per-row health of a float table: the checks the feature loader makes.
std::string describe_npy(const std::string& path, const std::string& bytes) {
    NpyHeader h = npy_parse_header(bytes, path);
    std::string out = cat(path, ": numpy .npy version ", h.major, ".", h.minor, ", dtype '", h.descr,
                          "', ", h.fortran_order ? "Fortran" : "C", " order, shape ", npy_shape_str(h.shape),
                          ", payload ", bytes.size() - h.data_offset, " bytes from byte ", h.data_offset, "\n");
    if (h.descr != "<f4" && h.descr != "<f2") return out;
    if (h.fortran_order || h.shape.empty()) return out + "  (row statistics need a C-order array of rank >= 1)\n";
    std::vector<size_t> shape;
    std::vector<float> x = npy_read_f32(path, &shape);  // validates order and payload size
    size_t rows = shape[0], width = rows ? x.size() / rows : 0;
    size_t zero_rows = 0, bad_rows = 0;
    std::vector<size_t> first_zero, first_bad;
    double min_norm = INFINITY, max_norm = 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float* row = x.data() + r * width;
        double ss = 0.0;
        bool finite = true, zero = true;
        for (size_t c = 0; c < width; c++) {
            finite = finite && std::isfinite(row[c]);
            zero = zero && row[c] == 0.0f;
            ss += (double)row[c] * row[c];
        }
        if (!finite) {
            if (first_bad.size() < 5) first_bad.push_back(r);
            bad_rows++;
            continue;
        }
        if (zero) {
            if (first_zero.size() < 5) first_zero.push_back(r);
            zero_rows++;
            continue;
        }
        min_norm = std::min(min_norm, std::sqrt(ss));
        max_norm = std::max(max_norm, std::sqrt(ss));
    }
    auto list = [](const std::vector<size_t>& v, size_t total) {
        std::string s;
        for (size_t i = 0; i < v.size(); i++) s += cat(i ? ", " : " (rows ", v[i]);
        return v.empty() ? s : s + (total > v.size() ? ", ...)" : ")");
    };
    out += cat("  rows ", rows, " of width ", width, "; all-zero rows ", zero_rows, list(first_zero, zero_rows),
               "; rows with NaN/Inf ", bad_rows, list(first_bad, bad_rows), "\n");
    if (max_norm > 0.0) out += cat("  row L2 norm (non-zero finite rows): min ", min_norm, ", max ", max_norm, "\n");
    return out;
}

// Metadata (values shortened to one line), then one line per tensor: name, dtype, shape, numel.
std::string describe_safetensors(const std::string& path) {
    StFile f = safetensors_read(path);
    std::string out = cat(path, ": safetensors, ", f.entries.size(), " tensors, data section ",
                          f.data.size(), " bytes\n");
    for (const auto& kv : f.metadata) {
        std::string v = kv.second;
        for (char& c : v) if (c == '\n' || c == '\t') c = ' ';
        if (v.size() > 80) v = v.substr(0, 77) + "...";
        out += cat("  metadata ", kv.first, " = ", v, "\n");
    }
    size_t total = 0;
    for (const StEntry& e : f.entries) {
        size_t numel = (e.end - e.begin) / dtype_size(e.dtype);
        total += numel;
        out += cat("  ", e.name, "  ", e.dtype, "  ", shape_str(e.shape), "  ", numel, "\n");
    }
    out += cat("  total elements ", total, "\n");
    return out;
}

}  // namespace

std::string describe_file(const std::string& path) {
    std::string bytes = read_file(path);
    if (bytes.size() >= 6 && bytes.compare(0, 6, "\x93NUMPY") == 0) return describe_npy(path, bytes);
    // safetensors has no magic: its first 8 bytes are a length and the header starts with '{'.
    if (bytes.size() >= 9 && bytes[8] == '{') {
        bytes = std::string();
        return describe_safetensors(path);
    }
    HAFVT_FAIL_INPUT(path, ": unknown format: expected a .npy file (magic \\x93NUMPY) or a safetensors "
                     "file (8-byte length, then '{'), found ", bytes.size(), " bytes not starting like either");
}

}  // namespace hafvt
