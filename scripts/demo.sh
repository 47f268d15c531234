#!/usr/bin/env bash
# README command 1, the main job: converge manifests/examples/ inside a private network namespace
# and show the result, then a hand-made change detected by `diff` and repaired by `apply`.
# It never touches the machine's own interfaces or firewall, and removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
bash scripts/build.sh >/dev/null

if [ "$(id -u)" -ne 0 ]; then
  echo "hyper demo: needs root to create a network namespace" >&2
  exit 1
fi

ns="hyper-demo-$$"
state=$(mktemp -d /tmp/hyper-demo-state.XXXXXX)
export HYPER_VM_RUN_DIR=$state/run
cleanup() {
  # A microVM keeps its tap (and the namespace) alive: stop any the demo left first.
  for pidfile in "$HYPER_VM_RUN_DIR"/*/qemu.pid; do
    if [ -f "$pidfile" ]; then kill -9 "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$state" "${state2:-}"
}
trap cleanup EXIT

hyperctl=$PWD/build/hyperctl
inns() { ip netns exec "$ns" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

ip netns add "$ns"
inns ip link set lo up

step "validate the manifests"
show "$hyperctl" validate -f manifests/examples/

step "plan against an empty host (namespace $ns)"
rc=0; show inns "$hyperctl" --state-dir "$state" diff -f manifests/examples/ || rc=$?
echo "(diff exit code $rc: 2 means changes are pending)"

step "apply"
show inns "$hyperctl" --state-dir "$state" apply -f manifests/examples/

step "what hyper manages now"
show inns "$hyperctl" --state-dir "$state" get networks
show inns "$hyperctl" --state-dir "$state" get networkpolicies
show inns "$hyperctl" --state-dir "$state" get builds
show inns "$hyperctl" --state-dir "$state" logs build/hello-initrd
show inns ip -br addr show type bridge
show inns nft list table inet hyper

step "a second apply has nothing to do"
show inns "$hyperctl" --state-dir "$state" apply -f manifests/examples/

step "builds are reproducible: another state directory, another umask and TZ, the same digest"
state2=$(mktemp -d /tmp/hyper-demo-state2.XXXXXX)
echo "\$ (umask 077; TZ=Pacific/Kiritimati hyperctl --state-dir $state2 apply -f manifests/examples/builds.yaml)"
(umask 077; TZ=Pacific/Kiritimati "$hyperctl" --state-dir "$state2" apply -f manifests/examples/builds.yaml >/dev/null)
one=$(ls "$state/store/sha256"); two=$(ls "$state2/store/sha256")
echo "first:  sha256:$one"
echo "second: sha256:$two"
if [ "$one" != "$two" ]; then echo "hyper: the two builds differ" >&2; exit 1; fi
rm -rf "$state2"

step "someone changes the host by hand: deletes a bridge and flushes the firewall table"
show inns ip link del hb-lab
show inns nft flush table inet hyper
rc=0; show inns "$hyperctl" --state-dir "$state" diff -f manifests/examples/ || rc=$?
echo "(diff exit code $rc: drift detected)"
show inns "$hyperctl" --state-dir "$state" get networks

step "apply repairs the drift"
show inns "$hyperctl" --state-dir "$state" apply -f manifests/examples/
rc=0; show inns "$hyperctl" --state-dir "$state" diff -f manifests/examples/ || rc=$?
echo "(diff exit code $rc: in sync)"

step "a bad manifest is refused with its location, and nothing is applied"
bad=$(mktemp -d /tmp/hyper-demo-bad.XXXXXX)
cp manifests/examples/*.yaml "$bad/"
sed -i 's#cidr: 10.78.0.0/24#cidr: 10.78.0.0/33#' "$bad/networks.yaml"
rc=0; show inns "$hyperctl" --state-dir "$state" apply -f "$bad" || rc=$?
echo "(apply exit code $rc)"
rm -rf "$bad"

step "a microVM on the lab network: QEMU with Debian's kernel (fetched once) and hyper's guest image"
guest=$(bash scripts/guest-kernel.sh | tail -n 1)
build/hyper-guest-image --kernel-modules "$guest/modules" --out "$state/guest.cpio.gz"
vms=$(mktemp -d /tmp/hyper-demo-vm.XXXXXX)
cp manifests/examples/*.yaml "$vms/"
cat >"$vms/vm.yaml" <<EOF
apiVersion: hyper.dev/v1alpha1
kind: VM
metadata:
  name: web-1
  labels: {role: web}
spec:
  memoryMiB: 256
  kernel: {path: $guest/vmlinuz}
  initrd: {path: $state/guest.cpio.gz}
  cmdline: "quiet hyper.ping=1"
  network: {name: lab, ip: 10.77.0.10}
EOF
show cat "$vms/vm.yaml"
show inns "$hyperctl" --state-dir "$state" apply -f "$vms"
sleep 3
echo "\$ hyperctl logs vm/web-1 | tail -n 4"
inns "$hyperctl" --state-dir "$state" logs vm/web-1 | tail -n 4
echo "(Ready when the guest printed hyper-ready. Its pings to the gateway fail: lab-egress allows"
echo " only 203.0.113.0/24 port 443 from the lab network.)"
show inns "$hyperctl" --state-dir "$state" get vms
rc=0; show inns "$hyperctl" --state-dir "$state" diff -f "$vms" || rc=$?
echo "(diff exit code $rc: in sync)"

step "the VM leaves the manifests: apply --prune stops it and removes its tap"
rm "$vms/vm.yaml"
echo "(It is the only running VM: deleting more than half of them needs --yes.)"
show inns "$hyperctl" --state-dir "$state" apply --prune --yes -f "$vms"
show inns ip -br link show type tun
rm -rf "$vms"

step "done: removing namespace $ns"
