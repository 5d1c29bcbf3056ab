// test_mpi.cpp: data-parallel training under mpirun (comm.h, train.cpp's sliced_step) against its
// single-process twin: N ranks write bit for bit the metrics and checkpoints of one process with
// --micro-batches N, for N = 2 and 3 (oversubscribed on two cores); evaluation under N ranks
// prints the one process's table; a rank killed with SIGKILL ends the job within 60 s with a
// message naming it, and --resume then finishes with the uninterrupted run's metrics. Skipped in
// a build without MPI or where mpirun is missing (make check installs Open MPI).
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_util.h"
#include "formats/safetensors.h"
#include "test_util.h"
#include "train/comm.h"
#include "train/run_dir.h"

using namespace hafvt;
using testutil::run_hafvt;
using testutil::run_shell;

namespace {

// Decided when the cases register (before main): a look at PATH, no command run.
bool no_mpirun() {
    if (!comm_has_mpi()) return true;
    const char* path = std::getenv("PATH");
    for (std::string p = path ? path : ""; !p.empty();) {
        const size_t colon = p.find(':');
        if (access((p.substr(0, colon) + "/mpirun").c_str(), X_OK) == 0) return false;
        p = colon == std::string::npos ? "" : p.substr(colon + 1);
    }
    return true;
}

// `mpirun -np N hafvt ARGS` (oversubscribed: 3 ranks on two cores), as root where the tests run
// as root; leak detection off, as Open MPI keeps its own allocations to the end of the process.
std::string mpirun(int n, const std::string& args) {
    return cat("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 ",
               "timeout 300 mpirun --oversubscribe -np ", n, " ", testutil::hafvt_bin(), " ", args);
}

std::string train_args(const std::string& out, int epochs, int batch = 64) {
    const std::string& d = testutil::tiny_dataset();
    return cat("train --data ", d, " --img ", d, "/img.npy --txt ", d, "/txt.npy --out ", out,
               " --q 16 --blocks 1 --threads 1 --batch ", batch, " --epochs ", epochs);
}

// The same run in two folders: metrics.jsonl but for the seconds, and every tensor of the last
// and best checkpoints bit for bit (their metadata name their own --out).
void check_same_run(const std::string& a, const std::string& b) {
    std::vector<Json> ma = testutil::metrics_without_seconds(a), mb = testutil::metrics_without_seconds(b);
    REQUIRE(ma.size() == mb.size());
    REQUIRE(!ma.empty());
    for (size_t i = 0; i < ma.size(); i++) CHECK(ma[i].dump() == mb[i].dump());
    for (const char* ck : {"/last.safetensors", "/best.safetensors"})
        CHECK(safetensors_read(a + ck).data == safetensors_read(b + ck).data);
}

// The result table of hafvt's output: its header, its rows and the head/tail lines after it.
std::string table_of(const std::string& out) {
    const size_t at = out.find("split  protocol");
    REQUIRE(at != std::string::npos);
    std::string table;
    std::istringstream is(out.substr(at));
    for (std::string line; std::getline(is, line);) {
        const std::string first = line.substr(0, line.find(' '));
        if (first == "split" || first == "test" || first == "valid" || line.find(" MRR on targets seen") != std::string::npos)
            table += line + "\n";
    }
    REQUIRE(std::count(table.begin(), table.end(), '\n') >= 3);  // a header and two rows at least
    return table;
}

// The pid of rank `rank` of the job whose command line contains `tag` (Open MPI puts the rank in
// each process's environment), or -1.
int pid_of_rank(const std::string& tag, int rank) {
    DIR* d = opendir("/proc");
    if (!d) return -1;
    int found = -1;
    for (dirent* e; (e = readdir(d)) && found < 0;) {
        const int pid = std::atoi(e->d_name);
        if (pid <= 0) continue;
        std::ifstream cf(cat("/proc/", pid, "/cmdline"), std::ios::binary), ef(cat("/proc/", pid, "/environ"), std::ios::binary);
        const std::string cmd((std::istreambuf_iterator<char>(cf)), {}), env((std::istreambuf_iterator<char>(ef)), {});
        if (cmd.find("train") == std::string::npos || cmd.find(tag) == std::string::npos || cmd.find("mpirun") == 0) continue;
        const std::string nul(1, '\0'), needle = nul + "OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + nul;
        if (env.find(needle) != std::string::npos)
            found = pid;
    }
    closedir(d);
    return found;
}

}  // namespace

TEST_CASE("mpi: 2 ranks train bit for bit as one process with --micro-batches 2" * doctest::skip(no_mpirun())) {
    const std::string base = testutil::temp_dir("mpi2");
    std::string out;
    const int st = run_shell(mpirun(2, train_args(base + "/ranks", 2)), &out);
    REQUIRE_MESSAGE(st == 0, out);
    CHECK(out.find("MPI: 2 ranks") != std::string::npos);
    CHECK(out.find("ranks: 2 (MPI), each 32 sequences of every batch of 64") != std::string::npos);
    // rank 0 alone prints: the final table once
    CHECK(out.find("test metrics") == out.rfind("test metrics"));
    auto one = run_hafvt(train_args(base + "/one", 2) + " --micro-batches 2");
    REQUIRE_MESSAGE(one.status == 0, one.out);
    check_same_run(base + "/ranks", base + "/one");
    CHECK(table_of(out) == table_of(one.out));
    // device ranks: on the emulated device the parameters and gradients live in a device
    // backend's memory and the gradient goes through host memory, as on GPUs without NCCL
    std::string dev;
    REQUIRE_MESSAGE(run_shell(mpirun(2, train_args(base + "/device", 2) + " --device emulate"), &dev) == 0, dev);
    CHECK(dev.find("gradients summed by MPI over host memory in rank order") != std::string::npos);
    check_same_run(base + "/device", base + "/one");
    // the slices change the sums' order: a run without them is another run (the check above could
    // not pass by equal runs alone)
    auto plain = run_hafvt(train_args(base + "/plain", 2));
    REQUIRE_MESSAGE(plain.status == 0, plain.out);
    CHECK(safetensors_read(base + "/plain/last.safetensors").data != safetensors_read(base + "/one/last.safetensors").data);
}

