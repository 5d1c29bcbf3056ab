// report.cpp: hafvt report and hafvt compare (report.h).
#include "train/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/common.h"
#include "core/lines.h"
#include "train/evaluation.h"
#include "train/run_dir.h"

namespace hafvt {

namespace {

const char* const kDomainNames[2] = {"X", "Y"};
const char* const kHeadTailNames[4] = {"X_head", "X_tail", "Y_head", "Y_tail"};
const char* const kLossNames[4] = {"total", "x", "y", "xy"};
const char* const kProtocols[2] = {"full", "c2dsr"};

// The metrics of a RankFigures by their names in metrics.jsonl: all six (the test table), and
// the three of the head/tail table and the comparison.
struct Metric {
    const char* key;
    double RankFigures::*field;
};
const Metric kMetrics[6] = {{"mrr", &RankFigures::mrr},   {"ndcg5", &RankFigures::ndcg5}, {"ndcg10", &RankFigures::ndcg10},
                            {"hr1", &RankFigures::hr1},   {"hr5", &RankFigures::hr5},     {"hr10", &RankFigures::hr10}};
const Metric kCompared[3] = {{"mrr", &RankFigures::mrr}, {"ndcg10", &RankFigures::ndcg10}, {"hr10", &RankFigures::hr10}};

// A number of metrics.jsonl: a JSON number, or null (a non-finite value is written as null).
double number_of(const Json& obj, const std::string& key, const std::string& where) {
    const Json* v = obj.get(key);
    HAFVT_INPUT(v != nullptr, where, ": expected a key '", key, "', found none");
    if (v->is_null()) return NAN;
    HAFVT_INPUT(v->is_number(), where, ": '", key, "': expected a number, found a ", v->type_name());
    return v->as_number();
}

const Json& object_of(const Json& obj, const std::string& key, const std::string& where) {
    const Json* v = obj.get(key);
    HAFVT_INPUT(v != nullptr, where, ": expected a key '", key, "', found none");
    HAFVT_INPUT(v->is_object(), where, ": '", key, "': expected an object, found a ", v->type_name());
    return *v;
}

RankFigures figures_of(const Json& obj, const std::string& key, const std::string& where) {
    const Json& o = object_of(obj, key, where);
    const std::string w = cat(where, ": '", key, "'");
    RankFigures f;
    f.n = number_of(o, "n", w);
    f.mrr = number_of(o, "mrr", w);
    f.ndcg5 = number_of(o, "ndcg5", w);
    f.ndcg10 = number_of(o, "ndcg10", w);
    f.hr1 = number_of(o, "hr1", w);
    f.hr5 = number_of(o, "hr5", w);
    f.hr10 = number_of(o, "hr10", w);
    return f;
}

EvalLine eval_line_of(const Json& j, const std::string& where) {
    HAFVT_INPUT(j.is_object(), where, ": expected a JSON object, found a ", j.type_name());
    EvalLine e;
    const double epoch = number_of(j, "epoch", where), step = number_of(j, "step", where);
    HAFVT_INPUT(std::isfinite(epoch) && epoch >= 0 && epoch < 1e12 && std::isfinite(step) && step >= 0 && step < 1e15, where,
                ": expected a non-negative epoch and step, found ", epoch, " and ", step);
    e.epoch = (long)epoch, e.step = (long)step;
    for (const char* key : {"split", "protocol"}) {
        const Json* v = j.get(key);
        HAFVT_INPUT(v && v->is_string(), where, ": '", key, "': expected a string, found ", v ? v->type_name() : "none");
        (std::string(key) == "split" ? e.split : e.protocol) = v->as_string();
    }
    HAFVT_INPUT(e.split == "valid" || e.split == "test", where, ": 'split': expected valid or test, found '", e.split, "'");
    HAFVT_INPUT(e.protocol == "full" || e.protocol == "c2dsr", where, ": 'protocol': expected full or c2dsr, found '", e.protocol, "'");
    for (int D = 0; D < 2; D++) e.dom[D] = figures_of(j, kDomainNames[D], where);
    if (j.get("head_tail")) {
        const Json& ht = object_of(j, "head_tail", where);
        for (int g = 0; g < 4; g++) e.head_tail[g] = figures_of(ht, kHeadTailNames[g], cat(where, ": 'head_tail'"));
        e.has_head_tail = true;
    }
    if (j.get("loss")) {
        const Json& l = object_of(j, "loss", where);
        for (int k = 0; k < 4; k++) e.loss[k] = number_of(l, kLossNames[k], cat(where, ": 'loss'"));
        e.has_loss = true;
    }
    return e;
}

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

// A metric as the tables print it: two decimals, "n/a" for a missing (non-finite) value.
std::string pct(double v) { return std::isfinite(v) ? format_number("%.2f", v) : "n/a"; }

// A setting's value as people read it: numbers to 6 significant digits, strings bare.
std::string setting_text(const Json& v) {
    if (v.is_string()) return v.as_string().empty() ? "(empty)" : v.as_string();
    if (v.is_number()) return format_number("%.6g", v.as_number());
    if (v.is_array()) {
        std::string s;
        for (const Json& x : v.as_array()) s += (s.empty() ? "[" : ", ") + setting_text(x);
        return s.empty() ? "[]" : s + "]";
    }
    return v.dump();
}

// The settings of config.json whose values differ between the runs (all but `out`, which names
// each run's own folder), in the first run's order, then keys the first run lacks.
std::vector<std::string> differing_settings(const std::vector<RunRecord>& runs) {
    std::vector<std::string> keys;
    for (const RunRecord& r : runs)
        if (r.config.is_object())
            for (const auto& kv : r.config.items())
                if (kv.first != "out" && std::find(keys.begin(), keys.end(), kv.first) == keys.end()) keys.push_back(kv.first);
    std::vector<std::string> out;
    for (const std::string& k : keys) {
        const Json* first = runs[0].config.get(k);
        for (const RunRecord& r : runs) {
            const Json* v = r.config.get(k);
            if ((v == nullptr) != (first == nullptr) || (v && *v != *first)) {
                out.push_back(k);
                break;
            }
        }
    }
    return out;
}

std::string setting_of(const RunRecord& r, const std::string& key) {
    const Json* v = r.config.get(key);
    return v ? setting_text(*v) : "(not set)";
}

// The largest epoch of the run's evaluations.
long epochs_of(const RunRecord& r) {
    long e = 0;
    for (const EvalLine& x : r.evals) e = std::max(e, x.epoch);
    return e;
}

// ---- SVG ----------------------------------------------------------------------------------------

// Round ticks covering [lo, hi]: a step of 1, 2 or 5 times a power of ten, about 5 intervals.
std::vector<double> ticks(double lo, double hi, bool integers) {
    double span = hi - lo, raw = span / 5.0, mag = std::pow(10.0, std::floor(std::log10(raw))), step = mag;
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * mag >= raw) {
            step = m * mag;
            break;
        }
    if (integers) step = std::max(1.0, std::round(step));
    std::vector<double> t;
    for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * span; v += step) t.push_back(std::fabs(v) < 1e-12 * step ? 0.0 : v);
    return t;
}

