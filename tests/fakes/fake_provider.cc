#include "tests/fakes/fake_provider.h"

#include <algorithm>
#include <iterator>
#include <thread>

#include "base/sha256.h"

namespace hyper::testing {

namespace {

// "spec.bridge.name" -> "bridge"; "spec" (the whole spec) -> "".
std::string topLevelField(const std::string& path) {
  constexpr std::string_view kPrefix = "spec.";
  if (path.rfind(kPrefix, 0) != 0) {
    return "";
  }
  std::string rest = path.substr(kPrefix.size());
  return rest.substr(0, rest.find_first_of(".["));
}

std::string fingerprintOf(const Json& spec) { return sha256Hex(canonicalJson(spec)); }

}  // namespace

FakeProvider::FakeProvider(std::string name, std::vector<std::string> kinds)
    : name_(std::move(name)), kinds_(std::move(kinds)) {}

void FakeProvider::validate(const ValidateRequest& req, ValidateResponse& resp) const {
  for (const Object* o : req.objects) {
    if (!o->spec->is_object()) {
      continue;
    }
    auto it = o->spec->find("invalid");
    if (it != o->spec->end() && *it == true) {
      resp.diagnostics.error(o->id, "spec.invalid", "injected validation error");
    }
  }
}

std::vector<Reference> FakeProvider::references(const Object& object) const {
  std::vector<Reference> out;
  const Json& spec = object.spec;
  if (!spec.is_object() || !spec.contains("dependsOn")) {
    return out;
  }
  std::string kind = object.id.kind;
  if (auto k = spec.find("dependsOnKind"); k != spec.end() && k->is_string()) {
    kind = k->get<std::string>();
  }
  const Json& deps = spec["dependsOn"];
  if (deps.is_string()) {
    out.push_back({"spec.dependsOn", {kind, deps.get<std::string>()}});
  } else if (deps.is_array()) {
    for (size_t i = 0; i < deps.size(); ++i) {
      if (deps[i].is_string()) {
        out.push_back({appendIndex("spec.dependsOn", i), {kind, deps[i].get<std::string>()}});
      }
    }
  }
  return out;
}

FakeProvider::HostEntry FakeProvider::hostEntry(Json spec) {
  std::string fingerprint = fingerprintOf(spec);
  return {std::move(spec), std::move(fingerprint)};
}

void FakeProvider::observe(const ObserveRequest& req, ObserveResponse& resp) {
  // Every requested id once, in order: an object is usually both desired and managed, and both
  // lists usually come sorted (revision order, inventory order), so they are merged, not looked up.
  std::vector<const ObjectId*> ids;
  ids.reserve(req.desired.size() + req.managed.size());
  for (const Object* o : req.desired) {
    ids.push_back(&o->id);
  }
  const auto managedBegin = static_cast<std::ptrdiff_t>(ids.size());
  for (const ManagedRecord* m : req.managed) {
    ids.push_back(&m->id);
  }
  auto less = [](const ObjectId* a, const ObjectId* b) { return *a < *b; };
  auto mid = ids.begin() + managedBegin;
  if (!std::is_sorted(ids.begin(), mid, less)) {
    std::sort(ids.begin(), mid, less);
  }
  if (!std::is_sorted(mid, ids.end(), less)) {
    std::sort(mid, ids.end(), less);
  }
  std::inplace_merge(ids.begin(), mid, ids.end(), less);
  ids.erase(std::unique(ids.begin(), ids.end(),
                        [](const ObjectId* a, const ObjectId* b) { return *a == *b; }),
            ids.end());
  if (req.scope) {
    std::erase_if(ids, [&](const ObjectId* id) {
      return !std::binary_search(req.scope->begin(), req.scope->end(), *id);
    });
  }

  std::lock_guard<std::mutex> lk(mu_);
  ++observeCalls_;
  lastObserved_.clear();
  for (const ObjectId* id : ids) {
    lastObserved_.push_back(*id);
  }
  if (failObserve_) {
    resp.diagnostics.error({}, "", "injected observe failure");
    return;
  }
  auto host = host_.begin();
  for (const ObjectId* id : ids) {
    // The next host entry is the common case; a search otherwise (the host has others, or fewer).
    if (host == host_.end() || host->first != *id) {
      auto next = host == host_.end() ? host : std::next(host);
      host = next != host_.end() && next->first == *id ? next : host_.lower_bound(*id);
    }
    ObservedState s;
    if (host != host_.end() && host->first == *id) {
      s.exists = true;
      s.fields = host->second.spec;
      s.fingerprint = host->second.fingerprint;
    }
    resp.observed.insert_or_assign(resp.observed.end(), *id, std::move(s));
  }
}

void FakeProvider::plan(const PlanRequest& req, PlanResponse& resp) const {
  if (!req.desired) {
    if (!req.managed) {
      return;  // never ours: left alone
    }
    PlanAction a;
    a.id = req.id;
    a.provider = name_;
    a.type = ActionType::Delete;
    a.reason = "gone from the source";
    resp.action = std::move(a);
    return;
  }
  const Json& desired = req.desired->spec;
  bool onHost = req.observed && req.observed->exists;
  if (onHost && req.observed->fields == desired) {
    return;  // in sync, the common case: decided before anything is built or copied
  }
  std::set<std::string> replaceFields;
  std::set<std::string> sensitiveFields;
  {
    std::lock_guard<std::mutex> lk(mu_);
    replaceFields = replaceFields_;
    sensitiveFields = sensitiveFields_;
  }
  PlanAction a;
  a.id = req.id;
  a.provider = name_;
  if (!onHost) {
    a.type = ActionType::Create;
    a.drift = req.managed != nullptr;
    a.reason = a.drift ? "deleted from the host by hand" : "not on the host";
    diffJson("spec", Json(), desired, a.changes);
  } else {
    a.type = ActionType::Update;
    a.drift = req.managed && req.managed->spec == desired;
    a.reason = a.drift ? "changed on the host by hand" : "spec changed";
    diffJson("spec", req.observed->fields, desired, a.changes);
    for (auto& c : a.changes) {
      if (replaceFields.count(topLevelField(c.path)) > 0) {
        c.forcesReplace = true;
        a.type = ActionType::Replace;
      }
    }
  }
  for (auto& c : a.changes) {
    c.sensitive = sensitiveFields.count(topLevelField(c.path)) > 0;
  }
  resp.action = std::move(a);
}

void FakeProvider::apply(const ApplyRequest& req, ApplyResponse& resp) {
  if (!req.action) {
    resp.diagnostics.error({}, "", "apply without an action");
    return;
  }
  const PlanAction& action = *req.action;
  std::chrono::milliseconds delay;
  bool fail = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    applyOrder_.push_back(action.id);
    ++inFlight_;
    maxInFlight_ = std::max(maxInFlight_, inFlight_);
    delay = applyDelay_;
    fail = failApply_.count(action.id) > 0;
    lastDeadline_ = req.deadline;
    lastCancel_ = req.cancel;
    referencesSeen_[action.id] = req.references;
  }
  // Sleeping outside the lock lets independent applies overlap, which is what the delay is for.
  if (delay.count() > 0) {
    std::this_thread::sleep_for(delay);
  }
  // The host's new entry is built (and hashed) outside the lock, as independent applies would.
  std::optional<HostEntry> written;
  if (!fail && action.type != ActionType::Delete && req.desired) {
    written = hostEntry(req.desired->spec);
  }
  std::lock_guard<std::mutex> lk(mu_);
  --inFlight_;
  if (fail) {
    resp.diagnostics.error(action.id, "", "injected failure");
    resp.retryAfter = failRetryAfter_;
    resp.terminal = failTerminal_;
    return;
  }
  if (action.type == ActionType::Delete) {
    host_.erase(action.id);
    return;
  }
  if (!written) {
    resp.diagnostics.error(action.id, "",
                           std::string(actionTypeName(action.type)) + " without a desired object");
    return;
  }
  resp.handles = {{"name", action.id.name}};
  resp.fingerprint = written->fingerprint;
  host_.insert_or_assign(action.id, std::move(*written));
}

