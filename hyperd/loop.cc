#include "hyperd/loop.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string_view>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "base/log_context.h"
#include "base/memory.h"
#include "base/sha256.h"
#include "controller/hold.h"
#include "hyperd/loop_steps.h"

namespace hyper::controller {

namespace {

// The field-level difference of an action, as JSON; sensitive fields carry no values (the plan
// never holds them).
nlohmann::json changesJson(const PlanAction& action) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : action.changes) {
    nlohmann::json j = {{"path", c.path}};
    if (c.sensitive) {
      j["sensitive"] = true;
    } else {
      j["before"] = c.before;
      j["after"] = c.after;
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::string joinReasons(const std::set<std::string>& reasons) {
  std::string out;
  for (const auto& r : reasons) {
    out += (out.empty() ? "" : ",") + r;
  }
  return out;
}

constexpr ConditionType kConditionTypes[] = {ConditionType::Ready, ConditionType::Reconciling,
                                             ConditionType::Stalled, ConditionType::Drifted};

// The reasons conditions are given: a few words (a reason is never an object's or an error's
// text), each kept once for the life of the process.
const std::string* internReason(std::string_view reason) {
  static std::mutex mu;
  static auto* reasons = new std::set<std::string, std::less<>>();  // never freed: see above
  std::lock_guard<std::mutex> lk(mu);
  auto it = reasons->find(reason);
  if (it == reasons->end()) {
    it = reasons->emplace(reason).first;
  }
  return &*it;
}

// Loads the snapshot's manifests with the inventory's records, so that an object whose spec is
// its record's holds the record's tree: one per object in memory (ManifestLoader::load). The
// revision is named as the source names it, when it does (a directory's name is the loader's).
RevisionResult loadWithRecords(Engine& engine, const Inventory& inventory,
                               const Snapshot& snapshot) {
  auto records = inventory.snapshot();
  return engine.load(snapshot.files, snapshot.tree.get(), records.isOk() ? records->get() : nullptr,
                     snapshot.revisionFromLoader ? "" : snapshot.revision);
}

}  // namespace

const char* conditionTypeName(ConditionType type) {
  switch (type) {
    case ConditionType::Ready:
      return "Ready";
    case ConditionType::Reconciling:
      return "Reconciling";
    case ConditionType::Stalled:
      return "Stalled";
    case ConditionType::Drifted:
      return "Drifted";
  }
  return "Unknown";
}

std::optional<ConditionType> parseConditionType(std::string_view name) {
  for (ConditionType type : kConditionTypes) {
    if (name == conditionTypeName(type)) {
      return type;
    }
  }
  return std::nullopt;
}

void Condition::assign(bool status, std::string_view reason,
                       std::shared_ptr<const std::string> message, int64_t now) {
  if (!set_ || status_ != status) {
    since_ = now;
  }
  set_ = true;
  status_ = status;
  reason_ = internReason(reason);
  message_ = std::move(message);
}

void Condition::renameMessage(std::shared_ptr<const std::string> message) {
  message_ = std::move(message);
}

DriftPolicy driftPolicyOf(const Object* object, DriftPolicy fallback) {
  return object != nullptr && object->driftPolicy ? *object->driftPolicy : fallback;
}

std::string terminalSpecKey(const Object* object) {
  return object ? sha256Hex(canonicalJson(object->spec)) : "absent";
}

const Condition* ObjectStatus::find(std::string_view type) const {
  auto t = parseConditionType(type);
  return t && condition(*t).set() ? &condition(*t) : nullptr;
}

nlohmann::json ObjectStatus::toJson(const ObjectId& id, const Clock& clock) const {
  nlohmann::json conds = nlohmann::json::array();
  for (ConditionType type : kConditionTypes) {
    const Condition& c = condition(type);
    if (!c.set()) {
      continue;
    }
    conds.push_back({{"type", conditionTypeName(type)},
                     {"status", c.status() ? "True" : "False"},
                     {"reason", c.reason()},
                     {"message", c.message()},
                     {"since", c.since()}});
  }
  nlohmann::json j = {{"kind", id.kind},
                      {"name", id.name},
                      {"revision", revision ? *revision : std::string()},
                      {"conditions", conds},
                      {"failures", failures}};
  if (!terminalSpec.empty()) {
    j["terminal"] = true;  // not retried until its spec changes
  } else if (failures > 0) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(retryAt - clock.now());
    j["retryInMs"] = std::max<int64_t>(0, wait.count());
  }
  if (!drift.is_null()) {
    j["drift"] = drift;
  }
  return j;
}

nlohmann::json ReconcileSummary::toJson() const {
  nlohmann::json j = {{"reconcileId", reconcileId},
                      {"trigger", trigger},
                      {"revision", revision},
                      {"planHash", planHash},
                      {"planned", planned},
                      {"succeeded", succeeded},
                      {"failed", failed},
                      {"inProgress", inProgress},
                      {"deferred", deferred},
                      {"drifted", drifted},
                      {"sourceChanged", sourceChanged},
                      {"revisionRejected", revisionRejected},
                      {"revisionHeld", revisionHeld},
                      {"seconds", seconds},
                      {"fetchSeconds", fetchSeconds},
                      {"loadSeconds", loadSeconds},
                      {"planSeconds", planSeconds},
                      {"applySeconds", applySeconds},
                      {"observed", observed},
                      {"scoped", scoped},
                      {"finishedAt", finishedAt}};
  if (!error.empty()) {
    j["error"] = error;
  }
  return j;
}

const Clock& Controller::defaultClock() {
  static const SteadyClock clock;
  return clock;
}

Controller::Controller(Engine& engine, Inventory& inventory, EventLog& events, Source& source,
                       AlertSink& alerts, Metrics& metrics, LoopOptions options, const Clock& clock)
    : engine_(engine),
      inventory_(inventory),
      events_(events),
      source_(source),
      alerts_(alerts),
      metrics_(metrics),
      clock_(clock),
      options_(std::move(options)) {
  wakeFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

Controller::~Controller() {
  if (wakeFd_ >= 0) {
    close(wakeFd_);
  }
}

uint64_t Controller::trigger(const std::string& reason, bool fetch) {
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lk(mu_);
    pending_.any = true;
    pending_.fetch = pending_.fetch || fetch;
    pending_.reasons.insert(reason);
    ticket = nextTicket_++;
  }
  uint64_t one = 1;
  if (wakeFd_ >= 0) {
    (void)!write(wakeFd_, &one, sizeof one);
  }
  return ticket;
}

bool Controller::waitFor(uint64_t ticket, std::chrono::milliseconds timeout,
                         ReconcileSummary* summary) {
  std::unique_lock<std::mutex> lk(mu_);
  bool done = cv_.wait_for(lk, timeout, [&] { return finishedTicket_ >= ticket || stopping_; });
  if (done && finishedTicket_ >= ticket && summary) {
    *summary = lastSummary_;
  }
  return finishedTicket_ >= ticket;
}

void Controller::addHostEvents(const std::string& source, int fd, std::function<bool()> drain) {
  std::lock_guard<std::mutex> lk(mu_);
  hostEvents_.push_back({"host-event:" + source, fd, std::move(drain)});
}

void Controller::addProgressSource(std::function<std::vector<ProgressEvent>()> take) {
  std::lock_guard<std::mutex> lk(mu_);
  progressSources_.push_back(std::move(take));
}

void Controller::takeProgress() {
  std::vector<std::function<std::vector<ProgressEvent>()>> sources;
  {
    std::lock_guard<std::mutex> lk(mu_);
    sources = progressSources_;
  }
  for (const auto& take : sources) {
    for (ProgressEvent& p : take()) {
      for (const auto& sample : p.samples) {
        if (sample.buckets.empty()) {
          metrics_.counter(sample.name, sample.help, sample.labels).inc(sample.value);
        } else {
          metrics_.histogram(sample.name, sample.help, sample.buckets, sample.labels)
              .observe(sample.value);
        }
      }
      Event e;
      e.type = p.type;
      e.level = p.level;
      e.object = p.object.str();
      e.message = std::move(p.message);
      e.details = std::move(p.details);
      emit(std::move(e), /*alert=*/false);
    }
  }
}

void Controller::stop() {
  stopping_ = true;
  uint64_t one = 1;
  if (wakeFd_ >= 0) {
    (void)!write(wakeFd_, &one, sizeof one);
  }
  cv_.notify_all();
}

void Controller::setSuspended(bool suspended) {
  bool was = suspended_.exchange(suspended);
  if (was != suspended) {
    Event e;
    e.type = suspended ? "suspended" : "resumed";
    e.level = "info";
    e.message =
        suspended ? "applying suspended; observation and drift alerts go on" : "applying resumed";
    emit(std::move(e), /*alert=*/false);
    if (!suspended) {
      trigger("resume", /*fetch=*/false);
    }
  }
}

void Controller::setOptions(const LoopOptions& options) {
  std::lock_guard<std::mutex> lk(mu_);
  options_ = options;
}

void Controller::emit(Event event, bool alert) {
  auto stored = events_.append(event);
  if (!stored.isOk()) {
    spdlog::error("event log: {}", stored.status().message());
  }
  auto log = event.level == "error"     ? spdlog::level::err
             : event.level == "warning" ? spdlog::level::warn
                                        : spdlog::level::info;
  {
    // The log pattern prints the thread's reconcile id; an event recovered from the journal
    // belongs to the reconcile that wrote it.
    ReconcileIdScope scope(event.reconcileId);
    spdlog::log(log, "{}{}{}", event.object.empty() ? "" : event.object + ": ", event.message,
                event.revision.empty() ? "" : " (revision " + event.revision + ")");
  }
  if (alert) {
    Alert a;
    a.kind = event.type;
    a.object = event.object;
    a.revision = event.revision;
    a.summary = event.message;
    a.details = event.details;
    a.at = (event.at ? event.at : nowMillis()) / 1000;
    a.reconcileId = event.reconcileId;
    alerts_.send(a);
  }
}

void Controller::setCondition(ObjectStatus& s, ConditionType type, bool status,
                              std::string_view reason, std::string_view message) {
  std::shared_ptr<const std::string> shared;
  if (!message.empty()) {
    if (!lastMessage_ || *lastMessage_ != message) {
      lastMessage_ = std::make_shared<const std::string>(message);
    }
    shared = lastMessage_;
  }
  s.condition(type).assign(status, reason, std::move(shared), nowMillis());
}

void Controller::setCondition(ObjectStatus& s, ConditionType type, bool status,
                              std::string_view reason, std::shared_ptr<const std::string> message) {
  s.condition(type).assign(status, reason, std::move(message), nowMillis());
}

void Controller::recoverJournal() {
  auto unfinished = inventory_.closeInterrupted();
  if (!unfinished.isOk()) {
    spdlog::error("journal: {}", unfinished.status().message());
    return;
  }
  for (const auto& entry : *unfinished) {
    Event e;
    e.type = "action-interrupted";
    e.level = "warning";
    e.object = entry.object.str();
    e.reconcileId = entry.reconcileId;
    e.message =
        entry.action + " was interrupted by a stop or crash; the next reconcile finishes it";
    emit(std::move(e), /*alert=*/false);
  }
}

namespace {

double secondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

std::map<ObjectId, std::string> planErrorsOf(const Diagnostics& diagnostics) {
  std::map<ObjectId, std::string> planErrors;
  for (const auto& d : diagnostics.items()) {
    if (d.severity == Severity::Error) {
      planErrors[d.object] = d.format();
    }
  }
  return planErrors;
}

void deferDependents(const Plan& plan, Deferral& deferral) {
  auto& deferred = deferral.deferred;
  auto& deferReason = deferral.reasons;
  for (bool grew = true; grew;) {
    grew = false;
    for (const auto& a : plan.actions) {
      if (deferred.count(a.id)) {
        continue;
      }
      for (const auto& dep : a.dependsOn) {
        if (deferred.count(dep)) {
          deferred.insert(a.id);
          deferReason[a.id] = "waits for " + dep.str() + " (" + deferReason[dep] + ")";
          grew = true;
          break;
        }
      }
    }
  }
}

Plan withoutDeferred(const Plan& plan, const std::set<ObjectId>& deferred) {
  Plan toRun;
  toRun.revision = plan.revision;
  for (const auto& a : plan.actions) {
    if (!deferred.count(a.id)) {
      toRun.actions.push_back(a);
    }
  }
  return toRun;
}

std::chrono::milliseconds backoffDelay(int failures, const LoopOptions& options) {
  int exponent = std::clamp(failures - 1, 0, 20);
  return std::min<std::chrono::milliseconds>(options.backoffMax,
                                             options.backoffBase * (1LL << exponent));
}

ActionTally tallyOutcomes(const ApplyReport& report, Metrics& metrics) {
  ActionTally tally;
  for (const auto& o : report.outcomes) {
    const char* result = o.status.isOk()             ? "succeeded"
                         : o.inProgress || o.waiting ? "in-progress"
                         : o.skipped                 ? "skipped"
                                                     : "failed";
    metrics
        .counter("hyper_actions_total", "provider actions by result",
                 {{"action", actionTypeName(o.type)}, {"result", result}})
        .inc();
    if (o.status.isOk()) {
      ++tally.succeeded;
    } else if (o.inProgress || o.waiting) {
      ++tally.inProgress;
    } else {
      ++tally.failed;
    }
  }
  return tally;
}

ReconcileSummary Controller::reconcileOnce(const std::string& trigger, bool fetch) {
  std::lock_guard<std::mutex> one(reconcileMu_);
  auto started = std::chrono::steady_clock::now();
  LoopOptions options;
  std::shared_ptr<const Revision> inForce;
  {
    std::lock_guard<std::mutex> lk(mu_);
    options = options_;
    inForce = current_;
  }
  ReconcileSummary summary;
  summary.reconcileId = newReconcileId();
  summary.trigger = trigger;
  const std::string& rid = summary.reconcileId;
  ReconcileIdScope logScope(rid);  // every log line of this reconcile, on any thread, names it

  // 1. Source: only when it may have moved; a failure keeps the last good revision in force.
  SourceStep source = advanceSource(fetch, std::move(inForce), options, rid);
  summary.error = source.error;
  summary.sourceChanged = source.sourceChanged;
  summary.revisionRejected = source.revisionRejected;
  summary.revisionHeld = source.revisionHeld;
  summary.fetchSeconds = source.fetchSeconds;
  summary.loadSeconds = source.loadSeconds;
  summary.revision = source.current ? source.current->id : "";
  if (!source.current) {
    if (summary.error.empty()) {
      std::string heldId = heldRevision();
      summary.error = heldId.empty() ? "no valid revision yet"
                                     : "no revision applied yet: " + heldId + " is held";
    }
    finishReconcile(summary, started, nullptr);  // ready() also needs a revision
    return summary;
  }
  const Revision& current = *source.current;
  if (planFromLastObserve(trigger, source, summary)) {
    finishReconcile(summary, started, &current);
    return summary;
  }

  // 2. Observe and plan against the inventory: only what a new revision moved, when the one
  // before it is in sync.
  std::optional<std::vector<ObjectId>> moved = movedSinceInSync(trigger, source, summary);
  if (moved) {
    summary.observed = false;
    summary.scoped = moved->size();
    metrics_
        .counter("hyper_reconciles_scoped_total",
                 "reconciles of a new revision that observed and planned only what it moved")
        .inc();
  }
  PlanStep planned = planRevision(current, options, summary.error, rid, moved ? &*moved : nullptr);
  summary.error = planned.error;
  summary.planSeconds = planned.planSeconds;
  const Plan& plan = planned.planned.plan;
  summary.planned = plan.actions.size();
  summary.planHash = plan.hash();

  // 3. Drift and deferral. The plan is computed whole; what is deferred is taken out of it, with
  // everything that depends on it.
  Clock::TimePoint now = clock_.now();
  Deferral deferral = deferActions(plan, current, *planned.records, options, now);
  summary.drifted = deferral.drifted.size();
  reportDrift(deferral, current.id, rid);
  Plan toRun = withoutDeferred(plan, deferral.deferred);
  summary.deferred = plan.actions.size() - toRun.actions.size();

  // 4. Apply.
  const bool planClean = planned.planErrors.empty();
  ApplyStep applied = applyPlan({toRun, plan.actions.empty() && planClean, current,
                                 *planned.records, &planned.unconfirmed, options, rid,
                                 toRun.actions.size() == plan.actions.size() && planClean});
  summary.applySeconds = applied.applySeconds;

  // 5. Record: conditions, backoff, events, metrics.
  ActionTally tally = tallyOutcomes(applied.report, metrics_);
  summary.succeeded = tally.succeeded;
  summary.failed = tally.failed;
  summary.inProgress = tally.inProgress;
  recordObjects({plan, summary.planHash, current, deferral, planned.planErrors, applied.report,
                 options, now, rid});
  noteInSync(source, planned, summary, applied.report,
             toRun.actions.size() == plan.actions.size() && planClean);
  finishReconcile(summary, started, &current);
  return summary;
}

bool Controller::mayTrustInSync(const std::string& trigger, const SourceStep& source,
                                const ReconcileSummary& summary) {
  bool enabled;
  {
    std::lock_guard<std::mutex> lk(mu_);
    enabled = options_.planFromLastObserve;
  }
  if (!enabled || !inSync_ || !source.current || !summary.error.empty()) {
    return false;
  }
  // Only a poll, a webhook or a source change may: a host event, the drift check, a retry, an
  // approval, a resume, a reload or a "reconcile now" observe in full.
  size_t from = 0;
  while (from <= trigger.size()) {
    size_t comma = std::min(trigger.find(',', from), trigger.size());
    std::string_view reason(trigger.data() + from, comma - from);
    if (reason != "poll" && reason != "webhook" && reason != "source-change") {
      return false;
    }
    from = comma + 1;
  }
  auto records = inventory_.snapshot();
  // Not written since (hyperctl through the API, a provider's record).
  return records.isOk() && *records == inSync_->records;
}

bool Controller::planFromLastObserve(const std::string& trigger, const SourceStep& source,
                                     ReconcileSummary& summary) {
  if (!inSync_ || !inSync_->observed || inSync_->revision != source.current ||
      !mayTrustInSync(trigger, source, summary)) {
    return false;
  }
  summary.observed = false;
  summary.planHash = inSync_->planHash;
  metrics_
      .counter("hyper_reconciles_from_cache_total",
               "reconciles planned from the last full observe: no host event, no new revision")
      .inc();
  return true;
}

std::optional<std::vector<ObjectId>> Controller::movedSinceInSync(const std::string& trigger,
                                                                  const SourceStep& source,
                                                                  const ReconcileSummary& summary) {
  if (!inSync_ || inSync_->revision == source.current ||
      !mayTrustInSync(trigger, source, summary)) {
    return std::nullopt;
  }
  return engine_.movedBetween(*inSync_->revision, *source.current, *inSync_->records);
}

void Controller::noteInSync(const SourceStep& source, const PlanStep& planned,
                            const ReconcileSummary& summary, const ApplyReport& report,
                            bool wholePlan) {
  inSync_.reset();
  if (!planned.planErrors.empty() || !summary.error.empty() || !planned.unconfirmed.empty() ||
      !planned.records) {
    return;
  }
  // Found in sync, or put in sync: every action of the whole plan done (none deferred, none in
  // progress). The records are then the ones the apply left.
  const bool applied = summary.planned > 0;
  if (applied && (!wholePlan || !report.ok() || report.outcomes.size() != summary.planned)) {
    return;
  }
  std::shared_ptr<const RecordList> records = planned.records;
  if (applied) {
    auto after = inventory_.snapshot();
    if (!after.isOk()) {
      return;
    }
    records = std::move(*after);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto& [id, s] : objects_) {
      if (s.failures > 0 || s.inProgress || !s.terminalSpec.empty()) {
        return;
      }
    }
  }
  // Observed in full only when neither applied nor scoped; planFromLastObserve takes the plan
  // hash of an observed one only.
  inSync_ = InSync{source.current, std::move(records), applied ? "" : summary.planHash,
                   !applied && summary.observed};
}

SourceStep Controller::advanceSource(bool fetch, std::shared_ptr<const Revision> current,
                                     const LoopOptions& options, const std::string& rid) {
  SourceStep step;
  step.current = std::move(current);
  if (fetch || !step.current) {
    if (std::optional<Snapshot> snapshot = fetchSource(step, rid)) {
      adoptSnapshot(std::move(*snapshot), options, rid, step);
    }
  }
  takeApprovedRevision(rid, step);
  return step;
}

std::optional<Snapshot> Controller::fetchSource(SourceStep& step, const std::string& rid) {
  auto fetchStart = std::chrono::steady_clock::now();
  auto moved = source_.changed();
  Result<Snapshot> snapshot = Status::error("not fetched");
  Status failure = moved.status();
  if (moved.isOk() && *moved) {
    snapshot = source_.fetch();
    failure = snapshot.status();
  }
  step.fetchSeconds = secondsSince(fetchStart);
  if (failure.isOk()) {
    if (!*moved) {
      return std::nullopt;
    }
    return std::move(*snapshot);
  }
  std::string message = failure.message();
  metrics_.counter("hyper_source_fetch_errors_total", "source checks or fetches that failed").inc();
  step.error = "source " + describeSource() + ": " + message;
  bool fresh;
  {
    std::lock_guard<std::mutex> lk(mu_);
    fresh = lastSourceError_ != message;
    lastSourceError_ = message;
  }
  if (fresh) {
    Event e;
    e.type = "source-error";
    e.level = "error";
    e.reconcileId = rid;
    e.message =
        step.error + (step.current ? "; revision " + step.current->id + " stays in force" : "");
    emit(std::move(e), /*alert=*/true);
  }
  return std::nullopt;
}

void Controller::adoptSnapshot(Snapshot snapshot, const LoopOptions& options,
                               const std::string& rid, SourceStep& step) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    lastSourceError_.clear();
  }
  // A directory's name covers its manifests only; the loader's also covers the file sources
  // they name, which only a load finds. Loaded here once, the load is kept for loadRevision.
  std::optional<RevisionResult> loaded;
  if (snapshot.revisionFromLoader) {
    auto loadStart = std::chrono::steady_clock::now();
    loaded = loadWithRecords(engine_, inventory_, snapshot);
    step.loadSeconds = secondsSince(loadStart);
    snapshot.revision = loaded->id;
  }
  bool same = step.current && snapshot.revision == step.current->id;
  {
    bool heldElsewhere;
    {
      std::lock_guard<std::mutex> lk(mu_);
      heldElsewhere = held_ && held_->revision->id != snapshot.revision;
    }
    if (heldElsewhere) {
      clearHold("the source moved on to " + snapshot.revision, rid);
    }
  }
  bool heldBefore;
  bool rejectedBefore;
  {
    std::lock_guard<std::mutex> lk(mu_);
    heldBefore = held_ && held_->revision->id == snapshot.revision;
    rejectedBefore = snapshot.revision == rejectedRevision_;
  }
  if (snapshot.rewound) {
    Event e;
    e.type = "source-rewound";
    e.level = "warning";
    e.reconcileId = rid;
    e.revision = snapshot.revision;
    e.message = "the source's ref moved from " + snapshot.previousCommit.substr(0, 12) + " to " +
                snapshot.commit.substr(0, 12) +
                ", which does not contain it (force-push or rollback)";
    e.details = {{"previous", snapshot.previousCommit}, {"commit", snapshot.commit}};
    emit(std::move(e), /*alert=*/true);
  }
  if (!same && !rejectedBefore && !heldBefore) {
    loadRevision(std::move(snapshot), std::move(loaded), options, rid, step);
  } else if (heldBefore) {
    step.revisionHeld = true;
  }
}

