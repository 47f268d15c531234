#pragma once

#include <sys/types.h>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "providers/vmm/exit_watcher.h"
#include "providers/vmm/guest_log.h"
#include "providers/vmm/qemu_driver.h"
#include "providers/vmm/secret_channel.h"
#include "providers/vmm/vm_spec.h"
#include "reconciler/provider.h"
#include "store/secret_value.h"

namespace hyper::providers::vmm {

struct VmProviderConfig {
  std::string runRoot = "/run/hyper/vm";  // one run dir per VM (qemu_driver.h)
  // The artifact store kernels and initrds from Builds are booted from (<state-dir>/store).
  std::string storeRoot;
  // The state directory whose key ring opens the Secrets VMs get (spec.secrets); "" = none.
  std::string stateDir;
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
//
// A VM with `secrets:` boots with hyper's secrets channel (secret_channel.h): after QEMU starts,
// apply answers the guest's requests with the values granted to it, opened from the Secrets'
// records, and the VM counts as started only once the guest has stored every one (else it is
// stopped again). A value that changes later is delivered to the running guest (in-place), or
// the VM is restarted (onChange: restart). Each delivery is a progress event ("secret
// db/password delivered to VM/web-1") and a count in hyper_secret_deliveries_total; no value is
// ever in a record, a plan, an event or an error.
class VmProvider : public Provider, public EventSource, public ProgressSource {
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
  // One driver list() for all VMs. With a revision, each VM placed on a network (placeRevisionVms:
  // kept addresses first) gets ObservedState.context {"placement": Placement::toJson()}.
  void observe(const ObserveRequest& req, ObserveResponse& resp) override;
  // Pure: reads the placement from req.observed->context only (no placement for a VM on a
  // network is an error: the network is full); every action on a VM that should run carries it
  // in PlanAction::privateData {"placement"}.
  void plan(const PlanRequest& req, PlanResponse& resp) const override;
  // A start boots the VM with the placement in req.action->privateData, never one a previous
  // observe left behind; it waits for readiness at most until req.deadline and returns soon
  // after req.cancel becomes true, with the VM stopped again (an ordinary failure: retried).
  void apply(const ApplyRequest& req, ApplyResponse& resp) override;
  // hyperd: makes the exit watcher (a thread and an epoll set); from now on every running VM's
  // process is watched (those already running from the next observe), and an exit makes the
  // descriptor readable. The eventfd itself is made with the provider and has no watcher behind
  // it until this call. Idempotent.
  Result<int> startWatching() override;
  bool drainEvents() override;
  std::vector<ProgressEvent> takeProgress() override;

  const std::string& runRoot() const { return config_.runRoot; }

 private:
  void planOne(const PlanRequest& req, PlanResponse& resp) const;
  // Creates the tap (the placement is req.action->privateData), starts the VM and waits for it to
  // be ready, until its readiness timeout, the request's deadline or its cancel flag, whichever
  // comes first; when it is not ready the VM and its tap are removed again.
  Status startVm(const VmManifest& vm, const ApplyRequest& req, ApplyResponse& resp);
  Status stopVm(const std::string& name);
  // The values `vm` is granted (only those in `only`, when given), opened from the Secrets'
  // records in req.references; their fingerprints go to `fingerprints`.
  Result<std::vector<SecretGrant>> openSecrets(const VmManifest& vm, const ApplyRequest& req,
                                               const std::set<std::string>* only,
                                               Json& fingerprints);
  // Delivers `grants` over the VM's secrets channel; what the guest stored is recorded in
  // handles["secrets"] (by fingerprint) and reported, one progress event per value.
  Status deliver(const VmManifest& vm, const std::string& runDir,
                 const std::vector<SecretGrant>& grants, const Json& fingerprints,
                 DeliveryMode mode, std::chrono::milliseconds timeout,
                 const std::atomic<bool>* cancel, Json& handles);
  void report(ProgressEvent event);

  VmProviderConfig config_;
  std::unique_ptr<VmDriver> driver_;
  mutable std::mutex mu_;
  int eventFd_ = -1;  // eventfd the exit watcher signals
  // Made by startWatching() (hyperd); null under hyperctl, which watches nothing.
  std::unique_ptr<ExitWatcher> watcher_;
  std::map<std::string, pid_t> watched_;
  std::map<std::string, pid_t> readySeen_;  // VM name -> the process whose console said ready
  store::KeyRingCache ring_;                // opens what VMs are granted
  std::deque<ProgressEvent> progress_;      // under mu_; bounded
};

}  // namespace hyper::providers::vmm
