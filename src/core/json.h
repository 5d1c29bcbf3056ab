// json.h: a small JSON value of our own, for safetensors headers, config.json, metrics.jsonl and
// checkpoint metadata. Objects keep their keys in insertion order (so files diff cleanly);
// numbers are doubles (integers up to 2^53 are exact and printed without a decimal point).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace hafvt {

struct Json {
    enum class Type { null, boolean, number, string, array, object };
    using Array = std::vector<Json>;
    using Object = std::vector<std::pair<std::string, Json>>;

    // Scalars convert implicitly so that builders read naturally: obj.set("epoch", 3).
    Json() = default;                        // null
    Json(std::nullptr_t) {}
    Json(bool b) : v_(b) {}
    Json(double x) : v_(x) {}
    Json(float x) : v_((double)x) {}
    Json(int x) : v_((double)x) {}
    Json(long x) : v_((double)x) {}
    Json(long long x) : v_((double)x) {}
    Json(unsigned x) : v_((double)x) {}
    Json(unsigned long x) : v_((double)x) {}
    Json(unsigned long long x) : v_((double)x) {}
    Json(const char* s) : v_(std::string(s)) {}
    Json(std::string s) : v_(std::move(s)) {}
    static Json object();                   // {}
    static Json array();                    // []

    // Parses a whole document; InputError naming `what` and the byte offset on any syntax error,
    // on nesting deeper than k_max_depth, on duplicate keys and on trailing text. `base` is added
    // to offsets in messages when `text` was cut from a larger file (a safetensors header).
    static Json parse(const std::string& text, const std::string& what, size_t base = 0);
    static constexpr int k_max_depth = 64;

    // Compact text: no spaces, shortest digits that round-trip each double, non-finite -> null.
    std::string dump() const;

    Type type() const { return (Type)v_.index(); }
    const char* type_name() const;          // "null", "bool", "number", "string", "array", "object"
    bool is_null() const { return type() == Type::null; }
    bool is_bool() const { return type() == Type::boolean; }
    bool is_number() const { return type() == Type::number; }
    bool is_string() const { return type() == Type::string; }
    bool is_array() const { return type() == Type::array; }
    bool is_object() const { return type() == Type::object; }
    // A number with no fractional part within +-2^53 (exactly representable as an integer).
    bool is_integer() const;

    // Typed access; InputError "expected a string, found a number" (callers add the context by
    // checking is_*() first where a better message is wanted).
    bool as_bool() const;
    double as_number() const;
    int64_t as_int() const;                 // is_integer() required
    const std::string& as_string() const;
    const Array& as_array() const;
    const Object& items() const;            // an object's (key, value) pairs in order

    // Object lookup: the value of `key`, or nullptr when absent or when this is not an object.
    const Json* get(const std::string& key) const;
    Json* get(const std::string& key);
    const Json* operator[](const std::string& key) const { return get(key); }
    Json* operator[](const std::string& key) { return get(key); }
    size_t size() const;                    // elements of an array or object, else 0

    // Builders: set replaces an existing key in place or appends; push appends to an array.
    // Both return *this for chaining; InternalError when called on the wrong type.
    Json& set(const std::string& key, Json value);
    Json& push(Json value);

    bool operator==(const Json& o) const { return v_ == o.v_; }
    bool operator!=(const Json& o) const { return !(v_ == o.v_); }

private:
    std::variant<std::nullptr_t, bool, double, std::string, Array, Object> v_;
    void dump_to(std::string& out) const;
    friend struct JsonParser;
};

}  // namespace hafvt
