// test_malformed.cpp: hostile input through the real binary (SPEC §7). Every case corrupts a copy
// of a small valid dataset (or of a trained run), runs $HAFVT_BIN on it and checks that the
// program exits with status 2, prints ONE line "error: ..." naming the file, the place and what
// was expected/found, and leaves no file behind. A second table holds odd but valid inputs that
// must be accepted.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/json.h"
#include "formats/npy.h"
#include "data/dataset.h"
#include "formats/safetensors.h"
#include "cli_util.h"
#include "test_util.h"

using namespace hafvt;

namespace {

// The address-space limit of the table's runs (plain builds): the tiny runs need well under 1 GiB
// of heap; the CUDA runtime and OpenMP reserve more address space than they touch.
constexpr rlim_t kVmLimit = (rlim_t)6 << 30;

std::string get(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream os;
    os << f.rdbuf();
    return os.str();
}

// Unlinks first: the case folders hold hard links to the shared fixture, which must stay intact.
void put(const std::string& path, const std::string& bytes) {
    ::unlink(path.c_str());
    std::ofstream f(path, std::ios::binary);
    REQUIRE(f.good());
    f << bytes;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Replaces line n (1-based) of a text file.
void set_line(const std::string& path, size_t n, const std::string& text) {
    std::string s = get(path), out;
    size_t line = 1, pos = 0;
    bool done = false;
    while (pos < s.size()) {
        size_t nl = s.find('\n', pos);
        size_t end = nl == std::string::npos ? s.size() : nl;
        out += line == n ? text : s.substr(pos, end - pos);
        done = done || line == n;
        if (nl != std::string::npos) out += '\n';
        pos = end + 1;
        line++;
    }
    REQUIRE(done);
    put(path, out);
}

// Replaces the first occurrence of `from` (e.g. inside a .npy header).
void sub(const std::string& path, const std::string& from, const std::string& to) {
    std::string s = get(path);
    size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    put(path, s.replace(at, from.size(), to));
}

void truncate_to(const std::string& path, size_t n) { put(path, get(path).substr(0, n)); }

void remove_last_line(const std::string& path) {
    std::string s = get(path);
    s.pop_back();  // the final '\n'
    put(path, s.substr(0, s.rfind('\n') + 1));
}

// Sets one float of a 2-D .npy feature table in place.
void npy_set(const std::string& path, size_t row, size_t col, float v) {
    std::string s = get(path);
    NpyHeader h = npy_parse_header(s, path);
    std::memcpy(&s[h.data_offset + (row * h.shape[1] + col) * 4], &v, 4);
    put(path, s);
}

// A .npy file with the given header dict text (any version) and payload.
std::string npy_bytes(const std::string& dict, const std::string& payload, int major = 1) {
    std::string d = dict + "\n";
    std::string s = std::string("\x93NUMPY", 6) + (char)major + '\0';
    for (size_t i = 0; i < (major == 1 ? 2u : 4u); i++) s += (char)((d.size() >> (8 * i)) & 0xff);
    return s + d + payload;
}

std::string npy_payload(const std::string& path) {
    std::string s = get(path);
    return s.substr(npy_parse_header(s, path).data_offset);
}

// Parses a safetensors header, lets `fn` edit it, writes it back with the data unchanged.
void st_edit(const std::string& path, const std::function<void(Json&)>& fn) {
    std::string b = get(path);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)(uint8_t)b[(size_t)i] << (8 * i);
    Json h = Json::parse(b.substr(8, n), path);
    fn(h);
    std::string text = h.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string len(8, '\0');
    for (size_t i = 0; i < 8; i++) len[i] = (char)((uint64_t)text.size() >> (8 * i));
    put(path, len + text + b.substr(8 + n));
}

void st_set_len(const std::string& path, uint64_t n) {
    std::string b = get(path);
    for (size_t i = 0; i < 8; i++) b[i] = (char)(n >> (8 * i));
    put(path, b);
}

// (name, begin, end) of each tensor in header order.
struct StSpan { std::string name; size_t begin, end; };
std::vector<StSpan> st_spans(const Json& h) {
    std::vector<StSpan> v;
    for (const auto& kv : h.items())
        if (kv.first != "__metadata__") {
            const Json::Array& o = kv.second.get("data_offsets")->as_array();
            v.push_back({kv.first, (size_t)o[0].as_int(), (size_t)o[1].as_int()});
        }
    return v;
}

void st_set_offsets(Json& h, const std::string& name, size_t b, size_t e) {
    h.get(name)->set("data_offsets", Json::array().push(b).push(e));
}

// Rewrites one setting of the config stored in a checkpoint's __metadata__.
void st_set_config(const std::string& path, const std::string& key, Json value) {
    st_edit(path, [&](Json& h) {
        Json* meta = h.get("__metadata__");
        Json cfg = Json::parse(meta->get("config")->as_string(), "config");
        cfg.set(key, value);
        meta->set("config", cfg.dump());
    });
}

// Overwrites element `index` of an F32 tensor of a safetensors file.
void st_poke_f32(const std::string& path, const std::string& name, size_t index, float value) {
    std::string b = get(path);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)(uint8_t)b[(size_t)i] << (8 * i);
    const Json h = Json::parse(b.substr(8, n), path);
    const size_t begin = (size_t)h.get(name)->get("data_offsets")->as_array()[0].as_int();
    std::memcpy(&b[8 + n + begin + 4 * index], &value, 4);
    put(path, b);
}

// Replaces a file by a FIFO of the same name (a reader that opens it without checking would block).
void make_fifo(const std::string& path) {
    ::unlink(path.c_str());
    REQUIRE(::mkfifo(path.c_str(), 0644) == 0);
}

// Hard-links every regular file of `src` into a new folder `dst`.
void link_tree(const std::string& src, const std::string& dst) {
    REQUIRE(::mkdir(dst.c_str(), 0755) == 0);
    DIR* d = ::opendir(src.c_str());
    REQUIRE(d);
    while (dirent* e = ::readdir(d)) {
        std::string s = src + "/" + e->d_name;
        struct stat st;
        if (::stat(s.c_str(), &st) == 0 && S_ISREG(st.st_mode))
            REQUIRE(::link(s.c_str(), (dst + "/" + e->d_name).c_str()) == 0);
    }
    ::closedir(d);
}

// Every regular file under `dir` with its size and modification time, to spot new or changed files.
void snapshot(const std::string& dir, std::map<std::string, std::string>& out) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        std::string p = dir + "/" + name;
        struct stat st;
        if (::lstat(p.c_str(), &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) snapshot(p, out);
        else out[p] = cat(st.st_size, "/", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
    }
    ::closedir(d);
}

struct RunResult {
    int status = -1;
    std::string err;
};