void FakeProvider::setReplaceFields(std::set<std::string> topLevelSpecFields) {
  std::lock_guard<std::mutex> lk(mu_);
  replaceFields_ = std::move(topLevelSpecFields);
}

void FakeProvider::setSensitiveFields(std::set<std::string> topLevelSpecFields) {
  std::lock_guard<std::mutex> lk(mu_);
  sensitiveFields_ = std::move(topLevelSpecFields);
}

void FakeProvider::setFailApply(std::set<ObjectId> ids) {
  std::lock_guard<std::mutex> lk(mu_);
  failApply_ = std::move(ids);
}

void FakeProvider::setFailureHint(std::optional<std::chrono::milliseconds> retryAfter,
                                  bool terminal) {
  std::lock_guard<std::mutex> lk(mu_);
  failRetryAfter_ = retryAfter;
  failTerminal_ = terminal;
}

std::map<ObjectId, ManagedRecord> FakeProvider::referencesSeenBy(const ObjectId& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = referencesSeen_.find(id);
  return it == referencesSeen_.end() ? std::map<ObjectId, ManagedRecord>{} : it->second;
}

ApplyRequest::Clock::time_point FakeProvider::lastApplyDeadline() const {
  std::lock_guard<std::mutex> lk(mu_);
  return lastDeadline_;
}

