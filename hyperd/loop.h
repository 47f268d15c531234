#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "controller/event_log.h"
#include "controller/hold.h"
#include "hyperd/alerts.h"
#include "hyperd/config.h"
#include "hyperd/metrics.h"
#include "reconciler/engine.h"
#include "source/source.h"

namespace hyper::controller {

// The steps of a reconcile and their inputs and outputs (hyperd/loop_steps.h).
struct SourceStep;
struct PlanStep;
struct Deferral;
struct ApplyInput;
struct ApplyStep;
struct RecordInput;

// Time for backoff and timers; tests inject a manual clock.
class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

class SteadyClock : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
};

// The object's spec.driftPolicy (Object::driftPolicy); `fallback` when it does not say or when
// it is not in the source.
DriftPolicy driftPolicyOf(const Object* object, DriftPolicy fallback);

// What a terminal failure waits to change: the object's desired spec (its canonical JSON's
// digest), or "absent" when it is not in the source.
std::string terminalSpecKey(const Object* object);

struct LoopOptions {
  bool prune =
      true;  // GitOps: an object removed from the source is deleted (only if hyper made it)
  int parallelism = 4;
  DriftPolicy driftPolicy = DriftPolicy::Correct;  // for objects that do not say
  std::chrono::milliseconds pollInterval{30000};   // cheap "did the source move" check
  std::chrono::milliseconds driftInterval{60000};  // full observe even without host events
  std::chrono::milliseconds debounce{500};         // quiet time after a directory change
  std::chrono::milliseconds hostDebounce{100};     // quiet time after a netlink event
  // Plan a quiet poll or webhook from the last full observe (Controller::InSync); the drift
  // check, host events and every other trigger observe in full.
  bool planFromLastObserve = true;
  std::chrono::milliseconds backoffBase{1000};  // first retry after a failed action
  std::chrono::milliseconds backoffMax{300000};
  // How long one action may take before its provider gives up (ApplyRequest::deadline).
  std::chrono::milliseconds actionTimeout{std::chrono::minutes(15)};
  // A revision whose prune would delete this much is held until approved (controller/hold.h).
  HoldPolicy hold;
  // Housekeeping (hyperd: the artifact store's garbage collection) run by the loop's thread every
  // maintenanceInterval, between reconciles, so it never runs beside an apply. Null or a zero
  // interval: never.
  std::function<void()> maintenance;
  std::chrono::milliseconds maintenanceInterval{0};
};

// A condition as in Kubernetes. Every object has four, so they are kept small (hyperd's memory
// per object, hyper_net_apply_bench): a fixed slot each rather than a map keyed by name, the
// reason a pointer into a table of the few words used (internReason), and the message shared
// with the objects that got the same text in the same reconcile ("the host matches revision
// ...", "create succeeded"): some 160 bytes per object instead of about 700.
enum class ConditionType : uint8_t { Ready, Reconciling, Stalled, Drifted };
inline constexpr size_t kConditionTypeCount = 4;
const char* conditionTypeName(ConditionType type);
std::optional<ConditionType> parseConditionType(std::string_view name);

class Condition {
 public:
  bool set() const { return set_; }  // false: never set, not part of the status
  bool status() const { return status_; }
  std::string_view reason() const { return reason_ ? std::string_view(*reason_) : ""; }
  std::string_view message() const { return message_ ? std::string_view(*message_) : ""; }
  // The message's text object itself: conditions given one shared message compare equal here.
  const std::string* sharedMessage() const { return message_.get(); }
  int64_t since() const { return since_; }  // unix milliseconds of the last status change

  // `message` may be shared with other conditions; null for none.
  void assign(bool status, std::string_view reason, std::shared_ptr<const std::string> message,
              int64_t now);
  // Another message for the same status and reason (since() stays).
  void renameMessage(std::shared_ptr<const std::string> message);