void Controller::loadRevision(Snapshot snapshot, std::optional<RevisionResult> preloaded,
                              const LoopOptions& options, const std::string& rid,
                              SourceStep& step) {
  step.sourceChanged = true;
  if (!preloaded) {
    auto loadStart = std::chrono::steady_clock::now();
    preloaded = loadWithRecords(engine_, inventory_, snapshot);
    step.loadSeconds = secondsSince(loadStart);
  }
  RevisionResult loaded = std::move(*preloaded);
  if (!loaded.revision) {
    step.revisionRejected = true;
    std::vector<std::string> problems;
    for (const auto& d : loaded.diagnostics.items()) {
      if (d.severity == Severity::Error) {
        problems.push_back(d.format());
      }
    }
    Event e;
    e.type = "revision-rejected";
    e.level = "error";
    e.reconcileId = rid;
    e.revision = snapshot.revision;
    e.message =
        "revision " + snapshot.revision + " rejected: " + std::to_string(problems.size()) +
        " problem(s); " +
        (step.current ? "revision " + step.current->id + " stays in force" : "nothing applied");
    e.details = {{"problems", problems}};
    emit(std::move(e), /*alert=*/true);
    std::lock_guard<std::mutex> lk(mu_);
    rejectedRevision_ = snapshot.revision;
    return;
  }
  // The loader names a revision after the content; the source's name (a commit) wins, and the
  // engine gave it (loadWithRecords): not a copy of the revision and its graph.
  std::shared_ptr<const Revision> named = loaded.revision;
  if (named->id != snapshot.revision) {
    auto renamed = std::make_shared<Revision>(*named);
    renamed->id = snapshot.revision;
    named = std::move(renamed);
  }
  Snapshot meta = std::move(snapshot);
  meta.files.clear();
  meta.tree.reset();
  if (holdIfTooDestructive(named, meta, options, rid)) {
    step.revisionHeld = true;
    return;
  }
  step.current = named;
  std::lock_guard<std::mutex> lk(mu_);
  current_ = step.current;
  currentSnapshot_ = std::move(meta);
  rejectedRevision_.clear();
}

