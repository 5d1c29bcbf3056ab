// test_report.cpp: hafvt report and hafvt compare on two real (tiny) runs that differ in one
// setting. Every number the page shows in a table or at a chart point names its source
// (data-src) and is checked against metrics.jsonl, read here independently of the report's own
// reader; the page needs nothing from outside itself; compare prints the same figures and the
// setting that differs. A second case renders the page in headless Chromium (skipped where
// Debian's chromium is missing): no console message, the tables and charts in the DOM, and a
// screenshot that is not blank. Its console check is shown to fail on a page with a script error.
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "cli_util.h"
#include "core/common.h"
#include "core/json.h"
#include "test_util.h"

using namespace hafvt;
using testutil::run_hafvt;

namespace {

// Two runs of the tiny data, 2 epochs each, differing in lambda2; made once per test program.
struct TwoRuns {
    std::string a, b;
};
const TwoRuns& two_runs() {
    static TwoRuns r;
    if (r.a.empty()) {
        const std::string base = testutil::temp_dir("report"), d = testutil::tiny_dataset();
        const std::string args = "train --data " + d + " --img " + d + "/img.npy --q 16 --blocks 1 --batch 64 --threads 2 --epochs 2";
        for (const char* name : {"a", "b"}) {
            auto t = run_hafvt(args + " --out " + base + "/" + name + (name[0] == 'b' ? " --lambda2 0.5" : ""));
            REQUIRE_MESSAGE(t.status == 0, t.out);
        }
        r.a = base + "/a", r.b = base + "/b";
    }
    return r;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::istringstream is(s);
    for (std::string x; std::getline(is, x, sep);) out.push_back(x);
    return out;
}

// The figure that a data-src names, as the page should print it, from the runs' metrics.jsonl:
// runI/SPLIT/PROTOCOL/DOMAIN/METRIC, runI/test/PROTOCOL/head_tail/GROUP/METRIC,
// runI/valid/loss/TERM, each optionally @stepN (the line of that step). The last matching line.
std::string expected(const std::vector<std::vector<Json>>& metrics, const std::string& src) {
    std::string path = src;
    long step = -1;
    const size_t at = path.find("@step");
    if (at != std::string::npos) step = std::stol(path.substr(at + 5)), path = path.substr(0, at);
    const std::vector<std::string> p = split(path, '/');
    REQUIRE(p.size() >= 4);
    REQUIRE(p[0].rfind("run", 0) == 0);
    const size_t run = std::stoul(p[0].substr(3));
    REQUIRE(run < metrics.size());
    const Json* value = nullptr;
    for (const Json& line : metrics[run]) {
        if (line.get("split")->as_string() != p[1]) continue;
        if (step >= 0 && line.get("step")->as_int() != step) continue;
        if (p[2] == "loss") {
            if (line.get("loss")) value = line.get("loss")->get(p[3]);
            continue;
        }
        if (line.get("protocol")->as_string() != p[2]) continue;
        value = p[3] == "head_tail" ? line.get("head_tail")->get(p[4])->get(p[5]) : line.get(p[3])->get(p[4]);
    }
    REQUIRE_MESSAGE(value != nullptr, "no value in metrics.jsonl for ", src);
    return format_number(p.back() == "n" ? "%.0f" : "%.2f", value->as_number());
}

// Every (data-src, shown figure) of the page: a table cell's text or a chart point's data-v.
std::vector<std::pair<std::string, std::string>> figures(const std::string& html) {
    std::vector<std::pair<std::string, std::string>> out;
    const std::string key = "data-src=\"", v = " data-v=\"";
    for (size_t i = html.find(key); i != std::string::npos; i = html.find(key, i + 1)) {
        const size_t s0 = i + key.size(), s1 = html.find('"', s0);
        const std::string src = html.substr(s0, s1 - s0);
        if (html.compare(s1 + 1, v.size(), v) == 0) {
            const size_t v0 = s1 + 1 + v.size();
            out.emplace_back(src, html.substr(v0, html.find('"', v0) - v0));
        } else {
            REQUIRE(html.compare(s1, 2, "\">") == 0);
            out.emplace_back(src, html.substr(s1 + 2, html.find('<', s1 + 2) - s1 - 2));
        }
    }
    return out;
}

std::vector<std::vector<Json>> metrics_of(const std::vector<std::string>& runs) {
    std::vector<std::vector<Json>> m;
    for (const std::string& r : runs) m.push_back(testutil::metrics_without_seconds(r));
    return m;
}

size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1)) n++;
    return n;
}

