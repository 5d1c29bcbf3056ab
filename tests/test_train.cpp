// test_train.cpp: training end to end through the binary on the tiny synthetic dataset: the loss
// falls and the test MRR beats random ranking by far; two runs with the same seed and thread
// count write the same metrics.jsonl; a run stopped after epoch k and resumed ends exactly where
// an uninterrupted run ends. Also what --device decides for a --T above the GPU attention's limit,
// and how train and eval report a device out of memory.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "model/backend.h"
#include "train/config.h"
#include "cli_util.h"
#include "core/json.h"
#include "formats/safetensors.h"
#include "test_util.h"
#include "cuda_test_util.h"
#include "train/train.h"
#include "train/run_dir.h"

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

// The rows of a TSV (header first), fields split at tabs.
std::vector<std::vector<std::string>> tsv_rows(const std::string& text) {
    std::vector<std::vector<std::string>> rows;
    std::istringstream is(text);
    for (std::string line; std::getline(is, line);) {
        rows.emplace_back();
        std::istringstream ls(line);
        for (std::string x; std::getline(ls, x, '\t');) rows.back().push_back(x);
    }
    return rows;
}

// recommend --explain's output: its nine last columns; on every row the view parts and the
// modality parts each add up to the printed score (each printed to 6 significant digits), and
// the attention columns name items with weights in (0, 1]. Returns the rows.
std::vector<std::vector<std::string>> check_explained(const std::string& text) {
    std::vector<std::vector<std::string>> rows = tsv_rows(text);
    REQUIRE(rows.size() >= 2);
    const std::vector<std::string>& h = rows[0];
    REQUIRE(h.size() >= 13);
    const size_t at = h.size() - 9, score = std::find(h.begin(), h.end(), "score") - h.begin();
    REQUIRE(score < h.size());
    CHECK(h[at] == "view_X");
    CHECK(h[at + 3] == "mod_id");
    CHECK(h[at + 6] == "attn_id");
    for (size_t i = 1; i < rows.size(); i++) {
        const std::vector<std::string>& f = rows[i];
        REQUIRE(f.size() == h.size());
        const double sc = std::stod(f[score]);
        double views = 0.0, mods = 0.0;
        for (size_t k = 0; k < 3; k++) views += std::stod(f[at + k]), mods += std::stod(f[at + 3 + k]);
        INFO("row " << i << ": score " << sc << ", views " << views << ", modalities " << mods);
        CHECK(std::fabs(views - sc) <= 2e-5 * sc + 1e-9);
        CHECK(std::fabs(mods - sc) <= 2e-5 * sc + 1e-9);
        for (size_t k = 6; k < 9; k++) {
            if (f[at + k] == "-") continue;
            std::istringstream ps(f[at + k]);
            for (std::string item; std::getline(ps, item, ',');) {
                const size_t colon = item.rfind(':');
                REQUIRE(colon != std::string::npos);
                const double wgt = std::stod(item.substr(colon + 1));
                CHECK(wgt > 0.0);
                CHECK(wgt <= 1.0);
            }
        }
    }
    return rows;
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

    // recommend --split test --k 10: one block of 10 rows per test line; the lines with a hit row
    // are exactly those the test evaluation counted in HR@10 (full protocol), per domain
    const std::string tsv = run + "/top10.tsv";
    std::string rec_out;
    REQUIRE(testutil::run_shell("{ " + testutil::hafvt_bin() + " recommend --ckpt " + run + "/best.safetensors --split test --k 10 > " +
                                    tsv + " 2>/dev/null; }", &rec_out) == 0);
    const std::vector<std::vector<std::string>> plain = tsv_rows(read_file(tsv));
    REQUIRE(!plain.empty());
    CHECK(plain[0] == std::vector<std::string>{"user", "line", "rank", "merged_id", "asin", "score", "hit"});
    std::map<long, int> hit_of_line, domain_of_line, rows_of_line;
    for (size_t i = 1; i < plain.size(); i++) {
        const std::vector<std::string>& f = plain[i];
        REQUIRE(f.size() == 7);
        const long l = std::stol(f[1]);
        rows_of_line[l]++;
        hit_of_line[l] += f[6] == "1";
        domain_of_line[l] = std::stol(f[3]) < 300 ? 0 : 1;  // the tiny data: 300 X items
    }
    int hits[2] = {0, 0};
    for (const auto& kv : hit_of_line) {
        CHECK(kv.second <= 1);
        CHECK(rows_of_line[kv.first] == 10);
        hits[domain_of_line[kv.first]] += kv.second;
    }
    const double n_x = num(test_full, "X", "n"), n_y = num(test_full, "Y", "n");
    CHECK(hit_of_line.size() == (size_t)(n_x + n_y));
    CHECK(hits[0] == (int)std::lround(num(test_full, "X", "hr10") * n_x / 100.0));
    CHECK(hits[1] == (int)std::lround(num(test_full, "Y", "hr10") * n_y / 100.0));
    MESSAGE("recommend --split test: ", hits[0], " + ", hits[1], " lines with the target in the top 10");

    // --explain adds nine columns to the same rows, whose parts add up to each score; one history
    // of the command line the same
    std::string explained;
    REQUIRE(testutil::run_shell("{ " + testutil::hafvt_bin() + " recommend --ckpt " + run +
                                    "/best.safetensors --split test --k 10 --explain 2>/dev/null; }", &explained) == 0);
    const std::vector<std::vector<std::string>> ex = check_explained(explained);
    REQUIRE(ex.size() == plain.size());
    for (size_t i = 0; i < ex.size(); i++) CHECK(std::vector<std::string>(ex[i].begin(), ex[i].begin() + 7) == plain[i]);
    // a history of Y items only (the tiny data's Y ids start at 300): the X view has no item, so
    // its part is 0 and the Y and XY views share the score
    auto one = run_hafvt("recommend --ckpt " + run + "/best.safetensors --domain Y --k 5 --explain 301 302 305");
    REQUIRE_MESSAGE(one.status == 0, one.out);
    const std::vector<std::vector<std::string>> one_rows = check_explained(one.out.substr(one.out.find("rank\t")));
    REQUIRE(one_rows.size() == 6);
    CHECK(one_rows[0][4] == "view_X");
    for (size_t i = 1; i < one_rows.size(); i++) CHECK(one_rows[i][4] == "0");
}

