// test_npy.cpp: the .npy reader against files numpy wrote (tests/ref/npy, made by
// tools/make_npy_fixtures.py), our writer against our reader, and every refusal.
#include "formats/npy.h"

#include "core/common.h"
#include "core/endian.h"
#include "test_util.h"

#include <cmath>
#include <cstring>
#include <functional>

using namespace hafvt;
using testutil::expect_input_error;

namespace {

const std::string k_ref = "tests/ref/npy/";

void put_file(const std::string& path, const std::string& bytes) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f);
    REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
    std::fclose(f);
}

// A well-formed 5x3 float32 file written by numpy, as bytes to mutate.
std::string f32_bytes() { return read_file(k_ref + "f32_5x3.npy"); }

}  // namespace

TEST_CASE("npy: float32 written by numpy, versions 1.0, 2.0 and 3.0") {
    for (const char* name : {"f32_5x3.npy", "f32_v2.npy", "f32_v3.npy"}) {
        INFO(name);
        std::vector<size_t> shape;
        std::vector<float> got = npy_read_f32(k_ref + name, &shape);
        REQUIRE(shape == std::vector<size_t>{5, 3});
        REQUIRE(got.size() == 15);
        for (size_t i = 0; i < 15; i++) CHECK(got[i] == (float)i / 7.0f);  // numpy: arange/float32(7)
    }
    NpyHeader h2 = npy_parse_header(read_file(k_ref + "f32_v2.npy"), "v2");
    CHECK(h2.major == 2);
    CHECK(h2.data_offset % 64 == 0);
    NpyHeader h3 = npy_parse_header(read_file(k_ref + "f32_v3.npy"), "v3");
    CHECK(h3.major == 3);
}

TEST_CASE("npy: float16 written by numpy converts exactly, subnormals included") {
    std::vector<size_t> shape;
    std::vector<float> got = npy_read_f32(k_ref + "f16_4x3.npy", &shape);
    REQUIRE(shape == std::vector<size_t>{4, 3});
    const float want[12] = {0.5f, -1.25f, 5.9604644775390625e-08f,
                            6.097555160522461e-05f, -0.0f, 65504.0f,
                            0.0999755859375f, -3.0f, 1.0009765625f,
                            6.103515625e-05f, 7.0f, -0.333251953125f};
    for (size_t i = 0; i < 12; i++) {
        INFO("element " << i);
        CHECK(got[i] == want[i]);
    }
    CHECK(std::signbit(got[4]));
}

TEST_CASE("npy: half_to_float special values") {
    CHECK(half_to_float(0x3c00) == 1.0f);
    CHECK(half_to_float(0xc000) == -2.0f);
    CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));
    CHECK(half_to_float(0x03ff) == 1023.0f * std::ldexp(1.0f, -24));
    CHECK(std::isinf(half_to_float(0x7c00)));
    CHECK(half_to_float(0xfc00) < 0);
    CHECK(std::isnan(half_to_float(0x7e00)));
    // Every finite half survives half -> float -> half by rounding through double: spot check
    // that the conversion is monotone over all positive finite halves.
    float prev = -1.0f;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float f = half_to_float((uint16_t)h);
        REQUIRE(f > prev);
        prev = f;
    }
}

TEST_CASE("npy: 1-D float32 and integer files written by numpy") {
    std::vector<size_t> shape;
    std::vector<float> f = npy_read_f32(k_ref + "f32_1d.npy", &shape);
    REQUIRE(shape == std::vector<size_t>{7});
    for (size_t i = 0; i < 7; i++) CHECK(f[i] == (float)i * 0.25f);

    std::vector<int32_t> a = npy_read_i32(k_ref + "i32_1d.npy", &shape);
    REQUIRE(shape == std::vector<size_t>{6});
    for (int i = 0; i < 6; i++) CHECK(a[(size_t)i] == i - 2);

    std::vector<int32_t> b = npy_read_i32(k_ref + "i64_2x4.npy", &shape);
    REQUIRE(shape == std::vector<size_t>{2, 4});
    for (int i = 0; i < 8; i++) CHECK(b[(size_t)i] == i * 1000 - 3000);
}