// Asked when the cases register, before doctest runs (so no REQUIRE inside).
bool has_chromium() { return std::system("command -v chromium >/dev/null 2>&1") == 0; }

// Renders `page` in headless Chromium: the DOM after loading (dump-dom) or a screenshot; the
// browser's log goes to `log`. Returns the exit status.
int chromium(const std::string& args, const std::string& page, std::string* out) {
    return testutil::run_shell("timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --enable-logging=stderr "
                               "--v=0 " + args + " file://" + page, out);
}

// The browser's console messages (script errors, console.* calls) and failed loads in its log.
std::vector<std::string> console_messages(const std::string& log) {
    std::vector<std::string> out;
    for (const std::string& line : split(log, '\n'))
        if (line.find(":CONSOLE") != std::string::npos || line.find("net::ERR") != std::string::npos) out.push_back(line);
    return out;
}

}  // namespace

TEST_CASE("report: every figure of the page is the one in metrics.jsonl; compare prints the same; nothing from outside") {
    const TwoRuns& r = two_runs();
    const std::string page = testutil::temp_dir("report_page") + "/report.html";
    auto w = run_hafvt("report " + r.a + " " + r.b + " --out " + page);
    REQUIRE_MESSAGE(w.status == 0, w.out);
    CHECK(w.out.find("wrote " + page + " (2 runs)") != std::string::npos);
    const std::string html = read_file(page);
    const std::vector<std::vector<Json>> m = metrics_of({r.a, r.b});

    const auto figs = figures(html);
    for (const auto& f : figs) {
        INFO("data-src " << f.first);
        CHECK(f.second == expected(m, f.first));
    }
    // every figure is there: per run, the test table (2 protocols x 2 domains x 7), head/tail (2 x
    // 4 x 4), the loss chart (4 terms x 2 epochs) and the MRR chart (2 protocols x 2 domains x 2
    // epochs); the comparison (2 runs x 2 protocols x 6) and its two charts (2 runs x 2 epochs)
    CHECK(figs.size() == 2 * (28 + 32 + 8 + 8) + 24 + 8);
    CHECK(count(html, "<svg") == 2 * 2 + 2);
    // the settings that differ: lambda2 only (out names each run's folder and is left out)
    const size_t settings = html.find("<table class=\"settings\">");
    REQUIRE(settings != std::string::npos);
    const std::string st = html.substr(settings, html.find("</table>", settings) - settings);
    CHECK(st.find("<td class=\"k\">lambda2</td><td class=\"k\">1</td><td class=\"k\">0.5</td>") != std::string::npos);
    CHECK(count(st, "<tr>") == 2);  // the header and lambda2
    // self-contained: no script, no stylesheet or image to fetch, no address but the SVG namespace
    CHECK(html.find("<script") == std::string::npos);
    CHECK(html.find("<link") == std::string::npos);
    CHECK(html.find("url(") == std::string::npos);
    CHECK(count(html, " src=") == 0);
    CHECK(count(html, "http") == count(html, "xmlns=\"http://www.w3.org/2000/svg\""));

    // one run: RUN/report.html by default
    auto one = run_hafvt("report " + r.a);
    REQUIRE_MESSAGE(one.status == 0, one.out);
    const std::string single = read_file(r.a + "/report.html");
    const auto sfigs = figures(single);
    CHECK(sfigs.size() == 28 + 32 + 8 + 8);
    for (const auto& f : sfigs) CHECK(f.second == expected(m, f.first));

    // compare: the Markdown rows hold the test figures; the settings table, lambda2
    auto c = run_hafvt("compare " + r.a + " " + r.b);
    REQUIRE_MESSAGE(c.status == 0, c.out);
    for (size_t i = 0; i < 2; i++)
        for (const char* p : {"full", "c2dsr"}) {
            std::string row = cat("| ", i == 0 ? "a" : "b", " | ", p, " | 2");
            for (const char* metric : {"mrr", "ndcg10", "hr10"})
                for (const char* dom : {"X", "Y"}) row += " | " + expected(m, cat("run", i, "/test/", p, "/", dom, "/", metric));
            INFO(row);
            CHECK(c.out.find(row + " |\n") != std::string::npos);
        }
    CHECK(c.out.find("| setting | a | b |\n") != std::string::npos);
    CHECK(c.out.find("| lambda2 | 1 | 0.5 |\n") != std::string::npos);
    CHECK(count("\n" + c.out, "\n| ") == 1 + 4 + 1 + 1);  // header, 4 rows; settings header, lambda2
}