// Runs `timeout LIMIT $HAFVT_BIN args...` with stdin and stdout on /dev/null, stderr to `err_path`.
// A malformed input must be refused within 20 s (a hang fails the case); the fixtures that train
// get longer, since the sanitizer build (make debug) trains many times slower.
RunResult run_bin(const std::vector<std::string>& args, const std::string& err_path, int limit_s = 20,
                  const std::string& in_path = "/dev/null") {
    std::vector<std::string> full = {"timeout", std::to_string(limit_s)};
    for (const std::string& w : testutil::hafvt_argv()) full.push_back(w);
    full.insert(full.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : full) argv.push_back(&a[0]);
    argv.push_back(nullptr);
    // argv is built before fork: the child only calls async-signal-safe functions.
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int in = ::open(in_path.c_str(), O_RDONLY), out = ::open("/dev/null", O_WRONLY);
        // nothing may allocate without bound: a virtual-memory limit, where no sanitizer needs
        // its large shadow reservations
        if (!testutil::sanitized() && ::access("/dev/nvidiactl", F_OK) != 0) {  // a CUDA driver reserves more
            struct rlimit lim = {kVmLimit, kVmLimit};
            ::setrlimit(RLIMIT_AS, &lim);
        }
        int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(in, 0);
        ::dup2(out, 1);
        ::dup2(err, 2);
        ::execvp("timeout", argv.data());
        ::_exit(127);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    RunResult r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.err = get(err_path);
    return r;
}

// The shared inputs, made once per test run: a small synthetic dataset and a tiny trained run.
struct Fixture {
    std::string root, ds, run;
    ~Fixture() {
        if (!root.empty() && !std::getenv("HAFVT_KEEP_TMP")) std::system(("rm -rf '" + root + "'").c_str());
    }
};

const Fixture& fixture() {
    static Fixture f;
    if (!f.root.empty()) return f;
    f.root = testutil::temp_dir("malformed");
    f.ds = f.root + "/ds";
    f.run = f.root + "/run";
    RunResult r = run_bin({"synth", "--out", f.ds, "--size", "small"}, f.root + "/synth.err", 600);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    r = run_bin({"train", "--data", f.ds, "--out", f.run, "--q", "16", "--blocks", "1", "--epochs", "1",
                 "--batch", "512", "--skip-test", "--threads", "2"}, f.root + "/train.err", 600);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    // The case table's numbers (rows, ids, byte counts, ASINs) are those of `synth --size small`.
    auto lines = [&](const char* name) {
        std::string t = get(f.ds + "/" + name);
        return (size_t)std::count(t.begin(), t.end(), '\n');
    };
    std::string img = get(f.ds + "/img.npy");
    NpyHeader h = npy_parse_header(img, "img.npy");
    bool same = lines("Alist.txt") == 1500 && lines("Blist.txt") == 1800 && lines("validdata_new.txt") == 500 &&
                lines("testdata_new.txt") == 500 && h.shape == std::vector<size_t>{3300, 64} && h.data_offset == 128 &&
                contains(get(f.ds + "/Alist.txt"), "\tSX00000018\t") && contains(get(f.ds + "/Blist.txt"), "\tSY00000002\t");
    REQUIRE_MESSAGE(same, "synth --size small changed its sizes: update the numbers in tests/test_malformed.cpp");
    return f;
}

// One case's folder: D = a copy of the dataset, C = a copy of the run's best checkpoint (alone in
// its folder), R = a copy of the whole run, O = a run folder that does not exist yet.
struct Ctx {
    std::string dir, D, C, R, O;
};

Ctx make_case(size_t k) {
    const Fixture& f = fixture();
    Ctx x;
    x.dir = cat(f.root, "/case", k);
    REQUIRE(::mkdir(x.dir.c_str(), 0755) == 0);
    x.D = x.dir + "/data";
    x.R = x.dir + "/run";
    x.O = x.dir + "/out";
    link_tree(f.ds, x.D);
    link_tree(f.run, x.R);
    REQUIRE(::mkdir((x.dir + "/ck").c_str(), 0755) == 0);
    x.C = x.dir + "/ck/best.safetensors";
    REQUIRE(::link((f.run + "/best.safetensors").c_str(), x.C.c_str()) == 0);
    return x;
}

// Splits a command on spaces and fills in $D, $C, $R, $O.
std::vector<std::string> expand(const std::string& cmd, const Ctx& x) {
    std::vector<std::string> out;
    std::istringstream is(cmd);
    std::string w;
    while (is >> w) {
        for (const auto& kv : {std::make_pair("$D", x.D), std::make_pair("$C", x.C), std::make_pair("$R", x.R),
                               std::make_pair("$O", x.O)}) {
            size_t at;
            while ((at = w.find(kv.first)) != std::string::npos) w.replace(at, 2, kv.second);
        }
        out.push_back(w);
    }
    return out;
}

using Corrupt = std::function<void(const Ctx&)>;

struct Case {
    const char* name;
    Corrupt corrupt;                // edits the case's copies (may be empty)
    std::string cmd;                // the command line, with $D $C $R $O
    std::vector<std::string> want;  // pieces the error line must hold: file, place, expected/found
    std::string in = "/dev/null";   // stdin, with $D $C $R $O
};

// A short training run on the case's data; flags appended per case.
const std::string TRAIN = "train --data $D --out $O --q 16 --blocks 1 --epochs 1 --batch 512 --max-steps 1 --skip-test --threads 1";
const std::string EVAL = "eval --ckpt $C --data $D --threads 1";
const std::string IMG = TRAIN + " --img $D/img.npy";

void no_op(const Ctx&) {}