 private:
  bool set_ = false;
  bool status_ = false;
  const std::string* reason_ = nullptr;  // interned: lives as long as the process
  std::shared_ptr<const std::string> message_;
  int64_t since_ = 0;
};

// Kept per object for hyperd's life, in a map by ObjectId (which is not repeated here).
struct ObjectStatus {
  // The revision it was last applied from (the inventory's): one string that the objects applied
  // from it share; null before its first apply.
  std::shared_ptr<const std::string> revision;
  std::array<Condition, kConditionTypeCount> conditions;
  const Condition& condition(ConditionType type) const {
    return conditions[static_cast<size_t>(type)];
  }
  Condition& condition(ConditionType type) { return conditions[static_cast<size_t>(type)]; }
  // The condition named `type` ("Ready"), or null when it was never set or no type has that name.
  const Condition* find(std::string_view type) const;
  int failures = 0;            // consecutive failed actions
  Clock::TimePoint retryAt{};  // no action before this (backoff)
  // After a terminal failure (ApplyResponse::terminal): the key of the desired spec it failed
  // with (terminalSpecKey); no retry until the spec differs. Empty otherwise.
  std::string terminalSpec;
  // Its action is in progress in the provider (a build), or waits for one that is: looked at
  // again by checkAt, or sooner when the provider's EventSource wakes the loop. Not a failure.
  bool inProgress = false;
  Clock::TimePoint checkAt = Clock::TimePoint::max();
  std::string driftKey;            // the drift last alerted, so one drift is one alert
  nlohmann::json drift = nullptr;  // the field-level difference while drifted

  nlohmann::json toJson(const ObjectId& id, const Clock& clock) const;
};

struct ReconcileSummary {
  std::string reconcileId;
  std::string trigger;
  std::string revision;  // the revision in force after this reconcile ("" if none yet)
  std::string planHash;
  size_t planned = 0;  // actions in the plan
  size_t succeeded = 0;
  size_t failed = 0;      // failed or skipped
  size_t inProgress = 0;  // in progress in a provider (a build), or waiting for one
  size_t deferred = 0;    // not run: backoff, alert-only drift, suspended
  size_t drifted = 0;     // objects found drifted
  bool sourceChanged = false;
  bool revisionRejected = false;
  bool revisionHeld = false;  // the source's revision is held (hold.h): the last good one stays
  std::string error;          // source or plan error, one line
  double seconds = 0;
  // Where the time went: the source (check + fetch), load and validation, observe + plan (the
  // providers' observe is most of it), and apply (the providers' actions).
  double fetchSeconds = 0;
  double loadSeconds = 0;
  double planSeconds = 0;
  double applySeconds = 0;
  // False: planned from the last full observe, which found the host in sync, because nothing
  // since could have changed it (no host event, no new revision; Controller::InSync); or, with
  // `scoped`, a new revision over one in sync observed only what it moved.
  bool observed = true;
  // The objects a scoped reconcile observed and planned (Engine::movedBetween); 0 otherwise.
  size_t scoped = 0;
  int64_t finishedAt = 0;  // unix milliseconds

  nlohmann::json toJson() const;
};

// hyperd's loop (DESIGN.md "The loop"): triggers only mark the host dirty; reconciles coalesce and
// one runs at a time. A reconcile fetches the source when it may have moved, loads and validates it
// (an invalid revision is rejected whole and the last good one stays in force), observes, plans,
// reports drift, and applies what is not deferred by backoff, an alert-only drift policy or
// suspension. Every step is an event; drift and errors also go to the alert sinks.
class Controller {
 public:
  Controller(Engine& engine, Inventory& inventory, EventLog& events, Source& source,
             AlertSink& alerts, Metrics& metrics, LoopOptions options,
             const Clock& clock = defaultClock());
  ~Controller();

  // Any thread. `fetch`: also check the source (webhook, API, poll); otherwise only observe.
  // Returns a ticket for waitFor().
  uint64_t trigger(const std::string& reason, bool fetch);
  // Blocks until a reconcile that started after trigger() returned `ticket` has finished (true), or
  // the timeout passes / the loop stops (false). `summary` receives that reconcile's summary.
  bool waitFor(uint64_t ticket, std::chrono::milliseconds timeout,
               ReconcileSummary* summary = nullptr);

