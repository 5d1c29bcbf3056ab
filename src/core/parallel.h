// parallel.h: the OpenMP runtime calls the project makes, also in a build without OpenMP
// (make OPENMP=0): there the pragmas are ignored, every loop runs on one thread, and these calls
// answer as OpenMP's do with one thread, so the results equal an OpenMP build's at --threads 1.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#else
inline int omp_get_num_threads() { return 1; }
inline int omp_get_thread_num() { return 0; }
inline int omp_get_max_threads() { return 1; }
inline int omp_in_parallel() { return 0; }
inline void omp_set_num_threads(int) {}
#endif
