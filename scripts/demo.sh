#!/usr/bin/env bash
# README command 1, the main job: converge manifests/examples/ inside a private network namespace
# and show the result (a microVM given a sealed secret among it), a new secret value delivered
# live, then a hand-made change detected by `diff` and repaired by `apply`.
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
  rm -rf "$state" "${state2:-}" "${examples:-}"
}
trap cleanup EXIT

hyperctl=$PWD/build/hyperctl
inns() { ip netns exec "$ns" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

ip netns add "$ns"
inns ip link set lo up
# A copy of the examples: its Secret is sealed to this demo's key ring below.
examples=$(mktemp -d /tmp/hyper-demo-examples.XXXXXX)
cp manifests/examples/*.yaml "$examples/"

step "validate the manifests"
show "$hyperctl" validate -f "$examples"

step "seal the VM's database password to this host's key (the committed one is sealed to no key here)"
echo "\$ head -c 12 /dev/urandom | base64 | hyperctl secret seal --name web-db --key password -f secrets.yaml"
head -c 12 /dev/urandom | base64 |
  "$hyperctl" --state-dir "$state" secret seal --name web-db --key password -f "$examples/secrets.yaml"
grep -A2 'sealed:' "$examples/secrets.yaml" | cut -c1-72 | sed 's/$/.../'

step "plan against an empty host (namespace $ns)"
rc=0; show inns "$hyperctl" --state-dir "$state" diff -f "$examples" || rc=$?
echo "(diff exit code $rc: 2 means changes are pending)"

step "the Builds: Debian's kernel, hyper's guest image and a Debian rootfs"
echo "(Built in the machine's own network namespace: they fetch from the Debian mirror, which the"
echo " private namespace cannot reach, and write only the state directory. The kernel package is"
echo " downloaded once into /var/cache/hyper/debs and checked against apt's SHA256; the rootfs is"
echo " mmdebstrap from this machine's apt lists of bookworm, as an erofs image.)"
show "$hyperctl" --state-dir "$state" apply -f "$examples/builds.yaml"

step "a build from source: a script Build runs a git commit's steps in an ephemeral builder VM"
echo "(The builder boots guest-kernel and guest-initrd (hyper's init and build agent), runs the"
echo " steps chrooted in web-rootfs as uid 1000, with no network device, a fixed environment and"
echo " the commit's tree at /build; what they leave under /out becomes a content-addressed artifact.)"
app=$state/app-src
git init --quiet --bare "$app.git"
git init --quiet -b main "$app"
printf 'hello from a builder VM\n' >"$app/greeting.txt"
printf '#!/bin/sh\necho "@GREETING@ (built from commit @COMMIT@)"\n' >"$app/hello.in"
cat >"$app/build.sh" <<'SCRIPT'
#!/bin/sh
set -e
echo "building on $(hostname) as uid $(id -u) in $(pwd), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
mkdir -p /out/bin
sed -e "s/@GREETING@/$(cat greeting.txt)/" -e "s/@COMMIT@/$1/" hello.in >/out/bin/hello
chmod 755 /out/bin/hello
SCRIPT
chmod +x "$app/build.sh"
git -C "$app" add -A
git -C "$app" -c user.name=demo -c user.email=demo@example.invalid commit --quiet -m "hello"
git -C "$app" push --quiet "$app.git" main
commit=$(git -C "$app" rev-parse HEAD)
cat >"$examples/app-build.yaml" <<YAML
apiVersion: hyper.dev/v1alpha1
kind: Build
metadata: {name: hello-app}
spec:
  type: script
  script:
    source: {git: {url: $app.git, commit: $commit}}
    builder: {kernel: {build: guest-kernel}, initrd: {build: guest-initrd}, rootfs: {build: web-rootfs}}
    steps: [[./build.sh, "${commit:0:12}"], [/out/bin/hello]]
    outputs: [{name: hello, path: /out/bin/hello}]
    timeoutSeconds: 300
---
# The artifact in a guest: an initramfs takes it as /bin/hello, and a microVM runs it.
apiVersion: hyper.dev/v1alpha1
kind: Build
metadata: {name: hello-app-initrd}
spec:
  type: initramfs
  initramfs:
    files:
      - {path: /bin/hello, mode: "0755", artifact: {build: hello-app, name: hello}}
      - path: /init
        mode: "0755"
        content: |
          #!/bin/busybox sh
          /bin/busybox --install -s /bin
          /bin/hello
          while true; do sleep 3600; done
---
apiVersion: hyper.dev/v1alpha1
kind: VM
metadata: {name: hello-app}
spec:
  kernel: {build: guest-kernel}
  initrd: {build: hello-app-initrd}
  readiness: {consoleLine: "hello from a builder VM (built from commit ${commit:0:12})"}
YAML
sed -n '/script:/,/timeoutSeconds/p' "$examples/app-build.yaml"
show "$hyperctl" --state-dir "$state" apply -f "$examples/builds.yaml" -f "$examples/app-build.yaml"
show "$hyperctl" --state-dir "$state" logs build/hello-app
digest=$("$hyperctl" --state-dir "$state" get builds -o json | tr -d ' \n' |
  grep -o '"name":"hello-app".*' | grep -o 'sha256:[0-9a-f]*' | head -1)
echo "\$ cat \$state/store/sha256/${digest#sha256:}   # the artifact"
cat "$state/store/sha256/${digest#sha256:}"
echo "(The same apply made an initramfs holding it as /bin/hello and booted a microVM that runs it:)"
echo "\$ hyperctl --state-dir \$state logs vm/hello-app | grep 'hello from'"
"$hyperctl" --state-dir "$state" logs vm/hello-app | grep -a "hello from a builder VM"

step "apply everything in the namespace: the Builds are cache hits; then the networks, the policies and a microVM booting from the Builds"
show inns "$hyperctl" --state-dir "$state" apply -f "$examples"

step "what hyper manages now"
show inns "$hyperctl" --state-dir "$state" get networks
show inns "$hyperctl" --state-dir "$state" get networkpolicies
show inns "$hyperctl" --state-dir "$state" get builds
show inns "$hyperctl" --state-dir "$state" logs build/guest-initrd
show inns ip -br addr show type bridge
show inns nft list table inet hyper
sleep 3
show inns "$hyperctl" --state-dir "$state" get vms
echo "\$ hyperctl logs vm/web-1 | grep hyper- | head -n 5"
inns "$hyperctl" --state-dir "$state" logs vm/web-1 | grep hyper- | head -n 5
echo "(The guest mounted the rootfs Build as /dev/vda and read its Debian version, stored its"
echo " password on a tmpfs, received over a virtio-serial channel: never on the host's disk, never"
echo " on the console. Ready when it printed hyper-ready. Its pings to the gateway fail: lab-egress"
echo " allows only 203.0.113.0/24 port 443 from the lab network.)"

step "a second apply has nothing to do: every Build's key is unchanged, the VM runs"
show inns "$hyperctl" --state-dir "$state" apply -f "$examples"

step "a new password: the plan names what changes, never the value; the running VM gets it live"
head -c 12 /dev/urandom | base64 |
  "$hyperctl" --state-dir "$state" secret seal --name web-db --key password -f "$examples/secrets.yaml"
rc=0; show inns "$hyperctl" --state-dir "$state" diff -f "$examples" || rc=$?
show inns "$hyperctl" --state-dir "$state" apply -f "$examples"
echo "\$ hyperctl logs vm/web-1 | grep hyper-secret"
inns "$hyperctl" --state-dir "$state" logs vm/web-1 | grep hyper-secret

step "builds are reproducible: rebuilt without the cache, under another umask and TZ, the same digests"
echo "\$ (umask 077; TZ=Pacific/Kiritimati hyperctl --state-dir $state rebuild -f "$examples")"
(umask 077; TZ=Pacific/Kiritimati "$hyperctl" --state-dir "$state" rebuild -f "$examples")
show "$hyperctl" --state-dir "$state" verify build/guest-initrd

step "someone changes the host by hand: deletes a bridge and flushes the firewall table"
show inns ip link del hb-lab
show inns nft flush table inet hyper
rc=0; show inns "$hyperctl" --state-dir "$state" diff -f "$examples" || rc=$?
echo "(diff exit code $rc: drift detected)"
show inns "$hyperctl" --state-dir "$state" get networks

step "apply repairs the drift"
show inns "$hyperctl" --state-dir "$state" apply -f "$examples"
rc=0; show inns "$hyperctl" --state-dir "$state" diff -f "$examples" || rc=$?
echo "(diff exit code $rc: in sync)"

step "a bad manifest is refused with its location, and nothing is applied"
bad=$(mktemp -d /tmp/hyper-demo-bad.XXXXXX)
cp "$examples"/*.yaml "$bad/"
sed -i 's#cidr: 10.78.0.0/24#cidr: 10.78.0.0/33#' "$bad/networks.yaml"
rc=0; show inns "$hyperctl" --state-dir "$state" apply -f "$bad" || rc=$?
echo "(apply exit code $rc)"
rm -rf "$bad"

step "the VM leaves the manifests: apply --prune stops it and removes its tap"
vms=$(mktemp -d /tmp/hyper-demo-vm.XXXXXX)
cp "$examples"/*.yaml "$vms/"
show rm "$vms/vms.yaml"
echo "(It is the only running VM: deleting more than half of them needs --yes.)"
show inns "$hyperctl" --state-dir "$state" apply --prune --yes -f "$vms"
show inns ip -br link show type tun
rm -rf "$vms"

step "done: removing namespace $ns"