  // One reconcile on the calling thread (the loop thread; tests call it directly).
  ReconcileSummary reconcileOnce(const std::string& trigger, bool fetch);

  // Host event sources (netlink): when `fd` is readable, `drain` is called; true means the host
  // changed, and an observe-only reconcile follows after `hostDebounce` of quiet. Its trigger is
  // "host-event:<source>" ("route", "nftables", a provider's name), which the reconciles that
  // observed in full are counted by (hyper_full_observes_total{trigger}).
  void addHostEvents(const std::string& source, int fd, std::function<bool()> drain);
  // What a provider's own work went through (the Build provider's queue: queued, steps,
  // finished): taken after every wake of the loop and every reconcile, into the event log (and
  // so /v1/events and `hyperctl events`) and /metrics.
  void addProgressSource(std::function<std::vector<ProgressEvent>()> take);
  void takeProgress();

  // The loop: returns after stop(). Call from one thread.
  void run();
  // Any thread (signal handler thread): the action in flight finishes, nothing new starts.
  void stop();

  void setSuspended(bool suspended);
  bool suspended() const { return suspended_.load(); }
  void setOptions(const LoopOptions& options);  // SIGHUP: new intervals, policies, parallelism

  // Marks journal entries left "started" by a crash as interrupted and reports them (startup).
  void recoverJournal();

  // For the API and tests. Each is a consistent snapshot.
  nlohmann::json statusJson() const;  // source, revisions, last reconcile, counts
  // The last reconcile's summary (empty before the first): statusJson's "lastReconcile" without
  // counting the objects, for callers that poll it.
  ReconcileSummary lastReconcile() const;
  nlohmann::json objectsJson() const;  // every object's conditions and what it depends on
  nlohmann::json driftJson() const;    // objects that are drifted now, with their difference
  nlohmann::json lastPlanJson() const;
  // `hyperctl diff` against this hyperd: loads `files` (not the source) with their file sources
  // from `tree` (what the client sent; null: none), observes and plans against the inventory as a
  // reconcile would, and applies nothing. Waits for a reconcile in flight. {"ok", "revision",
  // "diagnostics" (file:line:column text), "errors", "plan", "text"}.
  nlohmann::json preview(const std::vector<SourceFile>& files, bool prune, bool color,
                         const SourceTree* tree = nullptr);
  std::optional<ObjectStatus> objectStatus(const ObjectId& id) const;
  // Approves the revision that is held (`hyperctl approve`): exactly that one, named by its
  // revision id ("git:<commit>", "dir:<hash>") or its full commit id. It is applied by the
  // reconcile this triggers; the returned ticket is for waitFor(). An error when nothing is held
  // or another revision is.
  Result<uint64_t> approve(const std::string& revision);
  // The held revision's id, or "" when none is held.
  std::string heldRevision() const;
  bool ready() const;  // a valid revision is in force and the first reconcile finished
  std::string appliedRevision() const;

  static const Clock& defaultClock();

 private:
  struct Pending {
    bool any = false;
    bool fetch = false;
    std::set<std::string> reasons;
  };

  void setCondition(ObjectStatus& s, ConditionType type, bool status, std::string_view reason,
                    std::string_view message);
  void setCondition(ObjectStatus& s, ConditionType type, bool status, std::string_view reason,
                    std::shared_ptr<const std::string> message);
  void emit(Event event, bool alert);
  void updateObjectGauges();
  std::string describeSource() const;
  // The source's new, valid revision `next`: held (true: recorded and reported once) when its
  // prune would delete too much and neither the revision itself nor an approval allows it.
  bool holdIfTooDestructive(const std::shared_ptr<const Revision>& next, const Snapshot& snapshot,
                            const LoopOptions& options, const std::string& rid);
  void clearHold(const std::string& why, const std::string& rid);
  // run()'s debounce after the source's wake fd was readable: waits for `debounce` of quiet;
  // true when a relevant change was seen (a reconcile with a fetch follows).
  bool sourceSettled(int sourceFd, const LoopOptions& options);
  // The same for a host event source after `hostDebounce`: true when the host changed.
  bool hostSettled(int fd, const std::function<bool()>& drain, const LoopOptions& options);

