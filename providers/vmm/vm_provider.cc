#include "providers/vmm/vm_provider.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <tuple>

#include <spdlog/spdlog.h>

#include "base/crash_point.h"
#include "base/strings.h"
#include "base/text_escape.h"
#include "netmodel/cidr.h"
#include "netmodel/link_dump.h"
#include "netmodel/link_state.h"
#include "providers/vmm/boot_files.h"
#include "providers/vmm/guest_log.h"
#include "providers/vmm/tap_device.h"
#include "providers/vmm/vm_secrets.h"
#include "reconciler/provider_kit.h"

namespace hyper::providers::vmm {
namespace fs = std::filesystem;

namespace {

const std::string kDefaultReadyLine = "hyper-ready";

// The address hyper gave a running VM, from the command line it was started with.
std::string startedIp(const VmHandle& h) {
  const std::string key = "hyper.ip=";
  size_t at = h.spec.cmdline.find(key);
  if (at == std::string::npos) {
    return "";
  }
  size_t end = h.spec.cmdline.find_first_of(" /", at);
  return h.spec.cmdline.substr(
      at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
}

std::map<std::string, netmodel::NetworkSpec> networksOf(
    const std::vector<std::shared_ptr<const Object>>* revision) {
  std::map<std::string, netmodel::NetworkSpec> out;
  if (revision == nullptr) {
    return out;
  }
  for (const auto& o : *revision) {
    if (o->id.kind == "Network") {
      if (auto n = netmodel::parseNetworkSpec(*o); n.isOk()) {
        out[o->id.name] = *n;
      }
    }
  }
  return out;
}

// A VM's placement travels from observe to plan in ObservedState::context and from plan to apply
// in PlanAction::privateData, under the same key.
constexpr const char* kPlacementKey = "placement";
// Context and private data: the Build artifacts a VM boots (boot_files.h).
constexpr const char* kBootKey = "boot";
// Private data of a replace planned only because a Build changes in this apply: apply keeps the
// VM when the Build's new artifact turns out to be the bytes it runs.
constexpr const char* kIfArtifactMovedKey = "ifArtifactMoved";
// Context: the fingerprints of the granted values now; handles: those delivered; private data:
// the ids to deliver to the running VM.
constexpr const char* kSecretsKey = "secrets";
constexpr const char* kPushSecretsKey = "pushSecrets";
// How long a running guest has to store a new value.
constexpr std::chrono::milliseconds kLiveDeliveryTimeout{30000};

// The digests of the Build artifacts a VM booted with, from its handles ({"initrd": digest}).
Json bootDigestsOf(const ManagedRecord* record) {
  if (record == nullptr || !record->handles.is_object() || !record->handles.contains("boot") ||
      !record->handles["boot"].is_object()) {
    return Json::object();
  }
  return record->handles["boot"];
}

std::optional<Placement> placementIn(const Json& data) {
  if (!data.is_object() || !data.contains(kPlacementKey)) {
    return std::nullopt;
  }
  auto p = Placement::fromJson(data[kPlacementKey]);
  return p.isOk() ? std::optional<Placement>(std::move(*p)) : std::nullopt;
}

}  // namespace

VmProviderConfig VmProviderConfig::fromEnvironment() {
  VmProviderConfig c;
  if (const char* dir = std::getenv("HYPER_VM_RUN_DIR"); dir != nullptr && *dir != '\0') {
    c.runRoot = dir;
  }
  if (const char* accel = std::getenv("HYPER_VM_ACCEL"); accel != nullptr && *accel != '\0') {
    if (auto mode = parseAccelMode(accel); mode.isOk()) {
      c.accel = *mode;
    } else {
      spdlog::warn("HYPER_VM_ACCEL: {}; using auto", mode.status().message());
    }
  }
  if (const char* max = std::getenv("HYPER_VM_LOG_MAX_BYTES"); max != nullptr && *max != '\0') {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(max, &end, 10);
    if (errno != 0 || end == max || *end != '\0' || v < 4096 || max[0] == '-') {
      spdlog::warn(
          "HYPER_VM_LOG_MAX_BYTES: expected a number of bytes >= 4096, got \"{}\"; using {}",
          escapeControl(max), c.logMaxBytes);
    } else {
      c.logMaxBytes = v;
    }
  }
  return c;
}

VmProvider::VmProvider(VmProviderConfig config)
    : VmProvider(config, std::make_unique<QemuDriver>(QemuDriverOptions{config.runRoot})) {}

VmProvider::VmProvider(VmProviderConfig config, std::unique_ptr<VmDriver> driver)
    : config_(std::move(config)), driver_(std::move(driver)), ring_(config_.stateDir) {
  eventFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

VmProvider::~VmProvider() {
  watcher_.reset();  // no callback after this
  if (eventFd_ >= 0) {
    close(eventFd_);
  }
}

Result<int> VmProvider::startWatching() {
  if (eventFd_ < 0) {
    return Status::error("eventfd for VM exits could not be made");
  }
  std::lock_guard<std::mutex> lk(mu_);
  if (watcher_) {
    return eventFd_;
  }
  int fd = eventFd_;
  auto w = ExitWatcher::create([this, fd](const std::string& key, pid_t pid) {
    spdlog::warn("VM {}: process {} exited", key, pid);
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = watched_.find(key);
      if (it != watched_.end() && it->second == pid) {
        watched_.erase(it);
      }
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(fd, &one, sizeof one);
  });
  if (w.isOk()) {
    // The VMs running now are watched from the next observe, new ones as they start.
    watcher_ = std::move(*w);
  } else {
    // Degraded, not fatal: the loop's periodic observe still finds an exited VM.
    spdlog::warn("VM exits are found by the periodic check only: {}", w.status().message());
  }
  return eventFd_;
}

bool VmProvider::drainEvents() {
  uint64_t n = 0;
  return read(eventFd_, &n, sizeof n) == sizeof n && n > 0;
}

std::vector<ProgressEvent> VmProvider::takeProgress() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<ProgressEvent> out(std::make_move_iterator(progress_.begin()),
                                 std::make_move_iterator(progress_.end()));
  progress_.clear();
  return out;
}

void VmProvider::report(ProgressEvent event) {
  constexpr size_t kMaxUntaken = 4096;
  std::lock_guard<std::mutex> lk(mu_);
  progress_.push_back(std::move(event));
  while (progress_.size() > kMaxUntaken) {
    progress_.pop_front();
  }
}

void VmProvider::validate(const ValidateRequest& req, ValidateResponse& resp) const {
  auto networks = networksOf(req.revision);
  std::map<std::pair<std::string, uint32_t>, std::string> used;  // (network, ip) -> VM
  for (const Object* o : req.objects) {
    const ObjectId& object = o->id;
    auto vm = parseVmManifest(o->id.name, o->spec);
    if (!vm.isOk()) {
      // parseVmManifest says "spec.field.path: what is wrong": the path goes to its own column.
      const std::string& message = vm.status().message();
      size_t colon = message.find(": ");
      if (message.rfind("spec.", 0) == 0 && colon != std::string::npos) {
        resp.diagnostics.error(object, message.substr(0, colon), message.substr(colon + 2));
      } else {
        resp.diagnostics.error(object, "spec", message);
      }
      continue;
    }
    if (req.revision != nullptr) {
      if (auto [path, why] = checkGrants(*vm, *req.revision); !path.empty()) {
        resp.diagnostics.error(object, path, why);
      }
    }
    if (!vm->ip) {
      continue;
    }
    std::string ip = netmodel::formatIpv4(*vm->ip);
    if (vm->network.empty()) {
      continue;  // the schema requires network.name with an ip
    }
    auto n = networks.find(vm->network);
    if (n == networks.end()) {
      continue;  // the reference check reports a missing network
    }
    const netmodel::NetworkSpec& net = n->second;
    if (!net.cidr.contains(*vm->ip) || *vm->ip == net.cidr.network() ||
        *vm->ip == net.cidr.broadcast()) {
      resp.diagnostics.error(object, "spec.network.ip",
                             ip + " is not a host address of network " + vm->network + " (" +
                                 net.cidr.str() + "): expected an address inside it");
      continue;
    }
    if (*vm->ip == net.gateway) {
      resp.diagnostics.error(object, "spec.network.ip",
                             ip + " is the gateway of network " + vm->network +
                                 ": expected another address of " + net.cidr.str());
      continue;
    }
    auto [it, fresh] = used.try_emplace({vm->network, *vm->ip}, o->id.name);
    if (!fresh) {
      resp.diagnostics.error(object, "spec.network.ip",
                             ip + " is already taken by VM " + it->second + " on network " +
                                 vm->network + ": expected an address of its own");
    }
  }
}

std::vector<Reference> VmProvider::references(const Object& object) const {
  std::vector<Reference> out;
  auto named = [&](const char* field, const char* key) -> const Json* {
    if (!object.spec->is_object() || !object.spec->contains(field) ||
        !object.spec[field].is_object() || !object.spec[field].contains(key) ||
        !object.spec[field][key].is_string()) {
      return nullptr;
    }
    return &object.spec[field][key];
  };
  if (const Json* n = named("network", "name")) {
    out.push_back({"spec.network.name", {"Network", n->get<std::string>()}});
  }
  // A Build's artifact: the Build is applied first, and its record tells apply which bytes.
  for (const char* field : {"kernel", "initrd", "disk"}) {
    if (const Json* b = named(field, "build")) {
      out.push_back({std::string("spec.") + field + ".build", {"Build", b->get<std::string>()}});
    }
  }
  // A Secret's value: the Secret is applied first, and its record is what apply delivers.
  if (object.spec->is_object() && object.spec->contains("secrets") &&
      object.spec["secrets"].is_array()) {
    const Json& list = object.spec["secrets"];
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i].is_object() && list[i].contains("secret") && list[i]["secret"].is_string()) {
        out.push_back({"spec.secrets[" + std::to_string(i) + "].secret",
                       {"Secret", list[i]["secret"].get<std::string>()}});
      }
    }
  }
  return out;
}

