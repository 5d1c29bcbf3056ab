// comm.h: the processes of one job. A plain run is one process; started by mpirun (a build with
// MPI, docs/scaling.md) it is one rank of several, which train one model together: each rank
// takes a slice of every batch, and the collectives below combine what the ranks computed.
//
// The sums are added in rank order, ((x_0 + x_1) + x_2) + ..., never in an order the MPI library
// picks, so that N ranks give bit for bit what one process gives with N micro-batches (train.cpp
// adds its slices' gradients in the same order). In a build without MPI, or in a process that
// mpirun did not start, there is one rank and every collective is the identity.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hafvt {

class Comm {
public:
    int rank() const { return rank_; }
    int size() const { return size_; }
    int local_rank() const { return local_rank_; }  // among the ranks on this machine (picks its GPU)
    bool root() const { return rank_ == 0; }

    // buf (n floats in host memory): on every rank, the sum of every rank's buf, added element by
    // element in rank order. Each rank adds up one n/size part (the parts travel in one all-to-all)
    // and the parts are then shared (one all-gather): about 2 (size-1)/size * 4n bytes in and out
    // per rank, as a ring all-reduce moves.
    void sum_in_rank_order(float* buf, size_t n) const;
    // The same for a few doubles (the loss terms), added in rank order after one all-gather.
    void sum_in_rank_order(double* buf, size_t n) const;
    // Exact integer sums (counts).
    void sum(uint64_t* buf, size_t n) const;
    // Every rank's `mine`, concatenated in rank order, on every rank (sizes may differ).
    std::vector<uint64_t> gather_all(const std::vector<uint64_t>& mine) const;
    // rank 0's bytes to every rank.
    void broadcast(void* buf, size_t bytes) const;

    // buf (n floats in CUDA device memory): the sum over ranks, in place, by NCCL, when this build
    // has NCCL and it initialized; false otherwise (the caller then sums in host memory). NCCL
    // picks its own order of additions: equal to sum_in_rank_order within float rounding only.
    bool sum_on_device(float* buf, size_t n) const;
    // What carries the gradient sum of a device run: "NCCL" or "MPI over host memory".
    std::string device_path() const;

    // the seconds spent in the collectives so far (docs/scaling.md)
    double seconds() const { return seconds_; }

    int rank_ = 0, size_ = 1, local_rank_ = 0;
    bool mpi_ = false;  // MPI_Init was called
    mutable double seconds_ = 0.0;
};

// The process's Comm (one rank until comm_init finds an MPI launch).
const Comm& comm();

// MPI_Init when this build has MPI and mpirun (Open MPI's or MPICH's launcher) started the
// process; otherwise nothing. Returns a line saying so when it started MPI ("" otherwise).
std::string comm_init(int* argc, char*** argv);
// MPI_Finalize after a clean end (status 0); after a failure MPI_Abort with that status, which
// stops the other ranks at once instead of leaving them waiting in a collective. Returns status.
int comm_end(int status);
// Whether this build has MPI / NCCL (for --version and the tests).
bool comm_has_mpi();
bool comm_has_nccl();

}  // namespace hafvt