const std::atomic<bool>* FakeProvider::lastApplyCancel() const {
  std::lock_guard<std::mutex> lk(mu_);
  return lastCancel_;
}

void FakeProvider::setFailObserve(bool fail) {
  std::lock_guard<std::mutex> lk(mu_);
  failObserve_ = fail;
}

void FakeProvider::setApplyDelay(std::chrono::milliseconds delay) {
  std::lock_guard<std::mutex> lk(mu_);
  applyDelay_ = delay;
}

void FakeProvider::setHostState(const ObjectId& id, Json spec) {
  HostEntry entry = hostEntry(std::move(spec));
  std::lock_guard<std::mutex> lk(mu_);
  host_.insert_or_assign(id, std::move(entry));
}

void FakeProvider::eraseHostState(const ObjectId& id) {
  std::lock_guard<std::mutex> lk(mu_);
  host_.erase(id);
}

std::optional<Json> FakeProvider::hostState(const ObjectId& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = host_.find(id);
  if (it == host_.end()) {
    return std::nullopt;
  }
  return it->second.spec;
}

std::map<ObjectId, Json> FakeProvider::hostSnapshot() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::map<ObjectId, Json> out;
  for (const auto& [id, entry] : host_) {
    out.emplace_hint(out.end(), id, entry.spec);
  }
  return out;
}

int FakeProvider::observeCalls() const {
  std::lock_guard<std::mutex> lk(mu_);
  return observeCalls_;
}

std::vector<ObjectId> FakeProvider::lastObserved() const {
  std::lock_guard<std::mutex> lk(mu_);
  return lastObserved_;
}

std::optional<std::vector<ObjectId>> FakeProvider::alsoMovedBy(const RevisionChange& change) const {
  Moves moves;
  {
    std::lock_guard<std::mutex> lk(mu_);
    moves = moves_;
  }
  return moves ? moves(change) : std::nullopt;
}

void FakeProvider::setMoves(Moves moves) {
  std::lock_guard<std::mutex> lk(mu_);
  moves_ = std::move(moves);
}

bool FakeProvider::batchesApplies() const {
  std::lock_guard<std::mutex> lk(mu_);
  return batches_;
}

void FakeProvider::applyBatch(const std::vector<const ApplyRequest*>& reqs,
                              std::vector<ApplyResponse>& resps) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    batchSizes_.push_back(reqs.size());
  }
  Provider::applyBatch(reqs, resps);
}

void FakeProvider::setBatches(bool batches) {
  std::lock_guard<std::mutex> lk(mu_);
  batches_ = batches;
}

std::vector<size_t> FakeProvider::batchSizes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return batchSizes_;
}

int FakeProvider::applyCalls() const {
  std::lock_guard<std::mutex> lk(mu_);
  return static_cast<int>(applyOrder_.size());
}

std::vector<ObjectId> FakeProvider::applyOrder() const {
  std::lock_guard<std::mutex> lk(mu_);
  return applyOrder_;
}

int FakeProvider::maxConcurrentApplies() const {
  std::lock_guard<std::mutex> lk(mu_);
  return maxInFlight_;
}

void FakeProvider::resetCounters() {
  std::lock_guard<std::mutex> lk(mu_);
  observeCalls_ = 0;
  applyOrder_.clear();
  maxInFlight_ = inFlight_;
}

}  // namespace hyper::testing
