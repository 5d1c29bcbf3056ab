// comm.cpp: the ranks of a job and their collectives (comm.h); MPI in a build with it
// (HAFVT_MPI), NCCL for device buffers in a build with both (HAFVT_NCCL).
#include "train/comm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/common.h"

#ifdef HAFVT_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: no C++ bindings (their headers warn)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif
#if defined(HAFVT_MPI) && defined(HAFVT_NCCL)
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace hafvt {

static Comm g_comm;
const Comm& comm() { return g_comm; }

bool comm_has_mpi() {
#ifdef HAFVT_MPI
    return true;
#else
    return false;
#endif
}

bool comm_has_nccl() {
#if defined(HAFVT_MPI) && defined(HAFVT_NCCL)
    return true;
#else
    return false;
#endif
}

#ifdef HAFVT_MPI

// Whether a launcher started this process as one rank of a job: Open MPI's mpirun sets
// OMPI_COMM_WORLD_SIZE, MPICH's (Hydra) and Slurm's PMI set PMI_SIZE, PMIx launchers PMIX_RANK.
static bool launched_by_mpirun() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
        if (std::getenv(v)) return true;
    return false;
}

// MPI counts are ints: the collectives move at most this many elements of a buffer per call
static constexpr size_t kMaxPerCall = (size_t)1 << 29;

std::string comm_init(int* argc, char*** argv) {
    if (!launched_by_mpirun()) return "";
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    g_comm.mpi_ = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_comm.rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &g_comm.size_);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &g_comm.local_rank_);
    MPI_Comm_free(&local);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, (size_t)std::max(0, len));
    v = v.substr(0, v.find_first_of(",\n"));
    return cat("MPI: ", g_comm.size_, " ranks (", v, ")");
}

int comm_end(int status) {
    if (!g_comm.mpi_) return status;
    if (status != 0 && g_comm.size_ > 1) MPI_Abort(MPI_COMM_WORLD, status);
    MPI_Finalize();
    return status;
}

void Comm::sum_in_rank_order(float* buf, size_t n) const {
    if (size_ == 1) return;
    Timer t;
    const size_t N = (size_t)size_, r = (size_t)rank_;
    std::vector<int> count(N), displ(N), mine_count(N), mine_displ(N);
    std::vector<float> parts;
    for (size_t s0 = 0; s0 < n; s0 += kMaxPerCall) {
        const size_t len = std::min(n - s0, kMaxPerCall);
        float* seg = buf + s0;
        auto lo = [&](size_t k) { return k * len / N; };  // part k of the segment: [lo(k), lo(k+1))
        const size_t mine = lo(r + 1) - lo(r);
        for (size_t k = 0; k < N; k++) {
            count[k] = (int)(lo(k + 1) - lo(k));
            displ[k] = (int)lo(k);
            mine_count[k] = (int)mine;
            mine_displ[k] = (int)(k * mine);
        }
        // every rank's copy of part r, here, in rank order
        parts.resize(mine * N);
        MPI_Alltoallv(seg, count.data(), displ.data(), MPI_FLOAT, parts.data(), mine_count.data(),
                      mine_displ.data(), MPI_FLOAT, MPI_COMM_WORLD);
        float* out = seg + lo(r);
        std::copy(parts.begin(), parts.begin() + (std::ptrdiff_t)mine, out);
        for (size_t k = 1; k < N; k++) {
            const float* p = parts.data() + k * mine;
            for (size_t j = 0; j < mine; j++) out[j] = out[j] + p[j];
        }
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, seg, count.data(), displ.data(), MPI_FLOAT, MPI_COMM_WORLD);
    }
    seconds_ += t.seconds();
}

void Comm::sum(uint64_t* buf, size_t n) const {
    if (size_ == 1) return;
    Timer t;
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    seconds_ += t.seconds();
}

// Every rank's bytes, concatenated in rank order (the element size divides every count).
static std::vector<unsigned char> gather_bytes(const void* mine, size_t bytes, int size, double& seconds) {
    Timer t;
    std::vector<int> count((size_t)size), displ((size_t)size);
    int b = (int)bytes;
    HAFVT_CHECK(bytes < ((size_t)1 << 31), "gather of ", bytes, " bytes per rank");
    MPI_Allgather(&b, 1, MPI_INT, count.data(), 1, MPI_INT, MPI_COMM_WORLD);
    size_t total = 0;
    for (size_t k = 0; k < count.size(); k++) {
        displ[k] = (int)total;
        total += (size_t)count[k];
    }
    HAFVT_CHECK(total < ((size_t)1 << 31), "gather of ", total, " bytes in all");
    std::vector<unsigned char> all(total);
    MPI_Allgatherv(mine, b, MPI_BYTE, all.data(), count.data(), displ.data(), MPI_BYTE, MPI_COMM_WORLD);
    seconds += t.seconds();
    return all;
}

