// dataset.cpp: the C2DSR dataset reader (item lists, sequence files), the three views of a
// sequence with their supervised targets (SPEC §1.2-1.3, §3.4), and the per-epoch shuffle.
#include "data/dataset.h"

#include <algorithm>
#include <cstring>
#include <sys/stat.h>

#include "core/common.h"
#include "core/lines.h"

namespace hafvt {

const char* const kViewNames[3] = {"x", "y", "xy"};

int32_t ItemCatalog::find(const std::string& a) const {
    auto it = by_asin.find(a);
    return it == by_asin.end() ? -1 : it->second;
}

namespace {

// Splits the next tab-separated field off `rest`; false when nothing is left.
bool next_field(Span& rest, Span& field, bool& have_more) {
    if (!have_more) return false;
    const char* tab = (const char*)std::memchr(rest.p, '\t', rest.n);
    if (tab) {
        field.p = rest.p;
        field.n = (size_t)(tab - rest.p);
        rest.n -= field.n + 1;
        rest.p = tab + 1;
    } else {
        field = rest;
        rest.n = 0;
        have_more = false;
    }
    return true;
}

// Strict decimal integer: optional '-', then one or more digits, nothing else. Returns false on
// anything else; `overflow` is set when the digits do not fit an int64.
bool parse_int64(Span s, int64_t& out, bool& overflow) {
    overflow = false;
    size_t i = 0;
    bool neg = false;
    if (i < s.n && s.p[i] == '-') {
        neg = true;
        i++;
    }
    if (i == s.n) return false;
    // Accumulate as a negative number so that INT64_MIN is representable.
    int64_t v = 0;
    const int64_t lim = INT64_MIN;
    for (; i < s.n; i++) {
        char c = s.p[i];
        if (c < '0' || c > '9') return false;
        int d = c - '0';
        if (v < (lim + d) / 10) {
            overflow = true;
            // keep scanning so that "12x" with many digits still reports "not a number"
            for (i++; i < s.n; i++)
                if (s.p[i] < '0' || s.p[i] > '9') return false;
            return true;
        }
        v = v * 10 - d;
    }
    if (!neg && v == INT64_MIN) {
        overflow = true;
        return true;
    }
    out = neg ? v : -v;
    return true;
}

// Shows a token in an error message, cut short when it is very long.
std::string quote(Span s) {
    const size_t max_len = 60;
    if (s.n <= max_len) return "'" + s.str() + "'";
    return "'" + std::string(s.p, max_len) + "...'";
}

// Reads one item list (Alist.txt or Blist.txt) into `cat`, giving its items merged ids from
// `first_id` on; returns the number of items.
size_t read_item_list(const std::string& path, int32_t first_id, ItemCatalog& cat) {
    std::string text = read_file(path);
    LineReader lr(text, path);
    Span line;
    size_t count = 0;
    while (lr.next(line)) {
        if (line.empty()) continue;  // blank lines carry no item (local ids count items, not lines)
        Span rest = line, f[3], extra;
        bool more = true;
        size_t nf = 0;
        while (nf < 3 && next_field(rest, f[nf], more)) nf++;
        bool too_many = next_field(rest, extra, more);
        HAFVT_INPUT(nf == 3 && !too_many, path, ":", lr.line_no,
                    ": expected 3 tab-separated fields 'orig_index<TAB>ASIN<TAB>local_id', found ",
                    too_many ? "more than 3" : std::to_string(nf), ": ", quote(line));
        HAFVT_INPUT(!f[1].empty(), path, ":", lr.line_no, ": expected a non-empty ASIN (field 2), found ",
                    quote(line));
        int64_t local = -1;
        bool ovf = false;
        bool ok = parse_int64(f[2], local, ovf) && !ovf;
        HAFVT_INPUT(ok && local == (int64_t)count, path, ":", lr.line_no,
                    ": expected local_id ", count, " (ids must be contiguous from 0 in file order), found ",
                    quote(f[2]));
        int32_t id = first_id + (int32_t)count;
        auto ins = cat.by_asin.emplace(f[1].str(), id);
        if (!ins.second) {
            int32_t prev = ins.first->second;
            bool prev_x = (size_t)prev < cat.NX || first_id == 0;
            HAFVT_FAIL_INPUT(path, ":", lr.line_no, ": ASIN ", quote(f[1]),
                             " is not unique: it already names ", prev_x ? "Alist.txt" : "Blist.txt",
                             " item ", prev_x ? prev : prev - (int32_t)cat.NX,
                             " (expected every ASIN once across Alist.txt and Blist.txt)");
        }
        cat.asin.push_back(f[1].str());
        count++;
    }
    HAFVT_INPUT(count > 0, path, ": expected at least one item line, found none (empty file)");
    return count;
}

}  // namespace

ItemCatalog read_catalog(const std::string& dir) {
    ItemCatalog cat;
    const std::string a_path = dir + "/Alist.txt", b_path = dir + "/Blist.txt";
    for (const std::string& p : {a_path, b_path}) {
        struct stat st;
        HAFVT_INPUT(stat(p.c_str(), &st) == 0, p, ": not found; expected ", dir,
                    " to be a C2DSR dataset folder (Alist.txt, Blist.txt, traindata_new.txt, "
                    "validdata_new.txt, testdata_new.txt)");
    }
    // X items first (merged ids 0..NX-1), then Y items (NX..NX+NY-1).
    cat.NX = read_item_list(a_path, 0, cat);
    HAFVT_INPUT(cat.NX < (size_t)INT32_MAX, a_path, ": too many items (", cat.NX, ")");
    cat.NY = read_item_list(b_path, (int32_t)cat.NX, cat);
    HAFVT_INPUT(cat.NX + cat.NY < (size_t)INT32_MAX, b_path, ": too many items in total (",
                cat.NX + cat.NY, ")");
    return cat;
}

SequenceSet read_sequences(const std::string& path, const ItemCatalog& cat, size_t T, bool train) {
    return parse_sequences(read_file(path), path, cat, T, train);
}

SequenceSet parse_sequences(const std::string& text, const std::string& path, const ItemCatalog& cat, size_t T,
                            bool train) {
    HAFVT_INPUT(T >= 1, path, ": the maximum sequence length T must be at least 1, found ", T);
    SequenceSet set;
    set.path = path;
    set.train = train;
    set.seqs.reserve((size_t)std::count(text.begin(), text.end(), '\n') + 1);

    const int64_t n_items = (int64_t)cat.num_items();
    std::vector<std::pair<int64_t, int32_t>> toks;  // (timestamp, merged id) of one line
    LineReader lr(text, path);
    Span line;
    while (lr.next(line)) {
        if (line.empty()) continue;
        set.lines++;
        Span rest = line, user, seq_id, tok;
        bool more = true;
        next_field(rest, user, more);
        HAFVT_INPUT(next_field(rest, seq_id, more), path, ":", lr.line_no,
                    ": expected 'user<TAB>seq_id<TAB>item|timestamp|date|...', found no tab in ",
                    quote(line));
        int64_t v = 0;
        bool ovf = false;
        HAFVT_INPUT(parse_int64(user, v, ovf) && !ovf && v >= 0, path, ":", lr.line_no,
                    ": expected a non-negative integer user id in field 1, found ", quote(user));
        const int64_t user_id = v;
        HAFVT_INPUT(parse_int64(seq_id, v, ovf) && !ovf && v >= 0, path, ":", lr.line_no,
                    ": expected a non-negative integer seq_id in field 2, found ", quote(seq_id));

        // Tokens `id|ts|date|`: only id and ts are read; the date and the trailing '|' are ignored.
        toks.clear();
        size_t k = 0;
        while (next_field(rest, tok, more)) {
            k++;
            const char* bar = (const char*)std::memchr(tok.p, '|', tok.n);
            HAFVT_INPUT(bar, path, ":", lr.line_no, ": token ", k, ": expected 'item|timestamp|...', found ",
                        quote(tok), " (no '|')");
            Span id_s{tok.p, (size_t)(bar - tok.p)};
            Span ts_s{bar + 1, tok.n - id_s.n - 1};
            const char* bar2 = (const char*)std::memchr(ts_s.p, '|', ts_s.n);
            if (bar2) ts_s.n = (size_t)(bar2 - ts_s.p);
            int64_t id = 0, ts = 0;
            bool id_ovf = false, ts_ovf = false;
            HAFVT_INPUT(parse_int64(id_s, id, id_ovf), path, ":", lr.line_no, ": token ", k,
                        ": expected an integer item id before the first '|', found ", quote(tok));
            HAFVT_INPUT(!id_ovf && id >= 0 && id < n_items, path, ":", lr.line_no, ": token ", k,
                        ": item id out of range, expected 0..", n_items - 1, " (NX+NY-1), found ", quote(tok));
            HAFVT_INPUT(parse_int64(ts_s, ts, ts_ovf), path, ":", lr.line_no, ": token ", k,
                        ": expected an integer unix timestamp after the first '|', found ", quote(tok));
            HAFVT_INPUT(!ts_ovf, path, ":", lr.line_no, ": token ", k,
                        ": timestamp does not fit a 64-bit integer, found ", quote(tok));
            HAFVT_INPUT(ts >= 0, path, ":", lr.line_no, ": token ", k,
                        ": expected a non-negative timestamp, found ", quote(tok));
            toks.emplace_back(ts, (int32_t)id);
        }

        size_t n = toks.size();
        if (train && n < 2) {
            set.skipped_short++;
            continue;
        }
        HAFVT_INPUT(n >= 2, path, ":", lr.line_no, ": expected at least 2 items (inputs and a target), found ",
                    n);
        // Time order with ties in file order (C2DSR sorts with Python's stable sort, §1.2).
        std::stable_sort(toks.begin(), toks.end(),
                         [](const std::pair<int64_t, int32_t>& a, const std::pair<int64_t, int32_t>& b) {
                             return a.first < b.first;
                         });
        // Both kinds keep the last T+1 items: train = T inputs + their next items, eval = T inputs
        // + the target.
        size_t first = 0;
        if (n > T + 1) {
            set.truncated++;
            first = n - (T + 1);
        }
        std::vector<int32_t> seq(n - first);
        for (size_t i = first; i < n; i++) seq[i - first] = toks[i].second;
        if (!train) {
            if (cat.in_x(seq.back())) set.targets_x++;
            else set.targets_y++;
        }
        set.seqs.push_back(std::move(seq));
        set.users.push_back(user_id);
    }
    if (set.seqs.empty()) {
        if (set.skipped_short)
            HAFVT_FAIL_INPUT(path, ": expected at least one sequence with 2 or more items, found none (",
                             set.skipped_short, " lines with fewer than 2 items)");
        HAFVT_FAIL_INPUT(path, ": no sequences: expected lines 'user<TAB>seq_id<TAB>item|timestamp|date|...', "
                         "found ", text.empty() ? "an empty file" : "only blank lines");
    }
    return set;
}

namespace {

// Prepares `out` for B rows of length T: every view all PAD, position 0, unsupervised. assign()
// keeps the vectors' storage, so a batch of the same size never reallocates.
void reset_batch(Batch& out, size_t B, size_t T, int32_t pad) {
    out.B = B;
    out.T = T;
    for (ViewBatch& v : out.view) {
        v.ids.assign(B * T, pad);
        v.pos.assign(B * T, 0);
        v.target.assign(B * T, -1);
        v.nonempty.assign(B, 0);
    }
}

// Writes one row of one view, left-padded: items[0..L-1] (oldest first) with their targets
// (-1 = unsupervised; `tgt` may be null), positions 1..L. Keeps only the last `loss_window`
// supervised positions when it is > 0.
void fill_row(ViewBatch& v, size_t b, size_t T, const int32_t* items, const int32_t* tgt, size_t L,
              int loss_window) {
    HAFVT_CHECK(L <= T, "view row of ", L, " items longer than T = ", T);
    const size_t off = b * T + (T - L);
    int32_t* ids = v.ids.data() + off;
    int32_t* pos = v.pos.data() + off;
    int32_t* target = v.target.data() + off;
    for (size_t t = 0; t < L; t++) {
        ids[t] = items[t];
        pos[t] = (int32_t)(t + 1);
        target[t] = tgt ? tgt[t] : -1;
    }
    if (loss_window > 0 && tgt) {
        size_t kept = 0;
        for (size_t t = L; t-- > 0;)
            if (target[t] >= 0 && ++kept > (size_t)loss_window) target[t] = -1;
    }
    v.nonempty[b] = L > 0;
}

}  // namespace

void make_train_batch(Batch& out, const SequenceSet& set, const size_t* idx, size_t B,
                      const ItemCatalog& cat, size_t T, int loss_window) {
    HAFVT_CHECK(T >= 1, "T = ", T);
    const int32_t pad = cat.pad();
    reset_batch(out, B, T, pad);
    out.eval_target.clear();
    // Scratch for one row (at most T inputs); small and reused across rows.
    std::vector<int32_t> items[2], tgts[2], next_in(T + 1);
    for (int d = 0; d < 2; d++) {
        items[d].resize(T);
        tgts[d].resize(T);
    }
    for (size_t b = 0; b < B; b++) {
        HAFVT_CHECK(idx[b] < set.seqs.size(), "sequence index ", idx[b], " of ", set.seqs.size());
        const std::vector<int32_t>& full = set.seqs[idx[b]];
        // The last T+1 items s_1..s_n: inputs s_1..s_{n-1}, targets s_2..s_n.
        const size_t first = full.size() > T + 1 ? full.size() - (T + 1) : 0;
        const int32_t* s = full.data() + first;
        const size_t n = full.size() - first;
        if (n < 2) continue;  // no input: every view of this row stays empty
        for (size_t i = 0; i < n; i++)
            HAFVT_CHECK(s[i] >= 0 && s[i] < pad, "item id ", s[i], " outside 0..", pad - 1);
        const size_t L = n - 1;

        // XY view: the position of s_t predicts s_{t+1}.
        fill_row(out.view[VIEW_XY], b, T, s, s + 1, L, loss_window);

        // X and Y views: walk backwards remembering the next item of each domain, so the
        // position of x_j gets the next X item after it in s_1..s_n (-1 when there is none).
        int32_t next[2] = {-1, -1};  // next X item, next Y item seen so far (from the right)
        next[cat.in_x(s[L]) ? 0 : 1] = s[L];
        for (size_t i = L; i-- > 0;) {
            int d = cat.in_x(s[i]) ? 0 : 1;
            next_in[i] = next[d];
            next[d] = s[i];
        }
        size_t len[2] = {0, 0};
        for (size_t i = 0; i < L; i++) {
            int d = cat.in_x(s[i]) ? 0 : 1;
            items[d][len[d]] = s[i];
            tgts[d][len[d]] = next_in[i];
            len[d]++;
        }
        fill_row(out.view[VIEW_X], b, T, items[0].data(), tgts[0].data(), len[0], loss_window);
        fill_row(out.view[VIEW_Y], b, T, items[1].data(), tgts[1].data(), len[1], loss_window);
    }
}

void make_eval_batch(Batch& out, const std::vector<std::vector<int32_t>>& seqs, size_t begin,
                     size_t end, bool with_target, const ItemCatalog& cat, size_t T) {
    HAFVT_CHECK(T >= 1 && begin <= end && end <= seqs.size(), "eval batch [", begin, ", ", end,
                ") of ", seqs.size(), " sequences, T = ", T);
    const size_t B = end - begin;
    const int32_t pad = cat.pad();
    reset_batch(out, B, T, pad);
    out.eval_target.assign(B, -1);
    std::vector<int32_t> items[2];
    for (int d = 0; d < 2; d++) items[d].resize(T);
    for (size_t b = 0; b < B; b++) {
        const std::vector<int32_t>& seq = seqs[begin + b];
        HAFVT_CHECK(!with_target || !seq.empty(), "eval sequence ", begin + b, " has no target");
        size_t n_in = with_target ? seq.size() - 1 : seq.size();
        if (with_target) out.eval_target[b] = seq.back();
        // The last T inputs; the views have no supervised positions (targets stay -1).
        const size_t first = n_in > T ? n_in - T : 0;
        const int32_t* s = seq.data() + first;
        const size_t L = n_in - first;
        for (size_t i = 0; i < seq.size(); i++)
            HAFVT_CHECK(seq[i] >= 0 && seq[i] < pad, "item id ", seq[i], " outside 0..", pad - 1);
        fill_row(out.view[VIEW_XY], b, T, s, nullptr, L, 0);
        size_t len[2] = {0, 0};
        for (size_t i = 0; i < L; i++) {
            int d = cat.in_x(s[i]) ? 0 : 1;
            items[d][len[d]++] = s[i];
        }
        fill_row(out.view[VIEW_X], b, T, items[0].data(), nullptr, len[0], 0);
        fill_row(out.view[VIEW_Y], b, T, items[1].data(), nullptr, len[1], 0);
    }
}

std::vector<size_t> shuffled_order(size_t n, uint64_t seed, uint64_t epoch) {
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; i++) order[i] = i;
    // Fisher-Yates from the top: draw i picks a slot in 0..i with counter i.
    const uint64_t stream = rng_stream(RNG_SHUFFLE, epoch);
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)rng_below(seed, stream, i, i + 1);
        std::swap(order[i], order[j]);
    }
    return order;
}

}  // namespace hafvt