  // reconcileOnce's steps, in order (hyperd/loop_steps.h has their inputs and outputs).
  // 1. Advance the source: fetch when it may have moved, load, reject or hold, take an approval.
  SourceStep advanceSource(bool fetch, std::shared_ptr<const Revision> current,
                           const LoopOptions& options, const std::string& rid);
  // The source's snapshot when it moved and was fetched; a failure is step.error (reported once).
  std::optional<Snapshot> fetchSource(SourceStep& step, const std::string& rid);
  // A fetched snapshot: a hold on another revision ends, a rewind is reported, and a revision
  // neither in force, rejected nor held before is loaded.
  void adoptSnapshot(Snapshot snapshot, const LoopOptions& options, const std::string& rid,
                     SourceStep& step);
  // Loads `snapshot` (or takes `preloaded`, its load already made): rejected (reported), held,
  // or the revision in force.
  void loadRevision(Snapshot snapshot, std::optional<RevisionResult> preloaded,
                    const LoopOptions& options, const std::string& rid, SourceStep& step);
  // An approved held revision comes into force, whatever triggered the reconcile.
  void takeApprovedRevision(const std::string& rid, SourceStep& step);
  // 2. Plan against the inventory; plan errors are reported. `priorError`: the reconcile's error
  // so far (a source error still plans).
  // `scope`: observe and plan only these (PlanOptions::scope); null: all.
  PlanStep planRevision(const Revision& current, const LoopOptions& options,
                        const std::string& priorError, const std::string& rid,
                        const std::vector<ObjectId>* scope = nullptr);
  // 3. Defer: backoff, alert-only drift policy, suspension, and what depends on those.
  Deferral deferActions(const Plan& plan, const Revision& current, const RecordList& managed,
                        const LoopOptions& options, Clock::TimePoint now);
  // Drift: one event and alert per distinct drift; the objects are marked Drifted.
  void reportDrift(const Deferral& deferral, const std::string& revision, const std::string& rid);
  // 4. Apply what is not deferred.
  ApplyStep applyPlan(const ApplyInput& in);
  // 5. Record: conditions and backoff of every object, forgotten objects, the last plan; the
  // action failures are reported, then the object gauges.
  void recordObjects(const RecordInput& in);
  // One object with an action outcome: conditions and backoff; the failure event, if any.
  std::optional<Event> recordOutcome(ObjectStatus& s, const ActionOutcome& o,
                                     const RecordInput& in);
  // The summary's duration; with a revision in force also the reconcile metrics and the
  // "reconciled" event; then it is published as the last reconcile's.
  void finishReconcile(ReconcileSummary& summary, std::chrono::steady_clock::time_point started,
                       const Revision* current);

  friend class LoopStepsPeer;  // tests/unit/loop_steps_test.cc

  Engine& engine_;
  Inventory& inventory_;
  EventLog& events_;
  Source& source_;
  AlertSink& alerts_;
  Metrics& metrics_;
  const Clock& clock_;

