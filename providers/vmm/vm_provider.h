#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "providers/vmm/exit_watcher.h"
#include "providers/vmm/guest_log.h"
#include "providers/vmm/qemu_driver.h"
#include "providers/vmm/vm_spec.h"
#include "reconciler/provider.h"

namespace hyper::providers::vmm {

struct VmProviderConfig {
  std::string runRoot = "/run/hyper/vm";  // one run dir per VM (qemu_driver.h)
  AccelMode accel = AccelMode::Auto;
  StopOptions stop;
  // Cap per console or channel log; past it the log is rotated to LOG.1 (guest_log.h).
  uint64_t logMaxBytes = kDefaultLogMaxBytes;
  // HYPER_VM_RUN_DIR, HYPER_VM_ACCEL (auto | kvm | tcg), HYPER_VM_LOG_MAX_BYTES (>= 4096);
  // defaults otherwise.
  static VmProviderConfig fromEnvironment();
};

// The `VM` kind: a QEMU microVM per manifest, on a tap attached to its Network's bridge, with an
// address from the manifest or allocated from the network and kept (inventory handles). Every VM
// action says how disruptive it is (PlanAction::disruption): "in-place" (labels, readiness, drift
// policy: nothing on the host changes), "start", "stop", "restart" (the tap was deleted by hand:
// stop, new tap, start), or "replace" (vcpus, memory, kernel, initrd, cmdline, network, address,
// MAC or readiness channel changed: stop, then start with the new spec).
//
// A VM is Ready when its console shows the readiness line; apply waits for it and, when it does
// not come, stops the VM again and fails with the last console lines (nothing is left behind).
// VMs outlive the process that started them; any later hyperctl or hyperd adopts them from the
// run dirs. Under hyperd (after startWatching()) every running VM's process is watched
// with a pidfd, and an exit wakes the loop at once.
class VmProvider : public Provider, public EventSource {
 public:
  // QEMU (QemuDriver over config.runRoot).
  explicit VmProvider(VmProviderConfig config = VmProviderConfig::fromEnvironment());
  // Any VMM behind the VmDriver contract (vm_driver.h): the provider uses nothing else of it.
  VmProvider(VmProviderConfig config, std::unique_ptr<VmDriver> driver);
  ~VmProvider() override;

  std::string name() const override { return "vmm"; }
  std::vector<std::string> kinds() const override { return {"VM"}; }
  void validate(const ValidateRequest& req, ValidateResponse& resp) const override;
  std::vector<Reference> references(const Object& object) const override;
  void observe(const ObserveRequest& req, ObserveResponse& resp) override;
  void plan(const PlanRequest& req, PlanResponse& resp) const override;
  void apply(const ApplyRequest& req, ApplyResponse& resp) override;
  // hyperd: from now on every running VM's process is watched, and an exit makes the descriptor
  // readable.
  Result<int> startWatching() override;
  bool drainEvents() override;

  const std::string& runRoot() const { return config_.runRoot; }

 private:
  void planOne(const PlanRequest& req, PlanResponse& resp) const;
  Status startVm(const VmManifest& vm, ApplyResponse& resp);
  Status stopVm(const std::string& name);

  VmProviderConfig config_;
  std::unique_ptr<VmDriver> driver_;
  mutable std::mutex mu_;
  std::map<std::string, Placement> placements_;  // from the last observe, by VM name
  int eventFd_ = -1;                             // eventfd the exit watcher signals
  bool supervise_ = false;                       // set by startWatching(): hyperd watches exits
  std::unique_ptr<ExitWatcher> watcher_;
  std::map<std::string, pid_t> watched_;
  std::map<std::string, pid_t> readySeen_;  // VM name -> the process whose console said ready
};

}  // namespace hyper::providers::vmm
