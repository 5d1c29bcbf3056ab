// frozen_features.h: the frozen feature tables (SPEC §1.4): CLIP image and text vectors per item.
// (Not named features.h: under -Isrc that name would shadow glibc's <features.h>.)
#pragma once
#include <string>

#include "data/dataset.h"
#include "core/tensor.h"

namespace hafvt {

struct FeatureInfo {
    std::string path;
    size_t rows = 0, e = 0;
    size_t zero_rows = 0;  // all-zero rows: "missing feature", cosine 0
};

// Loads `npy_path` ([NX+NY, e], <f4 or <f2, C order; row i = merged id i) into `table` as
// [NX+NY+1, e] float32 with every row L2-normalized and the PAD row zero. With `ids_path`, the
// file's ASINs (one per line) must equal the catalog's (Alist then Blist). Rows with NaN or Inf
// are refused, naming the first. Every refusal is an InputError naming the file.
FeatureInfo load_features(Buffer& table, const std::string& npy_path, const std::string& ids_path,
                          const ItemCatalog& cat);

}  // namespace hafvt
