// fuzz_safetensors.cpp: libFuzzer target for the safetensors reader (safetensors.cpp + json.cpp),
// the code behind `hafvt eval --ckpt`, `--resume` and `hafvt info`. Every input must either parse
// or raise InputError; anything else crashes the run.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/json.h"
#include "formats/safetensors.h"

using namespace hafvt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    StFile f;
    try {
        f = safetensors_parse(std::string((const char*)data, size), "fuzz.safetensors");
    } catch (const InputError&) {
        return 0;
    }
    // A parsed file promises in-range, non-overlapping slices: read every tensor both ways.
    for (const StEntry& e : f.entries) {
        if (e.begin > e.end || e.end > f.data.size()) __builtin_trap();
        try {
            std::vector<float> x = f.read_f32(e.name);
            if (x.size() * (e.dtype == "F16" ? 2 : 4) != e.end - e.begin) __builtin_trap();
        } catch (const InputError&) {
        }
        try {
            std::vector<int64_t> x = f.read_int(e.name);
            if (x.size() * (e.dtype == "I64" ? 8 : 4) != e.end - e.begin) __builtin_trap();
        } catch (const InputError&) {
        }
    }
    // Checkpoints keep their config as JSON text in __metadata__: parse it and print it back.
    for (const auto& kv : f.metadata) {
        try {
            Json j = Json::parse(kv.second, "fuzz metadata");
            Json again = Json::parse(j.dump(), "fuzz metadata dump");
            if (again.dump() != j.dump()) __builtin_trap();
        } catch (const InputError&) {
        }
    }
    return 0;
}