TEST_CASE("report: renders in headless Chromium with no console message; the screenshot is not blank" *
          doctest::skip(!has_chromium())) {
    const TwoRuns& r = two_runs();
    const std::string dir = testutil::temp_dir("report_chromium"), page = dir + "/report.html";
    auto w = run_hafvt("report " + r.a + " " + r.b + " --out " + page);
    REQUIRE_MESSAGE(w.status == 0, w.out);
    // the check sees a script error and a console call on a page that has them
    const std::string bad = dir + "/bad.html";
    write_file_atomic(bad, "<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); no_such_function();</script></body></html>");
    std::string bad_log;
    REQUIRE(chromium("--dump-dom", bad, &bad_log) == 0);
    CHECK(console_messages(bad_log).size() == 2);

    std::string log;
    REQUIRE_MESSAGE(chromium("--dump-dom", page, &log) == 0, log);
    const std::vector<std::string> msgs = console_messages(log);
    INFO("first console message: " << (msgs.empty() ? std::string("none") : msgs[0]));
    CHECK(msgs.empty());
    // the DOM the browser built: the title, 6 charts with their points, the tables
    CHECK(log.find("<title>HAF-VT report: a, b</title>") != std::string::npos);
    CHECK(count(log, "<svg") == 6);
    CHECK(count(log, "<circle") == 2 * (8 + 8) + 8);
    CHECK(count(log, "<table") == 2 + 2 * 3);  // comparison, settings; per run test, head/tail, config

    const std::string png = dir + "/report.png";
    std::string shot;
    REQUIRE_MESSAGE(chromium("--window-size=1280,1800 --screenshot=" + png, page, &shot) == 0, shot);
    const std::string img = read_file(png);
    REQUIRE(img.size() > 8);
    CHECK(img.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
    // a blank page of that size compresses to a few KiB; tables, text and charts do not
    MESSAGE("screenshot: ", img.size(), " bytes");
    CHECK(img.size() > 40000);
}

TEST_CASE("report: a tuned run shows its test rows with the tuned weights, named as such") {
    const TwoRuns& r = two_runs();
    const std::string dir = testutil::temp_dir("report_tuned") + "/a";
    std::string out;
    REQUIRE(testutil::run_shell("cp -r " + r.a + " " + dir, &out) == 0);
    auto t = run_hafvt("tune --ckpt " + dir + "/best.safetensors --threads 2");
    REQUIRE_MESSAGE(t.status == 0, t.out);
    const std::string page = dir + "/report.html";
    auto w = run_hafvt("report " + dir + " --out " + page);
    REQUIRE_MESSAGE(w.status == 0, w.out);
    const std::string html = read_file(page);
    const Json tuned = Json::parse(read_file(dir + "/tuned.json"), "tuned.json");
    size_t n = 0;
    for (const auto& f : figures(html)) {
        if (f.first.rfind("run0/tuned/", 0) != 0) continue;
        const std::vector<std::string> p = split(f.first, '/');  // run0/tuned/full/X/mrr
        REQUIRE(p.size() == 5);
        CHECK(p[2] == "full");
        const double v = tuned.get("test")->get(p[3])->get(p[4])->as_number();
        CHECK(f.second == format_number(p[4] == "n" ? "%.0f" : "%.2f", v));
        n++;
    }
    CHECK(n == 2 * 7);
    CHECK(html.find("full, tuned weights") != std::string::npos);
    CHECK(html.find("Tuned weights: alpha ") != std::string::npos);
}
