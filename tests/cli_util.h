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

// Runs `hafvt ARGS` through the shell with a time limit; captures the output.
inline RunResult run_hafvt(const std::string& args, int timeout_s = 300) {
    RunResult r;
    std::string cmd = "timeout " + std::to_string(timeout_s) + " " + hafvt_bin() + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

}  // namespace testutil
