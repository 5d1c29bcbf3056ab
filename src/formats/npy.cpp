// npy.cpp: numpy's .npy format, read and written by our own code.
//
// Layout of a file (all little-endian):
//   bytes 0-5   magic "\x93NUMPY"
//   bytes 6-7   major, minor version (1.0, 2.0 or 3.0)
//   then        header length: uint16 (v1) or uint32 (v2, v3)
//   then        header: a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False,
//               'shape': (5, 3), } padded with spaces and ending in '\n'
//   then        the raw payload, prod(shape) * itemsize bytes, C order.
// numpy pads the header so the payload starts at a multiple of 64 bytes; we do the same.
#include "formats/npy.h"

#include "core/common.h"
#include "core/endian.h"

#include <cstring>
#include <limits>

namespace hafvt {

// Python's tuple syntax, so messages match what the user sees in numpy.
std::string npy_shape_str(const std::vector<size_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); i++) s += cat(i ? ", " : "", shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

namespace {

const char k_magic[] = "\x93NUMPY";
const size_t k_magic_len = 6;
const size_t k_max_rank = 32;  // numpy's own limit is 64; feature tables are 1-D or 2-D

// Little-endian unsigned integer of 2 or 4 bytes at `off`.
uint32_t read_le(const std::string& b, size_t off, size_t nbytes) {
    uint32_t v = 0;
    for (size_t i = 0; i < nbytes; i++) v |= (uint32_t)(uint8_t)b[off + i] << (8 * i);
    return v;
}

// Printable form of a few bytes for "found ..." messages.
std::string show_bytes(const std::string& b, size_t off, size_t n) {
    std::string out;
    for (size_t i = off; i < off + n && i < b.size(); i++) {
        unsigned char c = (unsigned char)b[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') out += (char)c;
        else out += cat("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
    }
    return "'" + out + "'";
}

// A strict reader of the header dict: string keys, values that are strings, True/False or
// tuples of non-negative integers. Whitespace and a trailing comma are allowed where numpy
// (old and new) writes them. Offsets in messages are absolute file offsets.
struct DictParser {
    const std::string& b;
    size_t pos, end;
    const std::string& path;

    [[noreturn]] void fail(const std::string& what) {
        HAFVT_FAIL_INPUT(path, ": malformed .npy header at byte ", pos, ": ", what);
    }
    void skip_ws() {
        while (pos < end && (b[pos] == ' ' || b[pos] == '\t' || b[pos] == '\n' || b[pos] == '\r')) pos++;
    }
    bool eat(char c) {
        skip_ws();
        if (pos < end && b[pos] == c) { pos++; return true; }
        return false;
    }
    void expect(char c) {
        if (!eat(c)) fail(cat("expected '", c, "', found ", pos < end ? show_bytes(b, pos, 8) : "end of header"));
    }
    std::string str() {
        skip_ws();
        if (pos >= end || (b[pos] != '\'' && b[pos] != '"'))
            fail(cat("expected a quoted string, found ", pos < end ? show_bytes(b, pos, 8) : "end of header"));
        char q = b[pos++];
        size_t start = pos;
        while (pos < end && b[pos] != q) {
            if (b[pos] == '\\') fail("escapes are not supported in header strings");
            pos++;
        }
        if (pos >= end) fail("unterminated string");
        return b.substr(start, pos++ - start);
    }
    bool boolean() {
        skip_ws();
        if (b.compare(pos, 4, "True") == 0 && pos + 4 <= end) { pos += 4; return true; }
        if (b.compare(pos, 5, "False") == 0 && pos + 5 <= end) { pos += 5; return false; }
        fail(cat("expected True or False, found ", show_bytes(b, pos, 8)));
    }
    size_t integer() {
        skip_ws();
        if (pos >= end || b[pos] < '0' || b[pos] > '9')
            fail(cat("expected a non-negative integer, found ", pos < end ? show_bytes(b, pos, 8) : "end of header"));
        size_t v = 0;
        while (pos < end && b[pos] >= '0' && b[pos] <= '9') {
            size_t d = (size_t)(b[pos] - '0');
            if (v > (std::numeric_limits<size_t>::max() - d) / 10) fail("shape dimension overflows 64 bits");
            v = v * 10 + d;
            pos++;
        }
        if (pos < end && b[pos] == 'L') pos++;  // Python 2 longs: (3L, 4L)
        return v;
    }
    std::vector<size_t> tuple() {
        expect('(');
        std::vector<size_t> dims;
        if (eat(')')) return dims;
        for (;;) {
            dims.push_back(integer());
            if (dims.size() > k_max_rank) fail(cat("shape has more than ", k_max_rank, " dimensions"));
            bool comma = eat(',');
            if (eat(')')) break;
            if (!comma) fail(cat("expected ',' or ')' in shape, found ", show_bytes(b, pos, 8)));
        }
        return dims;
    }
};

// Product of dims with an overflow check; `what` names the file for the message.
size_t checked_product(const std::vector<size_t>& dims, size_t elem, const std::string& path) {
    size_t n = elem;
    for (size_t d : dims) {
        if (d != 0 && n > std::numeric_limits<size_t>::max() / d)
            HAFVT_FAIL_INPUT(path, ": shape ", npy_shape_str(dims), " overflows 64 bits");
        n *= d;
    }
    return n;
}

}  // namespace

// Magic, version, header length, then the dict; every check before any allocation.
NpyHeader npy_parse_header(const std::string& bytes, const std::string& path) {
    NpyHeader h;
    HAFVT_INPUT(bytes.size() >= 10 && bytes.compare(0, k_magic_len, k_magic) == 0, path,
                ": not a .npy file: expected the magic \\x93NUMPY at byte 0, found ",
                show_bytes(bytes, 0, k_magic_len), " (", bytes.size(), " bytes in file)");
    h.major = (uint8_t)bytes[6];
    h.minor = (uint8_t)bytes[7];
    HAFVT_INPUT((h.major >= 1 && h.major <= 3) && h.minor == 0, path, ": unsupported .npy version ",
                h.major, ".", h.minor, " at byte 6; expected 1.0, 2.0 or 3.0");
    size_t len_bytes = h.major == 1 ? 2 : 4;
    HAFVT_INPUT(bytes.size() >= 8 + len_bytes, path, ": truncated .npy header at byte 8");
    size_t hlen = read_le(bytes, 8, len_bytes);
    size_t start = 8 + len_bytes;
    HAFVT_INPUT(hlen <= bytes.size() - start, path, ": .npy header length at byte 8 says ", hlen,
                " bytes, but only ", bytes.size() - start, " bytes follow byte ", start);
    h.data_offset = start + hlen;

    // Version 3.0 only allows UTF-8 in the header; our strict parser accepts ASCII only.
    DictParser p{bytes, start, h.data_offset, path};
    bool have_descr = false, have_order = false, have_shape = false;
    p.expect('{');
    while (!p.eat('}')) {
        size_t key_pos = p.pos;
        std::string key = p.str();
        p.expect(':');
        bool* seen = key == "descr" ? &have_descr : key == "fortran_order" ? &have_order
                   : key == "shape" ? &have_shape : nullptr;
        if (!seen) { p.pos = key_pos; p.fail(cat("unexpected key '", key, "'; expected descr, fortran_order, shape")); }
        if (*seen) { p.pos = key_pos; p.fail(cat("duplicate key '", key, "'")); }
        *seen = true;
        if (key == "descr") h.descr = p.str();
        else if (key == "fortran_order") h.fortran_order = p.boolean();
        else h.shape = p.tuple();
        if (!p.eat(',')) { p.expect('}'); break; }
    }
    p.skip_ws();
    if (p.pos != p.end) p.fail(cat("unexpected text after the header dict: ", show_bytes(bytes, p.pos, 8)));
    if (!have_descr || !have_order || !have_shape)
        p.fail(cat("header dict lacks '", !have_descr ? "descr" : !have_order ? "fortran_order" : "shape", "'"));
    checked_product(h.shape, 1, path);
    return h;
}

namespace {

// Reads the file, parses the header and checks order, rank and payload size for `itemsize`.
// Returns the payload's first byte; fills *shape and *numel.
const char* npy_open_payload(const std::string& bytes, const NpyHeader& h, const std::string& path,
                             size_t itemsize, size_t* numel) {
    HAFVT_INPUT(!h.fortran_order, path, ": array is in Fortran order (fortran_order: True); expected C order"
                " (save np.ascontiguousarray(a))");
    HAFVT_INPUT(!h.shape.empty(), path, ": expected an array of rank >= 1, found a 0-d scalar");
    *numel = checked_product(h.shape, 1, path);
    size_t want = checked_product(h.shape, itemsize, path);
    size_t found = bytes.size() - h.data_offset;
    HAFVT_INPUT(found == want, path, ": payload of shape ", npy_shape_str(h.shape), " dtype '", h.descr,
                "' should be ", want, " bytes from byte ", h.data_offset, ", found ", found,
                found < want ? " bytes (file truncated)" : " bytes (extra data after the array)");
    return bytes.data() + h.data_offset;
}

[[noreturn]] void bad_dtype(const std::string& path, const std::string& descr, const char* expected) {
    bool big = !descr.empty() && descr[0] == '>';
    HAFVT_FAIL_INPUT(path, ": unsupported dtype '", descr, "'; expected ", expected,
                     big ? " (big-endian data: save it with a.astype(a.dtype.newbyteorder('<')))" : "");
}

}  // namespace

// binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits -> binary32 (bias 127, 23 bits).
float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);  // inf or NaN (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
    } else if (mant == 0) {
        bits = sign;  // signed zero
    } else {
        // Subnormal half: mant * 2^-24, exact in float as a normal number.
        float v = (float)mant * (1.0f / 16777216.0f);
        std::memcpy(&bits, &v, 4);
        bits |= sign;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

void halves_to_floats(float* out, const char* src, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = half_to_float((uint16_t)((uint8_t)src[2 * i] | ((uint8_t)src[2 * i + 1] << 8)));
}

// The payload size is checked against the file before the output is allocated.
std::vector<float> npy_read_f32(const std::string& path, std::vector<size_t>* shape) {
    return npy_decode_f32(read_file(path), path, shape);
}

std::vector<float> npy_decode_f32(const std::string& bytes, const std::string& path, std::vector<size_t>* shape) {
    NpyHeader h = npy_parse_header(bytes, path);
    bool f4 = h.descr == "<f4", f2 = h.descr == "<f2";
    if (!f4 && !f2) bad_dtype(path, h.descr, "'<f4' (float32) or '<f2' (float16)");
    size_t n = 0;
    const char* src = npy_open_payload(bytes, h, path, f4 ? 4 : 2, &n);
    std::vector<float> out(n);
    if (f4) {
        copy_le(out.data(), src, n, 4);
    } else {
        halves_to_floats(out.data(), src, n);
    }
    if (shape) *shape = h.shape;
    return out;
}

// numpy's default integer is int64, so '<i8' is accepted when every value fits in int32.
std::vector<int32_t> npy_read_i32(const std::string& path, std::vector<size_t>* shape) {
    return npy_decode_i32(read_file(path), path, shape);
}

std::vector<int32_t> npy_decode_i32(const std::string& bytes, const std::string& path, std::vector<size_t>* shape) {
    NpyHeader h = npy_parse_header(bytes, path);
    bool i4 = h.descr == "<i4", i8 = h.descr == "<i8";
    if (!i4 && !i8) bad_dtype(path, h.descr, "'<i4' (int32) or '<i8' (int64, values within int32)");
    size_t n = 0;
    const char* src = npy_open_payload(bytes, h, path, i4 ? 4 : 8, &n);
    std::vector<int32_t> out(n);
    if (i4) {
        copy_le(out.data(), src, n, 4);
    } else {
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            copy_le(&v, src + 8 * i, 1, 8);
            HAFVT_INPUT(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(),
                        path, ": element ", i, " (byte ", h.data_offset + 8 * i, ") is ", v,
                        "; expected a value within int32 range");
            out[i] = (int32_t)v;
        }
    }
    if (shape) *shape = h.shape;
    return out;
}

namespace {

// Version 1.0 header padded with spaces so that the payload starts at a multiple of 64 bytes.
void npy_write(AtomicFile& f, const std::string& path, const char* descr, const void* data, size_t itemsize,
               const std::vector<size_t>& shape) {
    size_t n = 1;
    for (size_t d : shape) {
        HAFVT_CHECK(d == 0 || n <= std::numeric_limits<size_t>::max() / d, "shape overflow writing ", path);
        n *= d;
    }
    HAFVT_CHECK(data || n == 0, "null data writing ", path);
    std::string dict = cat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ", npy_shape_str(shape), ", }");
    size_t total = 10 + dict.size() + 1;  // magic + version + length, dict, '\n'
    size_t padded = (total + 63) / 64 * 64;
    dict.append(padded - total, ' ');
    dict += '\n';
    HAFVT_CHECK(dict.size() <= 65535, "npy header too long writing ", path);
    std::string head(k_magic, k_magic_len);
    head += '\x01';
    head += '\x00';
    head += (char)(dict.size() & 0xff);
    head += (char)(dict.size() >> 8);
    f.write(head);
    f.write(dict);
    if (kBigEndianHost) f.write(le_bytes(data, n, itemsize));
    else f.write(data, n * itemsize);
}

}  // namespace

void npy_write_f32(const std::string& path, const float* data, const std::vector<size_t>& shape) {
    AtomicFile f(path);
    npy_write(f, path, "<f4", data, 4, shape);
    f.commit();
}

void npy_write_f32(AtomicFile& f, const std::string& path, const float* data, const std::vector<size_t>& shape) {
    npy_write(f, path, "<f4", data, 4, shape);
}

void npy_write_i32(const std::string& path, const int32_t* data, const std::vector<size_t>& shape) {
    AtomicFile f(path);
    npy_write(f, path, "<i4", data, 4, shape);
    f.commit();
}

}  // namespace hafvt