// Stays long: one batch for all VMs over shared host dumps; split once the vmm/ rework lands.
void VmProvider::observe(const ObserveRequest& req, ObserveResponse& resp) {
  guarded(resp.diagnostics, {}, "observe VMs", [&] {
    // Placements: every VM's address, keeping the ones in the inventory. The net provider
    // computes the same from the same input, for the policies that select VMs.
    std::map<std::string, Placement> placements;
    if (req.revision != nullptr) {
      placements = netmodel::placeRevisionVms(*req.revision, req.inventory);
    }
    std::vector<VmManifest> vms;
    std::map<std::string, Json> boots;  // the Build artifacts each VM boots, resolved
    const store::ArtifactStore artifactStore(config_.storeRoot);
    std::optional<BuildIndex> builds;  // made by the first VM that boots a Build's artifact
    // The fingerprints of the values each VM is granted, as the revision's Secrets hold them
    // now: plan compares them with the ones delivered.
    std::map<std::string, Json> secretsNow;
    for (const Object* o : req.desired) {
      if (auto vm = parseVmManifest(o->id.name, o->spec); vm.isOk()) {
        if (vm->bootsBuilds()) {
          if (!builds) {
            builds = BuildIndex::of(req.revision, req.inventory);
          }
          boots[vm->name] = bootContext(*vm, *builds, artifactStore);
        }
        if (!vm->secrets.empty() && req.revision != nullptr) {
          auto lock = ring_.lock();
          if (auto ring = ring_.get(); ring.isOk()) {
            secretsNow[vm->name] = secretFingerprintsNow(*vm, *req.revision, **ring);
          }
        }
        vms.push_back(std::move(*vm));
      }
    }

    auto running = driver_->list();
    if (!running.isOk()) {
      resp.diagnostics.error({}, "",
                             "list VMs in " + config_.runRoot + ": " + running.status().message());
      return;
    }
    std::map<std::string, const VmHandle*> byName;
    bool anyTap = false;
    for (const auto& h : *running) {
      byName[h.name] = &h;
      anyTap = anyTap || !h.spec.tap.empty();
    }
    // The taps' state, from one dump for all VMs: whether each still exists and is still an
    // isolated port of a bridge (what keeps a guest's traffic on the host's policy path).
    std::optional<netmodel::LinkTable> links;
    if (anyTap) {
      if (auto table = netmodel::dumpLinkTable(); table.isOk()) {
        links = std::move(*table);
      }
    }
    spdlog::debug("vmm: {} VM(s) running under {}", running->size(), config_.runRoot);
    // Where each VM says it is ready: (channel or "" for the console, line).
    std::map<std::string, std::pair<std::string, std::string>> readySignals;
    for (const auto& vm : vms) {
      readySignals[vm.name] = {vm.readyChannel, vm.readyLine};
    }
    for (const ManagedRecord* r : req.managed) {  // as last applied, for VMs not desired now
      if (readySignals.count(r->id.name) == 0) {
        if (auto vm = parseVmManifest(r->id.name, r->spec); vm.isOk()) {
          readySignals[vm->name] = {vm->readyChannel, vm->readyLine};
        }
      }
    }
    auto observeOne = [&](const ObjectId& id) {
      ObservedState s;
      auto it = byName.find(id.name);
      if (it == byName.end()) {
        s.fields = {{"running", false}};
        s.note = "no VM process";
        s.fingerprint = "stopped";
      } else {
        const VmHandle& h = *it->second;
        s.exists = true;
        // The guest writes its logs without end: observe runs regularly, and keeps each under
        // its cap (guest_log.h).
        std::vector<std::string> logs = {h.consoleLog};
        for (const auto& channel : h.spec.channels) {
          logs.push_back(channelLogPath(h.runDir, channel));
        }
        for (const auto& log : logs) {
          if (auto rotated = rotateLog(log, config_.logMaxBytes); !rotated.isOk()) {
            spdlog::warn("vmm: {}", rotated.status().message());
          } else if (*rotated) {
            spdlog::info("vmm: {} passed {} bytes; rotated to {}.1", log, config_.logMaxBytes, log);
          }
        }
        auto signal = readySignals.find(id.name);
        const std::string readyLine =
            signal != readySignals.end() ? signal->second.second : kDefaultReadyLine;
        const std::string readyLog = signal != readySignals.end() && !signal->second.first.empty()
                                         ? channelLogPath(h.runDir, signal->second.first)
                                         : h.consoleLog;
        // A console grows for as long as the VM runs: once a process was seen ready, its log is
        // not read again.
        bool ready = false;
        {
          std::lock_guard<std::mutex> lk(mu_);
          auto seen = readySeen_.find(id.name);
          ready = seen != readySeen_.end() && seen->second == h.pid;
        }
        if (!ready && logHasLine(readyLog, readyLine)) {
          ready = true;
          std::lock_guard<std::mutex> lk(mu_);
          readySeen_[id.name] = h.pid;
        }
        s.fields = {{"running", true},
                    {"pid", h.pid},
                    {"ip", startedIp(h)},
                    {"accel", std::string(accelName(h.accel))},
                    {"ready", ready}};
        // A tap deleted by hand leaves the VM running without a network.
        if (!h.spec.tap.empty()) {
          const netmodel::LinkState* tap = links ? links->find(h.spec.tap) : nullptr;
          if (links ? tap == nullptr : !interfaceExists(h.spec.tap)) {
            s.fields["tapGone"] = h.spec.tap;
            s.note = "tap " + h.spec.tap + " is gone";
          } else if (tap != nullptr && (tap->master.empty() || !tap->isolated)) {
            // Taken off its bridge or its isolation turned off by hand, or made by a hyper from
            // before isolated ports: its guest could reach its neighbours around the policy.
            s.fields["tapUnguarded"] = h.spec.tap;
            s.note = "tap " + h.spec.tap + " is not an isolated bridge port";
          }
        }
        s.fingerprint = "pid:" + std::to_string(h.pid);
      }
      if (auto p = placements.find(id.name); p != placements.end()) {
        s.context[kPlacementKey] = p->second.toJson();
      }
      if (auto b = boots.find(id.name); b != boots.end()) {
        s.context[kBootKey] = b->second;
      }
      if (auto f = secretsNow.find(id.name); f != secretsNow.end()) {
        s.context[kSecretsKey] = f->second;
      }
      resp.observed[id] = std::move(s);
    };
    for (const Object* o : req.desired) {
      observeOne(o->id);
    }
    for (const ManagedRecord* r : req.managed) {
      if (resp.observed.count(r->id) == 0) {
        observeOne(r->id);
      }
    }

    std::lock_guard<std::mutex> lk(mu_);
    if (watcher_) {
      for (const auto& h : *running) {
        auto it = watched_.find(h.name);
        if (it != watched_.end() && it->second == h.pid) {
          continue;
        }
        if (watcher_->watch(h.name, h.pid).isOk()) {
          watched_[h.name] = h.pid;
        }
      }
    }
  });
}

