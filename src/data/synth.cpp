// synth.cpp: the synthetic cross-domain dataset (SPEC §8), a pure function of (size, seed).
//
// Generative story. K latent topics are shared by both domains. Each domain's catalog has a
// popular head (head_frac of its items, Zipf popularity within a topic, and 1-2 favourite
// successor items per head item that only ID embeddings can learn) and a long flat tail whose
// items occur a few times each in the training file, so only their frozen features (which reveal
// the topic) say anything about them. A user has a shared topic preference used in both domains
// plus one preference per domain; the next item of a domain repeats the topic of the user's last
// item of that domain with probability p_persist, else draws from the preferences. Image and text
// features are two different projections of the topic centroid plus independent item noise, so
// each modality alone is imperfect and both together are better.
#include "data/synth.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <sys/stat.h>
#include <vector>

#include "core/common.h"
#include "formats/npy.h"

namespace hafvt {

namespace {

// The sizes (SPEC §8). tiny: the training tests; small: `make run`; medium: the ablation table;
// paper: Food-Kitchen's counts (benchmarks). K = latent topics, E = feature width, tail_occ = mean
// train occurrences of a tail item. In tiny/small, tail items (about 5.5 occurrences each) make
// about half of the test targets; medium has a longer, rarer tail (3 occurrences, ~57% of the
// targets) where IDs have little to learn from. K gives about 30-45 items per topic and domain.
struct SynthSize {
    const char* name;
    size_t NX, NY, n_train, n_valid, n_test, E, K;
    double tail_occ;
};
const SynthSize kSizes[] = {
    {"tiny", 300, 360, 800, 150, 150, 16, 10, 5.5},
    {"small", 1500, 1800, 3000, 500, 500, 64, 48, 5.5},
    {"medium", 6000, 7000, 6000, 1000, 1000, 64, 150, 3.0},
    {"paper", 29207, 34886, 34117, 8173, 8406, 512, 256, 5.5},
};

// Knobs of the generative story; all written to synth.json.
struct SynthParams {
    double head_frac = 0.10;       // share of a domain's items in the popular head
    double zipf_a = 1.0;           // head popularity within a topic ~ 1 / rank^a
    double p_fav = 0.15;           // after a head item, jump to one of its favourite successors
    double p_persist = 0.85;       // repeat the topic of the last item of the same domain
    double shared_mix = 0.4;       // otherwise: shared preference with this chance, else domain's
    double p_x = 0.45;             // chance that a position belongs to domain X
    double tail_mean_occ = 5.5;    // target mean occurrences of a tail item (set per size)
    double p_tail_cap = 0.7;       // at most this share of topic draws goes to the tail
    double noise_img = 0.5;        // item noise norm relative to the topic signal (image)
    double noise_txt = 0.7;        // same for text
    double missing_img = 0.005;    // share of all-zero (missing) image rows
    double missing_txt = 0.01;     // share of all-zero text rows
    double p_tie = 0.2;            // chance that an item shares the previous item's day
    double p_shuffle = 0.5;        // chance that a line's tokens are written out of time order
};

// Sub-streams of RNG_SYNTH: (purpose << 40) | index.
enum SynthPurpose : uint64_t {
    SP_CATALOG = 1,   // index = domain
    SP_CENTROID = 2,  // index = topic
    SP_PROJ = 3,      // index = modality
    SP_FEATURE = 4,   // index = modality << 32 | item
    SP_USER = 5,      // index = user
    SP_SEQ = 6,       // index = global sequence number
};

// Sequential draws from one counter-based stream.
struct Draws {
    uint64_t seed, stream, ctr = 0;
    Draws(uint64_t seed_, SynthPurpose p, uint64_t index)
        : seed(seed_), stream(rng_stream(RNG_SYNTH, ((uint64_t)p << 40) | index)) {}
    float uni() { return rng_uniform(seed, stream, ctr++); }
    float normal() { return rng_normal(seed, stream, ctr++); }
    size_t below(size_t n) { return (size_t)rng_below(seed, stream, ctr++, n); }
};

// One domain's catalog: topics, head/tail split, popularity and favourite successors.
struct DomainCatalog {
    size_t N = 0, H = 0;
    std::vector<int> topic;                         // (N) local id -> topic
    std::vector<uint8_t> head;                      // (N) 1 for head items
    std::vector<std::vector<int>> tail_of;          // (K) tail local ids of a topic
    std::vector<std::vector<int>> head_of;          // (K) head local ids of a topic, by rank
    std::vector<std::vector<double>> head_cum;      // (K) cumulative Zipf weights of head_of
    std::vector<std::vector<int>> fav;              // (N) favourite successors (head items only)
    double p_tail = 0.0;                            // chance a topic draw picks a tail item
};

DomainCatalog make_catalog(uint64_t seed, int domain, size_t N, size_t K, const SynthParams& P) {
    DomainCatalog c;
    Draws d(seed, SP_CATALOG, (uint64_t)domain);
    c.N = N;
    c.H = std::min(N, std::max(K, (size_t)std::lround(P.head_frac * (double)N)));
    // A random permutation decides which local ids are head (in rank order) and which tail.
    std::vector<int> perm(N);
    for (size_t i = 0; i < N; i++) perm[i] = (int)i;
    for (size_t i = N; i > 1; i--) std::swap(perm[i - 1], perm[d.below(i)]);
    c.topic.assign(N, 0);
    c.head.assign(N, 0);
    c.tail_of.assign(K, {});
    c.head_of.assign(K, {});
    c.head_cum.assign(K, {});
    // The first K of each group cover every topic once, the rest draw their topic at random.
    for (size_t r = 0; r < N; r++) {
        int item = perm[r];
        bool is_head = r < c.H;
        size_t g = is_head ? r : r - c.H;
        int t = (int)(g < K ? g : d.below(K));
        c.topic[item] = t;
        c.head[item] = is_head;
        if (is_head) {
            c.head_of[t].push_back(item);
            double prev = c.head_cum[t].empty() ? 0.0 : c.head_cum[t].back();
            c.head_cum[t].push_back(prev + std::pow((double)(c.head_of[t].size()), -P.zipf_a));
        } else {
            c.tail_of[t].push_back(item);
        }
    }
    // Favourite successors: other head items of any topic, so features cannot predict them.
    c.fav.assign(N, {});
    for (size_t r = 0; r < c.H && c.H > 1; r++) {
        int item = perm[r];
        size_t nfav = 1 + d.below(2);
        for (size_t k = 0; k < nfav; k++) {
            size_t j = d.below(c.H - 1);
            if (j >= r) j++;  // never the item itself
            c.fav[item].push_back(perm[j]);
        }
    }
    return c;
}

// A user's topic preferences: shared by both domains, and one per domain (2 topics each).
struct UserPref {
    int topics[3][2];    // [shared, X, Y][2]
    float first_w[3];    // weight of the first topic of each component
};

UserPref make_user(uint64_t seed, size_t u, size_t K) {
    Draws d(seed, SP_USER, u);
    UserPref p;
    for (int c = 0; c < 3; c++) {
        p.topics[c][0] = (int)d.below(K);
        p.topics[c][1] = (int)d.below(K);
        p.first_w[c] = 0.5f + 0.4f * d.uni();
    }
    return p;
}

// One generated sequence, in time order.
struct SeqOut {
    size_t user = 0, seq_id = 0;
    std::vector<int32_t> items;   // merged ids
    std::vector<int64_t> days;    // day number since the epoch, non-decreasing
    bool shuffled = false;
};

// Length and domain pattern: the first draws of a sequence's stream (also used to count tokens).
void draw_pattern(Draws& d, bool train, const SynthParams& P, std::vector<uint8_t>& is_x) {
    // Length 6..16 (train) or 6..15 (valid/test), skewed to short lines (mean about 10).
    size_t span = train ? 11 : 10;
    float u = d.uni();
    size_t n = 6 + std::min(span - 1, (size_t)(span * std::pow(u, 1.5f)));
    // Every line has at least 3 items of each domain, as in the C2DSR data: redraw until so.
    for (;;) {
        is_x.assign(n, 0);
        size_t nx = 0;
        for (size_t k = 0; k < n; k++) nx += is_x[k] = d.uni() < P.p_x;
        if (nx >= 3 && n - nx >= 3) return;
    }
}

// Draws the items of one sequence (SPEC §8's story) and its day stamps.
void draw_sequence(Draws& d, bool train, const SynthParams& P, const UserPref& up,
                   const DomainCatalog dom[2], size_t NX, int64_t first_day, SeqOut& s) {
    std::vector<uint8_t> is_x;
    draw_pattern(d, train, P, is_x);
    size_t n = is_x.size();
    s.items.resize(n);
    s.days.resize(n);
    int last[2] = {-1, -1};  // last local id seen in each domain
    for (size_t k = 0; k < n; k++) {
        int D = is_x[k] ? 0 : 1;
        const DomainCatalog& c = dom[D];
        int prev = last[D];
        int item;
        if (prev >= 0 && !c.fav[prev].empty() && d.uni() < P.p_fav) {
            item = c.fav[prev][d.below(c.fav[prev].size())];
        } else {
            int t;
            if (prev >= 0 && d.uni() < P.p_persist) {
                t = c.topic[prev];
            } else {
                int comp = d.uni() < P.shared_mix ? 0 : 1 + D;
                t = up.topics[comp][d.uni() < up.first_w[comp] ? 0 : 1];
            }
            bool tail = !c.tail_of[t].empty() && (c.head_of[t].empty() || d.uni() < c.p_tail);
            if (tail) {
                item = c.tail_of[t][d.below(c.tail_of[t].size())];
            } else {
                // Zipf pick among the topic's head items by inverting the cumulative weights.
                const std::vector<double>& cum = c.head_cum[t];
                double x = d.uni() * cum.back();
                size_t j = (size_t)(std::upper_bound(cum.begin(), cum.end(), x) - cum.begin());
                item = c.head_of[t][std::min(j, cum.size() - 1)];
            }
        }
        last[D] = item;
        s.items[k] = D == 0 ? item : (int32_t)(NX + (size_t)item);
        // Day stamps: strictly later by 1..7 days, or a tie with the previous item.
        if (k == 0) s.days[k] = first_day;
        else s.days[k] = s.days[k - 1] + (d.uni() < P.p_tie ? 0 : 1 + (int64_t)d.below(7));
    }
    s.shuffled = d.uni() < P.p_shuffle;
}

// Appends one line `user \t seq_id \t id|ts|date| ...`. A shuffled line permutes whole groups of
// tied timestamps, keeping file order inside a group, so a stable sort by timestamp recovers the
// exact generated order (ties included) while an unstable sort may not.
void append_line(std::string& out, const SeqOut& s, Draws& d) {
    size_t n = s.items.size();
    std::vector<std::pair<size_t, size_t>> groups;  // [begin, end) of equal days
    for (size_t k = 0; k < n; k++) {
        if (k == 0 || s.days[k] != s.days[k - 1]) groups.push_back({k, k + 1});
        else groups.back().second = k + 1;
    }
    if (s.shuffled)
        for (size_t i = groups.size(); i > 1; i--) std::swap(groups[i - 1], groups[d.below(i)]);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%zu\t%zu", s.user, s.seq_id);
    out += buf;
    for (const auto& g : groups) {
        for (size_t k = g.first; k < g.second; k++) {
            // Unix time of midnight UTC; the date string is written at UTC+8 like the real data.
            long long ts = (long long)s.days[k] * 86400;
            time_t local = (time_t)(ts + 8 * 3600);
            struct tm tmv;
            gmtime_r(&local, &tmv);
            std::snprintf(buf, sizeof buf, "\t%d|%lld|%04d-%02d-%02d %02d:%02d:%02d|", (int)s.items[k], ts,
                          tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min,
                          tmv.tm_sec);
            out += buf;
        }
    }
    out += '\n';
}

// Creates `path` and its parents when absent (mkdir -p).
void make_dirs(const std::string& path) {
    HAFVT_INPUT(!path.empty(), "synth: empty output folder");
    for (size_t i = 1; i <= path.size(); i++) {
        if (i < path.size() && path[i] != '/') continue;
        std::string p = path.substr(0, i);
        struct stat st;
        if (stat(p.c_str(), &st) == 0) {
            HAFVT_INPUT(S_ISDIR(st.st_mode), p, ": expected a folder, found a file");
            continue;
        }
        HAFVT_INPUT(mkdir(p.c_str(), 0777) == 0 || errno == EEXIST, p, ": cannot create folder (",
                    std::strerror(errno), ")");
    }
}

// Frozen features of one modality, (N, E) row-major: a per-modality random projection of the
// topic centroid (unit length), plus item noise of norm `noise` relative to it, times a random
// row scale in [0.5, 2] (the loader L2-normalizes); a `missing` share of rows is all zero.
std::vector<float> make_features(uint64_t seed, int modality, const std::vector<float>& centroids,
                                 const std::vector<int>& item_topic, size_t E, size_t K,
                                 double noise, double missing, size_t* n_missing) {
    size_t N = item_topic.size();
    // proj: (E, E) Gaussian / sqrt(E); signal: (K, E) normalized projected centroids.
    Draws dp(seed, SP_PROJ, (uint64_t)modality);
    std::vector<float> proj(E * E);
    for (auto& v : proj) v = dp.normal() / std::sqrt((float)E);
    std::vector<float> signal(K * E, 0.0f);
    for (size_t t = 0; t < K; t++) {
        double nrm = 0.0;
        for (size_t i = 0; i < E; i++) {
            double acc = 0.0;
            for (size_t j = 0; j < E; j++) acc += (double)proj[i * E + j] * centroids[t * E + j];
            signal[t * E + i] = (float)acc;
            nrm += acc * acc;
        }
        for (size_t i = 0; i < E; i++) signal[t * E + i] /= (float)std::sqrt(std::max(nrm, 1e-30));
    }
    std::vector<float> out(N * E, 0.0f);
    float sigma = (float)(noise / std::sqrt((double)E));
    *n_missing = 0;
    for (size_t i = 0; i < N; i++) {
        Draws d(seed, SP_FEATURE, ((uint64_t)modality << 32) | i);
        if (d.uni() < missing) {
            (*n_missing)++;
            continue;
        }
        float scale = 0.5f * std::exp2(2.0f * d.uni());
        const float* s = &signal[(size_t)item_topic[i] * E];
        for (size_t k = 0; k < E; k++) out[i * E + k] = scale * (s[k] + sigma * d.normal());
    }
    return out;
}

// Solves for the share of topic draws that go to the tail so that a tail item occurs about
// tail_mean_occ times in the train file. Favourite jumps (p_fav after a head item) take a share f
// of the draws; f depends on the tail share t, so iterate t = (1-f) p, f = p_fav (1-t) r.
double solve_p_tail(const SynthParams& P, size_t n_tail, size_t tokens, size_t lines) {
    if (tokens == 0) return 0.0;
    double want = P.tail_mean_occ * (double)n_tail / (double)tokens;
    double r = 1.0 - std::min(1.0, (double)lines / (double)tokens);  // has a previous same-domain item
    double f = 0.0, p = 0.0;
    for (int it = 0; it < 50; it++) {
        p = std::min(P.p_tail_cap, want / std::max(1e-9, 1.0 - f));
        double t = (1.0 - f) * p;
        f = P.p_fav * (1.0 - t) * r;
    }
    return p;
}

std::string json_num(double v) { return format_number("%.6g", v); }

}  // namespace

void synth_generate(const SynthOptions& opt) {
    const SynthSize* sz = nullptr;
    for (const auto& s : kSizes)
        if (opt.size == s.name) sz = &s;
    HAFVT_INPUT(sz, "synth: unknown size '", opt.size, "' (expected tiny, small, medium or paper)");
    SynthParams P;
    P.tail_mean_occ = sz->tail_occ;
    const uint64_t seed = opt.seed;
    const size_t NX = sz->NX, NY = sz->NY, N = NX + NY, E = sz->E, K = sz->K;
    const size_t n_eval = sz->n_valid + sz->n_test, n_users = n_eval;
    const size_t n_seq = sz->n_train + n_eval;
    make_dirs(opt.out);
    const std::string dir = opt.out + "/";

    DomainCatalog dom[2] = {make_catalog(seed, 0, NX, K, P), make_catalog(seed, 1, NY, K, P)};

    // Pass 1: count the train tokens of each domain (the patterns are the first draws of each
    // sequence's stream) to set the tail share.
    size_t train_tokens[2] = {0, 0};
    std::vector<uint8_t> is_x;
    for (size_t j = 0; j < sz->n_train; j++) {
        Draws d(seed, SP_SEQ, j);
        d.below(n_users);  // the user draw comes first
        draw_pattern(d, true, P, is_x);
        for (uint8_t x : is_x) train_tokens[x ? 0 : 1]++;
    }
    for (int D = 0; D < 2; D++)
        dom[D].p_tail = solve_p_tail(P, dom[D].N - dom[D].H, train_tokens[D], sz->n_train);

    // Pass 2: the sequences. Global sequence j: train 0..n_train-1, then valid, then test. A
    // user's valid/test line is that user's last sequence (later days than its train lines).
    std::vector<UserPref> users(n_users);
    for (size_t u = 0; u < n_users; u++) users[u] = make_user(seed, u, K);
    const int64_t day0 = 14610;  // 2010-01-01
    std::string text[3];
    size_t tail_targets[3] = {0, 0, 0}, x_targets[3] = {0, 0, 0}, shuffled_lines = 0, tied_lines = 0;
    std::vector<uint32_t> train_count(N, 0);
    std::vector<int32_t> eval_targets[3];
    SeqOut s;
    for (size_t j = 0; j < n_seq; j++) {
        int split = j < sz->n_train ? 0 : (j < sz->n_train + sz->n_valid ? 1 : 2);
        Draws d(seed, SP_SEQ, j);
        size_t user = d.below(n_users);
        if (split > 0) user = j - sz->n_train;  // one eval line per user: valid users, then test
        int64_t first = split == 0 ? day0 + (int64_t)d.below(1800) : day0 + 1900 + (int64_t)d.below(300);
        s.user = user;
        s.seq_id = j;
        draw_sequence(d, split == 0, P, users[user], dom, NX, first, s);
        append_line(text[split], s, d);
        shuffled_lines += s.shuffled;
        tied_lines += s.days.back() == s.days[s.days.size() - 2];
        if (split == 0) {
            for (int32_t it : s.items) train_count[it]++;
        } else {
            int32_t tgt = s.items.back();
            bool in_x = (size_t)tgt < NX;
            x_targets[split] += in_x;
            tail_targets[split] += !dom[in_x ? 0 : 1].head[in_x ? tgt : tgt - NX];
            eval_targets[split].push_back(tgt);
        }
    }

    // Item lists and alignment files: ASINs SX00000001.. / SY00000001.. (10 characters).
    std::string alist, blist, ids;
    std::vector<std::string> asin(N);
    char buf[64];
    for (size_t i = 0; i < N; i++) {
        bool in_x = i < NX;
        size_t local = in_x ? i : i - NX;
        std::snprintf(buf, sizeof buf, "S%c%08zu", in_x ? 'X' : 'Y', local + 1);
        asin[i] = buf;
        std::snprintf(buf, sizeof buf, "%zu\t%s\t%zu\n", in_x ? i : NX + 3 + local, asin[i].c_str(), local);
        (in_x ? alist : blist) += buf;
        ids += asin[i] + "\n";
    }
    write_file_atomic(dir + "Alist.txt", alist);
    write_file_atomic(dir + "Blist.txt", blist);
    write_file_atomic(dir + "img_ids.txt", ids);
    // The generator's truth per item (for head/tail breakdowns and tests): merged id, ASIN,
    // topic, 1 for popular-head items.
    std::string truth = "merged_id\tasin\ttopic\thead\n";
    for (size_t i = 0; i < N; i++) {
        const DomainCatalog& c = dom[i < NX ? 0 : 1];
        size_t local = i < NX ? i : i - NX;
        truth += cat(i, "\t", asin[i], "\t", c.topic[local], "\t", (int)c.head[local], "\n");
    }
    write_file_atomic(dir + "synth_items.tsv", truth);
    write_file_atomic(dir + "txt_ids.txt", ids);
    write_file_atomic(dir + "traindata_new.txt", text[0]);
    write_file_atomic(dir + "validdata_new.txt", text[1]);
    write_file_atomic(dir + "testdata_new.txt", text[2]);

    // Features: centroids (K, E) are random unit vectors shared by both domains.
    std::vector<float> centroids(K * E);
    for (size_t t = 0; t < K; t++) {
        Draws d(seed, SP_CENTROID, t);
        double nrm = 0.0;
        for (size_t k = 0; k < E; k++) {
            centroids[t * E + k] = d.normal();
            nrm += (double)centroids[t * E + k] * centroids[t * E + k];
        }
        for (size_t k = 0; k < E; k++) centroids[t * E + k] /= (float)std::sqrt(nrm);
    }
    std::vector<int> item_topic(N);
    for (size_t i = 0; i < N; i++) item_topic[i] = i < NX ? dom[0].topic[i] : dom[1].topic[i - NX];
    size_t missing[2];
    {
        std::vector<float> f = make_features(seed, 0, centroids, item_topic, E, K, P.noise_img,
                                             P.missing_img, &missing[0]);
        npy_write_f32(dir + "img.npy", f.data(), {N, E});
    }
    {
        std::vector<float> f = make_features(seed, 1, centroids, item_topic, E, K, P.noise_txt,
                                             P.missing_txt, &missing[1]);
        npy_write_f32(dir + "txt.npy", f.data(), {N, E});
    }

    // Eval targets whose item occurs at most 6 times in train (a data-driven "tail").
    auto rare_share = [&](int split) {
        size_t r = 0;
        for (int32_t t : eval_targets[split]) r += train_count[t] <= 6;
        return eval_targets[split].empty() ? 0.0 : (double)r / (double)eval_targets[split].size();
    };
    size_t tail_tokens = 0, all_tokens = 0;
    for (size_t i = 0; i < N; i++) {
        bool head = i < NX ? dom[0].head[i] : dom[1].head[i - NX];
        all_tokens += train_count[i];
        if (!head) tail_tokens += train_count[i];
    }
    auto frac = [](size_t a, size_t b) { return b ? (double)a / (double)b : 0.0; };
    std::string j = "{\n";
    j += cat("  \"generator\": \"hafvt synth\",\n  \"size\": \"", sz->name, "\",\n  \"seed\": ", seed, ",\n");
    j += cat("  \"NX\": ", NX, ",\n  \"NY\": ", NY, ",\n  \"E\": ", E, ",\n  \"topics\": ", K, ",\n");
    j += cat("  \"train_lines\": ", sz->n_train, ",\n  \"valid_lines\": ", sz->n_valid,
             ",\n  \"test_lines\": ", sz->n_test, ",\n  \"users\": ", n_users, ",\n");
    j += cat("  \"head_items_x\": ", dom[0].H, ",\n  \"head_items_y\": ", dom[1].H, ",\n");
    j += cat("  \"train_tokens_x\": ", train_tokens[0], ",\n  \"train_tokens_y\": ", train_tokens[1], ",\n");
    j += cat("  \"train_tail_token_share\": ", json_num(frac(tail_tokens, all_tokens)), ",\n");
    j += cat("  \"p_tail_x\": ", json_num(dom[0].p_tail), ",\n  \"p_tail_y\": ", json_num(dom[1].p_tail), ",\n");
    j += cat("  \"valid_targets_x\": ", x_targets[1], ",\n  \"valid_targets_y\": ", sz->n_valid - x_targets[1],
             ",\n  \"test_targets_x\": ", x_targets[2], ",\n  \"test_targets_y\": ", sz->n_test - x_targets[2], ",\n");
    j += cat("  \"valid_tail_target_fraction\": ", json_num(frac(tail_targets[1], sz->n_valid)), ",\n");
    j += cat("  \"test_tail_target_fraction\": ", json_num(frac(tail_targets[2], sz->n_test)), ",\n");
    j += cat("  \"valid_rare_target_fraction\": ", json_num(rare_share(1)), ",\n");
    j += cat("  \"test_rare_target_fraction\": ", json_num(rare_share(2)), ",\n");
    j += cat("  \"missing_img_rows\": ", missing[0], ",\n  \"missing_txt_rows\": ", missing[1], ",\n");
    j += cat("  \"shuffled_lines\": ", shuffled_lines, ",\n  \"last_tied_lines\": ", tied_lines, ",\n");
    j += cat("  \"params\": {\"head_frac\": ", json_num(P.head_frac), ", \"zipf_a\": ", json_num(P.zipf_a),
             ", \"p_fav\": ", json_num(P.p_fav), ", \"p_persist\": ", json_num(P.p_persist),
             ", \"shared_mix\": ", json_num(P.shared_mix), ", \"p_x\": ", json_num(P.p_x),
             ", \"tail_mean_occ\": ", json_num(P.tail_mean_occ), ", \"p_tail_cap\": ", json_num(P.p_tail_cap),
             ", \"noise_img\": ", json_num(P.noise_img), ", \"noise_txt\": ", json_num(P.noise_txt),
             ", \"missing_img\": ", json_num(P.missing_img), ", \"missing_txt\": ", json_num(P.missing_txt),
             ", \"p_tie\": ", json_num(P.p_tie), ", \"p_shuffle\": ", json_num(P.p_shuffle), "},\n");
    j += "  \"notes\": \"tail = items outside the generator's popular head; rare = train count <= 6\"\n}\n";
    write_file_atomic(dir + "synth.json", j);
}

}  // namespace hafvt
