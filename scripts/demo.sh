#!/usr/bin/env bash
# README command 1, the main job: the GitOps loop on manifests/examples/, inside a private network
# namespace. The examples are pushed to a local git repository that hyperd follows; each push
# converges (networks, firewall policy, Builds, a microVM given a sealed secret), a build from
# source runs in a builder VM, hand-made changes are alerted and repaired, a bad push is rejected
# with its place, reverts give back the same artifacts, a push deleting the VMs is held; the
# status page is saved as a screenshot and kept serving until Enter (on a terminal).
# It never touches the machine's own interfaces or firewall, and removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."

t_start=$(date +%s)
bash scripts/deps.sh
t_installed=$(date +%s)
# The build's progress on a terminal; quiet in CI and in logs.
if [ -t 1 ] && [ -z "${CI:-}" ]; then
  echo "hyper demo: building (scripts/build.sh)"
  bash scripts/build.sh
else
  bash scripts/build.sh >/dev/null
fi
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
  # Whatever hyperd of this state directory is still there (it stops within seconds on SIGTERM).
  pkill -f "hyperd --config $state/hyperd.yaml" 2>/dev/null || true
  for _ in $(seq 1 30); do pgrep -f "hyperd --config $state/hyperd.yaml" >/dev/null || break; sleep 0.5; done
  pkill -f "httpd -p 127.0.0.1:9099 -h $state/receiver" 2>/dev/null || true
  # A microVM keeps its tap (and the namespace) alive: stop any the demo left first.
  for pidfile in "$HYPER_VM_RUN_DIR"/*/qemu.pid; do
    if [ -f "$pidfile" ]; then kill -9 "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  ip netns del "$ns" 2>/dev/null || true
  # hyperd's last writes may still be landing: try again for a moment.
  for _ in 1 2 3 4 5; do rm -rf "$state" "${examples:-}" 2>/dev/null && break; sleep 1; done
}
trap cleanup EXIT

hyperctl=$PWD/build/hyperctl
inns() { ip netns exec "$ns" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Prints a command as a person would type it (the helpers below by what they run), then runs it.
show() {
  local shown=$*
  case $1 in
    hctl) shown="hyperctl ${*:2}" ;;
    gitc) shown="git ${*:2}" ;;
    inns) shown="${*:2}" ;;
  esac
  shown=${shown//$hyperctl/hyperctl}
  printf '$ %s\n' "${shown//--state-dir $state /}"
  "$@"
}
# hyperctl on the demo's state directory, in its namespace (everything after the loop starts is).
hctl() { inns "$hyperctl" --state-dir "$state" "$@"; }

ip netns add "$ns"
inns ip link set lo up
# A copy of the examples: its Secret is sealed to this demo's key ring below.
examples=$(mktemp -d /tmp/hyper-demo-examples.XXXXXX)
cp manifests/examples/*.yaml "$examples/"

step "the manifests: manifests/examples/"
awk '/^kind:/ {k = $2} /^metadata: *[{]name:/ {gsub(/[{}]/, ""); print k "/" $3; next}
  /^metadata:$/ {m = 1; next} m && /^  name:/ {print k "/" $2; m = 0}' "$examples"/*.yaml |
  paste -sd' ' | fold -s -w 96 | sed 's/^/  /'
show "$hyperctl" validate -f "$examples"

step "seal the VM's database password to this host's key (the committed one is sealed to no key here)"
echo "\$ head -c 12 /dev/urandom | base64 | hyperctl secret seal --name web-db --key password -f secrets.yaml"
head -c 12 /dev/urandom | base64 |
  "$hyperctl" --state-dir "$state" secret seal --name web-db --key password -f "$examples/secrets.yaml"
grep -A2 'sealed:' "$examples/secrets.yaml" | cut -c1-72 | sed 's/$/.../'

step "first, the Builds that need Debian's mirror: the kernel, hyper's guest image, a Debian rootfs"
echo "(Built in the machine's own network namespace, before hyperd starts in the private one, which"
echo " cannot reach the mirror: the kernel package is downloaded once into /var/cache/hyper/debs and"
echo " checked against apt's SHA256; the rootfs is mmdebstrap from this machine's apt lists of"
echo " bookworm, as an erofs image. They write only the state directory; hyperd finds them cached.)"
show "$hyperctl" --state-dir "$state" apply -f "$examples/builds.yaml"

step "the GitOps loop: a git repository, hyperd following it, an alert receiver"
echo "(A bare repository stands for the remote; a post-receive hook tells hyperd of each push"
echo " (GitLab-style webhook token), and hyperd also polls every 5 s. An alert receiver in the"
echo " namespace prints what hyperd sends it: drift, rejected and held revisions.)"
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
echo "\$ cat hyperd.yaml"
cat "$state/hyperd.yaml"
echo "\$ ip netns exec $ns hyperd --config hyperd.yaml &"
# Not through inns: a shell function run in the background is a subshell, and $! would be its
# pid rather than hyperd's (ip netns exec execs the command: same pid), so the cleanup's kill
# would miss hyperd and leave it running.
ip netns exec "$ns" "$PWD/build/hyperd" --config "$state/hyperd.yaml" >"$state/hyperd.log" 2>&1 &
hyperd_pid=$!
for _ in $(seq 100); do [ -s "$state/hyperd.json" ] && break; sleep 0.1; done
# Waits until hyperd has applied revision git:$2 with nothing failed or in progress; prints the
# milliseconds since $1.
converged() {
  local start=$1 want=$2 last
  for _ in $(seq 1500); do
    last=$(hctl status -o json 2>/dev/null | tr -d ' \n' | grep -o '"lastReconcile":{[^{}]*}' || true)
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
# Pushes what is committed and waits for hyperd to converge on it, printing how long it took.
pushed() {
  local t0 c
  t0=$(date +%s%N)
  show gitc push --quiet origin main
  c=$(gitc rev-parse HEAD)
  echo "push -> converged (git:${c:0:12}): $(converged "$t0" "$c")"
}
# Commits everything in the working copy with message $1, then pushed.
push() {
  gitc add -A
  gitc commit --quiet -m "$1"
  pushed
}
# Reverts the last commit, then pushed.
revert_pushed() {
  show gitc revert --no-edit HEAD
  pushed
}
# The alerts received so far; alerted prints those after a mark.
mark() { wc -l <"$state/alerts.jsonl"; }
# Waits up to 30 s for an alert after line $1 matching $2 (a grep pattern), then prints the
# matching alerts' field $3.
alerted() {
  local since=$1 pattern=$2 field=$3
  for _ in $(seq 150); do tail -n +"$((since + 1))" "$state/alerts.jsonl" | grep -q "$pattern" && break; sleep 0.2; done
  echo "the receiver got:"
  tail -n +"$((since + 1))" "$state/alerts.jsonl" | grep "$pattern" |
    grep -o "\"$field\":\"[^\"]*\"" | sort -u | head -n 4 || echo "  (nothing yet)"
}

step "git push: hyperd converges the host to the examples"
push "the examples"
show hctl status
show hctl get networks
show hctl get networkpolicies
show hctl get builds
show hctl get vms
show inns ip -br addr show type bridge
show inns nft list table inet hyper
echo "\$ hyperctl logs vm/web-1 | grep hyper- | head -n 5"
hctl logs vm/web-1 | grep -a hyper- | head -n 5
echo "(The guest mounted the rootfs Build as /dev/vda and read its Debian version, stored its"
echo " password on a tmpfs, received over a virtio-serial channel: never on the host's disk, never"
echo " on the console. Ready when it printed hyper-ready. Its pings to the gateway fail: lab-egress"
echo " allows only 203.0.113.0/24 port 443 from the lab network.)"

step "a change planned before it is pushed: hyperctl diff asks hyperd; the plan never shows the value"
head -c 12 /dev/urandom | base64 |
  "$hyperctl" --state-dir "$state" secret seal --name web-db --key password -f "$work/secrets.yaml"
rc=0; show hctl diff -f "$work" || rc=$?
echo "(diff exit code $rc: 2 means changes are pending)"
push "web-db: a new password"
echo "\$ hyperctl logs vm/web-1 | grep hyper-secret   # the running VM got it live"
hctl logs vm/web-1 | grep -a hyper-secret

step "a build from source: a script Build runs a git commit's steps in an ephemeral builder VM"
echo "(The builder boots guest-kernel and guest-initrd (hyper's init and build agent), runs the"
echo " steps chrooted in web-rootfs as uid 1000, with no network device, a fixed environment and"
echo " the commit's tree at /build; what they leave under /out becomes a content-addressed artifact,"
echo " which an initramfs takes as /bin/hello for a microVM that runs it.)"
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
cat >"$work/app.yaml" <<YAML
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
echo "\$ cat app.yaml   # (the script Build)"
sed -n '/script:/,/timeoutSeconds/p' "$work/app.yaml"
push "hello-app: built from source, booted"
show hctl logs build/hello-app
digest=$(hctl get builds -o json | tr -d ' \n' | grep -o '"name":"hello-app".*' |
  grep -o 'sha256:[0-9a-f]*' | head -1)
echo "\$ cat \$state/store/sha256/${digest#sha256:}   # the artifact"
cat "$state/store/sha256/${digest#sha256:}"
echo "\$ hyperctl logs vm/hello-app | grep 'hello from'"
hctl logs vm/hello-app | grep -a "hello from a builder VM"

step "hand changes: the lab bridge deleted, web-1's QEMU killed; hyperd sees both, alerts, repairs"
qemu_pid=$(cat "$HYPER_VM_RUN_DIR/web-1/qemu.pid")
since=$(mark)
show inns ip link del hb-lab
alerted "$since" '"kind":"drift"' summary
for _ in $(seq 150); do inns ip link show hb-lab >/dev/null 2>&1 && break; sleep 0.2; done
show inns ip -br link show hb-lab
echo "\$ kill -9 \$(cat \$HYPER_VM_RUN_DIR/web-1/qemu.pid)   # QEMU $qemu_pid"
since=$(mark)
kill -9 "$qemu_pid"
for _ in $(seq 300); do
  new=$(cat "$HYPER_VM_RUN_DIR/web-1/qemu.pid" 2>/dev/null || true)
  [ -n "$new" ] && [ "$new" != "$qemu_pid" ] && hctl get vms web-1 2>/dev/null | grep -q Running && break
  sleep 0.2
done
alerted "$since" '"kind":"drift"' summary
show hctl get vms web-1
echo "(web-1 runs again as QEMU $(cat "$HYPER_VM_RUN_DIR/web-1/qemu.pid"), its password delivered again before it was ready.)"

step "a bad push is rejected with its place; the last good revision stays in force"
sed -i 's#cidr: 10.78.0.0/24#cidr: 10.78.0.0/33#' "$work/networks.yaml"
gitc commit --quiet -am "builds network: a typo in the cidr"
show gitc push --quiet origin main
bad=$(gitc rev-parse HEAD)
for _ in $(seq 150); do grep -q "git:$bad rejected" "$state/alerts.jsonl" && break; sleep 0.2; done
echo "the receiver got:"
grep "git:$bad rejected" "$state/alerts.jsonl" | grep -o '"problems":\[[^]]*\]' | head -n 1 || true
hctl status | grep -E "^(revision|rejected)" || true

step "git revert of the bad commit: a good revision is in force again"
revert_pushed

step "a change and its revert: the previous state comes back with the same artifact digests"
digest_of() {
  hctl get builds -o json | tr -d ' \n' |
    grep -o "\"name\":\"$1\".*" | grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1
}
d1=$(digest_of hello-initrd)
sed -i 's#content: "built by hyper\\n"#content: "built by hyper, second edition\\n"#' "$work/builds.yaml"
push "hello-initrd: a new motd"
d2=$(digest_of hello-initrd)
revert_pushed
d3=$(digest_of hello-initrd)
echo "hello-initrd: ${d1:0:19} -> ${d2:0:19} (the change) -> ${d3:0:19} (the revert)"
if [ "$d1" = "$d3" ] && [ "$d1" != "$d2" ]; then
  echo "(the revert gave back the very bytes of before: a Build's key is its content's)"
fi

step "a push that would stop every VM is held, not applied"
show gitc rm --quiet vms.yaml app.yaml
gitc commit --quiet -m "remove the VMs"
show gitc push --quiet origin main
held=$(gitc rev-parse HEAD)
alerted 0 "git:$held held" summary
hctl status | grep -E "^(revision|held)" || true
show hctl get vms
echo "(hyperctl approve git:${held:0:12} would apply it; a revert makes it moot:)"
revert_pushed

step "a past revision's Builds made again from its commit, without the cache: the same digests"
first=$(gitc rev-list --max-parents=0 HEAD)
echo "(Outside the namespace again: web-rootfs fetches from the mirror. Another umask and TZ.)"
echo "\$ (umask 077; TZ=Pacific/Kiritimati hyperctl rebuild --repo env.git --revision git:${first:0:12})"
(umask 077; TZ=Pacific/Kiritimati "$hyperctl" --state-dir "$state" rebuild --repo "$repo" --revision "git:$first")
show "$hyperctl" --state-dir "$state" verify build/guest-initrd

step "the status page"
shot=$PWD/build/demo-status-page.png
echo "hyperd serves it on its API address: http://127.0.0.1:7400/ (inside namespace $ns)."
echo "Sign in with the token in $state/hyperd.token, or the read-only $state/viewer.token."
echo "\$ ip netns exec $ns hyper-pageshot --token-file viewer.token --log VM/web-1 --out $shot"
if inns "$PWD/build/hyper-pageshot" --token-file "$state/viewer.token" --log VM/web-1 \
  --out "$shot" >/dev/null; then
  echo "(a screenshot of the page, signed in with the viewer token, web-1's console open: $shot)"
else
  echo "(no screenshot: see the message above)"
fi
show hctl status
if [ -t 0 ] && [ -z "${CI:-}" ]; then
  echo "To open it from this machine's browser: ip netns exec $ns socat TCP-LISTEN:7401,fork TCP:127.0.0.1:7400"
  read -r -p "Press Enter to stop hyperd and clean up. " _
fi

t_end=$(date +%s)
echo
echo "demo: $((t_end - t_start)) s in all: install $((t_installed - t_start)) s, build $((t_built - t_installed)) s, the story $((t_end - t_built)) s"
step "done: removing namespace $ns"
