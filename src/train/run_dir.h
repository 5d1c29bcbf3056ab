// run_dir.h: the run folder of `hafvt train` (SPEC §6) and the machine probes of a run: creating
// the folder, removing temporaries that killed writers left, the text outputs kept in memory and
// rewritten atomically, and the memory figures (peak and resident set, MemAvailable).
#pragma once
#include <unistd.h>

#include <cstdio>
#include <cstdio>
#include <string>
#include <vector>

#include "core/common.h"

namespace hafvt {

// The run's text outputs live in memory and are rewritten whole (temporary name + rename) at
// every evaluation, so a kill never leaves a torn line.
struct RunFiles {
    std::string dir, log;
    std::vector<std::string> metrics;  // one JSON object per line
    // On a terminal the progress line updates in place (progress); in a file or a pipe every line
    // printed is an ordinary line. train.log always holds ordinary lines.
    bool tty = isatty(fileno(stdout)) != 0;
    bool live = false;  // a progress line is on the terminal, not yet ended
    // false on a rank other than 0 of an MPI job, which writes no file (its standard output
    // already goes to /dev/null: main.cpp)
    bool write_files = true;
    void say(const std::string& line) {
        if (live) std::printf("\r\x1b[K");  // the progress line gives way
        live = false;
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
        log += line + "\n";
    }
    // A progress line: on a terminal it replaces the previous one (and is logged when `log_it`);
    // elsewhere it is printed and logged only when `log_it`, about ten times an epoch.
    void progress(const std::string& line, bool log_it) {
        if (!tty) {
            if (log_it) say(line);
            return;
        }
        std::printf("\r\x1b[K%s", line.c_str());
        std::fflush(stdout);
        live = true;
        if (log_it) log += line + "\n";
    }
    void flush() const {
        if (!write_files) return;
        std::string m;
        for (const auto& l : metrics) m += l + "\n";
        write_file_atomic(dir + "/metrics.jsonl", m);
        write_file_atomic(dir + "/train.log", log);
    }
};

// Creates every missing folder of `path`; InputError when one cannot be made or is a file.
void make_dirs(const std::string& path);
bool file_exists(const std::string& path);
// Removes `name.tmp.<pid>` files in dir whose writer no longer runs; returns their names.
std::vector<std::string> remove_stale_temporaries(const std::string& dir);

// The peak resident set of this process in GiB (getrusage).
double peak_rss_gib();
// Bytes the machine can give us: MemAvailable, or HAFVT_MEMORY_LIMIT_MB when set (tests).
double available_bytes();
// Resident memory of this process (VmRSS).
double resident_bytes();

}  // namespace hafvt
