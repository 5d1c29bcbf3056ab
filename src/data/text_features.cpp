// text_features.cpp: hashed TF-IDF title features with an on-the-fly random projection
// (the method is described in text_features.h).
#include "data/text_features.h"

#include "core/parallel.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/common.h"
#include "core/flags.h"
#include "core/lines.h"
#include "formats/npy.h"

namespace hafvt {

namespace {

const char* const kTitleHeader = "local_id\tmerged_id\tasin\ttitle";

// A non-empty string of decimal digits that fits in 63 bits.
bool parse_index(const std::string& s, uint64_t* out) {
    if (s.empty() || s.size() > 18) return false;
    uint64_t x = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        x = x * 10 + (uint64_t)(c - '0');
    }
    *out = x;
    return true;
}

// 64-bit FNV-1a over one kind byte then the bytes of up to two strings (with a separator).
constexpr uint64_t kFnvBasis = 0xCBF29CE484222325ull, kFnvPrime = 0x100000001B3ull;
inline uint64_t fnv_byte(uint64_t h, unsigned char b) { return (h ^ b) * kFnvPrime; }
uint64_t fnv_feature(unsigned char kind, const char* a, size_t na, const char* b = nullptr, size_t nb = 0) {
    uint64_t h = fnv_byte(kFnvBasis, kind);
    for (size_t i = 0; i < na; i++) h = fnv_byte(h, (unsigned char)a[i]);
    if (b) {
        h = fnv_byte(h, ' ');
        for (size_t i = 0; i < nb; i++) h = fnv_byte(h, (unsigned char)b[i]);
    }
    return h;
}
enum FeatureKind : unsigned char { FEAT_WORD = 1, FEAT_BIGRAM = 2, FEAT_CHAR3 = 3 };

// Bucket of every feature of one title (with repeats: the count of a bucket is its tf).
void title_buckets(const std::string& title, std::vector<uint32_t>& out) {
    out.clear();
    const uint64_t mask = (1ull << kTextHashBits) - 1;
    std::vector<std::string> words = title_words(title);
    std::string padded;
    for (size_t w = 0; w < words.size(); w++) {
        const std::string& s = words[w];
        out.push_back((uint32_t)(fnv_feature(FEAT_WORD, s.data(), s.size()) & mask));
        if (w > 0) {
            const std::string& p = words[w - 1];
            out.push_back((uint32_t)(fnv_feature(FEAT_BIGRAM, p.data(), p.size(), s.data(), s.size()) & mask));
        }
        // character 3-grams of "<word>": the markers tell prefixes and suffixes from inner grams
        padded = "<" + s + ">";
        for (size_t i = 0; i + 3 <= padded.size(); i++)
            out.push_back((uint32_t)(fnv_feature(FEAT_CHAR3, padded.data() + i, 3) & mask));
    }
}

}  // namespace

