// flags.cpp: the flag parser of flags.h.
#include "core/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "core/common.h"

namespace hafvt {

std::string flags_usage(const char* cmd, const char* synopsis, const std::vector<Flag>& flags) {
    std::string s = cat("usage: hafvt ", cmd, " ", synopsis, "\n\nflags:\n");
    for (const Flag& f : flags) {
        std::string n = cat("  --", f.name, f.kind == Kind::BOOL ? "" : " X");
        s += cat(n, std::string(n.size() < 24 ? 24 - n.size() : 1, ' '), f.help, "\n");
    }
    return s;
}

bool parse_flags(const char* cmd, const char* synopsis, int argc, char** argv, const std::vector<Flag>& flags,
                 std::vector<std::string>* pos) {
    for (int i = 0; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::printf("%s", flags_usage(cmd, synopsis, flags).c_str());
            return false;
        }
        if (a.rfind("--", 0) != 0 || a == "--") {
            HAFVT_INPUT(pos, "hafvt ", cmd, ": unexpected argument '", a, "' (see hafvt ", cmd, " --help)");
            pos->push_back(a);
            continue;
        }
        std::string name = a.substr(2), value;
        size_t eq = name.find('=');
        bool has_eq = eq != std::string::npos;
        if (has_eq) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        const Flag* f = nullptr;
        for (const Flag& g : flags)
            if (name == g.name) f = &g;
        if (!f) {
            std::vector<std::string> names;
            for (const Flag& g : flags) names.push_back(g.name);
            HAFVT_FAIL_INPUT("hafvt ", cmd, ": unknown flag --", name, did_you_mean(name, names, "--"), " (see hafvt ", cmd,
                             " --help)");
        }
        if (f->kind == Kind::BOOL) {
            HAFVT_INPUT(!has_eq, "hafvt ", cmd, ": --", name, " takes no value, found '", value, "'");
            *(bool*)f->dst = true;
            continue;
        }
        if (!has_eq) {
            HAFVT_INPUT(i + 1 < argc, "hafvt ", cmd, ": --", name, " expects a value, found the end of the line");
            value = argv[++i];
        }
        const char* s = value.c_str();
        char* end = nullptr;
        errno = 0;
        switch (f->kind) {
            case Kind::STR: *(std::string*)f->dst = value; break;
            case Kind::STRS: ((std::vector<std::string>*)f->dst)->push_back(value); break;
            case Kind::SIZE:
            case Kind::U64: {
                unsigned long long x = std::strtoull(s, &end, 10);
                HAFVT_INPUT(!value.empty() && *end == '\0' && errno == 0 && value[0] != '-', "hafvt ", cmd, ": --", name,
                            ": expected a non-negative integer, found '", value, "'");
                if (f->kind == Kind::SIZE) *(size_t*)f->dst = (size_t)x;
                else *(uint64_t*)f->dst = (uint64_t)x;
                break;
            }
            case Kind::INT: {
                long x = std::strtol(s, &end, 10);
                HAFVT_INPUT(!value.empty() && *end == '\0' && errno == 0 && x > -1000000000L && x < 1000000000L, "hafvt ", cmd,
                            ": --", name, ": expected an integer, found '", value, "'");
                *(int*)f->dst = (int)x;
                break;
            }
            case Kind::FLOAT: {
                float x = std::strtof(s, &end);
                HAFVT_INPUT(!value.empty() && *end == '\0' && errno == 0 && std::isfinite(x), "hafvt ", cmd, ": --", name,
                            ": expected a number, found '", value, "'");
                *(float*)f->dst = x;
                break;
            }
            case Kind::BOOL: break;
        }
    }
    return true;
}

}  // namespace hafvt