std::string num_label(double v) { return format_number("%g", v); }

}  // namespace

const EvalLine* RunRecord::test(const std::string& protocol) const {
    const EvalLine* last = nullptr;
    for (const EvalLine& e : evals)
        if (e.split == "test" && e.protocol == protocol) last = &e;
    return last;
}

RunRecord read_run(const std::string& dir) {
    RunRecord r;
    r.dir = dir;
    std::string d = dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    const size_t slash = d.rfind('/');
    r.name = slash == std::string::npos ? d : d.substr(slash + 1);
    const std::string cfg = d + "/config.json", met = d + "/metrics.jsonl";
    HAFVT_INPUT(file_exists(cfg) && file_exists(met), dir, ": expected a run folder of hafvt train --out (config.json and ",
                "metrics.jsonl), found no ", file_exists(cfg) ? "metrics.jsonl" : "config.json");
    r.config = Json::parse(read_file(cfg), cfg);
    HAFVT_INPUT(r.config.is_object(), cfg, ": expected a JSON object, found a ", r.config.type_name());
    const std::string text = read_file(met);
    LineReader lr(text, met);
    for (Span line; lr.next(line);) {
        if (line.empty()) continue;
        const std::string where = cat(met, ":", lr.line_no);
        r.evals.push_back(eval_line_of(Json::parse(line.str(), where), where));
    }
    HAFVT_INPUT(!r.evals.empty(), met, ": expected one evaluation a line, found none (has the run finished an epoch?)");
    const std::string tuned = d + "/" + kTunedFile;
    if (file_exists(tuned)) {
        const Json t = Json::parse(read_file(tuned), tuned);
        if (const Json* test = t.is_object() ? t.get("test") : nullptr) {
            r.tuned_test = eval_line_of(*test, tuned + " (test)");
            r.has_tuned = true;
            for (const char* k : {"alpha", "beta", "lambda1", "lambda2"})
                r.tuned_weights += cat(r.tuned_weights.empty() ? "" : " ", k, " ", format_number("%.2f", tuned_number(t, tuned, k)));
        }
    }
    return r;
}

