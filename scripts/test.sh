#!/usr/bin/env bash
# README command 2: installs what is missing, builds, and runs the whole test suite: the format
# check, unit tests, the fuzz corpora replayed, integration tests (network namespaces: needs root),
# and the unit tests and corpora again under AddressSanitizer + UndefinedBehaviorSanitizer.
# HYPER_SKIP_SANITIZERS=1 skips the last. Fuzzing itself is scripts/fuzz.sh; ThreadSanitizer
# (HYPER_TSAN) is run by hand, not here (docs/design.md, "Fuzzing and sanitizers").
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

echo "== format check"
bash scripts/check-format.sh

echo "== build"
bash scripts/build.sh

echo "== unit tests"
ctest --test-dir build -L unit --output-on-failure -j "$(nproc)"

echo "== fuzz corpora replayed (tests/fuzz/)"
ctest --test-dir build -L fuzz-replay --output-on-failure -j "$(nproc)"

echo "== integration tests (network namespaces)"
if [ "$(id -u)" -ne 0 ]; then
  echo "hyper: integration tests need root (they create network namespaces)" >&2
  exit 1
fi
ctest --test-dir build -L integration --output-on-failure

if [ "${HYPER_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== unit tests under ASan+UBSan"
  HYPER_BUILD_DIR=build-asan HYPER_BUILD_TYPE=Debug HYPER_BUILD_TARGET=hyper_sanitized_tests \
    bash scripts/build.sh -DHYPER_ASAN=ON
  # The instrumented test binary is large (~600 MB) and takes ~2.5 s to start, so one process per
  # test (ctest) would spend 20 minutes starting; gtest's own shards run them all, one process
  # per core. A shard's output is printed only when it fails.
  export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  shards=$(nproc)
  pids=()
  for ((i = 0; i < shards; i++)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i GTEST_BRIEF=1 \
      build-asan/tests/hyper_unit_tests >"build-asan/unit-shard-$i.log" 2>&1 &
    pids+=($!)
  done
  failed=0
  for ((i = 0; i < shards; i++)); do
    if ! wait "${pids[$i]}"; then
      echo "-- shard $i of $shards failed:"
      cat "build-asan/unit-shard-$i.log"
      failed=1
    fi
    tail -n 1 "build-asan/unit-shard-$i.log"
  done
  [ "$failed" = 0 ]
  ctest --test-dir build-asan -L fuzz-replay --output-on-failure -j "$(nproc)"
fi
echo "== all tests passed"