TEST_CASE("npy: our writer, our reader") {
    std::string dir = testutil::temp_dir("npy");
    std::vector<float> x(4 * 33);
    for (size_t i = 0; i < x.size(); i++) x[i] = std::sin((float)i) * 1e3f;
    std::string p = dir + "/x.npy";
    npy_write_f32(p, x.data(), {4, 33});
    std::string bytes = read_file(p);
    NpyHeader h = npy_parse_header(bytes, p);
    CHECK(h.major == 1);
    CHECK(h.data_offset % 64 == 0);
    CHECK(bytes[h.data_offset - 1] == '\n');
    std::vector<size_t> shape;
    std::vector<float> y = npy_read_f32(p, &shape);
    CHECK(shape == std::vector<size_t>{4, 33});
    CHECK(std::memcmp(x.data(), y.data(), x.size() * 4) == 0);

    std::vector<int32_t> ids = {7, -1, 2147483647, -2147483647 - 1, 0};
    npy_write_i32(dir + "/ids.npy", ids.data(), {5});
    CHECK(npy_read_i32(dir + "/ids.npy", &shape) == ids);
    CHECK(shape == std::vector<size_t>{5});

    // An empty (0 x 8) array is legal.
    npy_write_f32(dir + "/empty.npy", nullptr, {0, 8});
    CHECK(npy_read_f32(dir + "/empty.npy", &shape).empty());
    CHECK(shape == std::vector<size_t>{0, 8});
}

TEST_CASE("npy: refusals name the file and say what was expected and found") {
    std::string dir = testutil::temp_dir("npy_bad");
    std::string p = dir + "/bad.npy";
    auto read_p = [&] { npy_read_f32(p, nullptr); };

    put_file(p, "PK\x03\x04 this is a zip file, not an array");
    expect_input_error(read_p, {p, "magic", "\\x93NUMPY", "found 'PK"});

    put_file(p, "");
    expect_input_error(read_p, {p, "magic", "0 bytes"});

    std::string b = f32_bytes();
    b[6] = 4;
    put_file(p, b);
    expect_input_error(read_p, {p, "unsupported .npy version 4.0", "expected 1.0, 2.0 or 3.0"});

    b = f32_bytes();
    put_file(p, b.substr(0, b.size() - 4));
    expect_input_error(read_p, {p, "should be 60 bytes", "found 56 bytes", "truncated"});

    put_file(p, f32_bytes() + "junk");
    expect_input_error(read_p, {p, "should be 60 bytes", "found 64 bytes", "extra data"});

    b = f32_bytes();
    b[8] = '\x60';
    b[9] = '\xea';  // header length 60000
    put_file(p, b);
    expect_input_error(read_p, {p, "header length at byte 8 says 60000 bytes", "only 178 bytes follow"});

    expect_input_error([&] { npy_read_f32(k_ref + "f32_fortran.npy", nullptr); },
                       {"f32_fortran.npy", "Fortran order", "expected C order"});
    expect_input_error([&] { npy_read_f32(k_ref + "f64_2x2.npy", nullptr); },
                       {"f64_2x2.npy", "unsupported dtype '<f8'", "expected '<f4'"});
    expect_input_error([&] { npy_read_f32(k_ref + "f32_bigendian.npy", nullptr); },
                       {"f32_bigendian.npy", "'>f4'", "big-endian"});
    expect_input_error([&] { npy_read_i32(k_ref + "f32_5x3.npy", nullptr); },
                       {"f32_5x3.npy", "'<f4'", "expected '<i4'"});
    expect_input_error([&] { npy_read_f32(dir + "/missing.npy", nullptr); }, {"missing.npy", "cannot open"});
}