std::string svg_line_chart(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                           const std::vector<ChartSeries>& series) {
    const double W = 600, H = 300, L = 58, R = 150, Tp = 30, Bt = 44, pw = W - L - R, ph = H - Tp - Bt;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const ChartSeries& s : series)
        for (size_t i = 0; i < s.x.size(); i++) {
            if (!std::isfinite(s.y[i])) continue;
            x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
            y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
        }
    std::string out = cat("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"", W, "\" height=\"", H,
                          "\" viewBox=\"0 0 ", W, " ", H, "\" role=\"img\" aria-label=\"", html_escape(title), "\">\n");
    out += cat("<text x=\"", L, "\" y=\"18\" class=\"title\">", html_escape(title), "</text>\n");
    if (!std::isfinite(x0)) return out + cat("<text x=\"", L, "\" y=\"", Tp + ph / 2, "\">no data</text>\n</svg>\n");
    if (x1 - x0 < 1e-12) x0 -= 1, x1 += 1;
    const double pad = y1 - y0 < 1e-12 ? std::max(1.0, std::fabs(y1) * 0.1) : (y1 - y0) * 0.08;
    y0 = y0 >= 0 && y0 - pad < 0 ? 0.0 : y0 - pad;
    y1 += pad;
    auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * pw; };
    auto py = [&](double y) { return Tp + ph - (y - y0) / (y1 - y0) * ph; };
    auto f1 = [](double v) { return format_number("%.1f", v); };
    // grid, ticks, axes
    for (double t : ticks(y0, y1, false))
        out += cat("<line class=\"grid\" x1=\"", L, "\" x2=\"", L + pw, "\" y1=\"", f1(py(t)), "\" y2=\"", f1(py(t)), "\"/>",
                   "<text class=\"tick\" x=\"", L - 6, "\" y=\"", f1(py(t) + 4), "\" text-anchor=\"end\">", num_label(t), "</text>\n");
    for (double t : ticks(x0, x1, true))
        out += cat("<line class=\"grid\" y1=\"", Tp, "\" y2=\"", Tp + ph, "\" x1=\"", f1(px(t)), "\" x2=\"", f1(px(t)), "\"/>",
                   "<text class=\"tick\" y=\"", Tp + ph + 16, "\" x=\"", f1(px(t)), "\" text-anchor=\"middle\">", num_label(t), "</text>\n");
    out += cat("<rect class=\"frame\" x=\"", L, "\" y=\"", Tp, "\" width=\"", pw, "\" height=\"", ph, "\"/>\n");
    out += cat("<text class=\"label\" x=\"", L + pw / 2, "\" y=\"", H - 8, "\" text-anchor=\"middle\">", html_escape(xlabel), "</text>\n");
    out += cat("<text class=\"label\" transform=\"translate(14 ", Tp + ph / 2, ") rotate(-90)\" text-anchor=\"middle\">",
               html_escape(ylabel), "</text>\n");
    // series and legend
    for (size_t k = 0; k < series.size(); k++) {
        const ChartSeries& s = series[k];
        const std::string dash = s.dashed ? " stroke-dasharray=\"6 4\"" : "";
        std::string pts, dots;
        for (size_t i = 0; i < s.x.size(); i++) {
            if (!std::isfinite(s.y[i])) continue;
            pts += cat(pts.empty() ? "" : " ", f1(px(s.x[i])), ",", f1(py(s.y[i])));
            dots += cat("<circle cx=\"", f1(px(s.x[i])), "\" cy=\"", f1(py(s.y[i])), "\" r=\"3\" fill=\"", s.color, "\" data-src=\"",
                        html_escape(s.src), "@step", (long long)s.x[i], "\" data-v=\"", pct(s.y[i]), "\"><title>",
                        html_escape(s.name), ", step ", (long long)s.x[i], ": ", pct(s.y[i]), "</title></circle>");
        }
        out += cat("<polyline fill=\"none\" stroke=\"", s.color, "\" stroke-width=\"2\"", dash, " points=\"", pts, "\"/>\n", dots, "\n");
        const double ly = Tp + 8 + 18.0 * (double)k;
        out += cat("<line x1=\"", L + pw + 12, "\" x2=\"", L + pw + 36, "\" y1=\"", ly, "\" y2=\"", ly, "\" stroke=\"", s.color,
                   "\" stroke-width=\"2\"", dash, "/><text class=\"legend\" x=\"", L + pw + 42, "\" y=\"", ly + 4, "\">",
                   html_escape(s.name), "</text>\n");
    }
    return out + "</svg>\n";
}

