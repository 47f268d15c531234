#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "reconciler/diagnostic.h"
#include "reconciler/managed_record.h"
#include "reconciler/object.h"
#include "reconciler/plan.h"
#include "reconciler/record_list.h"

namespace hyper {

// The provider contract (see docs/design.md). A provider owns some kinds and is asked, never
// tells. Every call takes a request struct and fills a response that carries diagnostics, so a
// field added later breaks no provider (terraform-plugin-framework). Providers never throw: any
// exception from a library is caught inside and becomes a diagnostic.

struct ValidateRequest {
  // Every desired object of this provider's kinds, already schema-valid. Cross-object checks
  // (overlapping CIDRs, duplicate bridge names) happen here.
  std::vector<const Object*> objects;
  // Every object of the revision, of every kind (read-only), for checks across kinds: a VM's
  // address must lie in its Network's cidr.
  const std::vector<std::shared_ptr<const Object>>* revision = nullptr;
};
struct ValidateResponse {
  Diagnostics diagnostics;  // fieldPath set, location filled in by the engine
};

// A reference from one object to another, found in its spec: an edge of the dependency graph.
struct Reference {
  std::string fieldPath;  // "spec.network"
  ObjectId target;
};

struct ObserveRequest {
  std::vector<const Object*> desired;         // this provider's desired objects
  std::vector<const ManagedRecord*> managed;  // this provider's inventory rows
  // Every object of the revision (read-only; null when observing without one, as `get` does).
  const std::vector<std::shared_ptr<const Object>>* revision = nullptr;
  // Every inventory record of every kind (read-only): what other providers applied (a VM's
  // allocated address, for the policies that select it).
  const RecordList* inventory = nullptr;
  // The build keys (handles "key") this revision's content was last applied with, in full, by
  // "Kind/name", newest first (Inventory::contentKeys): a reproducible kind takes one again,
  // when its artifacts are still there, rather than what its moving inputs (a Debian suite's
  // lists) resolve to now. A revision keeps its artifacts; a rollback (a revert, an old commit)
  // gets the ones it had. Null: none (a first apply, a rebuild).
  const KeptKeys* keptKeys = nullptr;
  // Given only to a PartialObserve provider: observe just these (sorted) and leave the others
  // out of the response. `desired` and `managed` stay whole, for what is worked out from all of
  // them (the tables every object's rules are written in). Null: observe every object.
  const std::vector<ObjectId>* scope = nullptr;
};

// What the host has for one object.
struct ObservedState {
  bool exists = false;
  Json fields;               // observed values, shaped like the spec where they can be compared
  std::string fingerprint;   // digest of what is on the host (compared with the inventory's)
  std::string foreignOwner;  // non-empty: something hyper does not own holds the name/address
  std::string note;          // human detail ("bridge is down")
  // What observe worked out about the object's surroundings that plan needs and the host does not
  // hold as the object's own state: the addresses a policy's selector picks, a VM's placement on
  // its network. Never compared as drift; plan copies what apply needs into the action.
  Json context;
};

struct ObserveResponse {
  std::map<ObjectId, ObservedState> observed;  // one per desired or managed object
  Diagnostics diagnostics;
};

struct PlanRequest {
  ObjectId id;
  const Object* desired = nullptr;  // null: not in the source (prune candidate)
  const ObservedState* observed = nullptr;
  const ManagedRecord* managed = nullptr;  // null: hyper never applied it
};
struct PlanResponse {
  std::optional<PlanAction> action;  // empty when in sync
  Diagnostics diagnostics;           // e.g. a collision with something hyper does not own
};

struct ApplyRequest {
  using Clock = std::chrono::steady_clock;

  const PlanAction* action = nullptr;
  const Object* desired = nullptr;         // null for Delete
  const ManagedRecord* managed = nullptr;  // null when hyper never applied it
  // An apply that waits (a VM start waiting for readiness) gives up at the deadline, and soon
  // after `cancel` becomes true (hyperd is stopping), leaving nothing half-made behind.
  Clock::time_point deadline = Clock::time_point::max();
  const std::atomic<bool>* cancel = nullptr;
  // The inventory records, read as this apply starts, of the objects this one references
  // (action->dependsOn; applied before it): what they hold now, such as the artifact digest a
  // Build has just produced for the VM that boots from it. An object never applied is absent.
  std::map<ObjectId, ManagedRecord> references;
  // The provider may take long work (a build) into a queue of its own and answer
  // ApplyResponse::inProgress instead of waiting for it: hyperd's loop comes back (sooner when the
  // provider's EventSource wakes it). False (hyperctl): the work is finished before apply returns.
  bool mayDefer = false;

  bool cancelled() const { return cancel && cancel->load(); }
  // Time left before the deadline (zero when past it), at most `cap`.
  std::chrono::milliseconds timeLeft(std::chrono::milliseconds cap) const {
    if (deadline == Clock::time_point::max()) {
      return cap;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return std::clamp(left, std::chrono::milliseconds(0), cap);
  }
};
struct ApplyResponse {
  Json handles;             // stored in the inventory
  std::string fingerprint;  // of the host state as this action left it
  Diagnostics diagnostics;  // any error means the action failed
  // For a failed action (controller-runtime's RequeueAfter and TerminalError): try again after
  // this long rather than after the loop's exponential backoff, or not at all until the object's
  // desired spec changes (retrying cannot help: the host lacks what the spec asks for).
  std::optional<std::chrono::milliseconds> retryAfter;
  bool terminal = false;
  // With ApplyRequest::mayDefer: the work was taken and goes on (nothing is recorded yet; the
  // object is Reconciling, and what depends on it waits). retryAfter: when to ask again.
  bool inProgress = false;
  std::string progress;  // one line on where it is ("queued", "mmdebstrap bookworm")
};

class Provider {
 public:
  virtual ~Provider() = default;