TEST_CASE("npy: malformed header dicts give the byte offset") {
    std::string dir = testutil::temp_dir("npy_dict");
    std::string p = dir + "/h.npy";
    // A v1 file around a hand-written header and `payload` bytes.
    auto with_header = [&](std::string dict, size_t payload) {
        dict += '\n';
        std::string b("\x93NUMPY\x01\x00", 8);
        b += (char)(dict.size() & 0xff);
        b += (char)(dict.size() >> 8);
        put_file(p, b + dict + std::string(payload, '\0'));
    };
    auto read_p = [&] { npy_read_f32(p, nullptr); };

    // numpy 1.x spacing with a trailing comma, and a compact form without: both fine.
    with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }  ", 24);
    CHECK(npy_read_f32(p, nullptr).size() == 6);
    with_header("{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,3)}", 24);
    CHECK(npy_read_f32(p, nullptr).size() == 6);

    with_header("{'descr': '<f4', 'fortran_order': False}", 0);
    expect_input_error(read_p, {p, "malformed .npy header", "lacks 'shape'"});
    with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", 24);
    expect_input_error(read_p, {p, "at byte 68", "unexpected key 'extra'"});
    with_header("{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}", 8);
    expect_input_error(read_p, {p, "at byte 44", "expected True or False"});
    with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}", 8);
    expect_input_error(read_p, {p, "expected a non-negative integer", "'-3)}"});
    with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776)}", 8);
    expect_input_error(read_p, {p, "overflows 64 bits"});
    with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1024)}", 8);
    expect_input_error(read_p, {p, "should be 4503599627370496 bytes", "found 8 bytes"});
    with_header("{'descr': '<f4', 'fortran_order': False, 'shape': ()}", 4);
    expect_input_error(read_p, {p, "rank >= 1", "0-d"});
    with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8);
    expect_input_error(read_p, {p, "unexpected text after the header dict"});
    with_header("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8);
    expect_input_error(read_p, {p, "duplicate key 'descr'"});
}

TEST_CASE("npy: int64 out of int32 range is refused with the element") {
    std::string dir = testutil::temp_dir("npy_i64");
    std::string p = dir + "/big.npy";
    std::string dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
    dict.append(128 - 10 - dict.size() - 1, ' ');
    dict += '\n';
    std::string b("\x93NUMPY\x01\x00", 8);
    b += (char)dict.size();
    b += '\0';
    int64_t v[2] = {5, (int64_t)1 << 33};
    put_file(p, b + dict + le_bytes(v, 2, 8));
    expect_input_error([&] { npy_read_i32(p, nullptr); }, {p, "element 1", "8589934592", "int32 range"});
}

TEST_CASE("npy: random corruptions give an InputError or a valid array, never a crash") {
    std::string dir = testutil::temp_dir("npy_fuzz");
    std::string p = dir + "/m.npy";
    const std::string good = f32_bytes();
    size_t refused = 0;
    for (uint64_t t = 0; t < 3000; t++) {
        // Overwrite 1-3 bytes, mostly inside the header, sometimes truncate.
        std::string b = good;
        uint64_t k = rng_below(7, 0, t * 8, 3) + 1;
        for (uint64_t i = 0; i < k; i++) {
            size_t at = (size_t)rng_below(7, 1, t * 8 + i, 140);
            b[at] = (char)rng_below(7, 2, t * 8 + i, 256);
        }
        if (rng_below(7, 3, t, 8) == 0) b.resize((size_t)rng_below(7, 4, t, b.size()));
        std::remove(p.c_str());  // a fresh file: truncating in place is slow on some file systems
        put_file(p, b);
        try {
            std::vector<size_t> shape;
            std::vector<float> x = npy_read_f32(p, &shape);
            size_t n = 1;
            for (size_t d : shape) n *= d;
            REQUIRE(x.size() == n);
        } catch (const InputError& e) {
            REQUIRE(std::string(e.what()).find(p) != std::string::npos);
            refused++;
        }
    }
    CHECK(refused > 1000);
}
