#pragma once

#include <string>
#include <vector>

#include "providers/vmm/vm_driver.h"

namespace hyper::providers::vmm {

struct QemuDriverOptions {
  // One directory per VM under it: <runRoot>/<name>/ with
  //   vm.json       what was started (spec, accel, argv, driver), written before QEMU starts
  //   qemu.pid      QEMU's pid (QEMU writes and locks it)
  //   qmp.sock      the QMP socket
  //   console.log   the serial console
  //   channel-NAME.log  what the guest wrote on virtio-serial channel NAME
  // Unix socket paths are limited to 107 bytes: keep the root short (/run/hyper/vm).
  std::string runRoot = "/run/hyper/vm";
  std::string qemuBinary = "qemu-system-x86_64";
  AccelProbe probe;  // also where the host TSC frequency is read for TCG guests
};

// QEMU's microvm machine (virtio-mmio devices, no PCI, no firmware beyond qboot), controlled
// over QMP. QEMU daemonizes itself (-daemonize: fork, setsid, stdio to /dev/null) after it has
// created its sockets and pid file, so start() returns a VM that is no child of the caller and
// that survives it.
class QemuDriver : public VmDriver {
 public:
  explicit QemuDriver(QemuDriverOptions options);

  std::string_view kind() const override { return "qemu"; }
  Result<VmHandle> start(const VmSpec& spec) override;
  Result<std::optional<VmHandle>> find(const std::string& name) override;
  Result<std::vector<VmHandle>> list() override;
  Result<VmStatus> status(const VmHandle& vm) override;
  Result<StopOutcome> stop(const std::string& name, const StopOptions& options = {}) override;
  Status waitForLine(const VmHandle& vm, const std::string& channel, const std::string& line,
                     std::chrono::milliseconds timeout,
                     const std::atomic<bool>* cancel = nullptr) override;

  std::string runDirFor(const std::string& name) const;

  // The kernel command line QEMU gets: the spec's, plus what the machine needs when missing:
  // console=ttyS0 (the console log), panic=-1 (with -no-reboot a panicked guest ends QEMU, so the
  // exit is seen instead of a guest that hangs "running"), and under TCG tsc_early_khz=<host>.
  static std::string effectiveCmdline(const std::string& cmdline, Accel accel, long tscKhz);
  // The full argv. Pure, for tests.
  static std::vector<std::string> buildArgv(const std::string& qemuBinary, const VmSpec& spec,
                                            Accel accel, const std::string& runDir, long tscKhz);

 private:
  QemuDriverOptions options_;
};

// True when /proc/<pid>/cmdline is a QEMU started with this pid file: the pid in a run dir may
// have been reused by an unrelated process since.
bool isQemuOfRunDir(pid_t pid, const std::string& pidFile);

}  // namespace hyper::providers::vmm
