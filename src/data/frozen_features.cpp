// frozen_features.cpp: loading, checking and normalizing the frozen feature tables.
#include "data/frozen_features.h"

#include <cmath>
#include <cstring>

#include "core/common.h"
#include "core/lines.h"
#include "formats/npy.h"

namespace hafvt {

// The alignment file must list the catalog's ASINs in merged-id order.
static void check_alignment(const std::string& ids_path, const ItemCatalog& cat) {
    std::string text = read_file(ids_path);
    size_t row = 0;
    LineReader lr(text, ids_path, false);
    for (Span s; lr.next(s);) {
        const std::string line = s.str();
        if (line.empty()) continue;  // blank lines are skipped, as in the sequence files
        HAFVT_INPUT(row < cat.num_items(), ids_path, ": line ", lr.line_no, ": expected ", cat.num_items(),
                    " ASINs (Alist then Blist), found more");
        HAFVT_INPUT(line == cat.asin[row], ids_path, ": line ", lr.line_no, " (row ", row,
                    "): expected ASIN '", cat.asin[row], "' (", row < cat.NX ? "Alist" : "Blist",
                    "), found '", line.substr(0, 60), "'");
        row++;
    }
    HAFVT_INPUT(row == cat.num_items(), ids_path, ": expected ", cat.num_items(), " ASINs, found ", row);
}

FeatureInfo load_features(Buffer& table, const std::string& npy_path, const std::string& ids_path,
                          const ItemCatalog& cat) {
    FeatureInfo info;
    info.path = npy_path;
    std::vector<size_t> shape;
    std::vector<float> raw = npy_read_f32(npy_path, &shape);
    const size_t NI = cat.num_items();
    HAFVT_INPUT(shape.size() == 2, npy_path, ": expected a 2-D array [", NI, ", e], found ",
                shape.size(), "-D");
    HAFVT_INPUT(shape[0] == NI, npy_path, ": expected ", NI, " rows (NX ", cat.NX, " + NY ", cat.NY,
                ", row i = merged id i), found ", shape[0]);
    HAFVT_INPUT(shape[1] >= 1, npy_path, ": expected at least one column, found 0");
    if (!ids_path.empty()) check_alignment(ids_path, cat);
    const size_t e = shape[1];
    info.rows = NI;
    info.e = e;
    table.resize((NI + 1) * e);
    table.zero();
    for (size_t i = 0; i < NI; i++) {
        const float* x = raw.data() + i * e;
        double s = 0.0;
        for (size_t c = 0; c < e; c++) {
            HAFVT_INPUT(std::isfinite(x[c]), npy_path, ": row ", i, " (", cat.asin[i], ") column ", c,
                        ": expected a finite value, found ", x[c]);
            s += (double)x[c] * x[c];
        }
        if (s == 0.0) {
            info.zero_rows++;  // missing feature: the row stays zero and its cosine is 0
            continue;
        }
        float* o = table.data() + i * e;
        const float inv = (float)(1.0 / std::sqrt(s));
        if (std::isfinite(inv)) {
            for (size_t c = 0; c < e; c++) o[c] = x[c] * inv;
        } else {  // a row of tiny values (1e-41): the inverse norm overflows a float; divide in double
            const double norm = std::sqrt(s);
            for (size_t c = 0; c < e; c++) o[c] = (float)((double)x[c] / norm);
        }
    }
    return info;
}

}  // namespace hafvt
