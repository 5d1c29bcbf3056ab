// run_dir.cpp: the run folder and the machine probes of run_dir.h.
#include "train/run_dir.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace hafvt {

double peak_rss_gib() {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}


void make_dirs(const std::string& path) {
    std::string p;
    for (size_t i = 0; i <= path.size(); i++) {
        if (i == path.size() || path[i] == '/') {
            if (!p.empty() && p != ".") {
                struct stat st;
                if (stat(p.c_str(), &st) != 0) {
                    HAFVT_INPUT(mkdir(p.c_str(), 0755) == 0, p, ": cannot create the folder (", std::strerror(errno), ")");
                } else {
                    HAFVT_INPUT(S_ISDIR(st.st_mode), p, ": expected a folder, found a file");
                }
            }
        }
        if (i < path.size()) p += path[i];
    }
}

bool file_exists(const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

// A process killed between AtomicFile's write and rename leaves `name.tmp.<pid>` behind. Nothing
// reads those, but they would pile up: remove the ones whose writer no longer exists.
std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
    std::vector<std::string> removed;
    DIR* d = opendir(dir.c_str());
    if (!d) return removed;
    while (const dirent* e = readdir(d)) {
        const std::string name = e->d_name;
        const size_t t = name.rfind(".tmp.");
        if (t == std::string::npos || t == 0 || t + 5 >= name.size()) continue;
        char* end = nullptr;
        const long pid = std::strtol(name.c_str() + t + 5, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;  // its writer may still be running
        if (std::remove((dir + "/" + name).c_str()) == 0) removed.push_back(name);
    }
    closedir(d);
    return removed;
}



// The value of the line `format` ("Key: %lf kB") of a /proc file, in bytes; 0 when absent.
static double proc_bytes(const char* path, const char* format) {
    FILE* f = std::fopen(path, "r");
    double kb = 0;
    char line[256];
    while (f && std::fgets(line, sizeof line, f))
        if (std::sscanf(line, format, &kb) == 1) break;
    if (f) std::fclose(f);
    return kb * 1024.0;
}

// Bytes the machine can give us: MemAvailable, or HAFVT_MEMORY_LIMIT_MB when set (tests).
double available_bytes() {
    if (const char* lim = std::getenv("HAFVT_MEMORY_LIMIT_MB")) return std::atof(lim) * 1048576.0;
    const double b = proc_bytes("/proc/meminfo", "MemAvailable: %lf kB");
    return b > 0 ? b : 1e18;  // unknown: do not refuse
}

// Resident memory of this process (VmRSS): the program, the sequences and the frozen tables.
double resident_bytes() { return proc_bytes("/proc/self/status", "VmRSS: %lf kB"); }

}  // namespace hafvt