void VmProvider::plan(const PlanRequest& req, PlanResponse& resp) const {
  guarded(resp.diagnostics, req.id, "plan", [&] { planOne(req, resp); });
}

// Stays long: one VM's checks in apply order; split once the concurrent vmm/ rework lands.
void VmProvider::planOne(const PlanRequest& req, PlanResponse& resp) const {
  const ObjectId& object = req.id;
  const bool runningNow = req.observed != nullptr && req.observed->exists;
  if (planPrune(req, resp)) {
    if (resp.action && runningNow) {
      resp.action->reason += ": the VM is stopped";
    }
    return;
  }
  auto vm = parseVmManifest(req.id.name, req.desired->spec);
  if (!vm.isOk()) {
    resp.diagnostics.error(object, "spec", vm.status().message());
    return;
  }
  // Host checks that decide whether the VM can start at all: before anything is applied.
  std::error_code ec;
  if (vm->kernelBuild.empty() && !fs::is_regular_file(vm->kernel, ec)) {
    resp.diagnostics.error(object, "spec.kernel.path",
                           vm->kernel +
                               " does not exist or is not a file (expected a kernel "
                               "image on this host)");
  }
  // Build artifacts: what observe resolved from the Builds' records (boot_files.h).
  const Json boot = req.observed != nullptr && req.observed->context.contains(kBootKey)
                        ? req.observed->context[kBootKey]
                        : Json::object();
  for (const auto& [field, b] : boot.items()) {
    if (b.contains("error")) {
      resp.diagnostics.error(object, "spec." + field + ".build", b["error"].get<std::string>());
    }
  }
  if (!vm->initrd.empty() && !fs::is_regular_file(vm->initrd, ec)) {
    resp.diagnostics.error(object, "spec.initrd.path",
                           vm->initrd +
                               " does not exist or is not a file (expected an initramfs "
                               "on this host)");
  }
  if (!vm->disk.empty() && !fs::is_regular_file(vm->disk, ec)) {
    resp.diagnostics.error(object, "spec.disk.path",
                           vm->disk +
                               " does not exist or is not a file (expected a disk image on this "
                               "host)");
  }
  // Observe placed the VM (context); plan reads it from there only, and hands it to apply.
  const std::optional<Placement> placement =
      req.observed != nullptr ? placementIn(req.observed->context) : std::nullopt;
  if (!vm->network.empty()) {
    if (!placement) {
      resp.diagnostics.error(object, "spec.network",
                             "no free address on network " + vm->network +
                                 " (expected a network with room for this VM, or spec.network.ip)");
    }
  }
  if (resp.diagnostics.hasErrors()) {
    return;
  }
  // Any action on a VM that should run may start it (apply starts a VM that exited after plan):
  // each carries the placement apply boots it with.
  auto decide = [&](PlanAction action) {
    if (vm->running && !vm->network.empty()) {
      action.privateData = {{kPlacementKey, placement->toJson()}};
    }
    resp.action = std::move(action);
  };

  // The Build artifacts as they will boot: the digest, or a note that the Build is applied first.
  Json artifactsNow = Json::object();
  for (const auto& [field, b] : boot.items()) {
    artifactsNow[field] = b.value("pending", false)
                              ? Json("(what Build/" + b.value("build", "") + " makes now)")
                              : b.value("digest", Json());
  }

  PlanAction action;
  if (!req.managed) {
    action.type = ActionType::Create;
    if (!vm->running) {
      action.reason = "defined, kept stopped (running: false)";
    } else {
      action.disruption = Disruption::Start;
      action.reason = runningNow ? "the VM runs (started by hyper) but is not in the inventory"
                                 : "not on the host";
    }
    diffJson("spec", nullptr, vm->bootJson(), action.changes);
    if (!artifactsNow.empty()) {
      diffJson("build", nullptr, artifactsNow, action.changes);
    }
    decide(std::move(action));
    return;
  }

  auto previous = parseVmManifest(req.id.name, req.managed->spec);
  Json before = previous.isOk() ? previous->bootJson() : Json::object();
  std::vector<FieldChange> bootChanges;
  diffJson("spec", before, vm->bootJson(), bootChanges);
  // Which bytes a Build artifact is: the digest booted (handles) against the Build's now.
  std::vector<FieldChange> artifactChanges;
  if (vm->running) {
    Json artifactsThen = bootDigestsOf(req.managed);
    for (auto it = artifactsThen.begin(); it != artifactsThen.end();) {
      it = artifactsNow.contains(it.key()) ? std::next(it) : artifactsThen.erase(it);
    }
    diffJson("build", artifactsThen, artifactsNow, artifactChanges);
  }
  const bool wasRunning = previous.isOk() ? previous->running : true;

  if ((!bootChanges.empty() || !artifactChanges.empty()) && vm->running) {
    std::vector<std::string> what;
    for (auto& c : bootChanges) {
      c.forcesReplace = true;
      what.push_back(c.path.substr(5));  // without "spec."
    }
    bool onlyPending = bootChanges.empty();
    for (auto& c : artifactChanges) {
      c.forcesReplace = true;
      const std::string field = c.path.substr(6);  // without "build."
      const bool pending = boot.contains(field) && boot[field].value("pending", false);
      onlyPending = onlyPending && pending;
      what.push_back(field + (pending ? " (its Build is applied first)" : " from its Build"));
    }
    action.type = ActionType::Replace;
    action.disruption = Disruption::Replace;
    action.reason = (bootChanges.empty() ? "a new " : "spec changed (") + join(what, ", ") +
                    (bootChanges.empty() ? "" : ")") + ": the VM is stopped and started anew";
    action.changes = std::move(bootChanges);
    action.changes.insert(action.changes.end(), artifactChanges.begin(), artifactChanges.end());
    decide(std::move(action));
    if (onlyPending) {
      resp.action->privateData[kIfArtifactMovedKey] = true;
    }
    return;
  }
  if (vm->running && runningNow && req.observed->fields.contains("tapGone")) {
    const std::string tap = req.observed->fields["tapGone"].get<std::string>();
    action.type = ActionType::Update;
    action.disruption = Disruption::Restart;
    action.drift = true;
    action.reason = "its tap " + tap +
                    " was deleted (by hand?): the VM is restarted on a new one to get its "
                    "network back";
    action.changes.push_back({"status.tap", tap, nullptr});
    decide(std::move(action));
    return;
  }
  if (vm->running && runningNow && req.observed->fields.contains("tapUnguarded")) {
    const std::string tap = req.observed->fields["tapUnguarded"].get<std::string>();
    action.type = ActionType::Update;
    action.disruption = Disruption::InPlace;
    action.drift = true;
    action.reason = "its tap " + tap +
                    " is no longer an isolated port of its bridge (changed by hand, or made by an "
                    "older hyper): set again, without a restart";
    action.changes.push_back({"status.tapIsolated", false, true});
    decide(std::move(action));
    return;
  }
  if (vm->running && !runningNow) {
    action.type = ActionType::Update;
    action.disruption = Disruption::Start;
    action.drift = wasRunning;
    action.reason = wasRunning ? "the VM process is gone (exited or killed)" : "running: true";
    action.changes.push_back({"status.running", false, true});
    decide(std::move(action));
    return;
  }
  if (!vm->running && runningNow) {
    action.type = ActionType::Update;
    action.disruption = Disruption::Stop;
    action.drift = !wasRunning;
    action.reason = wasRunning ? "running: false" : "the VM was started by hand";
    action.changes.push_back({"status.running", true, false});
    decide(std::move(action));
    return;
  }
  // A granted value changed (its Secret was resealed with another value, or its file changed):
  // delivered to the running guest, or the VM restarted with it (onChange: restart).
  if (vm->running && runningNow && !vm->secrets.empty() &&
      req.observed->context.contains(kSecretsKey)) {
    const Json& now = req.observed->context[kSecretsKey];
    const Json delivered = req.managed->handles.is_object()
                               ? req.managed->handles.value(kSecretsKey, Json::object())
                               : Json::object();
    Json push = Json::array();
    bool restartVm = false;
    for (const auto& m : vm->secrets) {
      const Json fp = now.value(m.id(), Json());
      if (!fp.is_string() || delivered.value(m.id(), Json()) == fp) {
        continue;  // unknown now (the Secret's own plan says why), or the value delivered
      }
      push.push_back(m.id());
      restartVm = restartVm || m.restartOnChange;
      action.changes.push_back({"secrets." + m.id(), "(delivered)", "(value changed)"});
    }
    if (!push.empty()) {
      action.type = ActionType::Update;
      action.disruption = restartVm ? Disruption::Restart : Disruption::InPlace;
      action.reason = restartVm ? "a secret it gets changed (onChange: restart): the VM is "
                                  "restarted with the new value"
                                : "a secret it gets changed: the new value is delivered to the "
                                  "running guest";
      decide(std::move(action));
      if (!restartVm) {
        resp.action->privateData[kPushSecretsKey] = std::move(push);
      }
      return;
    }
  }
  // Everything else changes nothing on the host: labels, readiness, drift policy, running while
  // stopped, boot fields of a stopped VM (used at the next start).
  std::vector<FieldChange> rest;
  diffJson("spec", req.managed->spec, req.desired->spec, rest);
  if (req.managed->labels != req.desired->labels) {
    Json b = Json::object(), a = Json::object();
    for (const auto& [k, v] : req.managed->labels) {
      b[k] = v;
    }
    for (const auto& [k, v] : req.desired->labels) {
      a[k] = v;
    }
    rest.push_back({"metadata.labels", b, a});
  }
  if (rest.empty()) {
    return;
  }
  action.type = ActionType::Update;
  action.disruption = Disruption::InPlace;
  action.reason = "spec changed; the VM keeps running";
  action.changes = std::move(rest);
  decide(std::move(action));
}

