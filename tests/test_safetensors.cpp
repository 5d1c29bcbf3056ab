// test_safetensors.cpp: safetensors writer/reader round trip, the layout Python expects, every
// refusal of the reader, and describe_file.
#include "formats/safetensors.h"

#include "core/common.h"
#include "core/endian.h"
#include "core/json.h"
#include "formats/npy.h"
#include "test_util.h"

#include <cstring>
#include <functional>

using namespace hafvt;
using testutil::expect_input_error;

namespace {

void put_file(const std::string& path, const std::string& bytes) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f);
    REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
    std::fclose(f);
}

// A file from a header text (length prefix added) and a data section.
std::string st_bytes(const std::string& header, const std::string& data, uint64_t claimed_len = UINT64_MAX) {
    uint64_t n = claimed_len == UINT64_MAX ? header.size() : claimed_len;
    std::string b(8, '\0');
    for (int i = 0; i < 8; i++) b[(size_t)i] = (char)(n >> (8 * i));
    return b + header + data;
}

}  // namespace

TEST_CASE("safetensors: round trip with metadata, in order, Python's layout") {
    std::string dir = testutil::temp_dir("st");
    std::string p = dir + "/ck.safetensors";
    std::vector<float> w = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
    std::vector<int32_t> ids = {3, -1, 2147483647, 0};
    float scalar = 42.0f;
    std::map<std::string, std::string> meta = {{"step", "1200"}, {"config", "{\"lr\": 0.001, \"name\": \"a\\nb\"}"}};
    safetensors_write(p, {{"zeta.weight", {2, 3}, w.data(), "F32"},
                          {"alpha.ids", {4}, ids.data(), "I32"},
                          {"empty", {0, 5}, nullptr, "F32"},
                          {"scalar", {}, &scalar, "F32"}},
                      meta);

    // Layout: header length multiple of 8, __metadata__ first, tensors in the given order,
    // contiguous data_offsets starting at 0 (what Python's safetensors requires).
    std::string bytes = read_file(p);
    uint64_t n = 0;
    copy_le(&n, bytes.data(), 1, 8);  // the file's little-endian length
    CHECK(n % 8 == 0);
    Json h = Json::parse(bytes.substr(8, n), "header");
    REQUIRE(h.items().size() == 5);
    CHECK(h.items()[0].first == "__metadata__");
    CHECK(h.items()[1].first == "zeta.weight");
    CHECK(h.items()[2].first == "alpha.ids");
    CHECK(h["zeta.weight"]->dump() == R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})");
    CHECK(h["alpha.ids"]->dump() == R"({"dtype":"I32","shape":[4],"data_offsets":[24,40]})");
    CHECK(h["scalar"]->dump() == R"({"dtype":"F32","shape":[],"data_offsets":[40,44]})");
    CHECK(bytes.size() == 8 + n + 44);

    StFile f = safetensors_read(p);
    CHECK(f.metadata == meta);
    REQUIRE(f.entries.size() == 4);
    CHECK(f.entries[0].name == "zeta.weight");
    CHECK(f.entries[0].shape == std::vector<size_t>{2, 3});
    CHECK(f.read_f32("zeta.weight") == w);
    std::vector<int64_t> ids64 = f.read_int("alpha.ids");
    CHECK(ids64 == std::vector<int64_t>{3, -1, 2147483647, 0});
    CHECK(f.read_f32("empty").empty());
    CHECK(f.read_f32("scalar") == std::vector<float>{42.0f});
    CHECK(f.has("empty"));
    CHECK(!f.has("nope"));
    expect_input_error([&] { f.entry("nope"); }, {p, "no tensor named 'nope'"});
    expect_input_error([&] { f.read_f32("alpha.ids"); }, {p, "'alpha.ids'", "expected dtype F32 or F16, found I32"});
    expect_input_error([&] { f.read_int("zeta.weight"); }, {p, "expected dtype I32 or I64, found F32"});

    // No metadata: no __metadata__ entry at all.
    safetensors_write(p, {{"x", {1}, &scalar, "F32"}}, {});
    CHECK(safetensors_read(p).metadata.empty());
    CHECK(read_file(p).find("__metadata__") == std::string::npos);
}

TEST_CASE("safetensors: F16 and I64 written by hand") {
    std::string dir = testutil::temp_dir("st_dtypes");
    std::string p = dir + "/h.safetensors";
    uint16_t halves[3] = {0x3c00, 0xc000, 0x0001};  // 1, -2, 2^-24
    int64_t longs[2] = {-5, (int64_t)1 << 40};
    std::string data = le_bytes(halves, 3, 2);  // the file's bytes are little-endian
    data += std::string(2, '\0');  // a gap between tensors is allowed
    data += le_bytes(longs, 2, 8);
    put_file(p, st_bytes(R"({"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},)"
                         R"("l":{"dtype":"I64","shape":[1,2],"data_offsets":[8,24]}})", data));
    StFile f = safetensors_read(p);
    CHECK(f.read_f32("h") == std::vector<float>{1.0f, -2.0f, 5.9604644775390625e-08f});
    CHECK(f.read_int("l") == std::vector<int64_t>{-5, (int64_t)1 << 40});
}