void Controller::takeApprovedRevision(const std::string& rid, SourceStep& step) {
  std::optional<Held> approved;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (held_ && !approvedRevision_.empty() && held_->revision->id == approvedRevision_) {
      approved = std::move(held_);
      held_.reset();
      approvedRevision_.clear();
      step.current = approved->revision;
      current_ = step.current;
      currentSnapshot_ = approved->snapshot;
      rejectedRevision_.clear();
    } else if (held_) {
      step.revisionHeld = true;
    }
  }
  if (!approved) {
    return;
  }
  step.sourceChanged = true;
  step.revisionHeld = false;
  metrics_.gauge("hyper_revision_held", "1 while a source revision is held for approval").set(0);
  Event e;
  e.type = "revision-approved";
  e.level = "warning";
  e.reconcileId = rid;
  e.revision = approved->revision->id;
  e.message = "revision " + approved->revision->id +
              " approved (hyperctl approve): " + approved->verdict.reason + "; applying it";
  e.details = approved->verdict.counts.toJson();
  emit(std::move(e), /*alert=*/true);
}

PlanStep Controller::planRevision(const Revision& current, const LoopOptions& options,
                                  const std::string& priorError, const std::string& rid,
                                  const std::vector<ObjectId>* scope) {
  PlanStep step;
  step.error = priorError;
  if (auto listed = inventory_.snapshot(); listed.isOk()) {
    step.records = std::move(*listed);
  } else {
    step.records = std::make_shared<const RecordList>();
    step.error = "inventory: " + listed.status().message();
  }
  if (auto found = inventory_.unconfirmed(); found.isOk()) {
    step.unconfirmed = std::move(*found);
  } else if (step.error.empty()) {
    step.error = "inventory: " + found.status().message();
  }
  if (step.error.empty() || step.error.rfind("source", 0) == 0) {
    auto planStart = std::chrono::steady_clock::now();
    // The build keys this content was applied with before: its Builds take them again.
    auto kept = inventory_.contentKeys(current.content);
    PlanOptions planOptions{options.prune, &step.unconfirmed};
    planOptions.keptKeys = kept.isOk() ? &*kept : nullptr;
    planOptions.scope = scope;
    step.planned = engine_.plan(current, *step.records, planOptions);
    step.planSeconds = secondsSince(planStart);
  }
  step.planErrors = planErrorsOf(step.planned.diagnostics);
  if (!step.planErrors.empty()) {
    step.error = "plan: " + step.planErrors.begin()->second;
    Event e;
    e.type = "plan-error";
    e.level = "error";
    e.reconcileId = rid;
    e.revision = current.id;
    e.message = step.error;
    std::vector<std::string> all;
    for (const auto& [id, m] : step.planErrors) {
      all.push_back(m);
    }
    e.details = {{"problems", all}};
    emit(std::move(e), /*alert=*/true);
  }
  return step;
}