Status VmProvider::stopVm(const std::string& name) {
  auto stopped = driver_->stop(name, config_.stop);
  if (!stopped.isOk()) {
    return stopped.status().withContext("stop VM " + name);
  }
  crashPoint("vm-stopped VM/" + name);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (watcher_) {
      watcher_->unwatch(name);
    }
    watched_.erase(name);
  }
  return deleteTap(tapNameFor(name), name).withContext("remove the tap of VM " + name);
}

Result<std::vector<SecretGrant>> VmProvider::openSecrets(const VmManifest& vm,
                                                         const ApplyRequest& req,
                                                         const std::set<std::string>* only,
                                                         Json& fingerprints) {
  auto lock = ring_.lock();
  HYPER_ASSIGN_OR_RETURN(const store::KeyRing* ring, ring_.get());
  return openGrants(vm, req.references, *ring, only, fingerprints);
}

Status VmProvider::deliver(const VmManifest& vm, const std::string& runDir,
                           const std::vector<SecretGrant>& grants, const Json& fingerprints,
                           DeliveryMode mode, std::chrono::milliseconds timeout,
                           const std::atomic<bool>* cancel, Json& handles) {
  std::vector<std::string> stored;
  Status delivered = deliverSecrets(channelSocketPath(runDir, kSecretsChannel), grants, mode,
                                    timeout, cancel, &stored);
  if (!handles.contains(kSecretsKey) || !handles[kSecretsKey].is_object()) {
    handles[kSecretsKey] = Json::object();
  }
  const ObjectId vmId("VM", vm.name);
  auto pathOf = [&](const std::string& id) {
    for (const auto& m : vm.secrets) {
      if (m.id() == id) {
        return m.path;
      }
    }
    return std::string();
  };
  const char* how = mode == DeliveryMode::Boot ? "boot" : "live";
  for (const auto& id : stored) {
    handles[kSecretsKey][id] = fingerprints.value(id, Json());
    ProgressEvent e;
    e.object = vmId;
    e.type = "secret-delivered";
    e.message = "secret " + id + " delivered to " + vmId.str() + " at " + pathOf(id) +
                (mode == DeliveryMode::Push ? " (new value, live)" : "");
    e.details = {{"secret", id}, {"path", pathOf(id)}, {"delivery", how}};
    e.samples.push_back({"hyper_secret_deliveries_total",
                         "Secret values delivered to VMs, by result",
                         {{"result", "delivered"}}});
    report(std::move(e));
  }
  if (!delivered.isOk()) {
    std::string missing;
    size_t failed = 0;
    for (const auto& g : grants) {
      if (std::find(stored.begin(), stored.end(), g.id) == stored.end()) {
        missing += (missing.empty() ? "" : ", ") + g.id;
        ++failed;
      }
    }
    ProgressEvent e;
    e.object = vmId;
    e.type = "secret-delivery-failed";
    e.level = "warn";
    e.message =
        "secret " + missing + " not delivered to " + vmId.str() + ": " + delivered.message();
    e.details = {{"secrets", missing}, {"delivery", how}};
    e.samples.push_back({"hyper_secret_deliveries_total",
                         "Secret values delivered to VMs, by result",
                         {{"result", "failed"}},
                         static_cast<double>(failed)});
    report(std::move(e));
    return delivered.withContext("deliver " + missing + " to VM " + vm.name);
  }
  return Status::ok();
}

