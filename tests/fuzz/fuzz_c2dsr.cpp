// fuzz_c2dsr.cpp: libFuzzer target for the C2DSR sequence-file parser (parse_sequences, which
// read_sequences calls on the file's text) and for the batch builders fed with what it accepts.
// The first byte picks train/eval and T; the rest is the file's text, read against a fixed
// catalog of 6 X and 9 Y items. Only InputError may leave the parser; anything else crashes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/common.h"
#include "data/dataset.h"

using namespace hafvt;

static ItemCatalog make_catalog() {
    ItemCatalog cat;
    cat.NX = 6;
    cat.NY = 9;
    for (size_t i = 0; i < cat.NX + cat.NY; i++) {
        cat.asin.push_back("A" + std::to_string(i));
        cat.by_asin[cat.asin.back()] = (int32_t)i;
    }
    return cat;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const ItemCatalog cat = make_catalog();
    if (size < 1) return 0;
    const bool train = data[0] & 1;
    const size_t T = 1 + (data[0] >> 1) % 20;
    const std::string text((const char*)data + 1, size - 1);
    SequenceSet set;
    try {
        set = parse_sequences(text, "fuzz.txt", cat, T, train);
    } catch (const InputError&) {
        return 0;
    }
    // What the parser accepts must satisfy every invariant the batch builders check.
    const int32_t pad = cat.pad();
    for (const auto& s : set.seqs) {
        if (s.size() < 2 || s.size() > T + 1) __builtin_trap();
        for (int32_t id : s)
            if (id < 0 || id >= pad) __builtin_trap();
    }
    const size_t n = set.seqs.size(), B = n < 8 ? n : 8;
    Batch b;
    if (train) {
        std::vector<size_t> idx = shuffled_order(n, 7, 1);
        make_train_batch(b, set, idx.data(), B, cat, T, (int)(data[0] % 3));
    } else {
        make_eval_batch(b, set.seqs, 0, B, true, cat, T);
        make_eval_batch(b, set.seqs, 0, B, false, cat, T);
    }
    return 0;
}