Deferral Controller::deferActions(const Plan& plan, const Revision& current,
                                  const RecordList& /*managed*/, const LoopOptions& options,
                                  Clock::TimePoint now) {
  Deferral deferral;
  auto& deferred = deferral.deferred;
  auto& deferReason = deferral.reasons;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto& a : plan.actions) {
      ObjectStatus& s = objects_[a.id];
      if (a.drift) {
        deferral.drifted.push_back(&a);
        if (driftPolicyOf(current.find(a.id), options.driftPolicy) == DriftPolicy::Alert) {
          deferred.insert(a.id);
          deferReason[a.id] = "drift policy is alert: not corrected";
        }
      }
      if (!s.terminalSpec.empty()) {
        if (s.terminalSpec == terminalSpecKey(current.find(a.id))) {
          deferred.insert(a.id);
          deferReason[a.id] = "failed for good: not retried until its spec changes";
          continue;
        }
        // The spec moved since: a fresh start, without the old backoff.
        s.terminalSpec.clear();
        s.failures = 0;
      }
      if (s.failures > 0 && now < s.retryAt) {
        deferred.insert(a.id);
        deferReason[a.id] = "backing off after " + std::to_string(s.failures) + " failure(s)";
      }
      if (suspended_) {
        deferred.insert(a.id);
        deferReason[a.id] = "suspended";
      }
    }
  }
  deferDependents(plan, deferral);
  return deferral;
}

