// report.h: what a finished run looks like to a person. `hafvt report RUN [RUN...]` writes one
// self-contained HTML page (no network, no scripts): learning curves drawn as inline SVG, the test
// tables of both protocols, the head/tail split, the configuration, and for several runs a
// comparison; `hafvt compare RUN...` prints the comparison as Markdown. Both read only the run
// folder's config.json and metrics.jsonl (SPEC §6).
#pragma once
#include <string>
#include <vector>

#include "core/json.h"

namespace hafvt {

// The metrics of one domain (or head/tail group) of one evaluation, in percent (n: targets).
struct RankFigures {
    double n = 0, mrr = 0, ndcg5 = 0, ndcg10 = 0, hr1 = 0, hr5 = 0, hr10 = 0;
};

// One line of metrics.jsonl.
struct EvalLine {
    long epoch = 0, step = 0;
    std::string split, protocol;       // valid|test, c2dsr|full
    RankFigures dom[2];                // X, Y
    bool has_head_tail = false;
    RankFigures head_tail[4];          // X_head, X_tail, Y_head, Y_tail
    bool has_loss = false;
    double loss[4] = {0, 0, 0, 0};     // total, x, y, xy (the epoch's mean training loss terms)
};

// A run folder read back: its name (the folder's last component), config.json and metrics.jsonl.
struct RunRecord {
    std::string dir, name;
    Json config;
    std::vector<EvalLine> evals;
    // The last test evaluation under `protocol`, or null (a run trained with --skip-test, or
    // still running).
    const EvalLine* test(const std::string& protocol) const;
    // hafvt tune's choice (RUN/tuned.json) when it scored the test split: that evaluation (its
    // protocol) and the weights, e.g. "alpha 0.4 beta 0.45 lambda1 0 lambda2 0.25".
    bool has_tuned = false;
    EvalLine tuned_test;
    std::string tuned_weights;
};

// Reads RUN/config.json and RUN/metrics.jsonl, and RUN/tuned.json when there is one; InputError
// naming the file, the line and the key when one is missing or malformed.
RunRecord read_run(const std::string& dir);

// The comparison of several runs, as Markdown: the test metrics of each run under each protocol,
// then the settings whose values differ between the runs.
std::string compare_markdown(const std::vector<RunRecord>& runs);

// The report page of one or several runs.
std::string report_html(const std::vector<RunRecord>& runs);

// A line chart as an SVG element: each series a polyline with a circle (and a tooltip) at every
// point, the axes with round ticks, a legend. Points carry data-src (`src` + "@step" + x) and data-v
// (y as "%.2f"), which the tests compare with metrics.jsonl.
struct ChartSeries {
    std::string name, color, src;
    bool dashed = false;
    std::vector<double> x, y;
};
std::string svg_line_chart(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                           const std::vector<ChartSeries>& series);

}  // namespace hafvt