Status VmProvider::startVm(const VmManifest& vm, const ApplyRequest& req, ApplyResponse& resp) {
  // The granted values are opened before anything starts: a VM never runs with a part of them.
  std::vector<SecretGrant> grants;
  Json fingerprints = Json::object();
  if (!vm.secrets.empty()) {
    HYPER_ASSIGN_OR_RETURN(grants, openSecrets(vm, req, nullptr, fingerprints));
  }
  VmSpec spec;
  spec.name = vm.name;
  spec.vcpus = vm.vcpus;
  spec.memoryMiB = vm.memoryMiB;
  spec.kernel = vm.kernel;
  spec.initrd = vm.initrd;
  spec.disk = vm.disk;
  spec.diskReadOnly = vm.diskReadOnly;
  Json boot = Json::object();  // the Build artifacts it boots, by digest
  const store::ArtifactStore artifactStore(config_.storeRoot);
  for (auto [field, ref, path] : {std::tuple{"kernel", &vm.kernelBuild, &spec.kernel},
                                  std::tuple{"initrd", &vm.initrdBuild, &spec.initrd},
                                  std::tuple{"disk", &vm.diskBuild, &spec.disk}}) {
    if (ref->empty()) {
      continue;
    }
    HYPER_ASSIGN_OR_RETURN(std::string digest, artifactDigest(*ref, req.references, artifactStore));
    *path = artifactStore.pathOf(digest);
    boot[field] = digest;
  }
  spec.cmdline = vm.cmdline;
  spec.mac = vm.mac;
  spec.accel = config_.accel;
  if (!vm.readyChannel.empty()) {
    // The port, and its name for the guest (hyper's guest image writes its line there).
    spec.channels.push_back(vm.readyChannel);
    spec.cmdline += (spec.cmdline.empty() ? "" : " ") + ("hyper.channel=" + vm.readyChannel);
  }
  if (!vm.secrets.empty()) {
    // The channel, and what the guest asks for on it (ids and paths; never a value).
    spec.socketChannels.push_back(kSecretsChannel);
    spec.cmdline += (spec.cmdline.empty() ? "" : " ") + vm.secretArgs();
  }
  Json handles = {{"mac", vm.mac}};
  if (!boot.empty()) {
    handles["boot"] = boot;  // also what keeps them from the store's gc
  }
  if (!vm.network.empty()) {
    std::optional<Placement> planned = placementIn(req.action->privateData);
    if (!planned) {
      return Status::error("no address on network " + vm.network +
                           " in the planned action (an action not made by plan?)");
    }
    const Placement& p = *planned;
    spec.tap = tapNameFor(vm.name);
    HYPER_RETURN_IF_ERROR(createTap(spec.tap, p.bridge, vm.name));
    crashPoint("tap-created VM/" + vm.name);
    spec.cmdline += (spec.cmdline.empty() ? "" : " ") + p.cmdlineArgs();
    handles["ip"] = p.ipString();
    handles["tap"] = spec.tap;
    handles["bridge"] = p.bridge;
  }
  auto started = driver_->start(spec);
  if (!started.isOk()) {
    Status cleanup = stopVm(vm.name);
    (void)cleanup;
    return started.status().withContext("start VM " + vm.name);
  }
  crashPoint("vm-started VM/" + vm.name);
  // The VM's own readiness timeout, cut short by the apply's deadline or by hyperd stopping.
  const std::chrono::milliseconds readyTimeout = std::chrono::seconds(vm.readyTimeoutSeconds);
  const std::chrono::milliseconds wait = req.timeLeft(readyTimeout);
  if (!grants.empty()) {
    // The guest asks for its secrets before it says it is ready: within the same time.
    Status delivered = deliver(vm, started->runDir, grants, fingerprints, DeliveryMode::Boot, wait,
                               req.cancel, handles);
    if (!delivered.isOk()) {
      Status cleanup = stopVm(vm.name);
      (void)cleanup;
      return delivered.withContext("VM " + vm.name + " was stopped again");
    }
  }
  Status ready = driver_->waitForLine(*started, vm.readyChannel, vm.readyLine,
                                      req.timeLeft(readyTimeout), req.cancel);
  if (!ready.isOk()) {
    // Not ready is not started: leave nothing behind, and the loop retries with backoff.
    Status cleanup = stopVm(vm.name);
    (void)cleanup;
    std::string where =
        vm.readyChannel.empty() ? "console line" : "line on channel " + vm.readyChannel + ":";
    std::string why =
        "VM " + vm.name + " did not become ready (" + where + " \"" + vm.readyLine + "\")";
    if (wait < readyTimeout && !req.cancelled()) {
      why += " before the apply's deadline (" + std::to_string(wait.count()) + " ms left of its " +
             std::to_string(vm.readyTimeoutSeconds) + " s readiness timeout)";
    }
    return ready.withContext(why);
  }
  {
    // Under hyperd the new process is watched at once, not from the next observe.
    std::lock_guard<std::mutex> lk(mu_);
    readySeen_[vm.name] = started->pid;
    if (watcher_ && watcher_->watch(vm.name, started->pid).isOk()) {
      watched_[vm.name] = started->pid;
    }
  }
  handles["pid"] = started->pid;
  handles["accel"] = std::string(accelName(started->accel));
  handles["runDir"] = started->runDir;
  resp.handles = std::move(handles);
  resp.fingerprint = "pid:" + std::to_string(started->pid);
  return Status::ok();
}

