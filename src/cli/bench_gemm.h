// bench_gemm.h: `hafvt bench-gemm`, timing of the project's SGEMM on the model's shapes.
#pragma once

namespace hafvt {

// argv[0..argc) are the arguments after the subcommand name.
// `M N K tA tB [reps]` times one shape; no args times the built-in list of the model's
// products. Prints one line per shape (shape, best ms, GFLOPS) in the format of
// tools/bench_gemm.py, so the two can be compared line by line. Returns 0, or 2 on bad args.
int bench_gemm_main(int argc, char** argv);

}  // namespace hafvt
