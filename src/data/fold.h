// fold.h: `hafvt fold-valid`, more training data from the validation split, labelled as such.
//
// A seeded fraction of the validation lines moves into training, whole: every position of a moved
// line, its last item included, becomes a training target. The other validation lines stay the
// validation split; the test split and the item lists are copied unchanged. The new folder says
// what was done in fold.json (source, fraction, seed, counts), so that results trained on it are
// never mistaken for results on the original training split.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hafvt {

// The choice of lines: of n validation lines, round(fraction * n) (at least 1, at most n - 1)
// chosen by a seeded shuffle (rng stream RNG_FOLD). moved[i] says whether line i moves.
std::vector<bool> fold_choice(size_t n, double fraction, uint64_t seed);

int fold_valid_main(int argc, char** argv);

}  // namespace hafvt
