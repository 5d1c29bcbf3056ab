// cli_util.h: running the hafvt binary from tests ($HAFVT_BIN, set by `make test`).
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <string>

#include <vector>

#include "core/common.h"
#include "core/lines.h"
#include "core/json.h"
#include "test_util.h"

namespace testutil {

inline std::string hafvt_bin() {
    const char* b = std::getenv("HAFVT_BIN");
    return b ? b : "build/hafvt";
}

// hafvt_bin() as the words of a command line, for the tests that exec it: the binary, or a runner
// and the binary ("qemu-aarch64 build/cross-aarch64/hafvt" in make test-cross).
inline std::vector<std::string> hafvt_argv() {
    std::vector<std::string> words;
    const std::string b = hafvt_bin();
    for (size_t i = 0; i < b.size();) {
        const size_t j = std::min(b.find(' ', i), b.size());
        if (j > i) words.push_back(b.substr(i, j - i));
        i = j + 1;
    }
    return words;
}

struct RunResult {
    int status = -1;     // exit status, or 128 + signal
    std::string out;     // stdout and stderr together
};

// Runs a shell command; returns its exit status (128 + signal when killed) and puts stdout and
// stderr together in `out` (may be null).
inline int run_shell(const std::string& cmd, std::string* out) {
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
    int st = pclose(p);
    if (out) *out = s;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Runs `hafvt ARGS` with a time limit.
inline RunResult run_hafvt(const std::string& args, int timeout_s = 300) {
    RunResult r;
    r.status = run_shell("timeout " + std::to_string(timeout_s) + " " + hafvt_bin() + " " + args, &r.out);
    return r;
}

// The tiny synthetic dataset (`hafvt synth --size tiny`), generated once per test program.
inline const std::string& tiny_dataset() {
    static std::string dir;
    if (dir.empty()) {
        dir = temp_dir("tiny") + "/data";
        RunResult r = run_hafvt("synth --size tiny --out " + dir);
        REQUIRE_MESSAGE(r.status == 0, r.out);
    }
    return dir;
}

// A run's metrics.jsonl, one object per line, without the wall-clock "seconds" (the only field
// that may differ between two runs of the same seed).
inline std::vector<hafvt::Json> metrics_without_seconds(const std::string& run) {
    std::vector<hafvt::Json> out;
    std::string text = hafvt::read_file(run + "/metrics.jsonl");
    hafvt::LineReader lr(text, run + "/metrics.jsonl");
    for (hafvt::Span line; lr.next(line);) {
        hafvt::Json j = hafvt::Json::parse(line.str(), run);
        hafvt::Json k = hafvt::Json::object();
        for (const auto& kv : j.items())
            if (kv.first != "seconds") k.set(kv.first, kv.second);
        out.push_back(k);
    }
    return out;
}

}  // namespace testutil
