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
  HYPER_BUILD_DIR=build-asan HYPER_BUILD_TYPE=Debug bash scripts/build.sh -DHYPER_ASAN=ON
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan -L 'unit|fuzz-replay' --output-on-failure -j "$(nproc)"
fi
echo "== all tests passed"