void Controller::reportDrift(const Deferral& deferral, const std::string& revision,
                             const std::string& rid) {
  for (const PlanAction* a : deferral.drifted) {
    nlohmann::json diff = changesJson(*a);
    std::string key = sha256Hex(a->reason + diff.dump());
    bool fresh;
    {
      std::lock_guard<std::mutex> lk(mu_);
      ObjectStatus& s = objects_[a->id];
      fresh = s.driftKey != key;
      s.driftKey = key;
      s.drift = {{"reason", a->reason}, {"action", actionTypeName(a->type)}, {"changes", diff}};
      setCondition(s, ConditionType::Drifted, true, "HostChanged", a->reason);
    }
    if (fresh) {
      metrics_.counter("hyper_drift_total", "drifts detected", {{"kind", a->id.kind}}).inc();
      bool corrected = !deferral.deferred.count(a->id);
      Event e;
      e.type = "drift";
      e.level = "warning";
      e.object = a->id.str();
      e.reconcileId = rid;
      e.revision = revision;
      e.message = a->reason + (corrected ? "; correcting" : "; " + deferral.reasons.at(a->id));
      e.details = {
          {"action", actionTypeName(a->type)}, {"changes", diff}, {"corrected", corrected}};
      emit(std::move(e), /*alert=*/true);
    }
  }
}

ApplyStep Controller::applyPlan(const ApplyInput& in) {
  ApplyStep step;
  if (!in.toRun.actions.empty()) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (const auto& a : in.toRun.actions) {
        setCondition(objects_[a.id], ConditionType::Reconciling, true, actionTypeName(a.type),
                     a.reason);
      }
    }
    ApplyOptions applyOptions;
    applyOptions.parallelism = in.options.parallelism;
    applyOptions.reconcileId = in.reconcileId;
    applyOptions.cancel = &stopping_;
    applyOptions.actionTimeout = in.options.actionTimeout;
    applyOptions.unconfirmed = in.unconfirmed;
    applyOptions.deferLongWork = true;  // builds go on in their provider's queue
    applyOptions.wholePlan = in.wholePlan;
    auto applyStart = std::chrono::steady_clock::now();
    step.report = engine_.apply(in.toRun, in.current, in.managed, inventory_, applyOptions);
    step.applySeconds = secondsSince(applyStart);
  } else if (in.refreshOnly) {
    // Nothing to do: still refresh records whose labels or spec text moved without a host change.
    ApplyOptions refresh;
    refresh.wholePlan = in.wholePlan;
    step.report = engine_.apply(in.toRun, in.current, in.managed, inventory_, refresh);
  }
  return step;
}

void Controller::recordObjects(const RecordInput& in) {
  std::map<ObjectId, const ActionOutcome*> outcomeById;
  for (const auto& o : in.report.outcomes) {
    outcomeById[o.id] = &o;
  }
  // The records' revisions, each string once: every object applied from one revision shares it.
  // By id, in id order (the inventory's order; sorted here if it were not), so that the walk over
  // the statuses below finds each by moving forward, not by a lookup per object.
  std::vector<std::pair<const ObjectId*, std::shared_ptr<const std::string>>> revisionById;
  auto listed = inventory_.snapshot();
  if (listed.isOk()) {
    revisionById.reserve((*listed)->size());
    std::map<std::string_view, std::shared_ptr<const std::string>> distinct;
    for (const auto& r : **listed) {
      auto [it, fresh] = distinct.emplace(r.revision, nullptr);
      if (fresh) {
        it->second = std::make_shared<const std::string>(r.revision);
      }
      revisionById.emplace_back(&r.id, it->second);
    }
  }
  auto byId = [](const auto& a, const auto& b) { return *a.first < *b.first; };
  if (!std::is_sorted(revisionById.begin(), revisionById.end(), byId)) {
    std::sort(revisionById.begin(), revisionById.end(), byId);
  }
  // An object in sync with the previous revision and left out of this plan is in sync with this
  // one: only the revision its Ready message names changes (below).
  std::shared_ptr<const std::string> previousInSync;
  if (!inSyncMessage_ || *inSyncMessage_ != "the host matches revision " + in.current.id) {
    previousInSync = std::move(inSyncMessage_);
    inSyncMessage_ =
        std::make_shared<const std::string>("the host matches revision " + in.current.id);
  }
  std::vector<Event> failures;
  {
    std::lock_guard<std::mutex> lk(mu_);
    std::set<ObjectId> planned;
    for (const auto& a : in.plan.actions) {
      planned.insert(a.id);
    }
    // Objects that are neither in the revision nor managed any more are forgotten; an object of
    // the revision has a status from now on. One walk: the statuses, the revision's objects and
    // the records are all in id order.
    auto status = objects_.begin();
    auto record = revisionById.begin();
    auto forgetUpTo = [&](const ObjectId* bound) {
      while (status != objects_.end() && (!bound || status->first < *bound)) {
        while (record != revisionById.end() && *record->first < status->first) {
          ++record;
        }
        if (record != revisionById.end() && *record->first == status->first) {
          ++status;
        } else {
          status = objects_.erase(status);
        }
      }
    };
    for (const auto& o : in.current.objects) {
      forgetUpTo(&o->id);
      if (status == objects_.end() || status->first != o->id) {
        status = objects_.emplace_hint(status, std::piecewise_construct,
                                       std::forward_as_tuple(o->id), std::forward_as_tuple());
      }
      ++status;
    }
    forgetUpTo(nullptr);
    auto rev = revisionById.begin();
    for (auto& [id, s] : objects_) {
      while (rev != revisionById.end() && *rev->first < id) {
        ++rev;
      }
      if (rev != revisionById.end() && *rev->first == id && s.revision != rev->second) {
        s.revision = rev->second;
      }
      auto out = outcomeById.find(id);
      if (auto err = in.planErrors.find(id); err != in.planErrors.end()) {
        setCondition(s, ConditionType::Ready, false, "PlanFailed", err->second);
        setCondition(s, ConditionType::Stalled, true, "PlanFailed", err->second);
        setCondition(s, ConditionType::Reconciling, false, "PlanFailed", "");
        // Planned again with backoff, like a failed action: what failed may be on the host (a
        // Secret's file with loose permissions, a kernel not there yet) and be fixed by hand.
        s.failures += 1;
        s.retryAt = in.now + backoffDelay(s.failures, in.options);
        continue;
      }
      if (out != outcomeById.end()) {
        if (auto failed = recordOutcome(s, *out->second, in)) {
          failures.push_back(std::move(*failed));
        }
      } else if (in.deferral.deferred.count(id) > 0) {
        setCondition(s, ConditionType::Reconciling, false, "Deferred", in.deferral.reasons.at(id));
        setCondition(s, ConditionType::Ready, false, "Deferred", in.deferral.reasons.at(id));
      } else if (!planned.count(id)) {
        const Condition& ready = s.condition(ConditionType::Ready);
        if (ready.status() && ready.sharedMessage() == inSyncMessage_.get()) {
          continue;  // in sync with this revision since an earlier reconcile: nothing changes
        }
        if (ready.status() && previousInSync && ready.sharedMessage() == previousInSync.get()) {
          // In sync with the previous revision (its conditions were set below then, as they
          // would be now) and nothing planned for it in this one.
          s.condition(ConditionType::Ready).renameMessage(inSyncMessage_);
          continue;
        }
        s.inProgress = false;
        s.checkAt = Clock::TimePoint::max();
        setCondition(s, ConditionType::Reconciling, false, "Done", "");
        setCondition(s, ConditionType::Stalled, false, "InSync", "");
        setCondition(s, ConditionType::Drifted, false, "InSync", "");
        setCondition(s, ConditionType::Ready, true, "InSync", inSyncMessage_);
        s.driftKey.clear();
        s.drift = nullptr;
        s.failures = 0;
        s.terminalSpec.clear();
      }
    }
    lastPlan_ = in.plan.toJson();
    lastPlan_["hash"] = in.planHash;
    lastPlan_["reconcileId"] = in.reconcileId;
    lastPlan_["deferred"] = nlohmann::json::object();
    for (const auto& [id, why] : in.deferral.reasons) {
      lastPlan_["deferred"][id.str()] = why;
    }
  }
  for (auto& e : failures) {
    emit(std::move(e), /*alert=*/true);
  }
  updateObjectGauges();
}

