#include "guest/initramfs.h"

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "base/file.h"
#include "guest/cpio_archive.h"
#include "host/command.h"

namespace hyper::guest {

namespace {

std::string canonicalName(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c == '-') {
      c = '_';
    }
  }
  return out;
}

// "kernel/drivers/net/virtio_net.ko[.xz]" -> "virtio_net".
std::string moduleNameOf(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t ko = base.find(".ko");
  return canonicalName(ko == std::string_view::npos ? base : base.substr(0, ko));
}

constexpr std::string_view kInitScript = R"INIT(#!/bin/busybox sh
# hyper guest init (guest/initramfs.cc). Reads hyper.* parameters from the kernel command line.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

while read -r m; do
  insmod "/lib/modules/$m.ko" || echo "hyper-init: insmod $m failed"
done </etc/hyper/modules

# A graceful stop is the ACPI power button (QMP system_powerdown): power off on its first event.
for d in /sys/class/input/event*; do
  if [ "$(cat "$d/device/name" 2>/dev/null)" = "Power Button" ]; then
    (dd if="/dev/input/${d##*/}" bs=24 count=1 of=/dev/null 2>/dev/null
     echo hyper-poweroff; sync; poweroff -f) &
  fi
done

ip=""; gw=""; ping=2; ready=hyper-ready; channel=""; mac=""; extra=""; targets=""; disk=""
diskmounted=""
secrets=""; grants=""; builder=""; keep=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    hyper.ip=*) ip=${arg#hyper.ip=} ;;
    hyper.mac=*) mac=${arg#hyper.mac=} ;;
    hyper.addr=*) extra=${arg#hyper.addr=} ;;
    hyper.targets=*) targets=${arg#hyper.targets=} ;;
    hyper.gw=*) gw=${arg#hyper.gw=} ;;
    hyper.ping=*) ping=${arg#hyper.ping=} ;;
    hyper.ready=*) ready=${arg#hyper.ready=} ;;
    hyper.channel=*) channel=${arg#hyper.channel=} ;;
    hyper.disk=*) disk=${arg#hyper.disk=} ;;
    hyper.secrets=*) secrets=${arg#hyper.secrets=} ;;
    hyper.secret=*) grants="$grants ${arg#hyper.secret=}" ;;
    hyper.builder=*) builder=${arg#hyper.builder=} ;;
    hyper.keep=*) keep=${arg#hyper.keep=} ;;
  esac
done

# hyper.disk=DIR: the VM's disk (/dev/vda, a rootfs Build's erofs or ext4 image) mounted there:
# writable when the disk and its filesystem are (mount falls back to read-only otherwise).
if [ -n "$disk" ]; then
  mkdir -p "$disk"
  if mount /dev/vda "$disk" 2>/dev/null || mount -o ro /dev/vda "$disk"; then
    how=ro
    if touch "$disk/.hyper-rw" 2>/dev/null; then
      how=rw
      rm -f "$disk/.hyper-rw"
    fi
    echo "hyper-disk /dev/vda on $disk ($how): $(cat "$disk/etc/debian_version" 2>/dev/null)"
    diskmounted=1
  else
    echo "hyper-disk /dev/vda: mount failed"
  fi
fi

ip link set lo up
# hyper.mac and hyper.addr make the guest misbehave on purpose (tests of the host's guard): a MAC
# other than the one hyper gave, and a second address the guest takes for itself.
if [ -n "$mac" ]; then
  ip link set eth0 address "$mac" || echo "hyper-init: cannot set eth0 address $mac"
fi
if [ -n "$ip" ]; then
  ip link set eth0 up && ip addr add "$ip" dev eth0 || echo "hyper-init: cannot configure eth0 $ip"
  if [ -n "$extra" ]; then
    ip addr add "$extra" dev eth0 || echo "hyper-init: cannot add $extra to eth0"
  fi
  if [ -n "$gw" ]; then
    ip route add default via "$gw" || echo "hyper-init: cannot add default route via $gw"
  fi
fi

# Secrets: hyper.secret=ID:PATH grants, asked of the host on the virtio-serial port named by
# hyper.secrets (the protocol is in providers/vmm/secret_channel.h). Values go to a tmpfs with
# mode 0400, never to a disk and never to the console; readiness waits until every one is stored,
# then a background reader takes new values (rotations) for as long as the VM runs.
secret_path() {
  for g in $grants; do
    if [ "${g%%:*}" = "$1" ]; then echo "${g#*:}"; return; fi
  done
}
secret_store() {  # token id base64
  path=$(secret_path "$2")
  if [ -z "$path" ]; then
    echo "failed $1 $2 not-granted" >&3
    return
  fi
  if mkdir -p "${path%/*}" && (umask 077 && echo "$3" | base64 -d >"$path.new") &&
     chmod 0400 "$path.new" && mv -f "$path.new" "$path"; then
    echo "stored $1 $2 $(sha256sum "$path" | cut -d ' ' -f 1)" >&3
    echo "hyper-secret $2 stored at $path ($(wc -c <"$path") bytes, mode 0400)"
  else
    rm -f "$path.new"
    echo "failed $1 $2 cannot-write-$path" >&3
    echo "hyper-secret $2: cannot write $path"
  fi
}
secrets_missing() {
  for g in $grants; do
    [ -e "${g#*:}" ] || return 0
  done
  return 1
}
secret_serve() {  # $1 = boot: return once every grant is stored
  while true; do
    if [ "$1" = boot ] && ! secrets_missing; then return; fi
    # Nothing to read while no host is connected (read ends at once): look again soon.
    if ! IFS=" " read -r verb token id value <&3; then sleep 0.5; continue; fi
    case "$verb" in
      hello)
        for g in $grants; do
          [ -e "${g#*:}" ] || echo "get $token ${g%%:*}" >&3
        done ;;
      value) secret_store "$token" "$id" "$value" ;;
      denied) echo "hyper-secret $id: denied by the host" ;;
    esac
  done
}
if [ -n "$secrets" ]; then
  sport=""
  for p in /sys/class/virtio-ports/*; do
    if [ "$(cat "$p/name" 2>/dev/null)" = "$secrets" ]; then sport="/dev/${p##*/}"; fi
  done
  mkdir -p /run/secrets
  mount -t tmpfs -o mode=0700,size=16m,nosuid,nodev,noexec hyper-secrets /run/secrets
  if [ -n "$sport" ] && exec 3<>"$sport"; then
    echo "hyper-init: asking for secrets on channel $secrets"
    secret_serve boot
    secret_serve live &
  else
    echo "hyper-init: no virtio-serial port named $secrets"
  fi
