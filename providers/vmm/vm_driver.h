#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "providers/vmm/accel.h"

namespace hyper::providers::vmm {

// What a VM is started with. The driver adds only what the VMM itself needs (console device,
// timer hints); addressing (hyper.ip=...) is the caller's part of `cmdline`.
struct VmSpec {
  std::string name;  // a DNS label; names the run dir
  int vcpus = 1;
  int memoryMiB = 256;
  std::string kernel;  // path to the kernel image
  std::string initrd;  // path, or empty
  // A virtio-blk disk (the guest's /dev/vda), or empty. Read-only: the file itself, opened
  // read-only; writable: a copy in the run dir, so the file (a store artifact) never changes.
  std::string disk;
  bool diskReadOnly = true;
  // More virtio-blk disks, after `disk`, each used where it is (a writable one is written in
  // place: a builder's output image). The guest finds each by its serial
  // (/sys/block/vdX/serial), not by its order.
  struct ExtraDisk {
    std::string path;
    bool readOnly = true;
    std::string serial;  // at most 20 of A-Z a-z 0-9 - _
  };
  std::vector<ExtraDisk> extraDisks;
  std::string cmdline;  // kernel command line
  std::string tap;      // an existing tap device in the current netns, or empty: no network
  std::string mac;      // "52:54:00:..."; empty: the VMM's default
  // virtio-serial ports the guest can write to, by name (the guest finds them under
  // /sys/class/virtio-ports/*/name); what it writes is kept in channelLogPath(runDir, name).
  std::vector<std::string> channels;
  // virtio-serial ports the host talks on: the VMM listens on channelSocketPath(runDir, name) for
  // one host connection at a time; nothing of what passes is written anywhere (the secrets
  // channel, secret_channel.h).
  std::vector<std::string> socketChannels;
  AccelMode accel = AccelMode::Auto;
};

// Where a VM's output on the virtio-serial channel `channel` is kept: a file in its run dir.
std::string channelLogPath(const std::string& runDir, const std::string& channel);

// Where the host connects to the VM's socket channel `channel`: a Unix socket in its run dir.
std::string channelSocketPath(const std::string& runDir, const std::string& channel);

// "" when `name` can name a channel (1-63 of a-z 0-9 . _ -, starting with a letter or digit: it
// goes into a VMM option string and a file name), else what is wrong with it.
std::string checkChannelName(const std::string& name);

// A running (or just exited) VM as found in its run dir. Plain data: any process can rebuild it
// from the run dir, which is how a restarted hyperd adopts the VMs it started before.
struct VmHandle {
  std::string name;
  std::string driver;  // "qemu"
  pid_t pid = 0;
  std::string runDir;
  std::string consoleLog;
  std::string controlSocket;  // QMP for QEMU, the REST API socket for Firecracker / CH
  Accel accel = Accel::Tcg;
  VmSpec spec;  // as started (cmdline before the driver's additions)
};

enum class VmRunState { Running, Paused, ShuttingDown, Stopped, Other };

struct VmStatus {
  VmRunState state = VmRunState::Other;
  std::string detail;  // the VMM's own word ("running", "paused", "shutdown", ...)
};

// How a stop ended, from gentlest to harshest.
enum class StopOutcome { AlreadyStopped, Powerdown, Quit, Killed };

struct StopOptions {
  std::chrono::milliseconds powerdownGrace{10000};  // guest's time to power off by itself
  std::chrono::milliseconds quitGrace{3000};        // VMM's time to exit after a quit command
};

// One VMM behind hyper's vmm provider. QEMU (QMP) first; Firecracker and Cloud Hypervisor (REST
// over a Unix socket) fit the same shape: a process per VM, a control socket, a console log and
// a run dir per VM under the driver's root.
//
// Contract:
// - VMs are detached from the caller: they survive it, and any driver instance over the same run
//   root finds them (find/list), so a restarted controller adopts rather than duplicates.
// - start() is idempotent by name: a VM of that name already running is returned, not started
//   twice; its spec is not compared (replacing a VM is the provider's decision: stop, start).
// - stop() is idempotent and always leaves no run dir behind.
// - Exit notification is not the driver's: callers watch handle.pid with an ExitWatcher.
class VmDriver {
 public:
  virtual ~VmDriver() = default;

  virtual std::string_view kind() const = 0;  // "qemu"

  virtual Result<VmHandle> start(const VmSpec& spec) = 0;
  // The running VM of that name, adopted from its run dir; nullopt when none runs. A run dir left
  // by a VM that is gone is reported as nullopt too (stop() removes it).
  virtual Result<std::optional<VmHandle>> find(const std::string& name) = 0;
  // Every running VM under the run root, in one scan (the provider's batch observe).
  virtual Result<std::vector<VmHandle>> list() = 0;
  virtual Result<VmStatus> status(const VmHandle& vm) = 0;
  // Graceful first (ACPI power button), then the VMM's quit, then SIGKILL; then the run dir goes.
  virtual Result<StopOutcome> stop(const std::string& name, const StopOptions& options = {}) = 0;
  // Waits until `line` appears as a whole line (a trailing "\r" aside) on the VM's console, or,
  // when `channel` is not empty, on that virtio-serial channel (one of spec.channels). The error
  // on timeout (or when the VM exits first) carries the last console lines. With `cancel`, it
  // looks at the flag at least every kWaitCancelSlice and returns soon after it becomes true,
  // with waitCancelledMessage() in the error. It never stops the VM: that is the caller's call.
  virtual Status waitForLine(const VmHandle& vm, const std::string& channel,
                             const std::string& line, std::chrono::milliseconds timeout,
                             const std::atomic<bool>* cancel = nullptr) = 0;
};

// How often at most a waitForLine with a cancel flag looks at it.
inline constexpr std::chrono::milliseconds kWaitCancelSlice{100};

// "stopped waiting for VM NAME to be ready: hyperd is stopping"
std::string waitCancelledMessage(const std::string& vmName);

// The last `n` lines of a console log (for error messages); empty when it cannot be read.
std::string lastLines(const std::string& path, size_t n);

}  // namespace hyper::providers::vmm
