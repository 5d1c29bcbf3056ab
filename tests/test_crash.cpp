// test_crash.cpp: crash safety through the binary. A training process killed with SIGKILL in the
// middle of an epoch and restarted with --resume ends exactly like an uninterrupted run; a fault
// between writing and renaming a checkpoint leaves the previous one loadable; a non-finite loss
// stops training with a message naming the step and the term, and the last checkpoint loads.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "cli_util.h"
#include "json.h"
#include "safetensors.h"
#include "test_util.h"

using namespace hafvt;
using testutil::run_hafvt;

namespace {

// Small batches: 50 steps per epoch, so a kill lands inside an epoch.
std::vector<std::string> train_argv(const std::string& out, int epochs) {
    const std::string& d = testutil::tiny_dataset();
    return {"train", "--data", d, "--img", d + "/img.npy", "--out", out, "--q", "16", "--blocks", "1",
            "--batch", "16", "--threads", "1", "--epochs", std::to_string(epochs), "--skip-test"};
}

std::string joined(const std::vector<std::string>& a) {
    std::string s;
    for (const auto& x : a) s += x + " ";
    return s;
}

bool has_tmp_files(const std::string& dir) {
    std::string out;
    testutil::run_shell("ls -a " + dir, &out);
    return out.find(".tmp.") != std::string::npos;
}

}  // namespace

TEST_CASE("a run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted run") {
    const std::string base = testutil::temp_dir("crash_kill");
    auto whole = run_hafvt(joined(train_argv(base + "/whole", 4)));
    REQUIRE_MESSAGE(whole.status == 0, whole.out);

    // the interrupted run, as a child process we can kill; one progress line per step on stdout
    std::vector<std::string> args = train_argv(base + "/killed", 4);
    args.insert(args.begin(), testutil::hafvt_bin());
    args.push_back("--log-every");
    args.push_back("1");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(&a[0]);
    argv.push_back(nullptr);
    const std::string out_path = base + "/killed.out";
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (!freopen(out_path.c_str(), "w", stdout)) _exit(126);
        execv(argv[0], argv.data());
        _exit(127);
    }
    // kill as soon as epoch 3 is 10 steps in (epoch 2's checkpoint is written by then)
    bool reached = false;
    for (int i = 0; i < 60000 && !reached; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        FILE* f = fopen(out_path.c_str(), "rb");
        if (!f) continue;
        fclose(f);
        reached = read_file(out_path).find("epoch 3/4 step 10/50") != std::string::npos;
    }
    REQUIRE(reached);
    REQUIRE(kill(pid, SIGKILL) == 0);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    REQUIRE(WIFSIGNALED(st));
    std::string out = read_file(out_path);
    size_t last = out.rfind("\nepoch ") + 1;
    MESSAGE("killed the training process after: ", out.substr(last, out.find('\n', last) - last));
    CHECK(out.find("epoch 3 valid") == std::string::npos);  // it died inside epoch 3

    auto resumed = run_hafvt(joined(train_argv(base + "/killed", 4)) + " --resume");
    REQUIRE_MESSAGE(resumed.status == 0, resumed.out);
    CHECK(resumed.out.find("resumed from") != std::string::npos);
    auto mk = testutil::metrics_without_seconds(base + "/killed"), mw = testutil::metrics_without_seconds(base + "/whole");
    REQUIRE(mk.size() == mw.size());
    for (size_t i = 0; i < mk.size(); i++) CHECK(mk[i].dump() == mw[i].dump());
    CHECK(safetensors_read(base + "/killed/last.safetensors").data == safetensors_read(base + "/whole/last.safetensors").data);
    CHECK_FALSE(has_tmp_files(base + "/killed"));
}

TEST_CASE("a fault between writing and renaming a checkpoint leaves the previous one loadable") {
    const std::string base = testutil::temp_dir("crash_fault");
    const std::string run = base + "/run";
    auto first = run_hafvt(joined(train_argv(run, 2)));
    REQUIRE_MESSAGE(first.status == 0, first.out);
    const std::string before = read_file(run + "/last.safetensors");
    // the resumed run commits config.json and the two negatives files, then at the end of epoch 3
    // a checkpoint: its commit (the 4th) fails after writing and before renaming
    setenv("HAFVT_FAULT", "before_rename@4", 1);
    auto faulted = run_hafvt(joined(train_argv(run, 3)) + " --resume");
    unsetenv("HAFVT_FAULT");
    CHECK(faulted.status == 2);
    CHECK(faulted.out.find("fault injected before rename") != std::string::npos);
    CHECK(read_file(run + "/last.safetensors") == before);
    CHECK_FALSE(has_tmp_files(run));
    auto eval = run_hafvt("eval --ckpt " + run + "/last.safetensors --split valid --threads 1");
    CHECK_MESSAGE(eval.status == 0, eval.out);
}

TEST_CASE("a non-finite loss stops training, names the step and the term; the last checkpoint loads") {
    const std::string base = testutil::temp_dir("crash_nan");
    const std::string run = base + "/run";
    auto first = run_hafvt(joined(train_argv(run, 1)));
    REQUIRE_MESSAGE(first.status == 0, first.out);
    const std::string before = read_file(run + "/last.safetensors");
    setenv("HAFVT_FAULT", "nan_loss@7", 1);  // the 7th step of the resumed run: step 57 overall
    auto bad = run_hafvt(joined(train_argv(run, 2)) + " --resume");
    unsetenv("HAFVT_FAULT");
    CHECK(bad.status == 1);
    CHECK(bad.out.find("error: the XY loss term is nan at step 57") != std::string::npos);
    CHECK(read_file(run + "/last.safetensors") == before);
    auto eval = run_hafvt("eval --ckpt " + run + "/last.safetensors --split valid --threads 1");
    CHECK_MESSAGE(eval.status == 0, eval.out);
}

TEST_CASE("a configuration that needs more memory than the machine has is refused before allocating") {
    const std::string out = testutil::temp_dir("crash_mem") + "/run";
    setenv("HAFVT_MEMORY_LIMIT_MB", "20", 1);
    auto r = run_hafvt(joined(train_argv(out, 1)) + " --batch 512");
    unsetenv("HAFVT_MEMORY_LIMIT_MB");
    CHECK(r.status == 2);
    CHECK(r.out.find("error: memory: this configuration needs about") != std::string::npos);
    CHECK(r.out.find("try a smaller --batch (now 512)") != std::string::npos);
    struct stat st;
    CHECK(stat(out.c_str(), &st) != 0);  // nothing written
    // the same run with the machine's real memory goes through and prints its estimate
    auto ok = run_hafvt(joined(train_argv(out, 1)));
    CHECK_MESSAGE(ok.status == 0, ok.out);
    CHECK(ok.out.find("memory estimate ") != std::string::npos);
}
