// nccl_link.cpp: the NCCL path of src/train/comm.cpp (the gradient sum of GPU ranks), compiled and
// linked against the CUDA toolkit's NCCL and cudart and the MPI library (make nccl-link). It runs
// where no GPU is: one process, no collective, so it checks the build only.
#include <cstdio>

#include "train/comm.h"

int main(int argc, char** argv) {
    hafvt::comm_init(&argc, &argv);
    const bool nccl = hafvt::comm_has_nccl(), mpi = hafvt::comm_has_mpi();
    // one rank: the device sum is the identity and touches neither NCCL nor the device
    const bool one = hafvt::comm().sum_on_device(nullptr, 0);
    std::printf("nccl-link: comm.cpp built with MPI %s, NCCL %s; one rank's device sum %s\n", mpi ? "yes" : "no",
                nccl ? "yes" : "no", one ? "ok" : "FAILED");
    return hafvt::comm_end(nccl && mpi && one ? 0 : 1);
}
