#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "providers/vmm/vm_driver.h"
#include "tests/fakes/fake_secret_guest.h"

namespace hyper::test {

// A VmDriver without a VMM, for unit tests of the vmm provider against the driver contract
// (vm_driver.h) alone. Each "VM" is a run dir under `root` with a console log and one log per
// channel. Its guest is a script of one step: at start it writes `readyLine` where the command
// line says (hyper.channel=NAME: that channel, else the console), unless `guestSilent`.
class FakeVmDriver : public providers::vmm::VmDriver {
 public:
  explicit FakeVmDriver(std::string root) : root_(std::move(root)) {}

  std::string_view kind() const override { return "fake"; }
  Result<providers::vmm::VmHandle> start(const providers::vmm::VmSpec& spec) override;
  Result<std::optional<providers::vmm::VmHandle>> find(const std::string& name) override;
  Result<std::vector<providers::vmm::VmHandle>> list() override;
  Result<providers::vmm::VmStatus> status(const providers::vmm::VmHandle& vm) override;
  Result<providers::vmm::StopOutcome> stop(const std::string& name,
                                           const providers::vmm::StopOptions& options) override;
  Status waitForLine(const providers::vmm::VmHandle& vm, const std::string& channel,
                     const std::string& line, std::chrono::milliseconds timeout,
                     const std::atomic<bool>* cancel = nullptr) override;

  // What the provider asked for, in order: "start NAME", "wait NAME CHANNEL LINE", "stop NAME".
  std::vector<std::string> calls() const;
  // The spec of the last start of `name`.
  providers::vmm::VmSpec lastSpec(const std::string& name) const;

  // A VM started with the secrets channel gets a FakeSecretGuest on its socket, granted the ids
  // of its command line (hyper.secret=ID:PATH); `configureGuest` may make it misbehave first.
  FakeSecretGuest* secretGuest(const std::string& name);
  std::function<void(FakeSecretGuest&)> configureGuest;

  std::string readyLine = "hyper-ready";
  bool guestSilent = false;
  // A wait for a line that is not there fails at once unless this is set; then it waits like a
  // real driver: until the line comes, the timeout passes or the cancel flag is set (looked at
  // every kWaitCancelSlice at most).
  bool waitsOutTimeout = false;
  // The timeout of each wait, in order.
  std::vector<std::chrono::milliseconds> waitTimeouts() const;

 private:
  std::string root_;
  mutable std::mutex mu_;
  std::map<std::string, providers::vmm::VmHandle> running_;
  std::map<std::string, providers::vmm::VmSpec> specs_;
  std::vector<std::string> calls_;
  std::vector<std::chrono::milliseconds> waitTimeouts_;
  std::map<std::string, std::unique_ptr<FakeSecretGuest>> guests_;
  pid_t nextPid_ = 4000000;  // above pid_max: never a real process
};

}  // namespace hyper::test