TEST_CASE("progress: in place on a terminal, plain lines in a pipe and in train.log, both with the run's ETA") {
    const std::string base = testutil::temp_dir("progress");
    // a pseudo-terminal through script(1)
    std::string tty_out;
    const int st = testutil::run_shell("script -qec '" + testutil::hafvt_bin() + " " + train_args(base + "/tty", 2) +
                                           " --skip-test --log-every 1' /dev/null", &tty_out);
    REQUIRE_MESSAGE(st == 0, tty_out);
    CHECK(tty_out.find("\r\x1b[Kepoch 1/2 step 1/") != std::string::npos);  // updated in place
    CHECK(tty_out.find("ETA epoch ") != std::string::npos);
    CHECK(tty_out.find(", run ") != std::string::npos);
    CHECK(tty_out.find("epoch 2 valid (full): MRR") != std::string::npos);  // one summary line per epoch
    const std::string log = read_file(base + "/tty/train.log");
    CHECK(log.find('\r') == std::string::npos);  // the log keeps plain lines
    CHECK(log.find("epoch 1/2 step 1/") != std::string::npos);
    // piped: plain lines only
    auto piped = run_hafvt(train_args(base + "/pipe", 1) + " --skip-test");
    REQUIRE_MESSAGE(piped.status == 0, piped.out);
    CHECK(piped.out.find('\r') == std::string::npos);
    CHECK(piped.out.find("ETA epoch ") != std::string::npos);
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
    // a run's config.json repeats it (its seed 7 included), with --out given on the command line
    auto d = run_hafvt("train --config " + base + "/c/config.json --out " + base + "/d");
    REQUIRE_MESSAGE(d.status == 0, d.out);
    check_same_run(base + "/c", base + "/d");
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

// ---- --device: the T limit of the GPU attention ---------------------------------------------

namespace {
int probes = 0;
bool probe_yes(std::string* why) {
    probes++;
    *why = "Test GPU (compute capability 9.0, 1000 MiB)";
    return true;
}
bool probe_no(std::string* why) {
    probes++;
    *why = "no CUDA device: the driver reports 0 devices";
    return false;
}
}  // namespace

TEST_CASE("--device: the GPU attention's T limit refuses --device cuda and sends auto to the CPU") {
    const DeviceSettingNames kNames = device_setting_names(Source::FLAGS);
    using P = bool (*)(std::string*);
    std::string line;
    // cuda with --T above the limit: refused before any probe, in every build
    for (P probe : {P(probe_yes), P(probe_no), P(nullptr)}) {
        probes = 0;
        testutil::expect_input_error([&] { decide_device("cuda", kCudaMaxT + 1, false, probe, kNames, &line); },
                                     {"--T:", "expected <= 64", "--device cuda", "found 65", "use --device cpu"});
        CHECK(probes == 0);
    }
    CHECK(decide_device("cuda", kCudaMaxT, false, probe_yes, kNames, &line) == DeviceKind::CUDA);
    CHECK(line.find("device: CUDA, Test GPU") == 0);
    // auto: the CPU, with one line saying why
    CHECK(decide_device("auto", kCudaMaxT, true, probe_yes, kNames, &line) == DeviceKind::CUDA);
    CHECK(line.find("TF32") != std::string::npos);
    CHECK(decide_device("auto", 100, false, probe_yes, kNames, &line) == DeviceKind::CPU);
    CHECK(line == "device: --T 100 is above 64, the longest sequence the GPU attention takes; running on the CPU, "
                  "not on Test GPU (compute capability 9.0, 1000 MiB)");
    CHECK(decide_device("auto", 100, false, probe_no, kNames, &line) == DeviceKind::CPU);
    CHECK(line.find("device: no CUDA device") == 0);
    CHECK(decide_device("auto", 100, false, nullptr, kNames, &line) == DeviceKind::CPU);
    CHECK(line.find("device: this build has no CUDA") == 0);
    // cpu and emulate take any T, print nothing and probe nothing
    probes = 0;
    CHECK(decide_device("cpu", 512, false, probe_yes, kNames, &line) == DeviceKind::CPU);
    CHECK(line.empty());
    CHECK(decide_device("emulate", 512, false, probe_yes, kNames, &line) == DeviceKind::EMULATE);
    CHECK(line.empty());
    CHECK(probes == 0);
    // the other refusals are unchanged
    testutil::expect_input_error([&] { decide_device("cuda", 15, false, probe_no, kNames, &line); }, {"--device cuda:", "expected a CUDA device"});
    testutil::expect_input_error([&] { decide_device("cuda", 15, false, nullptr, kNames, &line); }, {"--device cuda:", "expected a CUDA build"});
    testutil::expect_input_error([&] { decide_device("tpu", 15, false, nullptr, kNames, &line); }, {"--device:", "found 'tpu'"});

    // through the binary: --device auto with --T 65 trains on the CPU and says why in one line
    // (which reason depends on the build and the machine; with a CUDA device it is --T)
    std::string run = testutil::temp_dir("t65") + "/run";
    auto r = run_hafvt(train_args(run, 1) + " --T 65 --max-steps 1 --skip-test --device auto");
    REQUIRE_MESSAGE(r.status == 0, r.out);
    CHECK(r.out.find("device: CUDA") == std::string::npos);
    CHECK(r.out.find("; running on the CPU") != std::string::npos);
    if (r.out.find("device: this build has no CUDA") == std::string::npos && r.out.find("device: no CUDA device") == std::string::npos)
        CHECK(r.out.find("device: --T 65 is above 64") != std::string::npos);
}

// ---- a device out of memory -----------------------------------------------------------------

TEST_CASE("a device allocation failing (out of memory) is bad input: exit 2, one line, message intact") {
    // HAFVT_FAULT=device_alloc@N fails the N-th allocation of the emulated device (backend.cpp) with
    // the InputError of cuda_malloc on a full GPU
    auto with_fault = [](long n, const std::string& args) {
        testutil::RunResult r;
        r.status = testutil::run_shell(cat("HAFVT_FAULT=device_alloc@", n, " timeout 300 ", testutil::hafvt_bin(), " ", args), &r.out);
        return r;
    };
    auto check_oom = [](const testutil::RunResult& r) {
        INFO(r.out);
        CHECK(r.status == 2);
        CHECK(r.out.find("error: out of device memory: allocating ") != std::string::npos);
        CHECK(r.out.find("try a smaller --batch or --eval-batch") != std::string::npos);
        CHECK(r.out.find("internal error") == std::string::npos);
    };
    std::string base = testutil::temp_dir("oom");
    // in the model's constructor: before the run folder exists
    auto a = with_fault(1, train_args(base + "/a", 1) + " --device emulate --max-steps 1 --skip-test");
    check_oom(a);
    struct stat st;
    CHECK(::stat((base + "/a").c_str(), &st) != 0);
    // in the first training step's activations
    check_oom(with_fault(20, train_args(base + "/b", 1) + " --device emulate --max-steps 1 --skip-test"));
    // hafvt eval, in the constructor and in the first batch
    auto ok = run_hafvt(train_args(base + "/c", 1) + " --max-steps 1 --skip-test");
    REQUIRE_MESSAGE(ok.status == 0, ok.out);
    const std::string ev = cat("eval --ckpt ", base, "/c/last.safetensors --split valid --device emulate");
    check_oom(with_fault(1, ev));
    check_oom(with_fault(12, ev));
    auto e = with_fault(1000000, ev);  // never reached: the evaluation runs
    CHECK_MESSAGE(e.status == 0, e.out);
}

#ifdef HAFVT_CUDA
// cuda_malloc itself (cuda/device.cu), where a device answers: a real GPU, or the host emulation of
// tests/cuda_emu (make debug), whose memory is HAFVT_EMU_MEM_MB.
CUDA_TEST_CASE("a full device: cuda_malloc throws InputError with the sizes, and train/eval exit 2") {
    if (!testutil::gpu_ready()) return;
    testutil::expect_input_error([] { cuda_malloc((size_t)1 << 50); },
                                 {"out of device memory: allocating 1073741824.0 MiB with ", " MiB free of ",
                                  " MiB (cudaMemGetInfo)"});
    CHECK_THROWS_AS(cuda_malloc((size_t)1 << 50), DeviceMemoryError);  // main adds the settings to lower
    void* p = cuda_malloc(1024);  // the failure is not sticky
    CHECK(p != nullptr);
    cuda_free(p);
#ifdef HAFVT_CUDA_EMU
    // through the binary on an emulated device of 1 MiB (the tiny model's tables need more)
    auto on_small_device = [](const std::string& args) {
        testutil::RunResult r;
        r.status = testutil::run_shell("HAFVT_EMU_GPU=1 HAFVT_EMU_MEM_MB=1 timeout 300 " + testutil::hafvt_bin() + " " + args, &r.out);
        INFO(r.out);
        CHECK(r.status == 2);
        CHECK(r.out.find("error: out of device memory: allocating ") != std::string::npos);
        CHECK(r.out.find(" MiB free of 1.0 MiB (cudaMemGetInfo); try a smaller --batch or --eval-batch") != std::string::npos);
        CHECK(r.out.find("internal error") == std::string::npos);
    };
    std::string base = testutil::temp_dir("fulldev");
    on_small_device(train_args(base + "/a", 1) + " --device cuda --max-steps 1 --skip-test");
    auto ok = run_hafvt(train_args(base + "/b", 1) + " --max-steps 1 --skip-test");
    REQUIRE_MESSAGE(ok.status == 0, ok.out);
    on_small_device(cat("eval --ckpt ", base, "/b/last.safetensors --split valid --device cuda"));
#endif
}

// kCudaMaxT (train.h), the --T limit of --device, is the CUDA attention's own limit.
CUDA_TEST_CASE("--device: kCudaMaxT is the longest T the CUDA attention takes") {
    if (!testutil::gpu_ready()) return;
    const size_t T = kCudaMaxT + 1, C = 8;
    auto zeros = [](size_t bytes) {
        void* p = cuda_malloc(bytes);
        cuda_memset_zero(p, bytes);
        return p;
    };
    float* qkv = (float*)zeros(T * 3 * C * sizeof(float));
    float* out = (float*)zeros(T * C * sizeof(float));
    float* att = (float*)zeros(T * T * sizeof(float));
    uint8_t* valid = (uint8_t*)zeros(T);
    CHECK_NOTHROW(attention_forward_cuda(out, att, qkv, nullptr, valid, 1, kCudaMaxT, C, 1, 0.0f, 0, 0, 0));
    cuda_synchronize();
    CHECK_THROWS(attention_forward_cuda(out, att, qkv, nullptr, valid, 1, kCudaMaxT + 1, C, 1, 0.0f, 0, 0, 0));
    for (void* p : {(void*)qkv, (void*)out, (void*)att, (void*)valid}) cuda_free(p);
}
#endif

namespace {

// The losses of a run's progress lines ("epoch e/E step k/n | loss X ..."), in order.
std::vector<double> step_losses(const std::string& out) {
    std::vector<double> v;
    size_t pos = 0;
    while ((pos = out.find("| loss ", pos)) != std::string::npos) {
        pos += 7;
        v.push_back(std::atof(out.c_str() + pos));
    }
    return v;
}

// The numbers of an evaluation table's rows ("valid full X 70 24.28 ..."), in order.
std::vector<double> table_numbers(const std::string& out) {
    std::vector<double> v;
    size_t pos = 0;
    while ((pos = out.find("\nvalid ", pos)) != std::string::npos) {
        size_t end = out.find('\n', pos + 1);
        std::istringstream line(out.substr(pos + 1, end - pos - 1));
        std::string split, proto, dom;
        line >> split >> proto >> dom;
        for (double x; line >> x;) v.push_back(x);
        pos = end;
    }
    return v;
}

}  // namespace

// Training through the binary on the device path with the CUDA kernels (the optimized host
// emulation in make test-emu, a GPU in make test-gpu): the step losses match a CPU run of the same
// seed within float round-off, and hafvt eval on the device prints the CPU's table for both
// protocols, within one percentage point (a rank may differ where two scores tie within
// round-off). A "cuda large:" case: a whole run of kernels in fibers is slow under the sanitizers,
// whose kernels the unit cases of test_cuda.cpp cover.
CUDA_TEST_CASE("cuda large: training and evaluation on --device cuda match the CPU run") {
    if (!testutil::gpu_ready()) return;
    std::string base = testutil::temp_dir("cudatrain");
    // HAFVT_EMU_GPU=1: a child of an emulated build sees the emulated device (cuda_emu.cpp)
    auto on = [](const std::string& device, const std::string& args) {
        testutil::RunResult r;
        r.status = testutil::run_shell("HAFVT_EMU_GPU=1 timeout 600 " + testutil::hafvt_bin() + " " + args +
                                           " --device " + device, &r.out);
        INFO(r.out);
        REQUIRE(r.status == 0);
        return r.out;
    };
    const std::string steps = " --max-steps 3 --log-every 1 --skip-test";
    std::string cpu = on("cpu", train_args(base + "/cpu", 1) + steps);
    std::string gpu = on("cuda", train_args(base + "/gpu", 1) + steps);
    CHECK(gpu.find("device: CUDA") != std::string::npos);
    std::vector<double> a = step_losses(cpu), b = step_losses(gpu);
    REQUIRE(a.size() == 3);
    REQUIRE(b.size() == 3);
    for (size_t i = 0; i < a.size(); i++) CHECK(std::fabs(a[i] - b[i]) <= 2e-3 * std::fabs(a[i]));
    for (const char* protocol : {"full", "c2dsr"}) {
        CAPTURE(protocol);
        const std::string ev = cat("eval --ckpt ", base, "/cpu/last.safetensors --split valid --protocol ", protocol);
        std::vector<double> ta = table_numbers(on("cpu", ev)), tb = table_numbers(on("cuda", ev));
        REQUIRE(ta.size() == 14);  // X and Y rows: targets and 6 metrics
        REQUIRE(tb.size() == ta.size());
        for (size_t i = 0; i < ta.size(); i++) CHECK(std::fabs(ta[i] - tb[i]) <= 1.0);
    }
    // recommend --explain on the device: the parts add up to the device's scores, one block of 5
    // rows per line as on the CPU
    auto explained = [&](const std::string& device) {
        std::string out;
        REQUIRE(testutil::run_shell(cat("{ HAFVT_EMU_GPU=1 timeout 600 ", testutil::hafvt_bin(), " recommend --ckpt ", base,
                                        "/cpu/last.safetensors --split valid --k 5 --explain --device ", device, " 2>/dev/null; }"),
                                    &out) == 0);
        return check_explained(out);
    };
    CHECK(explained("cuda").size() == explained("cpu").size());
}

namespace {

// Every number of `got` within atol + rtol |want| of the one at the same place of `want` (objects
// and arrays of the same shape, other values equal); `where` names the place in messages.
void check_close(const Json& got, const Json& want, double atol, double rtol, const std::string& where) {
    INFO(where);
    REQUIRE(got.type() == want.type());
    if (want.is_number()) {
        CHECK(std::fabs(got.as_number() - want.as_number()) <= atol + rtol * std::fabs(want.as_number()));
    } else if (want.is_object()) {
        REQUIRE(got.size() == want.size());
        for (const auto& kv : want.items()) {
            const Json* g = got.get(kv.first);
            REQUIRE(g != nullptr);
            check_close(*g, kv.second, atol, rtol, where + "." + kv.first);
        }
    } else if (want.is_array()) {
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < want.size(); i++) check_close(got.as_array()[i], want.as_array()[i], atol, rtol, cat(where, "[", i, "]"));
    } else {
        CHECK(got == want);
    }
}

bool no_reference_run() { return std::getenv("HAFVT_REFERENCE_RUN") == nullptr; }

}  // namespace

