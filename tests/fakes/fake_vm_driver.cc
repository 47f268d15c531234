#include "tests/fakes/fake_vm_driver.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

namespace hyper::test {

namespace fs = std::filesystem;
using namespace providers::vmm;

Result<VmHandle> FakeVmDriver::start(const VmSpec& spec) {
  std::lock_guard<std::mutex> lk(mu_);
  calls_.push_back("start " + spec.name);
  if (auto it = running_.find(spec.name); it != running_.end()) {
    return it->second;
  }
  VmHandle h;
  h.name = spec.name;
  h.driver = "fake";
  h.pid = nextPid_++;
  h.runDir = root_ + "/" + spec.name;
  h.consoleLog = h.runDir + "/console.log";
  h.controlSocket = h.runDir + "/api.sock";
  h.spec = spec;
  fs::create_directories(h.runDir);
  std::ofstream(h.consoleLog) << "fake boot\n";
  for (const auto& c : spec.channels) {
    std::ofstream(channelLogPath(h.runDir, c)) << "";
  }
  if (!guestSilent) {
    std::string where = h.consoleLog;
    std::istringstream words(spec.cmdline);
    for (std::string w; words >> w;) {
      if (w.rfind("hyper.channel=", 0) == 0) {
        where = channelLogPath(h.runDir, w.substr(14));
      }
    }
    std::ofstream(where, std::ios::app) << readyLine << "\n";
  }
  for (const auto& channel : spec.socketChannels) {
    std::vector<std::string> ids;
    std::istringstream args(spec.cmdline);
    for (std::string w; args >> w;) {
      if (w.rfind("hyper.secret=", 0) == 0) {
        ids.push_back(w.substr(13, w.find(':') - 13));
      }
    }
    auto guest = std::make_unique<FakeSecretGuest>(channelSocketPath(h.runDir, channel), ids);
    if (configureGuest) {
      configureGuest(*guest);
    }
    guest->start();
    guests_[spec.name] = std::move(guest);
  }
  running_[spec.name] = h;
  specs_[spec.name] = spec;
  return h;
}

FakeSecretGuest* FakeVmDriver::secretGuest(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = guests_.find(name);
  return it == guests_.end() ? nullptr : it->second.get();
}

Result<std::optional<VmHandle>> FakeVmDriver::find(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = running_.find(name);
  return it == running_.end() ? std::optional<VmHandle>() : std::optional<VmHandle>(it->second);
}

Result<std::vector<VmHandle>> FakeVmDriver::list() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<VmHandle> out;
  for (const auto& [name, h] : running_) {
    out.push_back(h);
  }
  return out;
}

Result<VmStatus> FakeVmDriver::status(const VmHandle& vm) {
  std::lock_guard<std::mutex> lk(mu_);
  VmStatus s;
  s.state = running_.count(vm.name) ? VmRunState::Running : VmRunState::Stopped;
  s.detail = s.state == VmRunState::Running ? "running" : "stopped";
  return s;
}

Result<StopOutcome> FakeVmDriver::stop(const std::string& name, const StopOptions&) {
  std::lock_guard<std::mutex> lk(mu_);
  calls_.push_back("stop " + name);
  guests_.erase(name);
  std::error_code ec;
  fs::remove_all(root_ + "/" + name, ec);
  return running_.erase(name) ? StopOutcome::Powerdown : StopOutcome::AlreadyStopped;
}

Status FakeVmDriver::waitForLine(const VmHandle& vm, const std::string& channel,
                                 const std::string& line, std::chrono::milliseconds timeout,
                                 const std::atomic<bool>* cancel) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    calls_.push_back("wait " + vm.name + " " + (channel.empty() ? "console" : channel) + " " +
                     line);
    waitTimeouts_.push_back(timeout);
  }
  std::string path = channel.empty() ? vm.consoleLog : channelLogPath(vm.runDir, channel);
  auto hasLine = [&] {
    std::ifstream in(path);
    for (std::string l; std::getline(in, l);) {
      if (l == line) {
        return true;
      }
    }
    return false;
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (hasLine()) {
      return Status::ok();
    }
    if (cancel != nullptr && cancel->load()) {
      return Status::error("wait for '" + line + "' on VM " + vm.name + " <- " +
                           waitCancelledMessage(vm.name) + " (fake)");
    }
    if (!waitsOutTimeout || std::chrono::steady_clock::now() >= deadline) {
      return Status::error("wait for '" + line + "' on VM " + vm.name + " <- timed out (fake)");
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(20)));
  }
}

std::vector<std::chrono::milliseconds> FakeVmDriver::waitTimeouts() const {
  std::lock_guard<std::mutex> lk(mu_);
  return waitTimeouts_;
}

std::vector<std::string> FakeVmDriver::calls() const {
  std::lock_guard<std::mutex> lk(mu_);
  return calls_;
}

VmSpec FakeVmDriver::lastSpec(const std::string& name) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = specs_.find(name);
  return it == specs_.end() ? VmSpec{} : it->second;
}

}  // namespace hyper::test
