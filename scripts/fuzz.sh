#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/) for SECONDS each (default 60), one after another, with
# its corpus (tests/fuzz/corpus/<target>/, read only) and a scratch corpus for what it adds
# (${HYPER_FUZZ_OUT:-build-fuzz/out}/<target>/). Prints per target: executions per second, coverage
# and features, and the crash, leak or timeout file when it found one. Exit 1 when any did.
# Builds with clang (-fsanitize=fuzzer,address,undefined) into ${HYPER_BUILD_DIR:-build-fuzz}.
# Not part of scripts/test.sh: the corpora are replayed there (ctest -L fuzz-replay) with g++.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=${HYPER_BUILD_DIR:-build-fuzz}
out=${HYPER_FUZZ_OUT:-$build/out}
targets=(manifest_loader yaml_json plan broker_request broker_rules webhook hyperd_config provenance
  debian_control sealed_value secret_channel build_agent_line build_log_event directory_archive)
if [ -n "${HYPER_FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$HYPER_FUZZ_TARGETS"
fi

bash scripts/deps.sh
# Only fuzzing needs clang and libFuzzer's runtime; the test command does not.
need=()
for p in clang-14 libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    need+=("$p")
  fi
done
if ((${#need[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "hyper: fuzzing needs ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHYPER_FUZZ=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

found=0
printf '%-16s %8s %10s %8s %9s  %s\n' target seconds execs/s cov ft result
for t in "${targets[@]}"; do
  mkdir -p "$out/$t" "$out/$t.artifacts"
  log="$out/$t.log"
  # -rss_limit_mb and -timeout: memory and time blow-ups are findings too. ASan's leak check is on.
  # Inputs take well under a second here; 30 s leaves room for a machine busy with other jobs
  # (at 10 s, two runs beside a build stopped on inputs that take 0.4 s alone).
  set +e
  "$build/tests/fuzz/fuzz_$t" "$out/$t" "tests/fuzz/corpus/$t" -max_total_time="$seconds" \
    -rss_limit_mb=2048 -timeout=30 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$out/$t.artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  result="ok (${execs:-?} runs)"
  if [ -n "$artifact" ] && [[ "$(basename "$artifact")" == timeout-* ]] &&
    "$build/tests/fuzz/fuzz_$t" -timeout=10 -runs=1 "$artifact" >"$log.rerun" 2>&1; then
    # A timeout that the input alone does not reproduce was the machine (another job starving
    # this one), not the code: said, and not counted as a finding.
    result="ok (${execs:-?} runs; a timeout under load did not reproduce alone: $artifact)"
  elif [ "$rc" -ne 0 ] || [ -n "$artifact" ]; then
    found=1
    result="FOUND: ${artifact:-exit $rc} (log: $log)"
  fi
  printf '%-16s %8s %10s %8s %9s  %s\n' "$t" "$seconds" "${secs:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit "$found"