std::vector<std::string> title_words(const std::string& title) {
    std::vector<std::string> words;
    std::string cur;
    for (char ch : title) {
        unsigned char c = (unsigned char)ch;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
        if (alnum) {
            cur += (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
        } else if (!cur.empty()) {
            words.push_back(cur);
            cur.clear();
        }
    }
    if (!cur.empty()) words.push_back(cur);
    return words;
}

void read_titles(TitleSet& set, const std::string& path, const ItemCatalog& cat) {
    const size_t NI = cat.num_items();
    if (set.title.size() != NI) {
        set.title.assign(NI, "");
        set.origin.assign(NI, "");
    }
    std::string text = read_file(path);
    LineReader lr(text, path, false);  // a title keeps its own trailing blanks
    for (Span s; lr.next(s);) {
        const size_t line_no = lr.line_no;
        const std::string line = s.str();
        if (line_no == 1) {
            HAFVT_INPUT(line == kTitleHeader, path, ": line 1: expected the header 'local_id<TAB>merged_id<TAB>asin<TAB>title', found '",
                        line.substr(0, 80), "'");
            continue;
        }
        if (line.empty()) continue;
        // four columns; a title that itself holds tabs keeps them (everything after the third tab)
        size_t t1 = line.find('\t'), t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
        size_t t3 = t2 == std::string::npos ? t2 : line.find('\t', t2 + 1);
        if (t3 == std::string::npos) {
            size_t cols = 1 + (t1 != std::string::npos) + (t2 != std::string::npos);
            HAFVT_FAIL_INPUT(path, ": line ", line_no, ": expected 4 tab-separated columns (local_id, merged_id, asin, title), found ",
                             cols, ": '", line.substr(0, 80), "'");
        }
        std::string local_s = line.substr(0, t1), merged_s = line.substr(t1 + 1, t2 - t1 - 1);
        std::string asin = line.substr(t2 + 1, t3 - t2 - 1);
        uint64_t local = 0, merged = 0;
        HAFVT_INPUT(parse_index(merged_s, &merged), path, ": line ", line_no, ": merged_id: expected a non-negative integer, found '",
                    merged_s.substr(0, 40), "'");
        HAFVT_INPUT(merged < NI, path, ": line ", line_no, ": merged_id: expected 0..", NI - 1, " (", cat.NX, " Alist + ", cat.NY,
                    " Blist items of --data), found ", merged);
        HAFVT_INPUT(asin == cat.asin[merged], path, ": line ", line_no, ": merged_id ", merged, ": expected ASIN '", cat.asin[merged],
                    "' (", merged < cat.NX ? "Alist" : "Blist", " of --data), found '", asin.substr(0, 40), "'");
        const uint64_t want_local = merged < cat.NX ? merged : merged - cat.NX;
        HAFVT_INPUT(parse_index(local_s, &local) && local == want_local, path, ": line ", line_no, ": local_id: expected ",
                    want_local, " for merged_id ", merged, ", found '", local_s.substr(0, 40), "'");
        HAFVT_INPUT(set.origin[merged].empty(), path, ": line ", line_no, ": merged_id ", merged, " (", asin,
                    "): expected one title per item, found a second one (the first is at ", set.origin[merged], ")");
        set.origin[merged] = ::hafvt::cat(path, ":", line_no);
        set.title[merged] = line.substr(t3 + 1);
        set.rows++;
    }
    HAFVT_INPUT(lr.line_no >= 1, path, ": expected the header 'local_id<TAB>merged_id<TAB>asin<TAB>title', found an empty file");
}

std::vector<float> text_features(const std::vector<std::string>& titles, size_t dim, uint64_t seed) {
    HAFVT_CHECK(dim >= 1, "dim = 0");
    const size_t NI = titles.size();
    // sparse term counts of every item, CSR: item i owns entries [offset[i], offset[i+1])
    std::vector<size_t> offset(NI + 1, 0);
    std::vector<uint32_t> bucket;
    std::vector<uint32_t> tf;
    std::vector<uint32_t> df((size_t)1 << kTextHashBits, 0);
    std::vector<uint32_t> scratch;
    size_t N = 0;  // items with at least one feature
    for (size_t i = 0; i < NI; i++) {
        offset[i] = bucket.size();
        if (titles[i].empty()) continue;
        title_buckets(titles[i], scratch);
        if (scratch.empty()) continue;
        N++;
        std::sort(scratch.begin(), scratch.end());
        for (size_t k = 0; k < scratch.size();) {
            size_t e = k;
            while (e < scratch.size() && scratch[e] == scratch[k]) e++;
            bucket.push_back(scratch[k]);
            tf.push_back((uint32_t)(e - k));
            df[scratch[k]]++;
            k = e;
        }
    }
    offset[NI] = bucket.size();

    // project every row: out[c] = sum_b w_b * sign(b, c), then L2-normalize (the 1/sqrt(dim) of the
    // projection cancels in the normalization, so it is left out)
    std::vector<float> out(NI * dim, 0.0f);
    const size_t chunks = (dim + 63) / 64;
    const double log_n1 = std::log(1.0 + (double)N);
    // sign_table[byte] = the 8 signs (+1 for a 0 bit, -1 for a 1 bit) of one byte of a draw
    std::vector<double> sign_table(256 * 8);
    for (int v = 0; v < 256; v++)
        for (int j = 0; j < 8; j++) sign_table[(size_t)v * 8 + j] = ((v >> j) & 1) ? -1.0 : 1.0;
#pragma omp parallel
    {
        std::vector<double> acc(dim);
#pragma omp for schedule(dynamic, 64)
        for (long li = 0; li < (long)NI; li++) {
            const size_t i = (size_t)li;
            if (offset[i] == offset[i + 1]) continue;
            std::fill(acc.begin(), acc.end(), 0.0);
            for (size_t k = offset[i]; k < offset[i + 1]; k++) {
                const uint32_t b = bucket[k];
                const double idf = log_n1 - std::log(1.0 + (double)df[b]) + 1.0;
                const double w = (1.0 + std::log((double)tf[k])) * idf;
                for (size_t ch = 0; ch < chunks; ch++) {
                    uint64_t bits = rng_u64(seed, b, ch);  // 64 signs of row b of the projection
                    const size_t c0 = ch * 64, c1 = std::min(dim, c0 + 64);
                    size_t c = c0;
                    for (; c + 8 <= c1; c += 8, bits >>= 8) {
                        const double* sg = sign_table.data() + (bits & 0xFF) * 8;
                        for (int j = 0; j < 8; j++) acc[c + j] += w * sg[j];
                    }
                    for (; c < c1; c++, bits >>= 1) acc[c] += (bits & 1) ? -w : w;
                }
            }
            double ss = 0.0;
            for (size_t c = 0; c < dim; c++) ss += acc[c] * acc[c];
            if (ss == 0.0) continue;  // cannot happen for w > 0 unless signs cancel exactly
            const double inv = 1.0 / std::sqrt(ss);
            float* o = out.data() + i * dim;
            for (size_t c = 0; c < dim; c++) o[c] = (float)(acc[c] * inv);
        }
    }
    return out;
}

namespace {

const char* kTextSynopsis =
    "--data DIR --titles F.tsv [--titles G.tsv ...] --out txt.npy [--ids-out txt_ids.txt] [--dim 256]\n"
    "                           [--seed 2040]\n"
    "\n"
    "Item text features from product titles, for `hafvt train --txt F.npy --txt-ids F_ids.txt`.\n"
    "A deterministic stand-in for CLIP text features when no CLIP model or embeddings are at hand\n"
    "(tools/clip_features.py computes the real ones). Method: lowercase, split on non-alphanumerics;\n"
    "word unigrams + word bigrams + character 3-grams of \"<word>\", FNV-1a hashed into 2^20 buckets;\n"
    "weight (1 + ln tf) * (ln((1 + N) / (1 + df)) + 1), N = items with a title; a fixed +-1/sqrt(dim)\n"
    "random projection to --dim columns drawn on the fly from (seed, bucket, column); L2-normalize.\n"
    "Items without a title get an all-zero row (\"missing\" for the trainer).";

// Default alignment file next to the features: txt.npy -> txt_ids.txt.
std::string default_ids_path(const std::string& out) {
    std::string base = out;
    if (base.size() > 4 && base.compare(base.size() - 4, 4, ".npy") == 0) base.resize(base.size() - 4);
    return base + "_ids.txt";
}

}  // namespace

int text_features_main(int argc, char** argv) {
    std::string data, out, ids_out;
    std::vector<std::string> titles;
    uint64_t dim = 256, seed = 2040;
    std::vector<Flag> flags = {
        {"data", Kind::STR, &data, "dataset folder with Alist.txt and Blist.txt (required)"},
        {"titles", Kind::STRS, &titles, "title file `local_id<TAB>merged_id<TAB>asin<TAB>title` with a header line; repeat for several files (required at least once)"},
        {"out", Kind::STR, &out, "output .npy, float32 [NX+NY, dim], row i = merged id i (required)"},
        {"ids-out", Kind::STR, &ids_out, "alignment file, one ASIN per row (default: --out with .npy -> _ids.txt)"},
        {"dim", Kind::U64, &dim, "output width (default 256)"},
        {"seed", Kind::U64, &seed, "seed of the projection (default 2040)"},
    };
    if (!parse_flags("text-features", kTextSynopsis, argc, argv, flags, nullptr)) return 0;
    HAFVT_INPUT(!data.empty(), "hafvt text-features: --data DIR is required");
    HAFVT_INPUT(!titles.empty(), "hafvt text-features: at least one --titles F.tsv is required");
    HAFVT_INPUT(!out.empty(), "hafvt text-features: --out F.npy is required");
    HAFVT_INPUT(dim >= 1 && dim <= 65536, "hafvt text-features: --dim: expected 1..65536, found ", dim);
    if (ids_out.empty()) ids_out = default_ids_path(out);

    Timer timer;
    ItemCatalog cat = read_catalog(data);
    TitleSet set;
    for (const std::string& f : titles) read_titles(set, f, cat);
    std::vector<float> feats = text_features(set.title, (size_t)dim, seed);

    // coverage: rows that came out non-zero, per domain
    size_t have[2] = {0, 0}, wordless = 0;
    for (size_t i = 0; i < cat.num_items(); i++) {
        const float* r = feats.data() + i * dim;
        bool nz = std::any_of(r, r + dim, [](float v) { return v != 0.0f; });
        if (nz) have[i < cat.NX ? 0 : 1]++;
        else if (!set.title[i].empty()) wordless++;
    }
    // both outputs or neither: both temporaries are opened (an unwritable path fails here, before
    // anything is written), filled, then renamed together
    AtomicFile npy_file(out), ids_file(ids_out);
    npy_write_f32(npy_file, out, feats.data(), {cat.num_items(), (size_t)dim});
    std::string ids;
    ids.reserve(cat.num_items() * 11);
    for (const std::string& a : cat.asin) ids += a + "\n";
    ids_file.write(ids);
    commit_together({&npy_file, &ids_file});

    std::printf("read %zu titles from %zu file(s)\n", set.rows, titles.size());
    if (wordless) std::printf("%zu titles have no letter or digit: zero rows\n", wordless);
    std::printf("coverage X (Alist): %zu/%zu items have a title (%.1f%%)\n", have[0], cat.NX,
                cat.NX ? 100.0 * (double)have[0] / (double)cat.NX : 0.0);
    std::printf("coverage Y (Blist): %zu/%zu items have a title (%.1f%%)\n", have[1], cat.NY,
                cat.NY ? 100.0 * (double)have[1] / (double)cat.NY : 0.0);
    std::printf("wrote %s [%zu, %zu] float32 and %s in %.2f s\n", out.c_str(), cat.num_items(), (size_t)dim,
                ids_out.c_str(), timer.seconds());
    return 0;
}

}  // namespace hafvt
