// test_json.cpp: our JSON value: parse/dump round trips, escapes, numbers, limits and errors.
#include "core/json.h"

#include "core/common.h"
#include "test_util.h"

#include <cmath>
#include <string>

using namespace hafvt;

namespace {

// The message of the InputError that parsing `text` throws ("" when it parses).
std::string parse_error(const std::string& text) {
    try {
        Json::parse(text, "doc.json");
    } catch (const InputError& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& s, const std::string& piece) { return s.find(piece) != std::string::npos; }

}  // namespace

TEST_CASE("json: parse and dump round trip, key order kept") {
    std::string text = R"({"z":1,"a":[true,false,null,-2.5,"s"],"m":{"k":{}},"e":[]})";
    Json j = Json::parse(text, "doc");
    CHECK(j.dump() == text);
    REQUIRE(j.is_object());
    REQUIRE(j.items().size() == 4);
    CHECK(j.items()[0].first == "z");
    CHECK(j.items()[3].first == "e");
    REQUIRE(j["a"] != nullptr);
    CHECK(j["a"]->as_array()[3].as_number() == -2.5);
    CHECK(j["a"]->as_array()[0].as_bool());
    CHECK(j["a"]->as_array()[2].is_null());
    CHECK(j.get("missing") == nullptr);
    CHECK(j["z"]->get("x") == nullptr);  // not an object
    CHECK(Json::parse(" \n\t[ 1 , 2 ]\r\n ", "doc").dump() == "[1,2]");
}

TEST_CASE("json: builders") {
    Json j = Json::object();
    j.set("epoch", 3).set("lr", 0.001).set("name", "run \"1\"").set("ok", true).set("none", nullptr);
    j.set("dims", Json::array().push(64).push(size_t(50)));
    j.set("epoch", 4);  // replaced in place, position kept
    CHECK(j.dump() == R"({"epoch":4,"lr":0.001,"name":"run \"1\"","ok":true,"none":null,"dims":[64,50]})");
    CHECK(j.size() == 6);
    CHECK(Json::parse(j.dump(), "again") == j);
    CHECK(j["epoch"]->as_int() == 4);
    CHECK_THROWS_AS(j.push(1), InternalError);
    CHECK_THROWS_AS(Json(1).set("a", 2), InternalError);
    CHECK_THROWS_AS(j["name"]->as_number(), InputError);
    CHECK(parse_error("[1]") == "");
}

TEST_CASE("json: numbers print as integers or with round-trip digits") {
    CHECK(Json(0).dump() == "0");
    CHECK(Json(-17).dump() == "-17");
    CHECK(Json(9007199254740992.0).dump() == "9007199254740992");
    CHECK(Json(1e300).dump() == "1e+300");  // integral but beyond 2^53: exponent form
    CHECK(Json(0.1).dump() == "0.1");
    CHECK(Json(1.0f / 3.0f).dump() == "0.3333333432674408");
    CHECK(Json(std::nan("")).dump() == "null");
    CHECK(Json(INFINITY).dump() == "null");
    // Every double we print reads back bit-exactly.
    double xs[] = {M_PI, -2.5e-310, 6.02214076e23, 1.0 / 3.0, 123456789.125, 5e-324, 1.7976931348623157e308};
    for (double x : xs) {
        Json back = Json::parse(Json(x).dump(), "n");
        CHECK(back.as_number() == x);
    }
    CHECK(Json::parse("-0", "n").as_number() == 0.0);
    CHECK(Json::parse("1E+2", "n").as_number() == 100.0);
    CHECK(Json::parse("2.5e-3", "n").as_number() == 0.0025);
    CHECK(Json::parse("12", "n").is_integer());
    CHECK(!Json::parse("12.5", "n").is_integer());
}

TEST_CASE("json: string escapes, \\u and surrogate pairs") {
    Json j = Json::parse(R"("a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00")", "s");
    CHECK(j.as_string() == "a\"b\\c/d\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    // Dump escapes quotes, backslashes and control characters and keeps UTF-8 as is.
    CHECK(Json(std::string("q\"\\\n\x01\xc3\xa9")).dump() == "\"q\\\"\\\\\\n\\u0001\xc3\xa9\"");
    CHECK(Json::parse(Json(j.as_string()).dump(), "s") == j);
    CHECK(contains(parse_error(R"("\ud83d")"), "high surrogate without a low surrogate"));
    CHECK(contains(parse_error(R"("\ud83d\u0041")"), "high surrogate without a low surrogate"));
    CHECK(contains(parse_error(R"("\ude00")"), "lone low surrogate"));
    CHECK(contains(parse_error(R"("\u12G4")"), "at byte 5: expected a hex digit"));
    CHECK(contains(parse_error(R"("\x")"), "at byte 2: unknown escape"));
    CHECK(contains(parse_error("\"a\nb\""), "at byte 2: control character"));
    CHECK(contains(parse_error("\"abc"), "at byte 4: unterminated string"));
}

TEST_CASE("json: nesting depth is bounded") {
    std::string ok = std::string(64, '[') + std::string(64, ']');
    CHECK(parse_error(ok) == "");
    std::string deep = std::string(65, '[') + std::string(65, ']');
    std::string msg = parse_error(deep);
    CHECK(contains(msg, "doc.json: invalid JSON at byte 64: nesting deeper than 64 levels"));
    // A hostile 1 MB of '[' fails quickly instead of overflowing the stack.
    CHECK(contains(parse_error(std::string(1 << 20, '[')), "nesting deeper"));
    CHECK(contains(parse_error(std::string(100000, '{')), "at byte 1: expected a string key"));
}

TEST_CASE("json: syntax errors name the document and the byte offset") {
    struct Case { const char* text; const char* want; };
    const Case cases[] = {
        {"", "at byte 0: expected a value (found end of text)"},
        {"{\"a\":1,}", "at byte 7: expected a string key"},
        {"[1,]", "at byte 3: expected a value"},
        {"[1 2]", "at byte 3: expected ',' or ']'"},
        {"{\"a\" 1}", "at byte 5: expected ':'"},
        {"{\"a\":1 \"b\":2}", "at byte 7: expected ',' or '}'"},
        {"{\"a\":1,\"a\":2}", "at byte 7: duplicate key \"a\""},
        {"[1] x", "at byte 4: unexpected text after the JSON value (found 'x')"},
        {"01", "at byte 1: leading zeros"},
        {"-", "at byte 1: expected a digit"},
        {"1.", "at byte 2: expected a digit"},
        {"1e", "at byte 2: expected a digit"},
        {".5", "at byte 0: expected a value"},
        {"NaN", "at byte 0: expected a value"},
        {"1e999", "at byte 0: number out of the range"},
        {"tru", "at byte 0: expected a value"},
        {"[\"a\"\x01]", "at byte 4: expected ',' or ']' in an array (found '\\x1')"},
    };
    for (const Case& c : cases) {
        std::string msg = parse_error(c.text);
        INFO("text: " << c.text << "\nmessage: " << msg);
        CHECK(contains(msg, "doc.json: invalid JSON"));
        CHECK(contains(msg, c.want));
    }
}