// make test-cross: a tiny run of the native binary (HAFVT_REFERENCE_RUN, written by the target)
// repeated here from its config.json, on another architecture under qemu: the same metrics within
// the PyTorch fixture's tolerances (atol 1e-5, rtol 1e-4). The SGEMM sums every element in the
// same order on every kernel; what differs between machines is the lane count of the vectorized
// reductions. Skipped unless HAFVT_REFERENCE_RUN is set.
TEST_CASE("ports: a run repeated from another machine's config.json has its metrics" * doctest::skip(no_reference_run())) {
    const std::string ref = std::getenv("HAFVT_REFERENCE_RUN"), out = testutil::temp_dir("port") + "/run";
    auto r = run_hafvt("train --config " + ref + "/config.json --out " + out, 1800);
    REQUIRE_MESSAGE(r.status == 0, r.out);
    const std::vector<Json> a = testutil::metrics_without_seconds(out), b = testutil::metrics_without_seconds(ref);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); i++) check_close(a[i], b[i], 1e-5, 1e-4, cat("metrics.jsonl line ", i + 1));
}

namespace {

// The MRR of domain X and Y in a table of format_results (one protocol), in its printed precision.
std::pair<double, double> table_mrr(const std::string& out, const std::string& split) {
    double mrr[2] = {-1, -1};
    for (int D = 0; D < 2; D++) {
        const std::string key = split + (split == "test" ? "   " : "  ") + "full      " + (D == 0 ? "X" : "Y");
        const size_t at = out.find(key);
        REQUIRE_MESSAGE(at != std::string::npos, key, " not in: ", out);
        std::istringstream is(out.substr(at + key.size()));
        size_t n;
        is >> n >> mrr[D];
    }
    return {mrr[0], mrr[1]};
}

// The valid MRR X, Y of the tune table's row that ends with `tag`.
std::pair<double, double> tune_row(const std::string& out, const std::string& tag) {
    const size_t end = out.find(tag);
    REQUIRE_MESSAGE(end != std::string::npos, tag, " not in: ", out);
    const size_t start = out.rfind('\n', end) + 1;
    std::istringstream is(out.substr(start + 48, end - start - 48));
    double x, y;
    is >> x >> y;
    return {x, y};
}

}  // namespace

