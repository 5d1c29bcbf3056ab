// synth.h: the synthetic dataset generator (`hafvt synth`), SPEC §8.
#pragma once
#include <cstdint>
#include <string>

namespace hafvt {

struct SynthOptions {
    std::string out;              // output folder (created if absent)
    std::string size = "small";   // small | medium | paper
    uint64_t seed = 2040;
};

// Writes, in the C2DSR format: Alist.txt, Blist.txt, traindata_new.txt, validdata_new.txt,
// testdata_new.txt; frozen features img.npy and txt.npy ([NX+NY, E] float32, PAD not included)
// with alignment files img_ids.txt and txt_ids.txt; and synth.json describing the generator's
// settings. Deterministic: a pure function of (size, seed). Every file goes through AtomicFile.
void synth_generate(const SynthOptions& opt);

}  // namespace hafvt
