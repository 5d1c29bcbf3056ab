// flags.h: the command-line flag parser every subcommand uses: a flag has a name, a kind, a
// destination and a help line; --help prints the usage built from the list.
#pragma once
#include <string>
#include <vector>

namespace hafvt {

// The kinds of value a flag (or a setting, train/config.h) takes; STRS: a repeatable string flag
// (std::vector<std::string>, one entry per use), not a setting kind.
enum class Kind { STR, SIZE, INT, FLOAT, U64, BOOL, STRS };

struct Flag {
    const char* name;  // without "--"
    Kind kind;
    void* dst;
    const char* help;
};

// The usage text of a subcommand: its synopsis (which may go on with a description after a blank
// line), then one line per flag.
std::string flags_usage(const char* cmd, const char* synopsis, const std::vector<Flag>& flags);
// Parses argv[0..argc) into the flags (--name value, --name=value, switches without a value);
// positional arguments go to `pos` (an error when null). --help prints the usage and returns false.
bool parse_flags(const char* cmd, const char* synopsis, int argc, char** argv, const std::vector<Flag>& flags,
                 std::vector<std::string>* pos);

}  // namespace hafvt