TEST_CASE("mpi: 3 ranks equal --micro-batches 3, --resume takes 2 ranks, and evaluation under 3 ranks prints one process's table" * doctest::skip(no_mpirun())) {
    const std::string base = testutil::temp_dir("mpi3");
    std::string out;
    // batch 50 of 800 lines: slices of 16, 17 and 17 sequences
    const int st = run_shell(mpirun(3, train_args(base + "/ranks", 2, 50)), &out);
    REQUIRE_MESSAGE(st == 0, out);
    CHECK(out.find("each 16-17 sequences") != std::string::npos);
    auto one = run_hafvt(train_args(base + "/one", 2, 50) + " --micro-batches 3");
    REQUIRE_MESSAGE(one.status == 0, one.out);
    check_same_run(base + "/ranks", base + "/one");
    // --resume takes another number of ranks: the 3 ranks' run continued by 2 keeps its epochs
    const std::vector<Json> before = testutil::metrics_without_seconds(base + "/ranks");
    std::string resumed;
    REQUIRE_MESSAGE(run_shell(mpirun(2, train_args(base + "/ranks", 3, 50) + " --resume"), &resumed) == 0, resumed);
    CHECK(resumed.find("resumed from") != std::string::npos);
    const std::vector<Json> after = testutil::metrics_without_seconds(base + "/ranks");
    REQUIRE(after.size() == 8);  // valid lines of epochs 1-3 under both protocols, then test
    for (size_t i = 0; i < 4; i++) CHECK(after[i].dump() == before[i].dump());
    CHECK(after[4].get("epoch")->as_number() == 3);
    // hafvt eval: the lines split over 3 ranks (eval batches of 16: 10 batches, 3/3/4 per rank)
    for (const char* protocol : {"full", "c2dsr"}) {
        const std::string ev = cat("eval --ckpt ", base, "/one/best.safetensors --split test --eval-batch 16 --protocol ", protocol);
        auto single = run_hafvt(ev);
        REQUIRE_MESSAGE(single.status == 0, single.out);
        std::string ranked;
        REQUIRE(run_shell(mpirun(3, ev), &ranked) == 0);
        CHECK(table_of(ranked) == table_of(single.out));
    }
}

TEST_CASE("mpi: a rank killed mid-epoch ends the job within 60 s naming it; --resume then ends as the uninterrupted run" * doctest::skip(no_mpirun())) {
    const std::string base = testutil::temp_dir("mpikill");
    // batches of 4: 200 steps an epoch, long enough to be killed inside one
    const std::string args = train_args(base + "/run", 3, 4);
    const std::string tag = base + "/run";
    const std::string cmd = mpirun(2, args);
    // in the background, its output away from run_shell's pipe (which would wait for it)
    REQUIRE(run_shell(cat("(", cmd, " > ", base, "/job.out 2>&1; echo $? > ", base, "/job.rc) > /dev/null 2>&1 &"), nullptr) == 0);
    // wait for the end of epoch 1 (its checkpoint), then kill rank 1 in epoch 2
    const std::string last = base + "/run/last.safetensors";
    int pid = -1;
    for (int i = 0; i < 6000 && pid < 0; i++) {
        if (file_exists(last)) pid = pid_of_rank(tag, 1);
        if (pid < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE_MESSAGE(pid > 0, read_file(base + "/job.out"));
    REQUIRE(kill(pid, SIGKILL) == 0);
    const auto t0 = std::chrono::steady_clock::now();
    double waited = 0;
    while (!file_exists(base + "/job.rc") && waited < 90) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const std::string job = read_file(base + "/job.out");
    INFO(job);
    MESSAGE("the job ended ", waited, " s after rank 1 was killed");
    CHECK(waited < 60);
    REQUIRE(file_exists(base + "/job.rc"));
    CHECK(read_file(base + "/job.rc") != "0\n");
    CHECK(job.find("rank 1") != std::string::npos);
    CHECK(job.find("signal 9") != std::string::npos);
    // the job stopped inside the run: epoch 3 not reached
    CHECK(job.find("epoch 3 valid") == std::string::npos);
    // resumed with 2 ranks, it ends as the uninterrupted run (one process, 2 micro-batches)
    std::string resumed;
    REQUIRE_MESSAGE(run_shell(mpirun(2, args + " --resume"), &resumed) == 0, resumed);
    CHECK(resumed.find("resumed from") != std::string::npos);
    auto full = run_hafvt(train_args(base + "/full", 3, 4) + " --micro-batches 2");
    REQUIRE_MESSAGE(full.status == 0, full.out);
    check_same_run(base + "/run", base + "/full");
}