std::optional<Event> Controller::recordOutcome(ObjectStatus& s, const ActionOutcome& o,
                                               const RecordInput& in) {
  if (o.inProgress || o.waiting) {
    // Not a failure: the provider is doing it. Reconciling until it is done.
    const char* reason = o.inProgress ? "InProgress" : "Waiting";
    s.inProgress = true;
    s.checkAt = in.now + std::min(o.retryAfter.value_or(std::chrono::seconds(30)),
                                  std::chrono::milliseconds(in.options.backoffMax));
    setCondition(s, ConditionType::Reconciling, true, reason, o.status.message());
    setCondition(s, ConditionType::Ready, false, reason, o.status.message());
    setCondition(s, ConditionType::Stalled, false, reason, "");
    return std::nullopt;
  }
  s.inProgress = false;
  s.checkAt = Clock::TimePoint::max();
  setCondition(s, ConditionType::Reconciling, false, o.status.isOk() ? "Done" : "Failed", "");
  if (o.status.isOk()) {
    s.failures = 0;
    s.terminalSpec.clear();
    s.driftKey.clear();
    s.drift = nullptr;
    setCondition(s, ConditionType::Drifted, false, "InSync", "");
    setCondition(s, ConditionType::Stalled, false, "Applied", "");
    setCondition(s, ConditionType::Ready, true, "Applied",
                 std::string(actionTypeName(o.type)) + " succeeded");
    return std::nullopt;
  }
  s.failures += o.skipped ? 0 : 1;
  // A skipped action is not a failure of its own: it has no backoff (failures may be 0). The
  // provider may say when to retry (at most the longest backoff), or that retrying cannot help.
  auto delay = o.retryAfter ? std::min(*o.retryAfter, in.options.backoffMax)
                            : backoffDelay(s.failures, in.options);
  s.retryAt = in.now + (o.skipped ? std::chrono::milliseconds(0) : delay);
  if (o.terminal && !o.skipped) {
    s.terminalSpec = terminalSpecKey(in.current.find(o.id));
    s.retryAt = Clock::TimePoint::max();
  }
  setCondition(s, ConditionType::Ready, false, o.skipped ? "DependencyFailed" : "ActionFailed",
               o.status.message());
  setCondition(s, ConditionType::Stalled, !o.skipped,
               o.skipped ? "DependencyFailed" : "ActionFailed", o.status.message());
  if (o.skipped) {
    return std::nullopt;
  }
  Event e;
  e.type = "action-failed";
  e.level = "error";
  e.object = o.id.str();
  e.reconcileId = in.reconcileId;
  e.revision = in.current.id;
  e.message =
      o.status.message() +
      (o.terminal ? std::string("; not retried until its spec changes")
                  : "; retry in " + std::to_string(delay.count() / 1000.0).substr(0, 5) + " s");
  e.details = {{"failures", s.failures}};
  return e;
}

void Controller::finishReconcile(ReconcileSummary& summary,
                                 std::chrono::steady_clock::time_point started,
                                 const Revision* current) {
  summary.seconds = secondsSince(started);
  summary.finishedAt = nowMillis();
  if (current) {
    metrics_
        .histogram("hyper_reconcile_duration_seconds", "reconcile duration",
                   {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30})
        .observe(summary.seconds);
    metrics_.counter("hyper_reconciles_total", "reconciles run").inc();
    if (summary.planned > 0 || summary.sourceChanged) {
      Event e;
      e.type = "reconciled";
      e.level = summary.failed ? "error" : "info";
      e.reconcileId = summary.reconcileId;
      e.revision = current->id;
      char line[240];
      std::snprintf(line, sizeof line,
                    "reconciled (%s): %zu planned, %zu succeeded, %zu failed, %zu deferred in "
                    "%.3f s",
                    summary.trigger.c_str(), summary.planned, summary.succeeded, summary.failed,
                    summary.deferred, summary.seconds);
      e.message = line;
      if (summary.inProgress > 0) {
        e.message += "; " + std::to_string(summary.inProgress) + " in progress";
      }
      e.details = summary.toJson();
      emit(std::move(e), /*alert=*/false);
    }
  }
  takeProgress();
  std::lock_guard<std::mutex> lk(mu_);
  lastSummary_ = summary;
  firstReconcileDone_ = true;  // publishes the summary; ready() also needs a revision
}

ReconcileSummary Controller::lastReconcile() const {
  std::lock_guard<std::mutex> lk(mu_);
  return lastSummary_;
}

bool Controller::holdIfTooDestructive(const std::shared_ptr<const Revision>& next,
                                      const Snapshot& snapshot, const LoopOptions& options,
                                      const std::string& rid) {
  if (!options.prune) {
    return false;  // nothing is deleted without prune
  }
  auto records = inventory_.snapshot();
  if (!records.isOk()) {
    // Not judged: the plan below fails on the same inventory error and applies nothing.
    return false;
  }
  HoldVerdict verdict =
      judgeDeletions(countDeletions(*next, **records, options.hold.running), options.hold);
  if (!verdict.hold) {
    return false;
  }
  bool approvedByApi;
  {
    std::lock_guard<std::mutex> lk(mu_);
    approvedByApi = approvedRevision_ == next->id;
    if (approvedByApi) {
      approvedRevision_.clear();
    }
  }
  if (snapshot.allowPrune || approvedByApi) {
    Event e;
    e.type = "revision-approved";
    e.level = "warning";
    e.reconcileId = rid;
    e.revision = next->id;
    e.message = "revision " + next->id + " " + verdict.reason + "; applying it: " +
                (snapshot.allowPrune ? "its commit says Hyper-Allow-Prune: yes"
                                     : "approved with hyperctl approve");
    e.details = verdict.counts.toJson();
    emit(std::move(e), /*alert=*/true);
    return false;
  }
  std::string inForce;
  {
    std::lock_guard<std::mutex> lk(mu_);
    inForce = current_ ? current_->id : "";
    std::vector<std::string> deletes;
    for (const ManagedRecord& r : **records) {
      if (next->find(r.id) == nullptr && deletes.size() < kHeldDeletesShown) {
        deletes.push_back(r.id.str());
      }
    }
    std::sort(deletes.begin(), deletes.end());
    held_ = Held{next, snapshot, verdict, nowMillis(), std::move(deletes)};
  }
  metrics_.counter("hyper_revisions_held_total", "source revisions held for approval").inc();
  metrics_.gauge("hyper_revision_held", "1 while a source revision is held for approval").set(1);
  Event e;
  e.type = "revision-held";
  e.level = "warning";
  e.reconcileId = rid;
  e.revision = next->id;
  e.message = "revision " + next->id + " held: it " + verdict.reason + "; " +
              (inForce.empty() ? "nothing applied" : "revision " + inForce + " stays in force") +
              "; approve with: hyperctl approve " + next->id;
  e.details = verdict.counts.toJson();
  e.details["reason"] = verdict.reason;
  emit(std::move(e), /*alert=*/true);
  return true;
}