std::vector<Case> malformed_cases() {
    return {
        // ---- sequence files -----------------------------------------------------------------
        {"seq: line without tabs", [](const Ctx& x) { set_line(x.D + "/traindata_new.txt", 5, "17"); }, TRAIN,
         {"traindata_new.txt:5:", "expected 'user<TAB>seq_id<TAB>", "found no tab in '17'"}},
        {"seq: non-numeric user id", [](const Ctx& x) { set_line(x.D + "/traindata_new.txt", 5, "u7\t0\t1|10|d|\t2|20|d|"); }, TRAIN,
         {"traindata_new.txt:5:", "expected a non-negative integer user id", "found 'u7'"}},
        {"seq: non-numeric seq_id", [](const Ctx& x) { set_line(x.D + "/validdata_new.txt", 9, "7\tzz\t1|10|d|\t2|20|d|"); }, TRAIN,
         {"validdata_new.txt:9:", "seq_id in field 2", "found 'zz'"}},
        {"seq: huge user id", [](const Ctx& x) { set_line(x.D + "/testdata_new.txt", 2, "99999999999999999999\t0\t1|10|\t2|20|"); }, TRAIN,
         {"testdata_new.txt:2:", "user id", "found '99999999999999999999'"}},
        {"seq: non-numeric item id", [](const Ctx& x) { set_line(x.D + "/traindata_new.txt", 5, "1\t0\tabc|100|d|\t2|200|d|"); }, TRAIN,
         {"traindata_new.txt:5:", "token 1", "expected an integer item id", "found 'abc|100|d|'"}},
        {"seq: item id = NX+NY", [](const Ctx& x) { set_line(x.D + "/traindata_new.txt", 5, "1\t0\t3|10|d|\t3300|100|d|"); }, TRAIN,
         {"traindata_new.txt:5:", "token 2", "expected 0..3299", "found '3300|100|d|'"}},
        {"seq: negative item id", [](const Ctx& x) { set_line(x.D + "/validdata_new.txt", 3, "1\t0\t-4|100|d|\t2|200|d|"); }, TRAIN,
         {"validdata_new.txt:3:", "token 1", "out of range", "found '-4|100|d|'"}},
        {"seq: negative timestamp", [](const Ctx& x) { set_line(x.D + "/traindata_new.txt", 7, "1\t0\t3|10|d|\t4|-5|d|"); }, TRAIN,
         {"traindata_new.txt:7:", "token 2", "expected a non-negative timestamp", "found '4|-5|d|'"}},
        {"seq: huge timestamp", [](const Ctx& x) { set_line(x.D + "/testdata_new.txt", 4, "1\t0\t3|99999999999999999999|d|\t4|5|d|"); }, TRAIN,
         {"testdata_new.txt:4:", "token 1", "does not fit a 64-bit integer", "found '3|99999999999999999999|d|'"}},
        {"seq: empty timestamp", [](const Ctx& x) { set_line(x.D + "/traindata_new.txt", 5, "1\t0\t3||d|\t4|5|d|"); }, TRAIN,
         {"traindata_new.txt:5:", "token 1", "expected an integer unix timestamp", "found '3||d|'"}},
        {"seq: token without '|'", [](const Ctx& x) { set_line(x.D + "/traindata_new.txt", 5, "1\t0\t17\t4|5|d|"); }, TRAIN,
         {"traindata_new.txt:5:", "token 1", "expected 'item|timestamp|...'", "found '17' (no '|')"}},
        {"seq: eval line with one item", [](const Ctx& x) { set_line(x.D + "/validdata_new.txt", 3, "1\t0\t5|100|d|"); }, TRAIN,
         {"validdata_new.txt:3:", "expected at least 2 items", "found 1"}},
        {"seq: eval line with no items", [](const Ctx& x) { set_line(x.D + "/testdata_new.txt", 500, "1\t0"); }, TRAIN,
         {"testdata_new.txt:500:", "expected at least 2 items", "found 0"}},
        {"seq: blank lines only", [](const Ctx& x) { put(x.D + "/testdata_new.txt", "\n\n  \n\n"); }, TRAIN,
         {"testdata_new.txt:", "expected lines 'user<TAB>seq_id<TAB>", "found only blank lines"}},
        {"seq: empty file", [](const Ctx& x) { put(x.D + "/validdata_new.txt", ""); }, TRAIN,
         {"validdata_new.txt:", "expected lines 'user<TAB>seq_id<TAB>", "found an empty file"}},
        {"seq: train lines all shorter than 2", [](const Ctx& x) { put(x.D + "/traindata_new.txt", "1\t0\t3|5|\n2\t1\t4|6|\n"); }, TRAIN,
         {"traindata_new.txt:", "expected at least one sequence with 2 or more items", "2 lines with fewer than 2 items"}},
        {"seq: path is a directory", [](const Ctx& x) { ::unlink((x.D + "/traindata_new.txt").c_str()); ::mkdir((x.D + "/traindata_new.txt").c_str(), 0755); }, TRAIN,
         {"traindata_new.txt:", "expected a file, found a directory"}},
        {"seq: missing file", [](const Ctx& x) { ::unlink((x.D + "/validdata_new.txt").c_str()); }, TRAIN,
         {"validdata_new.txt:", "cannot open", "No such file"}},
        {"seq: --train-file that does not exist", no_op, TRAIN + " --train-file nosuch.txt",
         {"nosuch.txt:", "cannot open", "No such file"}},
        // ---- item lists ---------------------------------------------------------------------
        {"items: non-contiguous local id", [](const Ctx& x) { set_line(x.D + "/Alist.txt", 4, "3\tSX00000004\t7"); }, TRAIN,
         {"Alist.txt:4:", "expected local_id 3", "found '7'"}},
        {"items: non-numeric local id", [](const Ctx& x) { set_line(x.D + "/Blist.txt", 10, "9\tSY00000010\tnine"); }, TRAIN,
         {"Blist.txt:10:", "expected local_id 9", "found 'nine'"}},
        {"items: duplicate ASIN within Alist", [](const Ctx& x) { set_line(x.D + "/Alist.txt", 5, "4\tSX00000002\t4"); }, TRAIN,
         {"Alist.txt:5:", "ASIN 'SX00000002' is not unique", "Alist.txt item 1", "expected every ASIN once"}},
        {"items: ASIN of Alist repeated in Blist", [](const Ctx& x) { set_line(x.D + "/Blist.txt", 2, "1\tSX00000001\t1"); }, TRAIN,
         {"Blist.txt:2:", "ASIN 'SX00000001' is not unique", "Alist.txt item 0"}},
        {"items: missing column", [](const Ctx& x) { set_line(x.D + "/Alist.txt", 6, "5\tSX00000006"); }, TRAIN,
         {"Alist.txt:6:", "expected 3 tab-separated fields", "found 2"}},
        {"items: extra column", [](const Ctx& x) { set_line(x.D + "/Blist.txt", 3, "2\tSY00000003\t2\textra"); }, TRAIN,
         {"Blist.txt:3:", "expected 3 tab-separated fields", "found more than 3"}},
        {"items: empty ASIN", [](const Ctx& x) { set_line(x.D + "/Alist.txt", 2, "1\t\t1"); }, TRAIN,
         {"Alist.txt:2:", "expected a non-empty ASIN", "found '1\t\t1'"}},
        {"items: empty Blist", [](const Ctx& x) { put(x.D + "/Blist.txt", ""); }, TRAIN,
         {"Blist.txt:", "expected at least one item line", "found none"}},
        {"items: missing Alist", [](const Ctx& x) { ::unlink((x.D + "/Alist.txt").c_str()); }, TRAIN,
         {"Alist.txt:", "not found", "expected", "C2DSR dataset folder"}},
        // ---- .npy feature files -------------------------------------------------------------
        {"npy: bad magic", [](const Ctx& x) { sub(x.D + "/img.npy", "\x93NUMPY", "XNUMPY"); }, IMG,
         {"img.npy:", "expected the magic \\x93NUMPY at byte 0", "found 'XNUMPY'"}},
        {"npy: unsupported version", [](const Ctx& x) { sub(x.D + "/img.npy", std::string("NUMPY\x01", 6), std::string("NUMPY\x04", 6)); }, IMG,
         {"img.npy:", "unsupported .npy version 4.0 at byte 6", "expected 1.0, 2.0 or 3.0"}},
        {"npy: dtype <f8", [](const Ctx& x) { sub(x.D + "/img.npy", "'<f4'", "'<f8'"); }, IMG,
         {"img.npy:", "unsupported dtype '<f8'", "expected '<f4' (float32) or '<f2'"}},
        {"npy: dtype >f4", [](const Ctx& x) { sub(x.D + "/txt.npy", "'<f4'", "'>f4'"); }, TRAIN + " --txt $D/txt.npy",
         {"txt.npy:", "unsupported dtype '>f4'", "expected '<f4'", "big-endian"}},
        {"npy: dtype <i4", [](const Ctx& x) { sub(x.D + "/img.npy", "'<f4'", "'<i4'"); }, IMG,
         {"img.npy:", "unsupported dtype '<i4'", "expected '<f4'"}},
        {"npy: Fortran order", [](const Ctx& x) { sub(x.D + "/img.npy", "False", "True "); }, IMG,
         {"img.npy:", "Fortran order", "expected C order"}},
        {"npy: one row too few", [](const Ctx& x) {
             std::vector<float> v(3299 * 64, 0.5f);
             put(x.D + "/img.npy", "");
             npy_write_f32(x.D + "/img.npy", v.data(), {3299, 64});
         }, IMG, {"img.npy:", "expected 3300 rows", "found 3299"}},
        {"npy: 1-D array", [](const Ctx& x) { sub(x.D + "/img.npy", "(3300, 64)", "(211200,) "); }, IMG,
         {"img.npy:", "expected a 2-D array [3300, e]", "found 1-D"}},
        {"npy: 3-D array", [](const Ctx& x) { sub(x.D + "/img.npy", "(3300, 64)", "(3300,8,8)"); }, IMG,
         {"img.npy:", "expected a 2-D array [3300, e]", "found 3-D"}},
        {"npy: shape larger than the payload", [](const Ctx& x) { sub(x.D + "/img.npy", "(3300, 64)", "(3300, 65)"); }, IMG,
         {"img.npy:", "payload of shape (3300, 65)", "should be 858000 bytes from byte 128", "found 844800 bytes (file truncated)"}},
        {"npy: truncated payload", [](const Ctx& x) { truncate_to(x.D + "/img.npy", 128 + 844800 - 1000); }, IMG,
         {"img.npy:", "should be 844800 bytes from byte 128", "found 843800 bytes (file truncated)"}},
        {"npy: extra bytes after the payload", [](const Ctx& x) { put(x.D + "/img.npy", get(x.D + "/img.npy") + "xyz"); }, IMG,
         {"img.npy:", "should be 844800 bytes", "found 844803 bytes (extra data after the array)"}},
        {"npy: header length beyond the file", [](const Ctx& x) { truncate_to(x.D + "/img.npy", 100); }, IMG,
         {"img.npy:", "header length at byte 8 says 118 bytes", "only 90 bytes follow byte 10"}},
        {"npy: unknown header key", [](const Ctx& x) { sub(x.D + "/img.npy", "'shape'", "'shapf'"); }, IMG,
         {"img.npy:", "malformed .npy header at byte", "unexpected key 'shapf'", "expected descr, fortran_order, shape"}},
        {"npy: NaN row", [](const Ctx& x) { npy_set(x.D + "/img.npy", 17, 3, NAN); }, IMG,
         {"img.npy:", "row 17 (SX00000018) column 3", "expected a finite value", "found nan"}},
        {"npy: Inf row", [](const Ctx& x) { npy_set(x.D + "/txt.npy", 2000, 0, -INFINITY); }, TRAIN + " --txt $D/txt.npy",
         {"txt.npy:", "row 2000", "column 0", "expected a finite value", "found -inf"}},
        {"npy: widths of img and txt differ", [](const Ctx& x) {
             std::vector<float> v(3300 * 32, 0.25f);
             put(x.D + "/txt.npy", "");
             npy_write_f32(x.D + "/txt.npy", v.data(), {3300, 32});
         }, IMG + " --txt $D/txt.npy", {"txt.npy:", "expected width 64", "found 32"}},
        {"npy: missing feature file", no_op, TRAIN + " --img $D/nope.npy", {"nope.npy:", "cannot open", "No such file"}},
        // ---- alignment files ----------------------------------------------------------------
        {"ids: mismatching ASIN", [](const Ctx& x) { set_line(x.D + "/img_ids.txt", 8, "BOGUS"); }, IMG + " --img-ids $D/img_ids.txt",
         {"img_ids.txt:", "line 8 (row 7)", "expected ASIN 'SX00000008' (Alist)", "found 'BOGUS'"}},
        {"ids: mismatch in the Blist part", [](const Ctx& x) { set_line(x.D + "/txt_ids.txt", 1502, "SY00000003"); }, TRAIN + " --txt $D/txt.npy --txt-ids $D/txt_ids.txt",
         {"txt_ids.txt:", "line 1502 (row 1501)", "expected ASIN 'SY00000002' (Blist)", "found 'SY00000003'"}},
        {"ids: too few rows", [](const Ctx& x) { remove_last_line(x.D + "/img_ids.txt"); }, IMG + " --img-ids $D/img_ids.txt",
         {"img_ids.txt:", "expected 3300 ASINs", "found 3299"}},
        {"ids: too many rows", [](const Ctx& x) { put(x.D + "/img_ids.txt", get(x.D + "/img_ids.txt") + "EXTRA\n"); }, IMG + " --img-ids $D/img_ids.txt",
         {"img_ids.txt:", "line 3301", "expected 3300 ASINs", "found more"}},
        // ---- checkpoints (hafvt eval --ckpt) ------------------------------------------------
        {"ckpt: truncated data section", [](const Ctx& x) { truncate_to(x.C, get(x.C).size() / 2); }, EVAL,
         {"best.safetensors:", "truncated", "data_offsets [", "expected end <= "}},
        {"ckpt: shorter than the length field", [](const Ctx& x) { truncate_to(x.C, 5); }, EVAL,
         {"best.safetensors:", "expected at least 8 bytes", "found 5"}},
        {"ckpt: truncated inside the header", [](const Ctx& x) { truncate_to(x.C, 200); }, EVAL,
         {"best.safetensors:", "header length at byte 0 says", "only 192 bytes follow byte 8"}},
        {"ckpt: header length too large", [](const Ctx& x) { st_set_len(x.C, 1ull << 40); }, EVAL,
         {"best.safetensors:", "header length at byte 0 says 1099511627776 bytes", "expected at most 100000000"}},
        {"ckpt: overlapping offsets", [](const Ctx& x) {
             st_edit(x.C, [](Json& h) {
                 std::vector<StSpan> s = st_spans(h);
                 // the second of two tensors of equal size takes the first one's bytes
                 for (size_t i = 0; i < s.size(); i++)
                     for (size_t j = i + 1; j < s.size(); j++)
                         if (s[j].end - s[j].begin == s[i].end - s[i].begin) {
                             st_set_offsets(h, s[j].name, s[i].begin, s[i].end);
                             return;
                         }
             });
         }, EVAL, {"best.safetensors:", "tensors '", "(bytes ", "overlap in the data section"}},
        {"ckpt: offsets beyond the data section", [](const Ctx& x) {
             st_edit(x.C, [](Json& h) { st_set_offsets(h, "enc.x.id.pos", 235084, 235084 + 1024); });
         }, EVAL, {"best.safetensors:", "tensor 'enc.x.id.pos'", "data_offsets [235084, 236108]", "<= 235084"}},
        {"ckpt: offsets that disagree with the shape", [](const Ctx& x) {
             st_edit(x.C, [](Json& h) { h.get("enc.x.id.pos")->set("shape", Json::array().push(16).push(15)); });
         }, EVAL, {"best.safetensors:", "tensor 'enc.x.id.pos'", "needs 960 bytes", "hold 1024"}},
        {"ckpt: unsupported dtype F64", [](const Ctx& x) {
             st_edit(x.C, [](Json& h) { h.get("E_id")->set("dtype", "F64"); });
         }, EVAL, {"best.safetensors:", "tensor 'E_id'", "unsupported dtype 'F64'", "expected F32, F16, I32 or I64"}},
        {"ckpt: integer dtype for a weight", [](const Ctx& x) {
             st_edit(x.C, [](Json& h) { h.get("E_id")->set("dtype", "I32"); });
         }, EVAL, {"best.safetensors:", "tensor 'E_id'", "expected dtype F32 or F16", "found I32"}},
        {"ckpt: invalid JSON header", [](const Ctx& x) { sub(x.C, "{\"", "[\""); }, EVAL,
         {"best.safetensors", "invalid JSON at byte", "expected"}},
        {"ckpt: not a hafvt checkpoint", [](const Ctx& x) {
             st_edit(x.C, [](Json& h) { h.get("__metadata__")->set("format", "pt"); });
         }, EVAL, {"best.safetensors:", "expected a hafvt checkpoint", "found 'pt'"}},
        {"ckpt: a .npy file given as checkpoint", no_op, "eval --ckpt $D/img.npy --data $D",
         {"img.npy:", "header length at byte 0 says", "expected at most 100000000"}},
        {"ckpt: trained with another --q", [](const Ctx& x) { st_set_config(x.C, "q", 32); }, EVAL,
         {"best.safetensors:", "tensor 'E_id'", "expected shape [3301, 32]", "found [3301, 16]"}},
        {"ckpt: missing tensor", [](const Ctx& x) { sub(x.C, "\"enc.y.id.pos\"", "\"enc.y.id.poz\""); }, EVAL,
         {"best.safetensors:", "tensor 'enc.y.id.pos' missing"}},
        {"ckpt: stored config with invalid settings", [](const Ctx& x) { st_set_config(x.C, "heads", 3); }, EVAL,
         {"best.safetensors:", "the config stored in the checkpoint is invalid: 'heads': expected a divisor of 'q' 16", "found 3"}},
        {"ckpt: stored config with a negative size", [](const Ctx& x) { st_set_config(x.C, "q", -5); }, EVAL,
         {"best.safetensors:", "'q': expected a number within the range of its setting", "found -5"}},
        {"ckpt: metadata number out of range", [](const Ctx& x) {
             st_edit(x.C, [](Json& h) { h.get("__metadata__")->set("epoch", "1e300"); });
         }, EVAL, {"best.safetensors:", "__metadata__ 'epoch': expected a number in [", "found '1e300'"}},
        {"ckpt: missing file", no_op, "eval --ckpt $O/best.safetensors --data $D", {"best.safetensors:", "cannot open", "No such file"}},
        // ---- negatives next to the checkpoint -----------------------------------------------
        {"negatives: wrong shape", [](const Ctx& x) {
             std::vector<int32_t> v(500 * 10, 1);
             npy_write_i32(x.dir + "/ck/negatives_test.npy", v.data(), {500, 10});
         }, EVAL, {"negatives_test.npy:", "expected shape [500, 999]", "found (500, 10)"}},
        {"negatives: one row too few", [](const Ctx& x) {
             std::vector<int32_t> v(499 * 999, 1);
             npy_write_i32(x.dir + "/ck/negatives_valid.npy", v.data(), {499, 999});
         }, EVAL + " --split valid", {"negatives_valid.npy:", "expected shape [500, 999]", "found (499, 999)"}},
        {"negatives: item of the wrong domain", [](const Ctx& x) {
             std::vector<int32_t> v(500 * 999, 3299);  // a Y item; line 1's target is in X or Y
             v[0] = -1;
             npy_write_i32(x.dir + "/ck/negatives_test.npy", v.data(), {500, 999});
         }, EVAL, {"negatives_test.npy:", "row 0 column 0", "expected an item of the target's domain", "found -1"}},
        // ---- the command line ---------------------------------------------------------------
        {"flag: unknown", no_op, TRAIN + " --bogus 1", {"hafvt train:", "unknown flag --bogus"}},
        {"flag: missing value", no_op, TRAIN + " --q", {"hafvt train:", "--q expects a value", "found the end of the line"}},
        {"flag: non-numeric value", no_op, TRAIN + " --q abc", {"--q:", "expected a non-negative integer", "found 'abc'"}},
        {"flag: negative size", no_op, TRAIN + " --batch -5", {"--batch:", "expected a non-negative integer", "found '-5'"}},
        {"flag: integer overflow", no_op, TRAIN + " --epochs 99999999999999999999", {"--epochs:", "expected a non-negative integer", "found '99999999999999999999'"}},
        {"flag: nan", no_op, TRAIN + " --dropout nan", {"--dropout:", "expected a number", "found 'nan'"}},
        {"flag: value for a switch", no_op, TRAIN + " --exclude-history=yes", {"--exclude-history", "takes no value", "found 'yes'"}},
        {"flag: stray argument", no_op, TRAIN + " extra", {"hafvt train:", "unexpected argument 'extra'"}},
        {"flag: --dropout 1.5", no_op, TRAIN + " --dropout 1.5", {"--dropout:", "expected 0 <= p < 1", "found 1.5"}},
        {"flag: --batch 0", no_op, TRAIN + " --batch 0", {"--batch:", "expected 1..65536", "found 0"}},
        {"flag: --T 0", no_op, TRAIN + " --T 0", {"--T:", "expected 1..512", "found 0"}},
        {"flag: --lr -1", no_op, TRAIN + " --lr -1", {"--lr:", "expected 0 < lr < 10", "found -1"}},
        {"flag: --heads not dividing --q", no_op, TRAIN + " --heads 3", {"--heads:", "expected a divisor of --q 16", "found 3"}},
        {"flag: --alpha + --beta > 1", no_op, TRAIN + " --alpha 0.8 --beta 0.5", {"--alpha 0.8 + --beta 0.5", "expected a sum of at most 1", "= 1.3"}},
        {"flag: negative --alpha", no_op, TRAIN + " --alpha -0.5", {"--alpha/--beta:", "expected weights in [0, 1]", "found -0.5"}},
        {"flag: --modalities img without --img", no_op, TRAIN + " --modalities id,img", {"--modalities", "expected", "--img", "found no --img"}},
        {"flag: --img-ids without --img", no_op, TRAIN + " --img-ids $D/img_ids.txt", {"--img-ids", "expected", "--img", "found no --img"}},
        {"flag: --views bogus", no_op, TRAIN + " --views bogus", {"--views:", "expected items from {x,y,xy}", "found 'bogus'"}},
        {"flag: --views with an empty item", no_op, TRAIN + " --views x,,xy", {"--views:", "expected items from {x,y,xy}", "found '' in 'x,,xy'"}},
        {"flag: --protocol bogus", no_op, TRAIN + " --protocol bogus", {"--protocol:", "expected full or c2dsr", "found 'bogus'"}},
        {"flag: --device bogus", no_op, TRAIN + " --device tpu", {"--device:", "expected cpu, cuda, auto or emulate", "found 'tpu'"}},
        // the GPU attention takes T <= 64: refused in every build (a build without CUDA or a
        // machine without a device would refuse --device cuda anyway, but for that reason)
        {"flag: --device cuda with --T above 64", no_op, TRAIN + " --device cuda --T 65",
         {"--T:", "expected <= 64 with --device cuda", "found 65", "use --device cpu"}},
        {"eval: --device cuda with a checkpoint of --T 65", [](const Ctx& x) { st_set_config(x.C, "T", 65); },
         EVAL + " --device cuda", {"'T':", "expected <= 64 with --device cuda", "found 65", "use --device cpu"}},
        {"flag: --data missing", no_op, "train --out $O --q 16", {"--data:", "required"}},
        {"flag: --out is a file", no_op, TRAIN + " --out $D/Alist.txt", {"Alist.txt:", "expected a folder, found a file"}},
        {"flag: --resume with no previous run", no_op, TRAIN + " --resume", {"out/last.safetensors:", "--resume needs the last checkpoint", "found none"}},
        {"flag: --resume with another --q", no_op,
         "train --data $D --out $R --q 32 --blocks 1 --epochs 2 --batch 512 --skip-test --threads 1 --resume",
         {"run/last.safetensors:", "--resume with other settings", "\"q\":16", "\"q\":32"}},
        {"flag: eval --split bogus", no_op, EVAL + " --split train", {"hafvt eval: --split:", "expected valid or test", "found 'train'"}},
        {"flag: eval without --ckpt", no_op, "eval --data $D", {"hafvt eval:", "--ckpt F is required"}},
        {"flag: unknown command", no_op, "trian --data $D", {"hafvt: unknown command 'trian'", "expected one of"}},
        {"recommend: unknown history item", no_op, "recommend --ckpt $C --data $D NOPE",
         {"hafvt recommend: history item 1", "expected an ASIN of the catalog or a merged id 0..3299", "found 'NOPE'"}},
        {"info: not a .npy or safetensors file", no_op, "info $D/Alist.txt", {"Alist.txt:", "unknown format", "expected a .npy file", "found"}},
        // ---- round two: classes of hostile input (each group one class) -------------------------
        // non-regular files: refused by name, never read without bound nor opened to block
        {"file: --img is /dev/zero", no_op, TRAIN + " --img /dev/zero",
         {"/dev/zero:", "expected a regular file, found a character device"}},
        {"file: info /dev/zero", no_op, "info /dev/zero", {"/dev/zero:", "expected a regular file, found a character device"}},
        {"file: Alist.txt is a FIFO", [](const Ctx& x) { make_fifo(x.D + "/Alist.txt"); }, TRAIN,
         {"Alist.txt:", "expected a regular file, found a FIFO"}},
        {"file: eval --ckpt /dev/zero", no_op, "eval --ckpt /dev/zero --data $D", {"/dev/zero:", "expected a regular file"}},
        {"file: --img-ids is /dev/null", no_op, IMG + " --img-ids /dev/null", {"/dev/null:", "expected a regular file, found a character device"}},
        {"file: text-features --titles is a FIFO", [](const Ctx& x) { make_fifo(x.D + "/titles.tsv"); },
         "text-features --data $D --titles $D/titles.tsv --out $D/t.npy", {"titles.tsv:", "expected a regular file, found a FIFO"}},
        {"file: the run's negatives are a FIFO", [](const Ctx& x) { make_fifo(x.dir + "/ck/negatives_valid.npy"); },
         EVAL + " --split valid --protocol c2dsr", {"negatives_valid.npy:", "expected a regular file, found a FIFO"}},
        // a checkpoint's stored configuration checked against its tensors before the model is built
        {"ckpt: stored q edited to claim a larger model (eval)", [](const Ctx& x) { st_set_config(x.C, "q", 4096); }, EVAL,
         {"best.safetensors:", "tensor 'E_id'", "expected shape [3301, 4096] (from the stored configuration), found [3301, 16]"}},
        {"ckpt: stored q edited to claim a larger model (recommend)", [](const Ctx& x) { st_set_config(x.C, "q", 8000); },
         "recommend --ckpt $C --data $D SX00000018", {"best.safetensors:", "tensor 'E_id'", "expected shape [3301, 8000] (from the stored configuration), found [3301, 16]"}},
        {"ckpt: stored blocks edited", [](const Ctx& x) { st_set_config(x.C, "blocks", 3); }, EVAL,
         {"best.safetensors:", "tensor 'enc.x.id.blk1.ln1.w' missing", "the stored configuration implies it"}},
        // non-finite numbers refused at load
        {"ckpt: a NaN weight (eval)", [](const Ctx& x) { st_poke_f32(x.C, "E_id", 5, NAN); }, EVAL,
         {"best.safetensors:", "tensor 'E_id' element 5", "expected a finite number, found nan"}},
        {"ckpt: a NaN weight (recommend)", [](const Ctx& x) { st_poke_f32(x.C, "E_id", 40, NAN); },
         "recommend --ckpt $C --data $D SX00000018", {"best.safetensors:", "tensor 'E_id' element 40", "expected a finite number, found nan"}},
        {"ckpt: an infinite weight", [](const Ctx& x) { st_poke_f32(x.C, "enc.xy.id.blk0.attn.wqkv", 7, INFINITY); }, EVAL,
         {"best.safetensors:", "tensor 'enc.xy.id.blk0.attn.wqkv' element 7", "expected a finite number, found inf"}},
        // binary bytes where text is expected: refused with line and column, never echoed raw
        {"text: a NUL inside a sequence line", [](const Ctx& x) {
             set_line(x.D + "/traindata_new.txt", 5, std::string("1\t0\t3|10|d|\0\t4|20|d|", 20));
         }, TRAIN, {"traindata_new.txt:5: column 12:", "expected text, found the control byte 0x00"}},
        {"text: an escape sequence in Alist.txt", [](const Ctx& x) { set_line(x.D + "/Alist.txt", 3, "2\tSX\x1b[31m0003\t2"); }, TRAIN,
         {"Alist.txt:3: column 5:", "found the control byte 0x1b"}},
        {"text: a NUL in the alignment file", [](const Ctx& x) { set_line(x.D + "/img_ids.txt", 2, std::string("SX0") + std::string(1, '\0') + "000002"); },
         IMG + " --img-ids $D/img_ids.txt", {"img_ids.txt:2: column 4:", "found the control byte 0x00"}},
        {"text: a NUL in a titles file", [](const Ctx& x) {
             put(x.D + "/titles.tsv", std::string("local_id\tmerged_id\tasin\ttitle\n0\t0\tSX00000001\tA p\0n\n", 51));
         }, "text-features --data $D --titles $D/titles.tsv --out $D/t.npy", {"titles.tsv:2: column 19:", "found the control byte 0x00"}},
        {"text: a NUL in a history on stdin", [](const Ctx& x) { put(x.D + "/hist.txt", std::string("SX00000018\0SX00000019\n", 22)); },
         "recommend --ckpt $C --data $D", {"stdin: byte 10:", "found the control byte 0x00"}, "$D/hist.txt"},
        {"text: a history read from /dev/zero", no_op, "recommend --ckpt $C --data $D", {"stdin: byte 0:", "control byte 0x00"}, "/dev/zero"},
        {"text: bytes that are not UTF-8 are escaped in the message", [](const Ctx& x) {
             set_line(x.D + "/traindata_new.txt", 5, "1\t0\t\xff\xfe|10|d|\t4|20|d|");
         }, TRAIN, {"traindata_new.txt:5:", "found '\\xff\\xfe|10|d|'"}},
        // commands with several outputs write all or none
        {"outputs: text-features cannot write its ids file", [](const Ctx& x) {
             put(x.D + "/titles.tsv", "local_id\tmerged_id\tasin\ttitle\n0\t0\tSX00000001\tA pan\n");
         }, "text-features --data $D --titles $D/titles.tsv --out $D/t.npy --ids-out $D/nodir/t_ids.txt",
         {"nodir/t_ids.txt:", "cannot open for writing"}},
        {"outputs: text-features cannot write its .npy", [](const Ctx& x) {
             put(x.D + "/titles.tsv", "local_id\tmerged_id\tasin\ttitle\n0\t0\tSX00000001\tA pan\n");
         }, "text-features --data $D --titles $D/titles.tsv --out $D/nodir/t.npy --ids-out $D/t_ids.txt",
         {"nodir/t.npy:", "cannot open for writing"}},
        // resource settings within bounds
        {"flag: --threads 10000", no_op, TRAIN + " --threads 10000", {"--threads:", "expected 0..1024", "found 10000"}},
        {"flag: --threads -3", no_op, TRAIN + " --threads -3", {"--threads:", "expected 0..1024", "found -3"}},
        {"flag: --loss-window -2", no_op, TRAIN + " --loss-window -2", {"--loss-window:", "expected 0 (every position) or a positive count", "found -2"}},
        {"flag: eval --threads 5000", no_op, EVAL + " --threads 5000", {"--threads:", "expected 0..1024", "found 5000"}},
        // messages that blame the right thing
        {"ckpt: one byte short", [](const Ctx& x) { std::string b = get(x.C); put(x.C, b.substr(0, b.size() - 1)); }, EVAL,
         {"best.safetensors:", "truncated", "expected end <= "}},
        {"flag: every enabled modality has weight 0", no_op, TRAIN + " --modalities id --alpha 0",
         {"--alpha/--beta:", "expected a positive weight for at least one enabled modality", "found id 0"}},
        // configuration files and the user's mistakes: one line, the nearest name suggested
        {"config: unknown key", [](const Ctx& x) { put(x.dir + "/c.json", "{\"q\": 16, \"blockz\": 1}"); },
         "train --config " "$D/../c.json --data $D --out $O", {"c.json:", "unknown setting 'blockz'", "did you mean 'blocks'?"}},
        {"config: a number given as a string", [](const Ctx& x) { put(x.dir + "/c.json", "{\"q\": \"16\"}"); },
         "train --config $D/../c.json --data $D --out $O", {"c.json:", "'q':", "expected a number", "found \"16\""}},
        {"config: not an object", [](const Ctx& x) { put(x.dir + "/c.json", "[16]"); },
         "train --config $D/../c.json --data $D --out $O", {"c.json:", "expected a JSON object of settings", "found array"}},
        {"recommend: an unknown item in a histories file", [](const Ctx& x) { put(x.D + "/h.txt", "u1\tSX00000018 17\nu2\t5, NOPE\n"); },
         "recommend --ckpt $C --data $D --histories $D/h.txt", {"h.txt:2: item 2:", "expected an ASIN of the catalog or a merged id 0..3299", "found 'NOPE'"}},
        {"recommend: --histories and --split together", [](const Ctx& x) { put(x.D + "/h.txt", "17\n"); },
         "recommend --ckpt $C --data $D --histories $D/h.txt --split test", {"expected one of --histories and --split, found both"}},
        {"recommend: --split of another name", no_op, "recommend --ckpt $C --data $D --split train", {"--split:", "expected valid or test", "found 'train'"}},
        // report and compare read a run folder's config.json and metrics.jsonl
        {"report: a metric that is not a number", [](const Ctx& x) {
             std::string m = read_file(x.R + "/metrics.jsonl");
             const size_t at = m.find("\"mrr\":");
             REQUIRE(at != std::string::npos);
             m.replace(at, 6, "\"mrr\":\"high\",\"was\":");
             put(x.R + "/metrics.jsonl", m);
         }, "report $R --out $O.html", {"run/metrics.jsonl:1:", "'X': 'mrr': expected a number, found a string"}},
        {"report: a metrics line cut short", [](const Ctx& x) { put(x.R + "/metrics.jsonl", read_file(x.R + "/metrics.jsonl") + "{\"epoch\":3,\"st\n"); },
         "report $R --out $O.html", {"run/metrics.jsonl:3:", "invalid JSON at byte 14", "unterminated string"}},
        {"report: a folder that is not a run", no_op, "report $D --out $O.html",
         {"data: expected a run folder of hafvt train --out (config.json and metrics.jsonl), found no config.json"}},
        {"compare: no run folder", no_op, "compare", {"hafvt compare:", "expected one or more run folders", "found none"}},
        {"user: a misspelled flag", no_op, "train --dat $D --out $O", {"unknown flag --dat", "did you mean --data?"}},
        {"user: a misspelled subcommand", no_op, "trian --data $D", {"unknown command 'trian'", "did you mean train?"}},
        {"user: a flag of another subcommand", no_op, "eval --ckpt $C --data $D --lr 0.1", {"hafvt eval: unknown flag --lr"}},
        {"user: a missing required flag", no_op, "train --out $O", {"--data:", "required"}},
        {"flag: eval --alpha 2 is the flag's problem", no_op, EVAL + " --alpha 2", {"--alpha", "expected weights in [0, 1]", "found 2 for --alpha"}},
        {"flag: eval --eval-batch 0 is refused, not ignored", no_op, EVAL + " --eval-batch 0", {"--eval-batch:", "expected 1..65536", "found 0"}},
        {"flag: eval --beta 0.9 names the default it adds up with", no_op, EVAL + " --beta 0.9",
         {"--alpha 0.333333 (the default) + --beta 0.9", "expected a sum of at most 1"}},
        // fingerprints: the features of a resumed run and the catalog of eval and recommend
        {"resume: another feature file of the same shape", [](const Ctx& x) {
             std::system(("rm -rf '" + x.R + "'").c_str());
             RunResult r = run_bin(expand(TRAIN + " --img $D/img.npy", x), x.dir + "/first.err", 600);
             REQUIRE_MESSAGE(r.status == 0, r.err);
             std::system(("mv '" + x.O + "' '" + x.R + "'").c_str());
             std::string img = get(x.D + "/img.npy");
             img[img.size() - 3] ^= 0x40;  // one value of the last row changes; the shape does not
             put(x.D + "/img.npy", img);
         }, "train --data $D --out $R --q 16 --blocks 1 --epochs 2 --batch 512 --max-steps 1 --skip-test --threads 1 --img $D/img.npy --resume",
         {"last.safetensors:", "--resume with other settings or data than the run being continued"}},
        {"catalog: eval with other ASINs, same counts", [](const Ctx& x) {
             std::string a = get(x.D + "/Alist.txt");
             a.replace(a.find("SX00000018"), 10, "SXQQQQQQQQ");
             put(x.D + "/Alist.txt", a);
         }, EVAL, {"data:", "expected the catalog (Alist.txt, Blist.txt) that", "found another one with 1500 + 1800 items"}},
        {"catalog: recommend with other ASINs, same counts", [](const Ctx& x) {
             std::string b = get(x.D + "/Blist.txt");
             b.replace(b.find("SY00000002"), 10, "SYQQQQQQQQ");
             put(x.D + "/Blist.txt", b);
         }, "recommend --ckpt $C --data $D 17", {"data:", "expected the catalog (Alist.txt, Blist.txt) that"}},
    };
}