  std::mutex reconcileMu_;  // one reconcile at a time
  // The host in sync with `revision` against `records` (no action left, no plan or source error,
  // no object failing, backing off or in progress), as the last full observe found it
  // (`observed`), or as a reconcile left it whose every action succeeded. Until a host event, a
  // write to the inventory or another trigger than a poll or a webhook, a reconcile without a
  // new revision plans from it (nothing to do) without asking the providers, when it was
  // observed; one with a new revision observes and plans only what the revision moved
  // (Engine::movedBetween). The first poll after an apply and the drift check (--drift-interval)
  // observe in full and find what no event reported (an informer's resync). Touched by the
  // reconciling thread only, under reconcileMu_.
  struct InSync {
    std::shared_ptr<const Revision> revision;
    std::shared_ptr<const RecordList> records;
    std::string planHash;
    bool observed = true;
  };
  std::optional<InSync> inSync_;
  // Whether this reconcile's trigger lets it trust inSync_ (only a poll, a webhook or a source
  // change; no host event, drift check, retry, approval, resume, reload or "reconcile now"), and
  // the inventory is still as it was then.
  bool mayTrustInSync(const std::string& trigger, const SourceStep& source,
                      const ReconcileSummary& summary);
  // reconcileOnce's shortcut: true (and `summary` filled) when this reconcile can plan from
  // inSync_.
  bool planFromLastObserve(const std::string& trigger, const SourceStep& source,
                           ReconcileSummary& summary);
  // The objects a new revision moved since the one in sync (Engine::movedBetween), when it may
  // be planned from them alone.
  std::optional<std::vector<ObjectId>> movedSinceInSync(const std::string& trigger,
                                                        const SourceStep& source,
                                                        const ReconcileSummary& summary);
  // After a reconcile: whether the host was found in sync, or left in sync by an apply whose
  // every action succeeded (inSync_ is set or cleared).
  void noteInSync(const SourceStep& source, const PlanStep& planned,
                  const ReconcileSummary& summary, const ApplyReport& report, bool wholePlan);
  mutable std::mutex mu_;  // everything below
  std::condition_variable cv_;
  LoopOptions options_;
  Pending pending_;
  uint64_t nextTicket_ = 1;
  uint64_t startedTicket_ = 0;   // tickets <= this were covered by a reconcile that started
  uint64_t finishedTicket_ = 0;  // tickets <= this were covered by a reconcile that finished
  ReconcileSummary lastSummary_;
  std::map<ObjectId, ObjectStatus> objects_;
  // The message setCondition gave last: the next condition with the same text shares it.
  std::shared_ptr<const std::string> lastMessage_;
  // Ready's message of the objects in sync with the revision in force ("the host matches revision
  // ..."): one string per revision, so that an object already in sync with it is seen to be by
  // one pointer comparison and left as it is (recordObjects).
  std::shared_ptr<const std::string> inSyncMessage_;
  std::shared_ptr<const Revision> current_;  // the revision in force
  Snapshot currentSnapshot_;                 // its source metadata (files and tree dropped)
  std::string rejectedRevision_;             // the newest source revision that failed validation
  // The newest source revision, valid but held (hold.h) until approved; the last good revision
  // stays in force meanwhile. A newer source revision replaces it and is judged anew.
  struct Held {
    std::shared_ptr<const Revision> revision;
    Snapshot snapshot;  // files and tree dropped
    HoldVerdict verdict;
    int64_t since = 0;  // unix milliseconds
    // What applying it would delete ("Kind/name", sorted, at most kHeldDeletesShown): the status
    // page shows it with the Approve button.
    std::vector<std::string> deletes;
  };
  static constexpr size_t kHeldDeletesShown = 200;
  std::optional<Held> held_;
  std::string approvedRevision_;  // approve()d; taken by the next reconcile if still held
  std::string lastSourceError_;
  nlohmann::json lastPlan_ = nullptr;
  bool firstReconcileDone_ = false;
  std::atomic<bool> suspended_{false};
  std::atomic<bool> stopping_{false};
  int wakeFd_ = -1;  // eventfd: trigger() and stop() wake run()
  struct HostEventSource {
    std::string reason;  // "host-event:<source>"
    int fd = -1;
    std::function<bool()> drain;
  };
  std::vector<HostEventSource> hostEvents_;
  std::vector<std::function<std::vector<ProgressEvent>()>> progressSources_;
};

}  // namespace hyper::controller