fi

# A builder (hyper.builder=CHANNEL): the source disk (serial hyper-src, read-only) is copied to a
# tmpfs at /build that the build's user owns, the output disk (serial hyper-out) is mounted at
# /out, cgroup2 is mounted (seeds 000-002: runc and friends need it), and hyper-build-agent runs
# the job the host sends on the channel. Then the output is synced and the VM powers off.
if [ -n "$builder" ]; then
  disk_by_serial() {
    for b in /sys/block/vd*; do
      if [ "$(cat "$b/serial" 2>/dev/null)" = "$1" ]; then echo "/dev/${b##*/}"; fi
    done
  }
  mkdir -p /src /out /build /sys/fs/cgroup /tmp
  mount -t cgroup2 cgroup2 /sys/fs/cgroup || echo "hyper-init: cgroup2 not mounted"
  mount -t tmpfs -o mode=1777 tmp /tmp
  src=$(disk_by_serial hyper-src); out=$(disk_by_serial hyper-out)
  if [ -n "$src" ]; then mount -o ro "$src" /src || echo "hyper-init: cannot mount $src"; fi
  if [ -n "$out" ]; then mount "$out" /out || echo "hyper-init: cannot mount $out"; fi
  mount -t tmpfs -o mode=0755 build /build
  cp -a /src/. /build/ 2>/dev/null
  chown -R 1000:1000 /build /out
  hostname builder
  bport=""
  for p in /sys/class/virtio-ports/*; do
    if [ "$(cat "$p/name" 2>/dev/null)" = "$builder" ]; then bport="/dev/${p##*/}"; fi
  done
  # The secrets the host delivered (above) are the build user's to read, for the build only.
  if [ -n "$secrets" ]; then chown -R 1000:1000 /run/secrets; chmod 0500 /run/secrets; fi
  # With a disk (hyper.disk=DIR, a rootfs Build): the steps run in it, chrooted, on an overlay
  # whose writable layer is a tmpfs (the image is never written), with /build, /out, /tmp,
  # /run/secrets, /proc, /sys and /dev bound in.
  rootarg=""
  if [ -n "$diskmounted" ]; then
    mkdir -p /overlay /buildroot
    mount -t tmpfs -o mode=0755 overlay /overlay
    mkdir -p /overlay/upper /overlay/work
    if mount -t overlay overlay -o "lowerdir=$disk,upperdir=/overlay/upper,workdir=/overlay/work" \
        /buildroot; then
      for d in build out tmp proc sys dev run/secrets; do mkdir -p "/buildroot/$d"; done
      for d in build out tmp dev; do mount --bind "/$d" "/buildroot/$d"; done
      mount -t proc proc /buildroot/proc
      mount -t sysfs sys /buildroot/sys
      mount -t cgroup2 cgroup2 /buildroot/sys/fs/cgroup 2>/dev/null
      if [ -n "$secrets" ]; then mount --bind /run/secrets /buildroot/run/secrets; fi
      rootarg="--root /buildroot"
    else
      echo "hyper-init: cannot overlay $disk"
    fi
  fi
  echo "hyper-builder: source ${src:-none}, output ${out:-none}, channel ${bport:-none}," \
    "root ${rootarg:-none}"
  /bin/hyper-build-agent --channel "$bport" $rootarg
  rc=$?
  sync
  # The output disk is unmounted cleanly (its journal checkpointed) before the host reads it.
  [ -n "$rootarg" ] && umount /buildroot/out 2>/dev/null
  umount /out 2>/dev/null || mount -o remount,ro /out 2>/dev/null
  echo "hyper-builder-done $rc"
  # hyper.keep=1 (keepFailed): a failed builder stays up for inspection until released.
  if [ "$rc" != 0 ] && [ "$keep" = 1 ]; then
    echo "hyper-builder-kept: the build failed; the builder stays up until released"
    while true; do sleep 3600; done
  fi
  poweroff -f