// Odd but valid inputs that must be accepted (exit 0).
std::vector<Case> accepted_cases() {
    auto crlf = [](const std::string& path) {
        std::string s = get(path), out;
        for (char ch : s) {
            if (ch == '\n') out += '\r';
            out += ch;
        }
        put(path, out);
    };
    return {
        {"CRLF line endings everywhere", [crlf](const Ctx& x) {
             for (const char* f : {"Alist.txt", "Blist.txt", "traindata_new.txt", "validdata_new.txt", "testdata_new.txt", "img_ids.txt"})
                 crlf(x.D + "/" + f);
         }, IMG + " --img-ids $D/img_ids.txt", {}},
        {"blank lines, trailing tabs, no final newline", [](const Ctx& x) {
             std::string s = get(x.D + "/validdata_new.txt");
             s.pop_back();
             put(x.D + "/validdata_new.txt", "\n\n" + s);
             set_line(x.D + "/traindata_new.txt", 3, "5\t2\t7|5|d|\t8|3|d|\t \t");
         }, TRAIN, {}},
        {"a feature row of tiny values (1e-41) normalizes to a unit row", [](const Ctx& x) {
             std::string img = get(x.D + "/img.npy");
             const size_t row = 7, off = npy_parse_header(img, "img.npy").data_offset + row * 64 * 4;
             for (size_t c = 0; c < 64; c++) {
                 const float v = (c % 2 ? -1e-41f : 1e-41f);
                 std::memcpy(&img[off + c * 4], &v, 4);
             }
             put(x.D + "/img.npy", img);
         }, IMG, {}},
        {"an alignment file with trailing blank lines", [](const Ctx& x) {
             put(x.D + "/img_ids.txt", get(x.D + "/img_ids.txt") + "\n\n");
         }, IMG + " --img-ids $D/img_ids.txt", {}},
        {"train lines with one item are skipped", [](const Ctx& x) { set_line(x.D + "/traindata_new.txt", 4, "5\t2\t7|5|d|"); }, TRAIN, {}},
        {"npy version 2.0 and 3.0 headers", [](const Ctx& x) {
             const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3300, 64), }";
             put(x.D + "/img.npy", npy_bytes(dict, npy_payload(x.D + "/img.npy"), 2));
             put(x.D + "/txt.npy", npy_bytes(dict, npy_payload(x.D + "/txt.npy"), 3));
         }, IMG + " --txt $D/txt.npy", {}},
        {"float16 features with all-zero rows", [](const Ctx& x) {
             std::string payload(3300 * 8 * 2, '\0');
             for (size_t i = 8 * 2; i < payload.size(); i += 2) payload[i + 1] = '\x3c';  // 1.0; row 0 stays zero
             put(x.D + "/img.npy", npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (3300, 8), }", payload));
         }, IMG, {}},
        {"eval with the run's saved negatives", [](const Ctx& x) {
             ::link((fixture().run + "/negatives_valid.npy").c_str(), (x.dir + "/ck/negatives_valid.npy").c_str());
         }, EVAL + " --split valid --protocol c2dsr", {}},
        {"--flag=value syntax", no_op, "train --data=$D --out=$O --q=16 --blocks=1 --epochs=1 --batch=512 --max-steps=1 --skip-test --threads=1", {}},
    };
}

