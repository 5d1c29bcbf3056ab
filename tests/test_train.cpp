// test_train.cpp: training end to end through the binary on the tiny synthetic dataset: the loss
// falls and the test MRR beats random ranking by far; two runs with the same seed and thread
// count write the same metrics.jsonl; a run stopped after epoch k and resumed ends exactly where
// an uninterrupted run ends.
#include <cmath>
#include <string>
#include <vector>

#include "cli_util.h"
#include "json.h"
#include "safetensors.h"
#include "test_util.h"

using namespace hafvt;
using testutil::run_hafvt;

namespace {

std::string train_args(const std::string& out, int epochs) {
    const std::string& d = testutil::tiny_dataset();
    return "train --data " + d + " --img " + d + "/img.npy --txt " + d + "/txt.npy --out " + out +
           " --q 32 --blocks 1 --batch 64 --threads 2 --epochs " + std::to_string(epochs);
}

double num(const Json& j, const char* a, const char* b) { return j.get(a)->get(b)->as_number(); }

// Two run folders hold the same run: the same metrics.jsonl (but for wall-clock seconds) and
// bitwise equal tensors in the last checkpoint (their metadata differ: each names its own --out).
void check_same_run(const std::string& a, const std::string& b) {
    std::vector<Json> ma = testutil::metrics_without_seconds(a);
    std::vector<Json> mb = testutil::metrics_without_seconds(b);
    REQUIRE(ma.size() == mb.size());
    for (size_t i = 0; i < ma.size(); i++) CHECK(ma[i].dump() == mb[i].dump());
    CHECK(safetensors_read(a + "/last.safetensors").data == safetensors_read(b + "/last.safetensors").data);
}

}  // namespace

TEST_CASE("training lowers the loss and ranks far better than random") {
    std::string run = testutil::temp_dir("train") + "/run";
    auto r = run_hafvt(train_args(run, 4));
    REQUIRE_MESSAGE(r.status == 0, r.out);
    CHECK(r.out.find("test   full      X") != std::string::npos);  // the final table
    std::vector<Json> m = testutil::metrics_without_seconds(run);
    REQUIRE(m.size() == 4 * 2 + 2);  // valid c2dsr + full per epoch, then test c2dsr + full
    double first = num(m[0], "loss", "total"), last = num(m[7], "loss", "total");
    MESSAGE("training loss epoch 1 ", first, ", epoch 4 ", last);
    CHECK(last < first - 0.5);
    // random ranking over all V items of a domain: E[1/rank] = H_V / V
    auto random_mrr = [](double V) { double h = 0; for (int i = 1; i <= (int)V; i++) h += 1.0 / i; return 100.0 * h / V; };
    const Json& test_full = m[9];
    REQUIRE(test_full.get("split")->as_string() == "test");
    REQUIRE(test_full.get("protocol")->as_string() == "full");
    double mx = num(test_full, "X", "mrr"), my = num(test_full, "Y", "mrr");
    MESSAGE("test MRR X ", mx, " (random ", random_mrr(300), "), Y ", my, " (random ", random_mrr(360), ")");
    CHECK(mx >= 3.0 * random_mrr(300));
    CHECK(my >= 3.0 * random_mrr(360));

    // evaluation does not depend on how lines are batched: every line's scores are the same bits
    auto table = [&](const std::string& batch) {
        auto e = run_hafvt("eval --ckpt " + run + "/best.safetensors --split test --protocol full --threads 2 --eval-batch " + batch);
        REQUIRE_MESSAGE(e.status == 0, e.out);
        return e.out.substr(0, e.out.rfind(" lines in "));  // without the timing line
    };
    std::string t7 = table("7"), t64 = table("64");
    CHECK(t7.find("test   full      X") != std::string::npos);
    CHECK(t7 == t64);
}

TEST_CASE("two runs with the same seed and threads write the same metrics; another seed differs") {
    std::string base = testutil::temp_dir("determinism");
    auto a = run_hafvt(train_args(base + "/a", 2));
    auto b = run_hafvt(train_args(base + "/b", 2));
    auto c = run_hafvt(train_args(base + "/c", 2) + " --seed 7");
    REQUIRE_MESSAGE(a.status == 0, a.out);
    REQUIRE_MESSAGE(b.status == 0, b.out);
    REQUIRE_MESSAGE(c.status == 0, c.out);
    check_same_run(base + "/a", base + "/b");
    CHECK(testutil::metrics_without_seconds(base + "/a")[0].dump() != testutil::metrics_without_seconds(base + "/c")[0].dump());
}

TEST_CASE("the device path of the training loop (--device emulate) writes the CPU run's metrics and checkpoints") {
    // The emulated device runs the CPU ops through the device path (backend.h), so any difference
    // comes from the loop's copies: parameters and moments up after init and resume, down before
    // each checkpoint, the best checkpoint up again for the test split. Stopped after epoch 2 and
    // resumed, so the moments' round trip is covered too.
    std::string base = testutil::temp_dir("emulate");
    auto cpu = run_hafvt(train_args(base + "/cpu", 3) + " --device cpu");
    REQUIRE_MESSAGE(cpu.status == 0, cpu.out);
    auto part = run_hafvt(train_args(base + "/emu", 2) + " --device emulate");
    REQUIRE_MESSAGE(part.status == 0, part.out);
    auto rest = run_hafvt(train_args(base + "/emu", 3) + " --device emulate --resume");
    REQUIRE_MESSAGE(rest.status == 0, rest.out);
    CHECK(rest.out.find("device cpu (emulated device)") != std::string::npos);
    check_same_run(base + "/cpu", base + "/emu");
    CHECK(safetensors_read(base + "/cpu/best.safetensors").data == safetensors_read(base + "/emu/best.safetensors").data);
    // hafvt eval on the device path prints the CPU's table
    const std::string ev = cat("eval --ckpt ", base, "/cpu/best.safetensors --split valid --protocol c2dsr");
    auto e1 = run_hafvt(ev + " --device cpu"), e2 = run_hafvt(ev + " --device emulate");
    REQUIRE_MESSAGE(e1.status == 0, e1.out);
    REQUIRE_MESSAGE(e2.status == 0, e2.out);
    CHECK(e1.out.substr(0, e1.out.find(" lines in ")) == e2.out.substr(0, e2.out.find(" lines in ")));
}

TEST_CASE("a run stopped after epoch 2 and resumed ends exactly like an uninterrupted run") {
    std::string base = testutil::temp_dir("resume");
    auto full = run_hafvt(train_args(base + "/full", 4));
    REQUIRE_MESSAGE(full.status == 0, full.out);
    auto part = run_hafvt(train_args(base + "/part", 2));
    REQUIRE_MESSAGE(part.status == 0, part.out);
    auto rest = run_hafvt(train_args(base + "/part", 4) + " --resume");
    REQUIRE_MESSAGE(rest.status == 0, rest.out);
    CHECK(rest.out.find("resumed from") != std::string::npos);
    check_same_run(base + "/full", base + "/part");
    // resuming with other settings is refused
    auto other = run_hafvt(train_args(base + "/part", 5) + " --resume --lr 0.01");
    CHECK(other.status == 2);
    CHECK(other.out.find("--resume with other settings") != std::string::npos);
}
