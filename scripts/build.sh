#!/usr/bin/env bash
# Configures and builds hyper into ${HYPER_BUILD_DIR:-build}. Extra arguments go to cmake.
# HYPER_BUILD_TARGET builds one target instead of all (the sanitizer stage of scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${HYPER_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${HYPER_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build" -j "$(nproc)" ${HYPER_BUILD_TARGET:+--target "$HYPER_BUILD_TARGET"}