// Runs one case in its own folder; `before` gets the folder's files as they were just before the run.
RunResult run_case(size_t k, const Case& c, Ctx& x, std::map<std::string, std::string>& before, int limit_s = 20) {
    x = make_case(k);
    if (c.corrupt) c.corrupt(x);
    snapshot(x.dir, before);
    return run_bin(expand(c.cmd, x), fixture().root + cat("/case", k, ".err"), limit_s, expand(c.in, x)[0]);
}

}  // namespace

TEST_CASE("malformed input: exit status 2, one 'error:' line naming file, place, expected and found; no output") {
    const std::vector<Case> cases = malformed_cases();
    CHECK(cases.size() >= 130);
    for (size_t k = 0; k < cases.size(); k++) {
        const Case& c = cases[k];
        INFO("case '", std::string(c.name), "': ", c.cmd);
        Ctx x;
        std::map<std::string, std::string> before, after;
        RunResult r = run_case(1000 + k, c, x, before);
        INFO("stderr: ", r.err);
        CHECK(r.status == 2);
        CHECK(r.err.rfind("error: ", 0) == 0);
        CHECK(r.err.find(".cpp:") == std::string::npos);  // a user's mistake, not a bug report: no source place
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK((!r.err.empty() && r.err.back() == '\n'));
        for (const std::string& w : c.want) {
            CAPTURE(w);
            CHECK(contains(r.err, w));
        }
        // nothing written: no new or changed file, no temporary, and no run folder
        snapshot(x.dir, after);
        for (const auto& kv : after) {
            CAPTURE(kv.first);
            CHECK(before.count(kv.first) == 1);
            CHECK(before[kv.first] == kv.second);
        }
        struct stat st;
        CHECK(::stat(x.O.c_str(), &st) != 0);
    }
}

