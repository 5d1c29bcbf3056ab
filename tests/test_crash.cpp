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
#include "core/json.h"
#include "formats/safetensors.h"
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
    const std::vector<std::string> bin = testutil::hafvt_argv();
    args.insert(args.begin(), bin.begin(), bin.end());
    args.push_back("--log-every");
    args.push_back("1");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(&a[0]);
    argv.push_back(nullptr);
    const std::string out_path = base + "/killed.out";
    std::fflush(stdout);  // or the child would write our buffered output a second time
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (!freopen(out_path.c_str(), "w", stdout)) _exit(126);
        execvp(argv[0], argv.data());
        _exit(127);
    }
    // wait (by the clock, the sanitizer build is slow) until train.log shows epoch 2 finished and
    // its checkpoint written, then kill as soon as epoch 3 is 10 steps in
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
    bool epoch2 = false, reached = false, exited = false;
    while (!reached && !exited && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        int ws = 0;
        exited = waitpid(pid, &ws, WNOHANG) == pid;  // it must not finish or fail on its own
        if (!epoch2) {
            struct stat sb;
            epoch2 = stat((base + "/killed/train.log").c_str(), &sb) == 0 &&
                     read_file(base + "/killed/train.log").find("epoch 2 valid") != std::string::npos;
        } else {
            reached = read_file(out_path).find("epoch 3/4 step 10/50") != std::string::npos;
        }
    }
    if (!reached && !exited) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
    {
        INFO("child output: " << read_file(out_path));
        REQUIRE_FALSE(exited);
        REQUIRE(reached);
    }
    REQUIRE(kill(pid, SIGKILL) == 0);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    REQUIRE(WIFSIGNALED(st));
    REQUIRE(WTERMSIG(st) == SIGKILL);
    std::string out = read_file(out_path);
    size_t last = out.rfind("\nepoch ") + 1;
    MESSAGE("killed the training process after: ", out.substr(last, out.find('\n', last) - last));
    CHECK(out.find("epoch 3 valid") == std::string::npos);  // it died inside epoch 3
    // what a kill between a checkpoint's write and its rename leaves: the dead writer's temporary
    const std::string stale = cat(base, "/killed/last.safetensors.tmp.", (long)pid);
    write_file_atomic(stale, "half a checkpoint");

    auto resumed = run_hafvt(joined(train_argv(base + "/killed", 4)) + " --resume");
    REQUIRE_MESSAGE(resumed.status == 0, resumed.out);
    CHECK(resumed.out.find("resumed from") != std::string::npos);
    CHECK(resumed.out.find("removed " + stale + ", a temporary file left by an interrupted run") != std::string::npos);
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
    // the resumed run commits config.json and the two negatives files, then (no evaluation in
    // epoch 3, so no best.safetensors) last.safetensors: that 4th commit fails before its rename
    setenv("HAFVT_FAULT", "before_rename@4", 1);
    auto faulted = run_hafvt(joined(train_argv(run, 4)) + " --eval-every 4 --resume");
    unsetenv("HAFVT_FAULT");
    CHECK(faulted.status == 2);
    CHECK_MESSAGE(faulted.out.find("last.safetensors: fault injected before rename") != std::string::npos, faulted.out);
    CHECK(faulted.out.find("epoch 3/4 step 50/50") != std::string::npos);  // it failed at epoch 3's end
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
    CHECK(bad.out.find("The last good checkpoint is " + run + "/last.safetensors (end of epoch 1)") != std::string::npos);
    CHECK(bad.out.find("Check the inputs (data, feature files) or try a lower --lr") != std::string::npos);
    CHECK(read_file(run + "/last.safetensors") == before);
    auto eval = run_hafvt("eval --ckpt " + run + "/last.safetensors --split valid --threads 1");
    CHECK_MESSAGE(eval.status == 0, eval.out);
}

TEST_CASE("a non-finite loss before the first checkpoint says that none was written") {
    const std::string run = testutil::temp_dir("crash_nan_first") + "/run";
    setenv("HAFVT_FAULT", "nan_loss@1", 1);
    auto bad = run_hafvt(joined(train_argv(run, 1)));
    unsetenv("HAFVT_FAULT");
    CHECK(bad.status == 1);
    CHECK(bad.out.find("error: the XY loss term is nan at step 1") != std::string::npos);
    CHECK(bad.out.find("No checkpoint was written yet.") != std::string::npos);
    CHECK(bad.out.find("last.safetensors") == std::string::npos);
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
