#!/usr/bin/env bash
# README command 1, the main job: converge manifests/examples/ inside a private network namespace
# and show the result (a microVM given a sealed secret among it), a new secret value delivered
# live, then a hand-made change detected by `diff` and repaired by `apply`.
# It never touches the machine's own interfaces or firewall, and removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."

t_start=$(date +%s)
bash scripts/deps.sh
t_installed=$(date +%s)
bash scripts/build.sh >/dev/null
t_built=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
  echo "hyper demo: needs root to create a network namespace" >&2
  exit 1
fi

ns="hyper-demo-$$"
state=$(mktemp -d /tmp/hyper-demo-state.XXXXXX)
export HYPER_VM_RUN_DIR=$state/run
cleanup() {
  if [ -n "${hyperd_pid:-}" ]; then kill "$hyperd_pid" 2>/dev/null || true; wait "$hyperd_pid" 2>/dev/null || true; fi
  pkill -f "httpd -p 127.0.0.1:9099 -h $state/receiver" 2>/dev/null || true
  # A microVM keeps its tap (and the namespace) alive: stop any the demo left first.
  for pidfile in "$HYPER_VM_RUN_DIR"/*/qemu.pid; do
    if [ -f "$pidfile" ]; then kill -9 "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  ip netns del "$ns" 2>/dev/null || true
  # hyperd's last writes may still be landing: try again for a moment.
  for _ in 1 2 3 4 5; do rm -rf "$state" "${state2:-}" "${examples:-}" 2>/dev/null && break; sleep 1; done
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

step "the GitOps loop: hyperd follows a git repository"
echo "(A bare repository stands for the remote; a post-receive hook tells hyperd of each push"
echo " (GitLab-style webhook token), and hyperd also polls every 5 s. An alert receiver in the"
echo " namespace prints what hyperd sends it: drift, rejected revisions.)"
repo=$state/env.git
work=$state/env
git init --quiet --bare -b main "$repo"
git clone --quiet "$repo" "$work" 2>/dev/null
cp "$examples"/*.yaml "$work/"
gitc() { git -C "$work" -c user.name=demo -c user.email=demo@example.invalid "$@"; }
head -c 24 /dev/urandom | base64 >"$state/webhook.token"
chmod 600 "$state/webhook.token"
cat >"$repo/hooks/post-receive" <<HOOK
#!/bin/sh
ip netns exec $ns curl -s -o /dev/null -X POST -H "X-Gitlab-Token: \$(cat $state/webhook.token)" \\
  -H 'Content-Type: application/json' --data-binary '{}' http://127.0.0.1:7400/v1/hooks/git || true
HOOK
chmod +x "$repo/hooks/post-receive"
# The alert receiver: busybox httpd with a CGI script that appends each alert to a file.
mkdir -p "$state/receiver/cgi-bin"
cat >"$state/receiver/cgi-bin/alert" <<CGI
#!/bin/busybox sh
head -c "\$CONTENT_LENGTH" >>$state/alerts.jsonl
echo >>$state/alerts.jsonl
printf 'Content-Type: text/plain\r\n\r\nok\n'
CGI
chmod +x "$state/receiver/cgi-bin/alert"
: >"$state/alerts.jsonl"
inns busybox httpd -p 127.0.0.1:9099 -h "$state/receiver" </dev/null >/dev/null 2>&1
cat >"$state/hyperd.yaml" <<YAML
schemaVersion: "1"
source: {url: "file://$repo", interval: 5s}
stateDir: $state
listen: 127.0.0.1:7400
prune: true
webhook: {gitlabTokenFile: $state/webhook.token}
alerts:
  - {type: webhook, url: "http://127.0.0.1:9099/cgi-bin/alert"}
YAML
cat "$state/hyperd.yaml"
inns "$PWD/build/hyperd" --config "$state/hyperd.yaml" >"$state/hyperd.log" 2>&1 &
hyperd_pid=$!
for _ in $(seq 100); do [ -s "$state/hyperd.json" ] && break; sleep 0.1; done
# Waits until hyperd has applied revision git:$1 with nothing failed; prints the seconds it took.
converged() {
  local start=$1 want=$2 last
  for _ in $(seq 600); do
    last=$(inns "$hyperctl" --state-dir "$state" status -o json 2>/dev/null | tr -d ' \n' |
      grep -o '"lastReconcile":{[^{}]*}' || true)
    if [[ $last == *"\"revision\":\"git:$want\""* && $last == *'"failed":0,'* &&
      $last == *'"inProgress":0,'* ]]; then
      echo "$(( ($(date +%s%N) - start) / 1000000 )) ms"
      return 0
    fi
    sleep 0.2
  done
  echo "not converged; hyperd's log:" >&2
  tail -n 30 "$state/hyperd.log" >&2
  return 1
}

gitc add -A
gitc commit --quiet -m "the examples"
t0=$(date +%s%N)
show gitc push --quiet origin main
c1=$(gitc rev-parse HEAD)
echo "push -> converged: $(converged "$t0" "$c1")"
show inns "$hyperctl" --state-dir "$state" status

step "a hand change: the lab bridge deleted; hyperd sees it (netlink), alerts and repairs it"
show inns ip link del hb-lab
for _ in $(seq 150); do grep -q '"kind":"drift"' "$state/alerts.jsonl" && inns ip link show hb-lab >/dev/null 2>&1 && break; sleep 0.2; done
echo "the receiver got:"
grep '"kind":"drift"' "$state/alerts.jsonl" | grep -o '"summary":"[^"]*"' | head -n 3 || true
show inns ip -br link show hb-lab

step "a bad push is rejected with its place; the last good revision stays in force"
sed -i 's#cidr: 10.78.0.0/24#cidr: 10.78.0.0/33#' "$work/networks.yaml"
gitc commit --quiet -am "builds network: a typo in the cidr"
show gitc push --quiet origin main
bad=$(gitc rev-parse HEAD)
for _ in $(seq 150); do grep -q "git:$bad rejected" "$state/alerts.jsonl" && break; sleep 0.2; done
echo "the receiver got:"
grep "git:$bad rejected" "$state/alerts.jsonl" | grep -o '"problems":\[[^]]*\]' | head -n 1 || true
inns "$hyperctl" --state-dir "$state" status | grep -E "^(revision|rejected)" || true

step "git revert of the bad commit: a good revision is in force again"
show gitc revert --no-edit HEAD
t0=$(date +%s%N)
show gitc push --quiet origin main
c2=$(gitc rev-parse HEAD)
echo "push -> converged: $(converged "$t0" "$c2")"

step "a change and its revert: the previous state comes back with the same artifact digests"
digest_of() {
  inns "$hyperctl" --state-dir "$state" get builds -o json | tr -d ' \n' |
    grep -o "\"name\":\"$1\".*" | grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1
}
d1=$(digest_of hello-initrd)
sed -i 's#content: "built by hyper\\n"#content: "built by hyper, second edition\\n"#' "$work/builds.yaml"
gitc commit --quiet -am "hello-initrd: a new motd"
t0=$(date +%s%N)
show gitc push --quiet origin main
echo "push -> converged: $(converged "$t0" "$(gitc rev-parse HEAD)")"
d2=$(digest_of hello-initrd)
show gitc revert --no-edit HEAD
t0=$(date +%s%N)
show gitc push --quiet origin main
echo "push -> converged: $(converged "$t0" "$(gitc rev-parse HEAD)")"
d3=$(digest_of hello-initrd)
echo "hello-initrd: ${d1:0:19} -> ${d2:0:19} (the change) -> ${d3:0:19} (the revert)"
if [ "$d1" = "$d3" ] && [ "$d1" != "$d2" ]; then
  echo "(the revert gave back the very bytes of before: a Build's key is its content's)"
fi
show inns "$hyperctl" --state-dir "$state" status

step "the status page"
echo "hyperd serves it on its API address: http://127.0.0.1:7400/ (inside namespace $ns)."
echo "Sign in with the token in $state/hyperd.token, or the read-only $state/viewer.token."
echo "\$ ip netns exec $ns curl -s http://127.0.0.1:7400/ | grep -o '<title>.*</title>'"
inns curl -s http://127.0.0.1:7400/ | grep -o '<title>.*</title>'
if [ -t 0 ] && [ -z "${CI:-}" ]; then
  echo "To open it from this machine's browser: ip netns exec $ns socat TCP-LISTEN:7401,fork TCP:127.0.0.1:7400"
  read -r -p "Press Enter to stop hyperd and clean up. " _
fi

t_end=$(date +%s)
echo
echo "demo: $((t_end - t_start)) s in all: install $((t_installed - t_start)) s, build $((t_built - t_installed)) s, the story $((t_end - t_built)) s"
step "done: removing namespace $ns"