TEST_CASE("tune: the grid's MRR at the trained weights is eval's; the chosen weights are what eval then uses") {
    const std::string run = testutil::temp_dir("tune") + "/run";
    auto r = run_hafvt(train_args(run, 3) + " --tune");  // train --tune runs hafvt tune at the end
    REQUIRE_MESSAGE(r.status == 0, r.out);
    CHECK(r.out.find("test, scored once with the tuned weights") != std::string::npos);
    CHECK(read_file(run + "/train.log").find("(best)") != std::string::npos);
    const std::string best = run + "/best.safetensors";
    REQUIRE(file_exists(run + "/tuned.json"));
    std::remove((run + "/tuned.json").c_str());
    auto t = run_hafvt("tune --ckpt " + best + " --threads 2");
    REQUIRE_MESSAGE(t.status == 0, t.out);
    MESSAGE(t.out);
    // the feature and device notes once, though the test pass loads the model again: the lines
    // that hold `what` (the device line of a CUDA build holds "device: " twice)
    auto lines_with = [](const std::string& text, const std::string& what) {
        size_t n = 0;
        for (size_t start = 0; start < text.size();) {
            size_t end = text.find('\n', start);
            if (end == std::string::npos) end = text.size();
            if (text.substr(start, end - start).find(what) != std::string::npos) n++;
            start = end + 1;
        }
        return n;
    };
    CHECK(lines_with(t.out, "txt.npy: 5 all-zero rows") == 1);
    CHECK(lines_with(t.out, "device: ") == 1);
    // the row of the trained weights: the valid MRR eval computes with them
    auto ev = run_hafvt("eval --ckpt " + best + " --split valid --protocol full --threads 2 --trained-weights");
    REQUIRE_MESSAGE(ev.status == 0, ev.out);
    const auto trained = tune_row(t.out, "(trained)"), chosen = tune_row(t.out, "(best)");
    const auto eval_trained = table_mrr(ev.out, "valid");
    CHECK(std::fabs(trained.first - eval_trained.first) <= 0.011);
    CHECK(std::fabs(trained.second - eval_trained.second) <= 0.011);
    CHECK(chosen.first + chosen.second >= trained.first + trained.second - 0.02);
    // tuned.json names the checkpoint and the weights; eval uses them, says so, and reproduces
    // the chosen row on valid and tune's test table on test
    const Json j = Json::parse(read_file(run + "/tuned.json"), "tuned.json");
    CHECK(j.get("checkpoint")->as_string() == "best.safetensors");
    for (const char* k : {"alpha", "beta", "lambda1", "lambda2"}) CHECK(j.get(k)->is_number());
    auto ev2 = run_hafvt("eval --ckpt " + best + " --split valid --protocol full --threads 2");
    REQUIRE_MESSAGE(ev2.status == 0, ev2.out);
    CHECK(ev2.out.find("weights tuned on valid") != std::string::npos);
    const auto eval_tuned = table_mrr(ev2.out, "valid");
    CHECK(std::fabs(chosen.first - eval_tuned.first) <= 0.011);
    CHECK(std::fabs(chosen.second - eval_tuned.second) <= 0.011);
    // its test record splits head and tail targets as training did (the training file's counts)
    {
        const Json j2 = Json::parse(read_file(run + "/tuned.json"), "tuned.json");
        REQUIRE(j2.get("test"));
        const std::vector<Json> m = testutil::metrics_without_seconds(run);
        const Json& trained_test = m.back();  // test, full protocol
        REQUIRE(trained_test.get("protocol")->as_string() == "full");
        for (const char* g : {"X_head", "X_tail", "Y_head", "Y_tail"})
            CHECK(j2.get("test")->get("head_tail")->get(g)->get("n")->as_number() ==
                  trained_test.get("head_tail")->get(g)->get("n")->as_number());
    }
    auto test = run_hafvt("eval --ckpt " + best + " --split test --protocol full --threads 2");
    REQUIRE_MESSAGE(test.status == 0, test.out);
    const auto tune_test = table_mrr(t.out.substr(t.out.find("test, scored once")), "test"), eval_test = table_mrr(test.out, "test");
    CHECK(tune_test == eval_test);
    // eval --json: the tuned weights' record is tuned.json's test record, head and tail included;
    // with --trained-weights it is the training run's test record
    {
        const Json tuned_test = *Json::parse(read_file(run + "/tuned.json"), "tuned.json").get("test");
        const Json trained_test = testutil::metrics_without_seconds(run).back();
        for (const bool trained : {false, true}) {
            const std::string jf = run + (trained ? "/eval_trained.json" : "/eval_tuned.json");
            auto ej = run_hafvt("eval --ckpt " + best + " --split test --protocol full --threads 2 --json " + jf +
                                (trained ? " --trained-weights" : ""));
            REQUIRE_MESSAGE(ej.status == 0, ej.out);
            const Json e = Json::parse(read_file(jf), jf);
            const Json& want = trained ? trained_test : tuned_test;
            CHECK(e.get("split")->as_string() == "test");
            CHECK(e.get("protocol")->as_string() == "full");
            CHECK(e.get("step")->as_number() == want.get("step")->as_number());
            CHECK(e.get("weights")->as_string().find(trained ? "trained" : "weights tuned on valid") == 0);
            for (const char* D : {"X", "Y"})
                for (const char* m : {"n", "mrr", "ndcg5", "ndcg10", "hr10"})
                    CHECK(e.get(D)->get(m)->as_number() == want.get(D)->get(m)->as_number());
            for (const char* g : {"X_head", "X_tail", "Y_head", "Y_tail"})
                for (const char* m : {"n", "mrr"})
                    CHECK(e.get("head_tail")->get(g)->get(m)->as_number() == want.get("head_tail")->get(g)->get(m)->as_number());
        }
    }
    // under the c2dsr protocol (the run's saved negatives) the trained row is eval's too
    auto tc = run_hafvt("tune --ckpt " + best + " --threads 2 --protocol c2dsr --skip-test");
    REQUIRE_MESSAGE(tc.status == 0, tc.out);
    CHECK(tc.out.find("test, scored once") == std::string::npos);
    auto evc = run_hafvt("eval --ckpt " + best + " --split valid --protocol c2dsr --threads 2 --trained-weights");
    REQUIRE_MESSAGE(evc.status == 0, evc.out);
    const auto trained_c = tune_row(tc.out, "(trained)");
    for (int D = 0; D < 2; D++) {
        const std::string key = std::string("valid  c2dsr     ") + (D == 0 ? "X" : "Y");
        const size_t at = evc.out.find(key);
        REQUIRE(at != std::string::npos);
        std::istringstream is(evc.out.substr(at + key.size()));
        size_t n;
        double mrr;
        is >> n >> mrr;
        CHECK(std::fabs(mrr - (D == 0 ? trained_c.first : trained_c.second)) <= 0.011);
    }
    // another checkpoint of the folder is not the tuned one: its trained weights, with a note
    auto last = run_hafvt("eval --ckpt " + run + "/last.safetensors --split valid --protocol full --threads 2");
    REQUIRE_MESSAGE(last.status == 0, last.out);
    CHECK(last.out.find("was tuned on another checkpoint") != std::string::npos);
    // a damaged tuned.json is bad input naming it (exit 2), and --trained-weights does not read it
    write_file_atomic(run + "/tuned.json", "{\"checkpoint\": \"best.safetensors\", \"alpha\": ");
    auto bad = run_hafvt("eval --ckpt " + best + " --split valid --threads 2");
    CHECK(bad.status == 2);
    CHECK(bad.out.find("tuned.json") != std::string::npos);
    CHECK(run_hafvt("eval --ckpt " + best + " --split valid --threads 2 --trained-weights").status == 0);
}