std::string compare_markdown(const std::vector<RunRecord>& runs) {
    std::string s = "| run | protocol | epochs | MRR X | MRR Y | NDCG@10 X | NDCG@10 Y | HR@10 X | HR@10 Y |\n"
                    "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const RunRecord& r : runs)
        for (const char* p : kProtocols) {
            const EvalLine* t = r.test(p);
            s += cat("| ", r.name, " | ", p, " | ", epochs_of(r));
            if (!t) {
                s += " | no test | | | | | |\n";
                continue;
            }
            for (const Metric& m : kCompared) s += cat(" | ", pct(t->dom[0].*m.field), " | ", pct(t->dom[1].*m.field));
            s += " |\n";
        }
    if (runs.size() < 2) return s;
    const std::vector<std::string> diff = differing_settings(runs);
    if (diff.empty()) return s + "\nAll settings are the same.\n";
    s += "\n| setting |";
    for (const RunRecord& r : runs) s += cat(" ", r.name, " |");
    s += "\n|---|";
    for (size_t i = 0; i < runs.size(); i++) s += "---|";
    s += "\n";
    for (const std::string& k : diff) {
        s += cat("| ", k, " |");
        for (const RunRecord& r : runs) s += cat(" ", setting_of(r, k), " |");
        s += "\n";
    }
    return s;
}

namespace {

const char* const kStyle =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1240px;color:#222;padding:0 16px}"
    "h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc;padding-bottom:4px}h3{margin-top:1.2em}"
    "table{border-collapse:collapse;margin:8px 0;font-size:0.92em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
    "td.k,th.k{text-align:left}.dir{color:#666;font-family:monospace}"
    ".charts{display:flex;flex-wrap:wrap;gap:12px}"
    "svg.chart{background:#fff;border:1px solid #ddd}svg .title{font-weight:bold;font-size:13px}"
    "svg .tick,svg .legend{font-size:11px;fill:#333}svg .label{font-size:12px;fill:#333}"
    "svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#888}"
    "details{margin:8px 0}summary{cursor:pointer}p.note{color:#555;font-size:0.92em}";

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};

// A table cell holding one metric of metrics.jsonl: data-src names where it comes from.
std::string metric_cell(double v, const std::string& src) {
    return cat("<td data-src=\"", html_escape(src), "\">", pct(v), "</td>");
}
// A count of targets (n).
std::string count_cell(double v, const std::string& src) {
    return cat("<td data-src=\"", html_escape(src), "\">", std::isfinite(v) ? format_number("%.0f", v) : "n/a", "</td>");
}

// The cells of one table row: the count of targets, then `metrics` of f; sources `src` + key.
template <size_t N>
std::string figure_cells(const RankFigures& f, const std::string& src, const Metric (&metrics)[N]) {
    std::string s = count_cell(f.n, src + "n");
    for (const Metric& m : metrics) s += metric_cell(f.*m.field, src + m.key);
    return s;
}

// The test table of a run: one row per protocol and domain.
std::string test_table(const RunRecord& r, const std::string& prefix) {
    std::string s = "<table class=\"test\"><tr><th class=\"k\">protocol</th><th class=\"k\">domain</th><th>targets</th><th>MRR</th>"
                    "<th>NDCG@5</th><th>NDCG@10</th><th>HR@1</th><th>HR@5</th><th>HR@10</th></tr>\n";
    bool any = false;
    for (const char* p : kProtocols) {
        const EvalLine* t = r.test(p);
        if (!t) continue;
        any = true;
        for (int D = 0; D < 2; D++) {
            const RankFigures& f = t->dom[D];
            const std::string src = cat(prefix, "test/", p, "/", kDomainNames[D], "/");
            s += cat("<tr><td class=\"k\">", p, "</td><td class=\"k\">", kDomainNames[D], "</td>", figure_cells(f, src, kMetrics),
                     "</tr>\n");
        }
    }
    if (r.has_tuned) {  // the same checkpoint scored with hafvt tune's weights (tuned.json)
        const EvalLine& t = r.tuned_test;
        for (int D = 0; D < 2; D++) {
            const std::string src = cat(prefix, "tuned/", t.protocol, "/", kDomainNames[D], "/");
            s += cat("<tr class=\"tuned\"><td class=\"k\">", t.protocol, ", tuned weights</td><td class=\"k\">", kDomainNames[D],
                     "</td>", figure_cells(t.dom[D], src, kMetrics), "</tr>\n");
        }
    }
    if (!any && !r.has_tuned)
        return "<p class=\"note\">No test evaluation in metrics.jsonl (a run trained with --skip-test, or one still running).</p>\n";
    s += "</table>\n";
    if (r.has_tuned)
        s += cat("<p class=\"note\">Tuned weights: ", html_escape(r.tuned_weights),
                 ", chosen on the validation split by hafvt tune (tuned.json); the other rows score with the trained weights.</p>\n");
    return s;
}

