// json.cpp: parser and printer for json.h. The grammar is RFC 8259 exactly: no comments, no
// trailing commas, no NaN/Infinity, no leading zeros, no control characters inside strings.
#include "core/json.h"

#include "core/common.h"

#include <cmath>
#include <cstdlib>
#include <unordered_set>

namespace hafvt {

// Empty containers: the variant's default is null, so builders start from these.
Json Json::object() {
    Json j;
    j.v_ = Object{};
    return j;
}

Json Json::array() {
    Json j;
    j.v_ = Array{};
    return j;
}

const char* Json::type_name() const {
    static const char* names[] = {"null", "bool", "number", "string", "array", "object"};
    return names[v_.index()];
}

bool Json::is_integer() const {
    if (!is_number()) return false;
    double x = std::get<double>(v_);
    return std::isfinite(x) && x == std::floor(x) && std::fabs(x) <= 9007199254740992.0;
}

// Wrong-type access is a user's file with the wrong shape of data, hence InputError.
#define JSON_EXPECT(cond, want) \
    HAFVT_INPUT(cond, "JSON: expected ", want, ", found ", is_number() ? "a number" : \
                is_string() ? "a string" : is_null() ? "null" : is_bool() ? "a bool" :     \
                is_array() ? "an array" : "an object")

bool Json::as_bool() const {
    JSON_EXPECT(is_bool(), "a bool");
    return std::get<bool>(v_);
}
double Json::as_number() const {
    JSON_EXPECT(is_number(), "a number");
    return std::get<double>(v_);
}
int64_t Json::as_int() const {
    JSON_EXPECT(is_integer(), "an integer");
    return (int64_t)std::get<double>(v_);
}
const std::string& Json::as_string() const {
    JSON_EXPECT(is_string(), "a string");
    return std::get<std::string>(v_);
}
const Json::Array& Json::as_array() const {
    JSON_EXPECT(is_array(), "an array");
    return std::get<Array>(v_);
}
const Json::Object& Json::items() const {
    JSON_EXPECT(is_object(), "an object");
    return std::get<Object>(v_);
}

// Linear lookup: our objects are small (configs, one header entry per tensor) and ordered.
const Json* Json::get(const std::string& key) const {
    if (!is_object()) return nullptr;
    for (const auto& kv : std::get<Object>(v_))
        if (kv.first == key) return &kv.second;
    return nullptr;
}
Json* Json::get(const std::string& key) {
    return const_cast<Json*>(static_cast<const Json*>(this)->get(key));
}

size_t Json::size() const {
    if (is_array()) return std::get<Array>(v_).size();
    if (is_object()) return std::get<Object>(v_).size();
    return 0;
}

Json& Json::set(const std::string& key, Json value) {
    HAFVT_CHECK(is_object(), "Json::set(\"", key, "\") on a ", type_name());
    if (Json* old = get(key)) *old = std::move(value);
    else std::get<Object>(v_).emplace_back(key, std::move(value));
    return *this;
}

Json& Json::push(Json value) {
    HAFVT_CHECK(is_array(), "Json::push on a ", type_name());
    std::get<Array>(v_).push_back(std::move(value));
    return *this;
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

// RFC 8259 string: the two mandatory escapes, short forms for common controls, \u00XX for the rest.
static void dump_string(const std::string& s, std::string& out) {
    out += '"';
    for (char ch : s) {
        unsigned char c = (unsigned char)ch;
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += ch;  // UTF-8 bytes pass through unchanged
                }
        }
    }
    out += '"';
}

// Integers print as integers; other doubles with the fewest of 15..17 digits that read back equal.
static void dump_number(double x, std::string& out) {
    char buf[32];
    if (!std::isfinite(x)) {
        out += "null";
    } else if (x == std::floor(x) && std::fabs(x) <= 9007199254740992.0) {
        std::snprintf(buf, sizeof buf, "%lld", (long long)x);
        out += buf;
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            std::snprintf(buf, sizeof buf, "%.*g", prec, x);
            if (std::strtod(buf, nullptr) == x) break;
        }
        out += buf;
    }
}