TEST_CASE("--id-warmup: the first epochs train the id head alone, then the mixture; scoring is free of it") {
    const std::string run = testutil::temp_dir("warmup") + "/run";
    auto r = run_hafvt(train_args(run, 2) + " --id-warmup 1");
    REQUIRE_MESSAGE(r.status == 0, r.out);
    CHECK(r.out.find("ID warm-up: epochs 1-1 train the id head alone") != std::string::npos);
    CHECK(r.out.find("ID warm-up over") != std::string::npos);
    CHECK(testutil::metrics_without_seconds(run).size() == 2 * 2 + 2);  // valid per epoch, then test
    // another run without the warm-up differs from the first epoch on
    const std::string plain = testutil::temp_dir("warmup") + "/plain";
    REQUIRE(run_hafvt(train_args(plain, 1)).status == 0);
    CHECK(testutil::metrics_without_seconds(plain)[0].dump() != testutil::metrics_without_seconds(run)[0].dump());
    // scoring the checkpoint with the id head off is scoring, not training: no warm-up check
    auto e = run_hafvt("eval --ckpt " + run + "/best.safetensors --split test --alpha 0 --beta 1 --threads 2");
    CHECK_MESSAGE(e.status == 0, e.out);
    // training with the id head off and a warm-up is refused, naming both
    auto bad = run_hafvt(train_args(testutil::temp_dir("warmup") + "/bad", 1) + " --id-warmup 2 --alpha 0");
    CHECK(bad.status == 2);
    CHECK(bad.out.find("--id-warmup 2: expected the id modality on") != std::string::npos);
}
