#!/usr/bin/env bash
# The full check, by hand (about 15 minutes on 2 cores): the README's test command, then the whole
# suite under AddressSanitizer and
# UndefinedBehaviorSanitizer (make debug), then libFuzzer runs of the readers (make fuzz), each
# stage followed by one plain summary line, and a last line with every stage's status and time.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
report=""

# doctest's own closing line is "[doctest] test cases: N | P passed | F failed | S skipped"
summarize_tests() {
  local line passed failed skipped
  line=$(grep -a '^\[doctest\] test cases:' "$log" | tail -n 1 || true)
  if [ -n "$line" ]; then
    passed=$(echo "$line" | sed -E 's/.*\| *([0-9]+) passed.*/\1/')
    failed=$(echo "$line" | sed -E 's/.*\| *([0-9]+) failed.*/\1/')
    skipped=$(echo "$line" | sed -E 's/.*\| *([0-9]+) skipped.*/\1/')
    echo "$1: $passed passed, $failed failed, $skipped skipped"
  fi
}

# runs one stage with its output in $log; remembers its exit status and wall time
stage() {
  local name=$1 t0=$SECONDS rc=0
  shift
  "$@" 2>&1 | tee "$log" || rc=$?
  [ "$rc" -eq 0 ] || status=1
  report="$report $name $([ "$rc" -eq 0 ] && echo ok || echo "FAILED($rc)") $((SECONDS - t0))s;"
}

# make fuzz needs clang++ with libFuzzer's runtime (libclang-rt); install them when missing
fuzz_deps() {
  local probe
  probe=$(mktemp -d)
  echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe/p.cpp"
  if ! clang++ -fsanitize=fuzzer,address "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1; then
    echo "installing clang and libclang-rt (needed by make fuzz)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev; } >/dev/null 2>&1 \
      || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null 2>&1; } \
      || { echo "could not install clang/libclang-rt: run 'apt-get install clang libclang-rt-dev' as root"; rm -rf "$probe"; return 1; }
  fi
  rm -rf "$probe"
}

stage test make test
summarize_tests "tests"
stage debug make debug
summarize_tests "tests under ASan+UBSan"
stage fuzz-deps fuzz_deps
stage fuzz make fuzz FUZZ_SECONDS=60
grep -a -E '^fuzz_|^stat::number_of_executed_units' "$log" | paste -sd' ' | sed 's/stat::number_of_executed_units:/runs/g' || true
echo "ci:$report total ${SECONDS}s"
exit "$status"