// Appends the compact text of this value; recursion depth is that of the value we built.
void Json::dump_to(std::string& out) const {
    switch (type()) {
        case Type::null: out += "null"; break;
        case Type::boolean: out += std::get<bool>(v_) ? "true" : "false"; break;
        case Type::number: dump_number(std::get<double>(v_), out); break;
        case Type::string: dump_string(std::get<std::string>(v_), out); break;
        case Type::array: {
            out += '[';
            bool first = true;
            for (const Json& e : std::get<Array>(v_)) {
                if (!first) out += ',';
                first = false;
                e.dump_to(out);
            }
            out += ']';
            break;
        }
        case Type::object: {
            out += '{';
            bool first = true;
            for (const auto& kv : std::get<Object>(v_)) {
                if (!first) out += ',';
                first = false;
                dump_string(kv.first, out);
                out += ':';
                kv.second.dump_to(out);
            }
            out += '}';
            break;
        }
    }
}

std::string Json::dump() const {
    std::string out;
    dump_to(out);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Parsing: recursive descent with an explicit depth bound, so hostile input cannot exhaust the
// stack. Every error names the document and the byte offset where it was noticed.
// ---------------------------------------------------------------------------------------------

struct JsonParser {
    const std::string& s;
    const std::string& what;
    size_t base = 0;  // offset of text[0] in the file, for messages
    size_t pos = 0;

    // "what: invalid JSON at byte N: msg (found 'c')", with N counted from the file's start.
    [[noreturn]] void fail(const std::string& msg, size_t at) const {
        std::string found = at < s.size() ? cat("'", s[at] >= 0x20 && s[at] < 0x7f ? std::string(1, s[at])
                                                     : cat("\\x", std::hex, (int)(unsigned char)s[at]), "'")
                                          : std::string("end of text");
        HAFVT_FAIL_INPUT(what, ": invalid JSON at byte ", base + at, ": ", msg, " (found ", found, ")");
    }
    void skip_ws() {
        while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r')) pos++;
    }
    bool literal(const char* word) {
        size_t n = std::strlen(word);
        if (s.compare(pos, n, word) != 0) return false;
        pos += n;
        return true;
    }

    // Any value; `depth` counts the containers around it.
    Json value(int depth) {
        skip_ws();
        if (pos >= s.size()) fail("expected a value", pos);
        char c = s[pos];
        if (c == '{' || c == '[') {
            if (depth >= Json::k_max_depth) fail(cat("nesting deeper than ", Json::k_max_depth, " levels"), pos);
            return c == '{' ? object(depth + 1) : array(depth + 1);
        }
        if (c == '"') return Json(string());
        if (c == '-' || (c >= '0' && c <= '9')) return Json(number());
        if (literal("true")) return Json(true);
        if (literal("false")) return Json(false);
        if (literal("null")) return Json();
        fail("expected a value", pos);
    }

    Json object(int depth) {
        Json j = Json::object();
        Json::Object& obj = std::get<Json::Object>(j.v_);
        std::unordered_set<std::string> seen;  // duplicate keys are refused, in linear time
        pos++;  // '{'
        skip_ws();
        if (pos < s.size() && s[pos] == '}') { pos++; return j; }
        for (;;) {
            skip_ws();
            size_t key_at = pos;
            if (pos >= s.size() || s[pos] != '"') fail("expected a string key", pos);
            std::string key = string();
            if (!seen.insert(key).second) fail(cat("duplicate key \"", key, "\""), key_at);
            skip_ws();
            if (pos >= s.size() || s[pos] != ':') fail("expected ':' after an object key", pos);
            pos++;
            obj.emplace_back(std::move(key), value(depth));
            skip_ws();
            if (pos < s.size() && s[pos] == ',') { pos++; continue; }
            if (pos < s.size() && s[pos] == '}') { pos++; return j; }
            fail("expected ',' or '}' in an object", pos);
        }
    }

    Json array(int depth) {
        Json j = Json::array();
        Json::Array& arr = std::get<Json::Array>(j.v_);
        pos++;  // '['
        skip_ws();
        if (pos < s.size() && s[pos] == ']') { pos++; return j; }
        for (;;) {
            arr.push_back(value(depth));
            skip_ws();
            if (pos < s.size() && s[pos] == ',') { pos++; continue; }
            if (pos < s.size() && s[pos] == ']') { pos++; return j; }
            fail("expected ',' or ']' in an array", pos);
        }
    }

    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, then strtod on exactly that span.
    double number() {
        size_t start = pos;
        auto digits = [&] {
            size_t d0 = pos;
            while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') pos++;
            if (pos == d0) fail("expected a digit", pos);
        };
        if (s[pos] == '-') pos++;
        if (pos < s.size() && s[pos] == '0') {
            pos++;
            if (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') fail("leading zeros are not allowed", pos);
        } else {
            digits();
        }
        if (pos < s.size() && s[pos] == '.') { pos++; digits(); }
        if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
            pos++;
            if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) pos++;
            digits();
        }
        std::string span = s.substr(start, pos - start);
        double x = std::strtod(span.c_str(), nullptr);
        if (!std::isfinite(x)) fail("number out of the range of a double", start);
        return x;
    }

    // The four hex digits of a \u escape.
    unsigned hex4() {
        if (s.size() - pos < 4) fail("truncated \\u escape", pos);
        unsigned v = 0;
        for (int i = 0; i < 4; i++, pos++) {
            char c = s[pos];
            unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                       : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
            if (d == 16) fail("expected a hex digit in \\u escape", pos);
            v = v * 16 + d;
        }
        return v;
    }

    // Code point to UTF-8: 1 byte below 0x80, 2 below 0x800, 3 below 0x10000, else 4.
    static void put_utf8(unsigned cp, std::string& out) {
        if (cp < 0x80) {
            out += (char)cp;
        } else if (cp < 0x800) {
            out += (char)(0xc0 | (cp >> 6));
            out += (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += (char)(0xe0 | (cp >> 12));
            out += (char)(0x80 | ((cp >> 6) & 0x3f));
            out += (char)(0x80 | (cp & 0x3f));
        } else {
            out += (char)(0xf0 | (cp >> 18));
            out += (char)(0x80 | ((cp >> 12) & 0x3f));
            out += (char)(0x80 | ((cp >> 6) & 0x3f));
            out += (char)(0x80 | (cp & 0x3f));
        }
    }

    // A quoted string starting at pos; returns its decoded UTF-8 bytes.
    std::string string() {
        std::string out;
        pos++;  // opening quote
        for (;;) {
            if (pos >= s.size()) fail("unterminated string", pos);
            unsigned char c = (unsigned char)s[pos];
            if (c == '"') { pos++; return out; }
            if (c < 0x20) fail("control character inside a string (escape it)", pos);
            if (c != '\\') { out += (char)c; pos++; continue; }
            size_t esc_at = pos++;
            if (pos >= s.size()) fail("unterminated escape", pos);
            char e = s[pos++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xdc00 && cp <= 0xdfff) fail("lone low surrogate in \\u escape", esc_at);
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        // A high surrogate must be followed by \u and a low surrogate.
                        if (s.compare(pos, 2, "\\u") != 0) fail("high surrogate without a low surrogate", esc_at);
                        pos += 2;
                        unsigned lo = hex4();
                        if (lo < 0xdc00 || lo > 0xdfff) fail("high surrogate without a low surrogate", esc_at);
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    }
                    put_utf8(cp, out);
                    break;
                }
                default: fail("unknown escape", pos - 1);
            }
        }
    }
};

Json Json::parse(const std::string& text, const std::string& what, size_t base) {
    JsonParser p{text, what, base};
    Json j = p.value(0);
    p.skip_ws();
    if (p.pos != text.size()) p.fail("unexpected text after the JSON value", p.pos);
    return j;
}

}  // namespace hafvt
