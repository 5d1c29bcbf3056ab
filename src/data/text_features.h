// text_features.h: `hafvt text-features`, item text features from product titles, computed without
// any neural model. It is a deterministic stand-in for CLIP text features (SPEC §1.4) for datasets
// that have titles but no CLIP embeddings (tools/clip_features.py is the real path).
//
// Method, for every item with a title:
//   1. lowercase (ASCII), split on every ASCII byte that is not a letter or digit (bytes >= 0x80,
//      i.e. UTF-8 letters, stay inside words);
//   2. features: word unigrams, word bigrams and character 3-grams of each word wrapped as "<word>",
//      each hashed with 64-bit FNV-1a (a kind byte first, so the three kinds do not collide by
//      construction) into 2^20 buckets;
//   3. weights: sublinear TF (1 + ln tf) x smooth IDF (ln((1 + N) / (1 + df)) + 1), N = items with
//      a title, df = items whose title has the bucket;
//   4. a fixed random projection to `dim` columns: entry (bucket, c) = +-1/sqrt(dim), its sign a bit
//      of rng_u64(seed, bucket, c / 64) (Achlioptas' +-1 projection, drawn on the fly, so no
//      2^20 x dim matrix is stored);
//   5. L2-normalize the row.
// Items without a title (or whose title has no letter or digit) get an all-zero row: "missing".
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace hafvt {

constexpr int kTextHashBits = 20;  // 2^20 hash buckets

// Titles of the catalog's items by merged id; "" = no title.
struct TitleSet {
    std::vector<std::string> title;  // (NX+NY)
    std::vector<std::string> origin; // (NX+NY) "file:line" of each title, "" = none
    size_t rows = 0;                 // rows read over all files
};

// Reads title files (`local_id \t merged_id \t asin \t title`, header line first, see
// ../shared/data/llmcdsr-titles/README.md) into `set`, checking every row against the catalog:
// the merged id must exist, the ASIN must be the catalog's for that id, the local id must match
// the merged id, and an item may have one title only. InputError naming file and line otherwise.
void read_titles(TitleSet& set, const std::string& path, const ItemCatalog& cat);

// The lowercase words of a title (step 1 above).
std::vector<std::string> title_words(const std::string& title);

// Features of all titles: (titles.size(), dim) row-major float32, zero rows for "" titles
// and for titles without words. Deterministic for any thread count.
std::vector<float> text_features(const std::vector<std::string>& titles, size_t dim, uint64_t seed);

// argv[0..argc) = the arguments after `text-features`. Returns 0, or throws InputError.
int text_features_main(int argc, char** argv);

}  // namespace hafvt