TEST_CASE("odd but valid input is accepted") {
    const std::vector<Case> cases = accepted_cases();
    for (size_t k = 0; k < cases.size(); k++) {
        const Case& c = cases[k];
        INFO("case '", std::string(c.name), "': ", c.cmd);
        Ctx x;
        std::map<std::string, std::string> before;
        RunResult r = run_case(2000 + k, c, x, before, 300);  // these train a step: slow under sanitizers
        INFO("stderr: ", r.err);
        CHECK(r.status == 0);
        CHECK(r.err.empty());
        struct stat st;
        if (c.cmd.rfind("train", 0) == 0) CHECK(::stat((x.O + "/last.safetensors").c_str(), &st) == 0);
    }
}

// The committed fuzz corpus (tests/fuzz/corpus) replayed in-process through the fuzzed entry
// points, so every regression input found by `make fuzz` is checked by `make test` too.
TEST_CASE("fuzz corpus: every seed is read or refused with InputError") {
    auto files = [](const std::string& dir) {
        std::vector<std::string> out;
        if (DIR* d = ::opendir(dir.c_str())) {
            while (dirent* e = ::readdir(d))
                if (e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
            ::closedir(d);
        }
        return out;
    };
    ItemCatalog items;
    items.NX = 6;
    items.NY = 9;
    for (size_t i = 0; i < 15; i++) items.asin.push_back(cat("A", i));
    size_t n = 0;
    for (const std::string& f : files("tests/fuzz/corpus/npy")) {
        CAPTURE(f);
        std::string b = get(f);
        try { npy_decode_f32(b, f, nullptr); } catch (const InputError&) {}
        try { npy_decode_i32(b, f, nullptr); } catch (const InputError&) {}
        n++;
    }
    for (const std::string& f : files("tests/fuzz/corpus/safetensors")) {
        CAPTURE(f);
        try {
            StFile st = safetensors_parse(get(f), f);
            for (const StEntry& e : st.entries) {
                try { st.read_f32(e.name); } catch (const InputError&) {}
                try { st.read_int(e.name); } catch (const InputError&) {}
            }
        } catch (const InputError&) {}
        n++;
    }
    // first byte: bit 0 = train file, the rest picks T (as in tests/fuzz/fuzz_c2dsr.cpp)
    for (const std::string& f : files("tests/fuzz/corpus/c2dsr")) {
        CAPTURE(f);
        std::string b = get(f);
        if (b.empty()) continue;
        try { parse_sequences(b.substr(1), f, items, 1 + ((uint8_t)b[0] >> 1) % 20, b[0] & 1); } catch (const InputError&) {}
        n++;
    }
    CHECK(n >= 20);
}
