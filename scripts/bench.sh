#!/usr/bin/env bash
# Builds hyper in Release into build-release and runs the benchmarks. Arguments go to hyper_bench,
# e.g. `--sizes 1000,10000` to skip the 100k run. It prints figures and informational targets, and
# exits non-zero only when a benchmark finds something functionally wrong.
set -euo pipefail
cd "$(dirname "$0")/.."
HYPER_BUILD_DIR=build-release HYPER_BUILD_TYPE=Release bash scripts/build.sh
build-release/bench/hyper_bench "$@"
echo
# hyperd: push-to-converged through the webhook, and the cost of a poll, for 10k manifests in git.
build-release/bench/hyper_hyperd_bench
echo
# hyper-broker: `hyper-broker-cli make` over `make` on a no-op Makefile, and throughput of many
# small requests at once (needs root; prints "skipped" otherwise).
build-release/bench/hyper_broker_bench
echo
# Builds: the cache-hit check of 1000 Builds, an initramfs build against find | cpio | gzip, and
# the store's writes against cp + sync (under a minute; writes files of up to 64 MiB in $TMPDIR).
build-release/bench/hyper_build_bench
echo
# Networks: the first apply of 100, 300 and 1000 Networks + a NetworkPolicy each in a network
# namespace, against the same bridges and tables made by one `ip -batch` and one `nft -f`, a no-op
# diff and a one-change apply; then hyperd following a git repository of 5,000 + 5,000 of them:
# quiet polls, full observes, idle CPU over 2 minutes and memory per object (needs root; prints
# "skipped" otherwise; some 10 minutes today: issue 17).
build-release/bench/hyper_net_apply_bench
echo
# Loading: hyperctl validate of 10,000 one-object files against PyYAML's C loader merely parsing
# them (python3-yaml; skipped without it).
build-release/bench/hyper_validate_bench
echo
# VMs: apply -> Ready against the same QEMU command by hand, and no-op reconciles with 1, 5 and 10
# VMs running (needs root and the guest kernel; boots 13 VMs under TCG: minutes).
build-release/bench/hyper_vm_bench
# Builder VMs: a script build run on the host against the same build in an ephemeral builder VM
# (needs root and the guest kernel; 3 builder boots under TCG and the builds in them: minutes).
# echo
# build-release/bench/hyper_builder_bench