TEST_CASE("safetensors: refusals name the file, the tensor and the byte") {
    std::string dir = testutil::temp_dir("st_bad");
    std::string p = dir + "/bad.safetensors";
    auto read_p = [&] { safetensors_read(p); };
    std::string data(48, '\0');
    auto with = [&](const std::string& header, const std::string& d) { put_file(p, st_bytes(header, d)); };

    put_file(p, "abc");
    expect_input_error(read_p, {p, "expected at least 8 bytes", "found 3"});

    put_file(p, st_bytes("{}", "", 200u * 1000u * 1000u));
    expect_input_error(read_p, {p, "header length at byte 0 says 200000000 bytes", "at most 100000000"});

    put_file(p, st_bytes("{}", "", 1000));
    expect_input_error(read_p, {p, "header length at byte 0 says 1000 bytes", "only 2 bytes follow byte 8"});

    // A checkpoint cut short: the last tensor's end lies beyond the data section.
    with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[8],"data_offsets":[16,48]}})",
         data.substr(0, 40));
    expect_input_error(read_p, {p, "tensor 'b'", "data_offsets [16, 48]", "<= 40"});

    with("[1,2]", "");
    expect_input_error(read_p, {p, "must be a JSON object, found array"});

    with(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},})", data);
    expect_input_error(read_p, {p, "safetensors header", "invalid JSON at byte 63: expected a string key"});

    with(R"({"__metadata__":{"epoch":3}})", "");
    expect_input_error(read_p, {p, "__metadata__ value of 'epoch' must be a string, found number"});

    with(R"({"__metadata__":[]})", "");
    expect_input_error(read_p, {p, "__metadata__ must be an object"});

    with(R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "unsupported dtype 'BF16'", "expected F32, F16, I32 or I64"});

    with(R"({"w":{"dtype":"F32","shape":[3,4],"data_offsets":[0,40]}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "shape [3, 4] needs 48 bytes", "[0, 40] hold 40"});

    with(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"v":{"dtype":"I32","shape":[3],"data_offsets":[12,24]}})", data);
    expect_input_error(read_p, {p, "tensors 'w' (bytes 0-16) and 'v' (bytes 12-24) overlap"});

    with(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[40,56]}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "data_offsets [40, 56]", "<= 48"});

    with(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "begin <= end"});

    with(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "shape must hold non-negative integers, found -1"});

    with(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "data_offsets must hold non-negative integers, found 4.5"});

    with(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "overflows 64 bits"});

    with(R"({"w":{"dtype":"F32","shape":[1]}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "expected data_offsets [begin, end], found nothing"});

    with(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "unexpected field 'extra'"});

    with(R"({"w":7})", data);
    expect_input_error(read_p, {p, "tensor 'w'", "found number"});
}

TEST_CASE("describe_file: npy and safetensors by magic, not extension") {
    std::string dir = testutil::temp_dir("st_describe");
    // Rows: a normal row, an all-zero row, a NaN row, another normal row.
    std::vector<float> x = {3, 4, 0, 0, 0, 0, 1, NAN, 0, 0, 0, 2};
    std::string np = dir + "/features.bin";
    npy_write_f32(np, x.data(), {4, 3});
    std::string d = describe_file(np);
    INFO(d);
    CHECK(d.find("numpy .npy version 1.0, dtype '<f4', C order, shape (4, 3), payload 48 bytes from byte 128") != std::string::npos);
    CHECK(d.find("all-zero rows 1 (rows 1)") != std::string::npos);
    CHECK(d.find("rows with NaN/Inf 1 (rows 2)") != std::string::npos);
    CHECK(d.find("min 2, max 5") != std::string::npos);

    std::string st = dir + "/weights.npy";  // misleading extension on purpose
    std::vector<int32_t> ids = {1, 2, 3};
    safetensors_write(st, {{"w", {2, 3}, x.data(), "F32"}, {"ids", {3}, ids.data(), "I32"}},
                      {{"config", std::string(200, 'c')}});
    std::string s = describe_file(st);
    INFO(s);
    CHECK(s.find("safetensors, 2 tensors") != std::string::npos);
    CHECK(s.find("metadata config = " + std::string(77, 'c') + "...\n") != std::string::npos);
    CHECK(s.find("  w  F32  [2, 3]  6\n") != std::string::npos);
    CHECK(s.find("  ids  I32  [3]  3\n") != std::string::npos);
    CHECK(s.find("total elements 9") != std::string::npos);

    put_file(dir + "/junk", "hello");
    expect_input_error([&] { describe_file(dir + "/junk"); }, {"junk", "unknown format"});
}

TEST_CASE("safetensors: random corruptions give an InputError or a valid file, never a crash") {
    std::string dir = testutil::temp_dir("st_fuzz");
    std::string p = dir + "/m.safetensors";
    std::vector<float> w(12, 0.5f);
    std::vector<int32_t> ids = {1, 2, 3};
    safetensors_write(p, {{"w", {3, 4}, w.data(), "F32"}, {"ids", {3}, ids.data(), "I32"}}, {{"k", "v"}});
    const std::string good = read_file(p);
    size_t refused = 0;
    for (uint64_t t = 0; t < 3000; t++) {
        std::string b = good;
        uint64_t k = rng_below(9, 0, t * 8, 3) + 1;
        for (uint64_t i = 0; i < k; i++) {
            size_t at = (size_t)rng_below(9, 1, t * 8 + i, good.size() - 60);  // mostly the header
            b[at] = (char)rng_below(9, 2, t * 8 + i, 256);
        }
        if (rng_below(9, 3, t, 8) == 0) b.resize((size_t)rng_below(9, 4, t, b.size()));
        std::remove(p.c_str());  // a fresh file: truncating in place is slow on some file systems
        put_file(p, b);
        try {
            StFile f = safetensors_read(p);
            for (const StEntry& e : f.entries) {
                if (e.dtype[0] == 'F') f.read_f32(e.name);
                else f.read_int(e.name);
            }
        } catch (const InputError& e) {
            REQUIRE(std::string(e.what()).find(p) != std::string::npos);
            refused++;
        }
    }
    CHECK(refused > 1000);
}