std::string head_tail_table(const RunRecord& r, const std::string& prefix) {
    std::string s = "<table class=\"head-tail\"><tr><th class=\"k\">protocol</th><th class=\"k\">targets</th><th>n</th><th>MRR</th>"
                    "<th>NDCG@10</th><th>HR@10</th></tr>\n";
    bool any = false;
    for (const char* p : kProtocols) {
        const EvalLine* t = r.test(p);
        if (!t || !t->has_head_tail) continue;
        any = true;
        for (int g = 0; g < 4; g++) {
            const RankFigures& f = t->head_tail[g];
            const std::string src = cat(prefix, "test/", p, "/head_tail/", kHeadTailNames[g], "/");
            s += cat("<tr><td class=\"k\">", p, "</td><td class=\"k\">", kHeadTailNames[g], "</td>", figure_cells(f, src, kCompared),
                     "</tr>\n");
        }
    }
    if (!any) return "";
    const Json* tm = r.config.get("tail_max");
    return cat("<h3>Head and tail targets (test)</h3>\n<p class=\"note\">Tail: targets seen at most ",
               tm ? setting_text(*tm) : std::string("tail_max"), " times in training; head: the others.</p>\n", s, "</table>\n");
}

std::string config_table(const RunRecord& r) {
    std::string s = "<details><summary>Configuration (config.json)</summary><table class=\"config\">\n";
    for (const auto& kv : r.config.items())
        s += cat("<tr><td class=\"k\">", html_escape(kv.first), "</td><td class=\"k\">", html_escape(setting_text(kv.second)), "</td></tr>\n");
    return s + "</table></details>\n";
}

// The validation evaluations of one protocol in step order, one per step (a resumed run may
// repeat a step: the last line wins).
std::vector<const EvalLine*> valid_curve(const RunRecord& r, const std::string& protocol) {
    std::map<long, const EvalLine*> by_step;
    for (const EvalLine& e : r.evals)
        if (e.split == "valid" && e.protocol == protocol) by_step[e.step] = &e;
    std::vector<const EvalLine*> out;
    for (const auto& kv : by_step) out.push_back(kv.second);
    return out;
}

std::string run_charts(const RunRecord& r, const std::string& prefix) {
    std::vector<ChartSeries> loss(4), mrr;
    const char* loss_label[4] = {"total", "X view", "Y view", "XY view"};
    std::map<long, const EvalLine*> loss_by_step;  // the loss is on the lines of both protocols
    for (const EvalLine& e : r.evals)
        if (e.split == "valid" && e.has_loss) loss_by_step[e.step] = &e;
    for (int k = 0; k < 4; k++) {
        loss[k].name = loss_label[k];
        loss[k].color = kColors[k];
        loss[k].src = cat(prefix, "valid/loss/", kLossNames[k]);
        for (const auto& kv : loss_by_step) loss[k].x.push_back((double)kv.first), loss[k].y.push_back(kv.second->loss[k]);
    }
    for (const char* p : kProtocols)
        for (int D = 0; D < 2; D++) {
            ChartSeries s;
            s.name = cat(kDomainNames[D], ", ", p);
            s.color = kColors[D];
            s.dashed = std::string(p) == "c2dsr";
            s.src = cat(prefix, "valid/", p, "/", kDomainNames[D], "/mrr");
            for (const EvalLine* e : valid_curve(r, p)) s.x.push_back((double)e->step), s.y.push_back(e->dom[D].mrr);
            if (!s.x.empty()) mrr.push_back(s);
        }
    return cat("<div class=\"charts\">\n", svg_line_chart("Training loss (epoch mean)", "step", "loss", loss),
               svg_line_chart("Validation MRR", "step", "MRR (%)", mrr), "</div>\n");
}