void VmProvider::apply(const ApplyRequest& req, ApplyResponse& resp) {
  const ObjectId object = req.action ? req.action->id : ObjectId{};
  guarded(resp.diagnostics, object, "apply", [&] {
    if (!req.action) {
      resp.diagnostics.error({}, "", "apply without an action");
      return;
    }
    const ObjectId& id = req.action->id;
    auto failWith = [&](const Status& s) { resp.diagnostics.error(object, "", s.message()); };
    if (req.action->type == ActionType::Delete) {
      if (Status s = stopVm(id.name); !s.isOk()) {
        failWith(s);
      }
      return;
    }
    if (!req.desired) {
      failWith(Status::error("no desired object for a " +
                             std::string(actionTypeName(req.action->type))));
      return;
    }
    auto vm = parseVmManifest(id.name, req.desired->spec);
    if (!vm.isOk()) {
      failWith(vm.status());
      return;
    }
    auto found = driver_->find(id.name);
    if (!found.isOk()) {
      failWith(found.status());
      return;
    }
    const bool runningNow = found->has_value();
    const bool restart = req.action->disruption == Disruption::Restart;
    if (req.action->type == ActionType::Replace && runningNow && req.managed &&
        req.action->privateData.is_object() &&
        req.action->privateData.value(kIfArtifactMovedKey, false)) {
      // Planned before its Build ran: keep the VM when the Build made the bytes it runs.
      const store::ArtifactStore artifactStore(config_.storeRoot);
      Json now = Json::object();
      for (auto [field, ref] : vm->builtFiles()) {
        if (!ref->empty()) {
          auto digest = artifactDigest(*ref, req.references, artifactStore);
          now[field] = digest.isOk() ? Json(*digest) : Json();
        }
      }
      if (now == bootDigestsOf(req.managed)) {
        resp.handles = req.managed->handles;
        resp.fingerprint = req.managed->fingerprint;
        return;
      }
    }
    if ((req.action->type == ActionType::Replace || restart) && runningNow) {
      if (Status s = stopVm(id.name); !s.isOk()) {
        failWith(s);
        return;
      }
    }
    if (!vm->running) {
      if (runningNow && req.action->type != ActionType::Replace) {
        if (Status s = stopVm(id.name); !s.isOk()) {
          failWith(s);
          return;
        }
      }
      resp.handles = {{"mac", vm->mac}, {"running", false}};
      if (req.managed && req.managed->handles.is_object() && req.managed->handles.contains("ip")) {
        resp.handles["ip"] = req.managed->handles["ip"];  // kept for the next start
      }
      resp.fingerprint = "stopped";
      return;
    }
    if (req.action->disruption == Disruption::InPlace && runningNow && req.managed &&
        req.action->privateData.is_object() && req.action->privateData.contains(kPushSecretsKey)) {
      // New values for the running guest, over its secrets channel.
      std::set<std::string> only;
      for (const auto& id : req.action->privateData[kPushSecretsKey]) {
        if (id.is_string()) {
          only.insert(id.get<std::string>());
        }
      }
      Json fingerprints = Json::object();
      auto grants = openSecrets(*vm, req, &only, fingerprints);
      if (!grants.isOk()) {
        failWith(grants.status());
        return;
      }
      Json handles = req.managed->handles;
      Status delivered = deliver(*vm, (*found)->runDir, *grants, fingerprints, DeliveryMode::Push,
                                 req.timeLeft(kLiveDeliveryTimeout), req.cancel, handles);
      if (!delivered.isOk()) {
        failWith(delivered);
        return;
      }
      resp.handles = std::move(handles);
      resp.fingerprint = req.managed->fingerprint;
      return;
    }
    if (req.action->disruption == Disruption::InPlace && runningNow && req.managed) {
      // The tap is put back on its bridge as an isolated port (createTap is idempotent): what a
      // tapUnguarded drift needs, and a no-op otherwise.
      const Json& h = req.managed->handles;
      if (h.is_object() && h.value("tap", Json()).is_string() &&
          h.value("bridge", Json()).is_string()) {
        if (Status s =
                createTap(h["tap"].get<std::string>(), h["bridge"].get<std::string>(), id.name);
            !s.isOk()) {
          failWith(s);
          return;
        }
      }
      resp.handles = req.managed->handles;
      resp.fingerprint = req.managed->fingerprint;
      return;
    }
    if (Status s = startVm(*vm, req, resp); !s.isOk()) {
      failWith(s);
    }
  });
}

}  // namespace hyper::providers::vmm
