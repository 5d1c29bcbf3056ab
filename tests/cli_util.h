// cli_util.h: running the hafvt binary from tests ($HAFVT_BIN, set by `make test`).
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common.h"
#include "test_util.h"

namespace testutil {

inline std::string hafvt_bin() {
    const char* b = std::getenv("HAFVT_BIN");
    return b ? b : "build/hafvt";
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

}  // namespace testutil
