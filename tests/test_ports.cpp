// test_ports.cpp: the files this program writes do not depend on the host. An .npy of floats, an
// .npy of int32 and a checkpoint (parameters, Adam moments, metadata) written here must be, byte
// for byte, the ones in tests/ref/ports, which the x86-64 build wrote; read back, those give the
// values. Under qemu-s390x (make test-cross ARCH=s390x) this is the big-endian check: .npy and
// safetensors are little-endian by definition (src/core/endian.h). The values are exact in
// float32 and computed without libm, so every host produces the same bits.
// HAFVT_UPDATE_PORT_REFS=1 rewrites the reference files (on x86-64 only).
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/endian.h"
#include "core/tensor.h"
#include "formats/checkpoint.h"
#include "formats/npy.h"
#include "test_util.h"

using namespace hafvt;

namespace {

const std::string kRefs = "tests/ref/ports";

std::vector<float> float_values() {  // normal, tiny, subnormal, huge, signed zero, infinity
    return {1.5f, -2.25e-3f, 3.4e38f, 1e-41f, -0.0f, 0.1f, 65504.0f, -INFINITY};
}
std::vector<int32_t> int_values() { return {1, -2, 0x01020304, INT_MIN, INT_MAX, 0}; }

// A small table of parameters and its Adam moments, filled by exact arithmetic.
void tables(TensorTable& p, TensorTable& m, TensorTable& v) {
    p.add("E_id", {3, 4});
    p.add("enc.xy.id.pos", {2, 4});
    p.add("head.xy.id.log_scale", {1});
    p.allocate();
    m = p.like();
    v = p.like();
    size_t k = 0;  // over the tensors' elements (the table pads between tensors)
    for (size_t t = 0; t < p.entries().size(); t++)
        for (size_t j = 0; j < p.at(t).numel(); j++, k++) {
            p.at(t).data[j] = (float)k * 0.375f - 1.0f;
            m.at(t).data[j] = (float)k / 1024.0f;
            v.at(t).data[j] = (float)(k * k) * 0x1p-20f;
        }
}

// Every tensor of a and b holds the same bits.
bool same_tensors(const TensorTable& a, const TensorTable& b) {
    for (size_t t = 0; t < a.entries().size(); t++)
        if (std::memcmp(a.at(t).data, b.at(t).data, a.at(t).numel() * sizeof(float)) != 0) return false;
    return true;
}

bool update_refs() {
    const char* e = std::getenv("HAFVT_UPDATE_PORT_REFS");
    return e && std::strcmp(e, "1") == 0;
}

}  // namespace

TEST_CASE("ports: an .npy and a checkpoint written here are byte for byte those written on x86-64") {
    MESSAGE("this host is ", std::string(kBigEndianHost ? "big" : "little"), "-endian");
    const std::string dir = update_refs() ? kRefs : testutil::temp_dir("ports");
    const std::vector<float> f = float_values();
    const std::vector<int32_t> n = int_values();
    npy_write_f32(dir + "/floats.npy", f.data(), {2, 4});
    npy_write_i32(dir + "/ints.npy", n.data(), {6});
    TensorTable p, m, v;
    tables(p, m, v);
    TrainState st;
    st.epoch = 2, st.step = 17, st.best_metric = 12.5, st.best_epoch = 1, st.seed = 99;
    save_checkpoint(dir + "/checkpoint.safetensors", p, &m, &v, "{\"q\":4}", st);
    if (update_refs()) {
        MESSAGE("rewrote the files of ", kRefs);
        return;
    }
    for (const char* name : {"floats.npy", "ints.npy", "checkpoint.safetensors"}) {
        CAPTURE(name);
        CHECK(read_file(dir + "/" + name) == read_file(kRefs + "/" + name));
    }

    // read back on this host, the reference files give the values
    std::vector<size_t> shape;
    const std::vector<float> f2 = npy_read_f32(kRefs + "/floats.npy", &shape);
    CHECK(shape == std::vector<size_t>{2, 4});
    REQUIRE(f2.size() == f.size());
    CHECK(std::memcmp(f2.data(), f.data(), f.size() * sizeof(float)) == 0);
    CHECK(npy_read_i32(kRefs + "/ints.npy", &shape) == n);
    TensorTable p2, m2, v2;
    tables(p2, m2, v2);
    p2.zero(), m2.zero(), v2.zero();
    load_checkpoint(kRefs + "/checkpoint.safetensors", p2, &m2, &v2);
    CHECK(same_tensors(p2, p));
    CHECK(same_tensors(m2, m));
    CHECK(same_tensors(v2, v));
    std::string config;
    TrainState st2;
    read_checkpoint_meta(kRefs + "/checkpoint.safetensors", &config, &st2);
    CHECK(config == "{\"q\":4}");
    CHECK(st2.step == 17);
    CHECK(st2.best_metric == 12.5);
}