// For several runs: the comparison table, the settings that differ, and the validation MRR of
// every run in one chart per domain.
std::string comparison_section(const std::vector<RunRecord>& runs) {
    std::string s = "<h2>Comparison</h2>\n<table class=\"compare\"><tr><th class=\"k\">run</th><th class=\"k\">protocol</th>"
                    "<th>epochs</th><th>MRR X</th><th>MRR Y</th><th>NDCG@10 X</th><th>NDCG@10 Y</th><th>HR@10 X</th><th>HR@10 Y</th></tr>\n";
    for (size_t i = 0; i < runs.size(); i++)
        for (const char* p : kProtocols) {
            const EvalLine* t = runs[i].test(p);
            s += cat("<tr><td class=\"k\">", html_escape(runs[i].name), "</td><td class=\"k\">", p, "</td><td>", epochs_of(runs[i]), "</td>");
            if (!t) {
                s += "<td colspan=\"6\" class=\"k\">no test evaluation</td></tr>\n";
                continue;
            }
            for (const Metric& m : kCompared)
                for (int D = 0; D < 2; D++) s += metric_cell(t->dom[D].*m.field, cat("run", i, "/test/", p, "/", kDomainNames[D], "/", m.key));
            s += "</tr>\n";
        }
    s += "</table>\n";
    const std::vector<std::string> diff = differing_settings(runs);
    if (diff.empty()) {
        s += "<p class=\"note\">All settings are the same.</p>\n";
    } else {
        s += "<h3>Settings that differ</h3>\n<table class=\"settings\"><tr><th class=\"k\">setting</th>";
        for (const RunRecord& r : runs) s += cat("<th class=\"k\">", html_escape(r.name), "</th>");
        s += "</tr>\n";
        for (const std::string& k : diff) {
            s += cat("<tr><td class=\"k\">", html_escape(k), "</td>");
            for (const RunRecord& r : runs) s += cat("<td class=\"k\">", html_escape(setting_of(r, k)), "</td>");
            s += "</tr>\n";
        }
        s += "</table>\n";
    }
    s += "<div class=\"charts\">\n";
    for (int D = 0; D < 2; D++) {
        std::vector<ChartSeries> ss;
        for (size_t i = 0; i < runs.size(); i++) {
            const Json* pv = runs[i].config.get("protocol");
            const std::string p = pv && pv->is_string() && pv->as_string() == "c2dsr" ? "c2dsr" : "full";
            ChartSeries c;
            c.name = cat(runs[i].name, " (", p, ")");
            c.color = kColors[i % (sizeof kColors / sizeof kColors[0])];
            c.src = cat("run", i, "/valid/", p, "/", kDomainNames[D], "/mrr");
            for (const EvalLine* e : valid_curve(runs[i], p)) c.x.push_back((double)e->step), c.y.push_back(e->dom[D].mrr);
            ss.push_back(c);
        }
        s += svg_line_chart(cat("Validation MRR, domain ", kDomainNames[D]), "step", "MRR (%)", ss);
    }
    return s + "</div>\n";
}

}  // namespace

std::string report_html(const std::vector<RunRecord>& runs) {
    HAFVT_CHECK(!runs.empty(), "report of no run");
    std::string names;
    for (const RunRecord& r : runs) names += (names.empty() ? "" : ", ") + r.name;
    std::string s = cat("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>HAF-VT report: ", html_escape(names),
                        "</title>\n<style>", kStyle, "</style>\n</head>\n<body>\n<h1>HAF-VT run report</h1>\n",
                        "<p class=\"note\">Written by hafvt report from each run folder's config.json and metrics.jsonl. Metrics in percent; ",
                        "curves per evaluation step; hover a point for its value.</p>\n");
    if (runs.size() > 1) s += comparison_section(runs);
    for (size_t i = 0; i < runs.size(); i++) {
        const RunRecord& r = runs[i];
        const std::string prefix = cat("run", i, "/");
        s += cat("<section class=\"run\" id=\"run", i, "\">\n<h2>Run ", html_escape(r.name), "</h2>\n<p class=\"dir\">", html_escape(r.dir),
                 "</p>\n", run_charts(r, prefix), "<h3>Test</h3>\n", test_table(r, prefix), head_tail_table(r, prefix), config_table(r),
                 "</section>\n");
    }
    return s + "</body>\n</html>\n";
}

}  // namespace hafvt