  virtual std::string name() const = 0;
  virtual std::vector<std::string> kinds() const = 0;

  // Semantic checks the schema cannot express. Pure: no host I/O.
  virtual void validate(const ValidateRequest& req, ValidateResponse& resp) const = 0;

  // The objects `object` refers to. Pure. Also called on a ManagedRecord's spec for deletes.
  virtual std::vector<Reference> references(const Object& object) const = 0;

  // Observes every requested object in one batch (one dump per host facility, never one system
  // call per object). Called once per reconcile, before plan.
  virtual void observe(const ObserveRequest& req, ObserveResponse& resp) = 0;

  // The action needed for one object, or none. Pure given the request: Fields the host fills in
  // are normalised so that apply followed by plan is empty.
  virtual void plan(const PlanRequest& req, PlanResponse& resp) const = 0;

  // Idempotent: applying an action twice equals applying it once, and applying after a crash
  // mid-way converges. May be called concurrently for independent objects.
  virtual void apply(const ApplyRequest& req, ApplyResponse& resp) = 0;

  // Optional. A provider whose host changes cost less together (one `ip -batch` for many bridges,
  // one nftables transaction for many objects' rules) returns true, and the engine hands it the
  // actions of its kinds that are ready at the same time in one applyBatch call (each journaled
  // first and recorded after, as alone). It fills one response per request, in order, each as
  // apply would have: one action's failure is that action's, not its batch-mates'. The default
  // applies them one by one.
  virtual bool batchesApplies() const { return false; }
  // Optional, with batchesApplies. True: a batch may also hold, after the actions they depend on,
  // creates and updates that wait only for actions in the same batch (a NetworkPolicy with its
  // new Network: one batch, one table write, instead of two). Their requests' references hold the
  // records from before the batch. applyBatch must not carry out an action one of whose
  // dependencies (PlanAction::dependsOn) in the batch failed; its response is then ignored and
  // the engine reports it skipped, as if it had waited.
  virtual bool batchesDependents() const { return false; }
  virtual void applyBatch(const std::vector<const ApplyRequest*>& reqs,
                          std::vector<ApplyResponse>& resps) {
    resps.assign(reqs.size(), ApplyResponse{});
    for (size_t i = 0; i < reqs.size(); ++i) {
      apply(*reqs[i], resps[i]);
    }
  }
};

// Optional abilities are small interfaces of their own that a provider also implements; the
// engine and hyperd ask with dynamic_cast, so a provider without them carries no stubs.

// What a new revision changed against one the host was in sync with.
struct RevisionChange {
  const std::vector<std::shared_ptr<const Object>>* before = nullptr;  // sorted by id
  const std::vector<std::shared_ptr<const Object>>* after = nullptr;   // sorted by id
  // Added, removed, or different in anything a provider reads (spec, labels, annotations, drift
  // policy, file sources); sorted, of every kind.
  std::vector<ObjectId> changed;
};

// A provider that can observe and plan part of its objects. When a new revision comes while the
// last one is in sync with the host (no host event since), hyperd observes and plans only the
// objects the change can move: those it changed, and those each provider names here. A provider
// without this interface has all its objects observed whenever anything changed.
class PartialObserve {
 public:
  virtual ~PartialObserve() = default;
  // Of this provider's objects in `change.before` or `change.after`, the ones besides
  // `change.changed` whose observe or plan may differ after the change: what observe works out
  // from other objects (ObservedState::context: the addresses a policy selects, the taps on a
  // Network). nullopt: every one of them. Pure.
  virtual std::optional<std::vector<ObjectId>> alsoMovedBy(const RevisionChange& change) const = 0;
};

// A provider that learns of host changes by itself (a VM process exited) offers a file descriptor
// that becomes readable then; hyperd polls it with its host events and observes at once.
class EventSource {
 public:
  virtual ~EventSource() = default;
  // Starts watching (hyperd calls it once, before its loop; hyperctl never does). The descriptor
  // stays valid for the provider's life and becomes readable when something changed.
  virtual Result<int> startWatching() = 0;
  // Called when the descriptor is readable; true when something changed.
  virtual bool drainEvents() = 0;
};

// One thing a provider's own work went through (a build queued, started, a step, finished, taken
// from the cache), for the event log, the terminal of a waiting hyperctl and hyperd's metrics.
struct ProgressEvent {
  ObjectId object;
  std::string type;  // "build-queued", "build-step", ...
  std::string level = "info";
  std::string message;  // one line for people; never a secret
  Json details = Json::object();
  // Measurements to add to hyperd's /metrics: a counter incremented by `value`, or a histogram
  // observation of `value` in `buckets`.
  struct Sample {
    std::string name;
    std::string help;
    std::vector<std::pair<std::string, std::string>> labels;
    double value = 1;
    std::vector<double> buckets;  // empty: a counter
  };
  std::vector<Sample> samples;
};

// A provider whose work goes on beside the reconcile (the Build provider's queue) reports what it
// went through here; hyperd takes it when its EventSource wakes the loop, hyperctl while it waits.
class ProgressSource {
 public:
  virtual ~ProgressSource() = default;
  // What happened since the last call, oldest first (bounded: the oldest are dropped beyond a few
  // thousand untaken).
  virtual std::vector<ProgressEvent> takeProgress() = 0;
};

}  // namespace hyper