void Controller::clearHold(const std::string& why, const std::string& rid) {
  std::string id;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!held_) {
      return;
    }
    id = held_->revision->id;
    held_.reset();
    approvedRevision_.clear();
  }
  metrics_.gauge("hyper_revision_held", "1 while a source revision is held for approval").set(0);
  Event e;
  e.type = "revision-unheld";
  e.level = "info";
  e.reconcileId = rid;
  e.revision = id;
  e.message = "revision " + id + " is no longer held: " + why;
  emit(std::move(e), /*alert=*/false);
}

Result<uint64_t> Controller::approve(const std::string& revision) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!held_) {
      return Status::error("approve " + revision + " <- no revision is held");
    }
    const std::string& id = held_->revision->id;
    const std::string& commit = held_->snapshot.commit;
    if (revision.empty() || (revision != id && revision != commit)) {
      return Status::error("approve " + revision + " <- the revision held is " + id +
                           " (an approval is for that exact revision)");
    }
    approvedRevision_ = id;
  }
  return trigger("approve", /*fetch=*/false);
}

std::string Controller::heldRevision() const {
  std::lock_guard<std::mutex> lk(mu_);
  return held_ ? held_->revision->id : "";
}

void Controller::updateObjectGauges() {
  // By the types' place in kConditionTypes: a walk over 10k objects was 40k string keys built
  // and looked up in a map.
  std::array<int, std::size(kConditionTypes)> counts{};
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const auto& [id, s] : objects_) {
      for (size_t t = 0; t < counts.size(); ++t) {
        counts[t] += s.condition(kConditionTypes[t]).status() ? 1 : 0;
      }
    }
  }
  for (size_t t = 0; t < counts.size(); ++t) {
    metrics_
        .gauge("hyper_objects", "objects whose condition is true",
               {{"condition", conditionTypeName(kConditionTypes[t])}})
        .set(counts[t]);
  }
}

std::string Controller::describeSource() const { return source_.describe(); }

bool Controller::sourceSettled(int sourceFd, const LoopOptions& options) {
  // Debounce: a burst of editor writes is one reconcile. Only relevant events restart the
  // quiet time: a long write (IN_MODIFY after IN_MODIFY) must not hold the loop here.
  bool relevant = source_.drainWake();
  auto quietUntil = std::chrono::steady_clock::now() + options.debounce;
  while (relevant && std::chrono::steady_clock::now() < quietUntil && !stopping_) {
    pollfd p{sourceFd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        quietUntil - std::chrono::steady_clock::now());
    if (poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0))) > 0 &&
        source_.drainWake()) {
      quietUntil = std::chrono::steady_clock::now() + options.debounce;
    }
  }
  return relevant;
}

bool Controller::hostSettled(int fd, const std::function<bool()>& drain,
                             const LoopOptions& options) {
  bool changed = drain();
  auto quietUntil = std::chrono::steady_clock::now() + options.hostDebounce;
  while (std::chrono::steady_clock::now() < quietUntil) {
    pollfd p{fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        quietUntil - std::chrono::steady_clock::now());
    if (poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0))) > 0) {
      changed = drain() || changed;
      quietUntil = std::chrono::steady_clock::now() + options.hostDebounce;
    }
  }
  return changed;
}

void Controller::run() {
  Clock::TimePoint nextPoll = clock_.now();
  Clock::TimePoint nextDrift = clock_.now();
  Clock::TimePoint nextMaintenance = Clock::TimePoint::min();  // set from the options below
  trigger("start", /*fetch=*/true);
  while (!stopping_) {
    LoopOptions options;
    std::vector<HostEventSource> hostEvents;
    bool pending;
    Clock::TimePoint retryAt = Clock::TimePoint::max();
    {
      std::lock_guard<std::mutex> lk(mu_);
      options = options_;
      hostEvents = hostEvents_;
      pending = pending_.any;
      for (const auto& [id, s] : objects_) {
        if (s.failures > 0) {
          retryAt = std::min(retryAt, s.retryAt);
        }
        if (s.inProgress) {
          retryAt = std::min(retryAt, s.checkAt);
        }
      }
    }
    Clock::TimePoint now = clock_.now();
    const bool maintains = options.maintenance && options.maintenanceInterval.count() > 0;
    if (!maintains) {
      nextMaintenance = Clock::TimePoint::max();
    } else if (nextMaintenance == Clock::TimePoint::min() ||
               nextMaintenance == Clock::TimePoint::max()) {
      nextMaintenance = now + options.maintenanceInterval;  // started, or newly configured
    }
    Clock::TimePoint deadline = std::min({nextPoll, nextDrift, retryAt, nextMaintenance});
    int timeoutMs =
        pending ? 0
                : static_cast<int>(std::clamp<int64_t>(
                      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count(),
                      0, 60000));
    std::vector<pollfd> fds;
    fds.push_back({wakeFd_, POLLIN, 0});
    int sourceFd = source_.wakeFd();
    if (sourceFd >= 0) {
      fds.push_back({sourceFd, POLLIN, 0});
    }
    for (const auto& source : hostEvents) {
      fds.push_back({source.fd, POLLIN, 0});
    }
    int n = poll(fds.data(), fds.size(), timeoutMs);
    if (n < 0 && errno != EINTR) {
      spdlog::error("loop: poll: {}", strerror(errno));
    }
    if (stopping_) {
      break;
    }
    size_t k = 0;
    if (fds[k++].revents & POLLIN) {
      uint64_t v;
      (void)!read(wakeFd_, &v, sizeof v);
    }
    if (sourceFd >= 0 && (fds[k++].revents & POLLIN) && sourceSettled(sourceFd, options)) {
      trigger("source-change", /*fetch=*/true);
    }
    for (const auto& source : hostEvents) {
      if ((fds[k++].revents & POLLIN) && hostSettled(source.fd, source.drain, options)) {
        trigger(source.reason, /*fetch=*/false);
      }
    }
    now = clock_.now();
    if (now >= nextPoll) {
      nextPoll = now + options.pollInterval;
      if (sourceFd < 0) {
        trigger("poll", /*fetch=*/true);
      }
    }
    if (now >= nextDrift) {
      nextDrift = now + options.driftInterval;
      trigger("drift-check", /*fetch=*/false);
    }
    if (retryAt != Clock::TimePoint::max() && now >= retryAt) {
      trigger("retry", /*fetch=*/false);
    }
    takeProgress();

    if (maintains && now >= nextMaintenance) {
      nextMaintenance = now + options.maintenanceInterval;
      options.maintenance();
    }

    Pending take;
    uint64_t covered;
    {
      std::lock_guard<std::mutex> lk(mu_);
      take = std::move(pending_);
      pending_ = Pending{};
      covered = nextTicket_ - 1;
      startedTicket_ = covered;
    }
    if (!take.any) {
      continue;
    }
    ReconcileSummary done = reconcileOnce(joinReasons(take.reasons), take.fetch);
    if (done.observed) {
      // Why the host was read in full: what an idle hyperd's CPU goes to.
      for (const auto& reason : take.reasons) {
        metrics_
            .counter("hyper_full_observes_total",
                     "reconciles that observed the host in full, by what triggered them",
                     {{"trigger", reason}})
            .inc();
      }
    }
    // Netlink events caused by this reconcile's own changes are not drift: drop them. Only after
    // a reconcile that changed the host: a hand change made while another observed is kept, and
    // observed next (the shortcut above would not see it before the drift check).
    if (done.succeeded + done.failed + done.inProgress > 0) {
      for (const auto& source : hostEvents) {
        pollfd p{source.fd, POLLIN, 0};
        while (poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
          source.drain();
        }
      }
    }
    // What an observe or an apply allocated in bulk (link and ruleset listings, JSON trees) and
    // freed stays with the allocator unless handed back: under glibc, at 1,000 objects, hyperd's
    // RSS stood at 128 MiB after its first apply, 31 MiB with malloc_trim.
    if (done.observed) {
      releaseFreeMemory();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      finishedTicket_ = std::max(finishedTicket_, covered);
    }
    cv_.notify_all();
  }
  cv_.notify_all();
}