std::vector<uint64_t> Comm::gather_all(const std::vector<uint64_t>& mine) const {
    if (size_ == 1) return mine;
    std::vector<unsigned char> all = gather_bytes(mine.data(), mine.size() * sizeof(uint64_t), size_, seconds_);
    std::vector<uint64_t> out(all.size() / sizeof(uint64_t));
    if (!out.empty()) std::memcpy(out.data(), all.data(), all.size());
    return out;
}

void Comm::sum_in_rank_order(double* buf, size_t n) const {
    if (size_ == 1) return;
    std::vector<unsigned char> all = gather_bytes(buf, n * sizeof(double), size_, seconds_);
    HAFVT_CHECK(all.size() == n * sizeof(double) * (size_t)size_, "sum of ", n, " doubles: ranks disagree on n");
    std::vector<double> v(n * (size_t)size_);
    std::memcpy(v.data(), all.data(), all.size());
    for (size_t j = 0; j < n; j++) {
        double s = v[j];
        for (size_t k = 1; k < (size_t)size_; k++) s = s + v[k * n + j];
        buf[j] = s;
    }
}

void Comm::broadcast(void* buf, size_t bytes) const {
    if (size_ == 1) return;
    Timer t;
    unsigned char* p = static_cast<unsigned char*>(buf);
    for (size_t s0 = 0; s0 < bytes; s0 += kMaxPerCall)
        MPI_Bcast(p + s0, (int)std::min(bytes - s0, kMaxPerCall), MPI_BYTE, 0, MPI_COMM_WORLD);
    seconds_ += t.seconds();
}

#else  // one process: every collective is the identity

std::string comm_init(int*, char***) { return ""; }
int comm_end(int status) { return status; }
void Comm::sum_in_rank_order(float*, size_t) const {}
void Comm::sum_in_rank_order(double*, size_t) const {}
void Comm::sum(uint64_t*, size_t) const {}
std::vector<uint64_t> Comm::gather_all(const std::vector<uint64_t>& mine) const { return mine; }
void Comm::broadcast(void*, size_t) const {}

#endif

#if defined(HAFVT_MPI) && defined(HAFVT_NCCL)

// NCCL's communicator, made at the first device sum (every rank calls it at the same step):
// rank 0's unique id travels by MPI. HAFVT_NCCL=0 keeps it off (the host path instead).
static ncclComm_t g_nccl;
static int g_nccl_state = -1;  // -1 not tried, 0 unavailable, 1 ready

static bool nccl_ready() {
    if (g_nccl_state >= 0) return g_nccl_state == 1;
    const char* off = std::getenv("HAFVT_NCCL");
    int ok = !(off && std::strcmp(off, "0") == 0);
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (g_comm.rank_ == 0 && ok) ok = ncclGetUniqueId(&id) == ncclSuccess;
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (ok) {
        MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
        ok = ncclCommInitRank(&g_nccl, g_comm.size_, id, g_comm.rank_) == ncclSuccess;
        // every rank takes the NCCL path, or none does
        MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    }
    g_nccl_state = ok ? 1 : 0;
    return ok;
}

bool Comm::sum_on_device(float* buf, size_t n) const {
    if (size_ == 1) return true;
    if (!nccl_ready()) return false;
    Timer t;
    // on the legacy default stream, which the kernels use: ordered after the gradient's kernels
    const ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, g_nccl, 0);
    HAFVT_CHECK(r == ncclSuccess, "ncclAllReduce of ", n, " floats failed: ", ncclGetErrorString(r));
    HAFVT_CHECK(cudaStreamSynchronize(0) == cudaSuccess, "cudaStreamSynchronize after ncclAllReduce failed");
    seconds_ += t.seconds();
    return true;
}

std::string Comm::device_path() const { return nccl_ready() ? "NCCL" : "MPI over host memory"; }

#else

bool Comm::sum_on_device(float*, size_t) const { return size_ == 1; }
std::string Comm::device_path() const { return "MPI over host memory"; }

#endif

}  // namespace hafvt
