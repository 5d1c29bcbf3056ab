// lines.h: the one line splitter of the readers: a borrowed slice of a file's text and a walk over
// its lines that copies nothing.
#pragma once
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "core/common.h"

namespace hafvt {

// A borrowed slice of the file text; parsing never copies a token into a std::string.
struct Span {
    const char* p = nullptr;
    size_t n = 0;
    bool empty() const { return n == 0; }
    std::string str() const { return std::string(p, n); }
};

// Whether a byte may stand in a line of text: printable, a tab, or part of UTF-8 (>= 0x80); not a
// NUL, another control byte or DEL.
inline bool text_byte(unsigned char c) { return (c >= 0x20 && c != 0x7f) || c == '\t'; }

// The tokens of `s` separated by runs of any byte of `seps`.
inline std::vector<std::string> split_tokens(const char* s, size_t n, const char* seps) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < n) {
        while (i < n && std::strchr(seps, s[i])) i++;
        const size_t start = i;
        while (i < n && !std::strchr(seps, s[i])) i++;
        if (i > start) out.emplace_back(s + start, i - start);
    }
    return out;
}

// Walks a file's text line by line: strips a trailing '\r' (CRLF files) and, with strip_blanks,
// trailing tabs and spaces too; handles a missing final newline (a final newline ends the text,
// it does not start an empty line). `line_no` is the 1-based number of the last line returned.
// Text is text: a line holding a control byte other than tab (a NUL, an escape sequence, a stray
// '\r') is refused with InputError naming `path`, the line and the column.
struct LineReader {
    const char* cur;
    const char* end;
    std::string path;
    bool strip_blanks;
    size_t line_no = 0;
    LineReader(const std::string& text, std::string path_, bool strip_blanks_ = true)
        : cur(text.data()), end(text.data() + text.size()), path(std::move(path_)), strip_blanks(strip_blanks_) {}
    bool done() const { return cur >= end; }  // no line left
    bool next(Span& line) {
        if (done()) return false;
        const char* nl = static_cast<const char*>(std::memchr(cur, '\n', (size_t)(end - cur)));
        const char* stop = nl ? nl : end;
        line.p = cur;
        line.n = (size_t)(stop - cur);
        if (strip_blanks) {
            while (line.n && (line.p[line.n - 1] == '\r' || line.p[line.n - 1] == '\t' || line.p[line.n - 1] == ' '))
                line.n--;
        } else if (line.n && line.p[line.n - 1] == '\r') {
            line.n--;
        }
        cur = nl ? nl + 1 : end;
        line_no++;
        for (size_t i = 0; i < line.n; i++) {
            const unsigned char c = (unsigned char)line.p[i];
            if (!text_byte(c))
                HAFVT_FAIL_INPUT(path, ":", line_no, ": column ", i + 1, ": expected text, found the control byte ",
                                 byte_hex(c));
        }
        return true;
    }
};

}  // namespace hafvt