nlohmann::json Controller::statusJson() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::map<std::string, int> counts;
  for (const auto& [id, s] : objects_) {
    counts[s.condition(ConditionType::Ready).status() ? "ready" : "notReady"]++;
    if (s.condition(ConditionType::Drifted).status()) {
      counts["drifted"]++;
    }
    if (s.condition(ConditionType::Stalled).status()) {
      counts["stalled"]++;
    }
  }
  nlohmann::json j = {
      {"source", source_.describe()},
      {"revision", current_ ? current_->id : ""},
      {"commit", currentSnapshot_.commit},
      {"message", currentSnapshot_.message},
      {"rejectedRevision", rejectedRevision_},
      {"held", held_ ? nlohmann::json{{"revision", held_->revision->id},
                                      {"commit", held_->snapshot.commit},
                                      {"message", held_->snapshot.message},
                                      {"reason", held_->verdict.reason},
                                      {"counts", held_->verdict.counts.toJson()},
                                      {"deletes", held_->deletes},
                                      {"since", held_->since}}
                     : nlohmann::json(nullptr)},
      {"conditions",
       nlohmann::json::array(
           {{{"type", "Held"},
             {"status", held_ ? "True" : "False"},
             {"reason", held_ ? "TooManyDeletes" : "NotHeld"},
             {"message", held_ ? "revision " + held_->revision->id + " " + held_->verdict.reason +
                                     "; approve with: hyperctl approve " + held_->revision->id
                               : ""}}})},
      {"sourceError", lastSourceError_},
      {"suspended", suspended_.load()},
      {"ready", firstReconcileDone_ && current_ != nullptr},
      {"objects", static_cast<int>(objects_.size())},
      {"ready_objects", counts["ready"]},
      {"drifted_objects", counts["drifted"]},
      {"stalled_objects", counts["stalled"]},
      {"lastReconcile", firstReconcileDone_ ? lastSummary_.toJson() : nlohmann::json(nullptr)},
  };
  return j;
}

nlohmann::json Controller::objectsJson() const {
  std::lock_guard<std::mutex> lk(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [id, s] : objects_) {
    nlohmann::json j = s.toJson(id, clock_);
    // What it references in the revision in force (the status page's tree): "Kind/name".
    nlohmann::json dependsOn = nlohmann::json::array();
    if (current_ && current_->graph.hasNode(id)) {
      for (const ObjectId& d : current_->graph.dependencies(id)) {
        dependsOn.push_back(d.str());
      }
    }
    j["dependsOn"] = std::move(dependsOn);
    out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json Controller::driftJson() const {
  std::lock_guard<std::mutex> lk(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [id, s] : objects_) {
    if (!s.drift.is_null()) {
      out.push_back({{"kind", id.kind}, {"name", id.name}, {"drift", s.drift}});
    }
  }
  return out;
}

nlohmann::json Controller::preview(const std::vector<SourceFile>& files, bool prune, bool color,
                                   const SourceTree* tree) {
  std::lock_guard<std::mutex> one(reconcileMu_);  // no observe races with a reconcile's apply
  nlohmann::json out = {{"ok", false}, {"errors", 0}, {"diagnostics", ""}};
  auto countErrors = [](const Diagnostics& d) {
    size_t n = 0;
    for (const auto& item : d.items()) {
      n += item.severity == Severity::Error ? 1 : 0;
    }
    return n;
  };
  RevisionResult loaded = engine_.loadDetached(files, tree);
  std::string diagnostics = loaded.diagnostics.format();
  if (!loaded.revision) {
    out["diagnostics"] = diagnostics;
    out["errors"] = countErrors(loaded.diagnostics);
    return out;
  }
  out["revision"] = loaded.revision->id;
  auto records = inventory_.snapshot();
  if (!records.isOk()) {
    out["diagnostics"] = diagnostics + "error: inventory: " + records.status().message() + "\n";
    out["errors"] = 1;
    return out;
  }
  auto unconfirmed = inventory_.unconfirmed();
  if (!unconfirmed.isOk()) {
    out["diagnostics"] = diagnostics + "error: inventory: " + unconfirmed.status().message() + "\n";
    out["errors"] = 1;
    return out;
  }
  auto kept = inventory_.contentKeys(loaded.revision->content);
  PlanOptions planOptions{prune, &*unconfirmed};
  planOptions.keptKeys = kept.isOk() ? &*kept : nullptr;
  PlanResult planned = engine_.plan(*loaded.revision, **records, planOptions);
  out["diagnostics"] = diagnostics + planned.diagnostics.format();
  if (planned.diagnostics.hasErrors()) {
    out["errors"] = countErrors(planned.diagnostics);
    return out;
  }
  nlohmann::json plan = planned.plan.toJson();
  plan["hash"] = planned.plan.hash();
  out["ok"] = true;
  out["plan"] = std::move(plan);
  out["text"] = planned.plan.render(color);
  return out;
}

nlohmann::json Controller::lastPlanJson() const {
  std::lock_guard<std::mutex> lk(mu_);
  return lastPlan_;
}

std::optional<ObjectStatus> Controller::objectStatus(const ObjectId& id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = objects_.find(id);
  if (it == objects_.end()) {
    return std::nullopt;
  }
  return it->second;
}

bool Controller::ready() const {
  std::lock_guard<std::mutex> lk(mu_);
  return firstReconcileDone_ && current_ != nullptr;
}

std::string Controller::appliedRevision() const {
  std::lock_guard<std::mutex> lk(mu_);
  return current_ ? current_->id : "";
}

}  // namespace hyper::controller