fi

# Readiness goes to the console, or to the virtio-serial port named by hyper.channel (the host
# reads that port, not the console, and the console only says where the line went).
if [ -n "$channel" ]; then
  sent=""
  for p in /sys/class/virtio-ports/*; do
    if [ "$(cat "$p/name" 2>/dev/null)" = "$channel" ]; then
      echo "$ready" >"/dev/${p##*/}" && sent=yes
    fi
  done
  if [ -n "$sent" ]; then
    echo "hyper-init: readiness sent on channel $channel"
  else
    echo "hyper-init: no virtio-serial port named $channel"
  fi
else
  echo "$ready"
fi
while true; do
  if [ -n "$targets" ]; then
    for t in $(echo "$targets" | tr , ' '); do
      for from in ${ip%/*} ${extra%/*}; do
        if ping -c 1 -W 1 -I "$from" "$t" >/dev/null 2>&1; then r=ok; else r=fail; fi
        echo "hyper-ping $t from $from $r"
      done
    done
    sleep "$ping"
  elif [ -n "$gw" ] && [ "$ping" != 0 ]; then
    if ping -c 1 -W 1 "$gw" >/dev/null 2>&1; then echo hyper-ping-ok; else echo hyper-ping-fail; fi
    sleep "$ping"
  else
    sleep 3600
  fi
done
)INIT";

}  // namespace

const std::vector<std::string>& defaultGuestModules() {
  static const std::vector<std::string> modules = {
      "virtio_ring",    "virtio", "virtio_mmio", "failover",       "net_failover",
      "virtio_net",     "button", "evdev",       "virtio_console", "virtio_blk",
      "crc32c_generic", "erofs",  "ext4",        "overlay"};
  return modules;
}

std::string_view guestInitScript() { return kInitScript; }

Result<std::vector<ModuleFile>> resolveModules(std::string_view modulesDep,
                                               const std::vector<std::string>& wanted) {
  // name -> (path, dependency paths) from lines "path: dep dep ...".
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> deps;
  std::istringstream lines{std::string(modulesDep)};
  std::string line;
  while (std::getline(lines, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) {
      continue;
    }
    std::string path = line.substr(0, colon);
    std::vector<std::string> list;
    std::istringstream rest(line.substr(colon + 1));
    for (std::string d; rest >> d;) {
      list.push_back(d);
    }
    deps[moduleNameOf(path)] = {path, std::move(list)};
  }

  std::vector<ModuleFile> order;
  std::set<std::string> done;
  for (const auto& w : wanted) {
    std::string name = canonicalName(w);
    auto it = deps.find(name);
    if (it == deps.end()) {
      return Status::error("resolve module " + w + " <- not in modules.dep");
    }
    // modules.dep lists every (transitive) dependency, the ones loaded last first: load them in
    // reverse, then the module.
    const auto& [path, list] = it->second;
    for (auto d = list.rbegin(); d != list.rend(); ++d) {
      std::string depName = moduleNameOf(*d);
      if (done.insert(depName).second) {
        order.push_back({depName, *d});
      }
    }
    if (done.insert(name).second) {
      order.push_back({name, path});
    }
  }
  return order;
}

Status addModules(CpioArchive& cpio, const std::string& modulesDir,
                  const std::vector<ModuleFile>& modules) {
  std::string list;
  for (const auto& m : modules) {
    std::string path = modulesDir + "/" + m.relativePath;
    std::string contents;
    if (m.relativePath.ends_with(".ko")) {
      HYPER_ASSIGN_OR_RETURN(contents, readFile(path));
    } else if (m.relativePath.ends_with(".ko.xz")) {
      auto r = host::runChecked({"xz", "-dc", path});
      if (!r.isOk()) {
        return r.status().withContext("decompress " + m.name);
      }
      contents = std::move(*r);
    } else {
      return Status::error("module " + path + ": only .ko and .ko.xz are supported");
    }
    cpio.addFile("lib/modules/" + m.name + ".ko", std::move(contents));
    list += m.name + "\n";
  }
  cpio.addFile("etc/hyper/modules", list);
  return Status::ok();
}

}  // namespace hyper::guest
