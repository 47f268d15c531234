#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "reconciler/provider.h"

namespace hyper::testing {

// A hand-written Provider with an in-memory "host" (ObjectId -> spec as applied) and injectable
// errors, for unit tests and benchmarks (terraform-plugin-framework's testprovider). It never
// touches the machine.
//
// Behaviour:
//  - observe: exists/fields/fingerprint from the host map (fields = the stored spec), one batch,
//    counted; one answer per id even when it is both desired and managed; with a scope
//    (PartialObserve), only the scoped ids. What a change moves: setMoves (default: everything).
//    The host keeps each entry's fingerprint, computed when the entry is written, as a real host
//    keeps its state: an observe copies what is there and hashes nothing.
//  - plan: absent on the host -> Create; host spec differs from the desired spec -> Update, or
//    Replace when a top-level spec field in replaceFields differs; not desired but managed ->
//    Delete. drift is set when the inventory's last applied spec equals the desired one (the host
//    changed, not the source).
//  - apply: writes or erases the host map; records the order of apply calls and the highest
//    number of applies running at once.
//  - references: spec.dependsOn (a name, or an array of names) of kind spec.dependsOnKind, or of
//    the object's own kind.
//  - validate: an error at spec.invalid when the spec has "invalid": true.
//
// Thread-safe: apply may run concurrently (the executor does that). Configuration setters may be
// called at any time.
class FakeProvider : public Provider, public PartialObserve {
 public:
  explicit FakeProvider(std::string name = "fake", std::vector<std::string> kinds = {"FakeThing"});

  // Provider
  std::string name() const override { return name_; }
  std::vector<std::string> kinds() const override { return kinds_; }
  void validate(const ValidateRequest& req, ValidateResponse& resp) const override;
  std::vector<Reference> references(const Object& object) const override;
  void observe(const ObserveRequest& req, ObserveResponse& resp) override;
  void plan(const PlanRequest& req, PlanResponse& resp) const override;
  void apply(const ApplyRequest& req, ApplyResponse& resp) override;
  // With setBatches(true): takes batches (Provider::applyBatch), recording their sizes, and
  // applies each request as apply() does.
  bool batchesApplies() const override;
  void applyBatch(const std::vector<const ApplyRequest*>& reqs,
                  std::vector<ApplyResponse>& resps) override;
  // PartialObserve: what setMoves says; nullopt (all) until it is set.
  std::optional<std::vector<ObjectId>> alsoMovedBy(const RevisionChange& change) const override;

  // Configuration.
  using Moves = std::function<std::optional<std::vector<ObjectId>>(const RevisionChange&)>;
  void setMoves(Moves moves);
  void setBatches(bool batches);
  void setReplaceFields(std::set<std::string> topLevelSpecFields);
  void setSensitiveFields(std::set<std::string> topLevelSpecFields);
  void setFailApply(std::set<ObjectId> ids);  // apply of these fails with "injected failure"
  // What an injected failure tells the loop (ApplyResponse::retryAfter, terminal).
  void setFailureHint(std::optional<std::chrono::milliseconds> retryAfter, bool terminal);
  void setFailObserve(bool fail);  // observe reports "injected observe failure"
  void setApplyDelay(std::chrono::milliseconds delay);

  // The simulated host: hand changes (drift) and inspection.
  void setHostState(const ObjectId& id, Json spec);
  void eraseHostState(const ObjectId& id);
  std::optional<Json> hostState(const ObjectId& id) const;
  std::map<ObjectId, Json> hostSnapshot() const;

  // What happened.
  int observeCalls() const;
  std::vector<ObjectId> lastObserved() const;  // the ids the last observe answered, sorted
  int applyCalls() const;
  std::vector<ObjectId> applyOrder() const;  // in the order apply calls started
  int maxConcurrentApplies() const;
  std::vector<size_t> batchSizes() const;  // of each applyBatch call, in order
  // The deadline and cancel flag of the last apply call (ApplyRequest).
  ApplyRequest::Clock::time_point lastApplyDeadline() const;
  const std::atomic<bool>* lastApplyCancel() const;
  // ApplyRequest::references of the last apply of `id`.
  std::map<ObjectId, ManagedRecord> referencesSeenBy(const ObjectId& id) const;
  void resetCounters();

 private:
  std::string name_;
  std::vector<std::string> kinds_;

  struct HostEntry {
    Json spec;
    std::string fingerprint;  // of spec
  };
  static HostEntry hostEntry(Json spec);

  mutable std::mutex mu_;
  std::map<ObjectId, HostEntry> host_;
  std::set<std::string> replaceFields_;
  std::set<std::string> sensitiveFields_;
  std::set<ObjectId> failApply_;
  std::optional<std::chrono::milliseconds> failRetryAfter_;
  bool failTerminal_ = false;
  ApplyRequest::Clock::time_point lastDeadline_{};
  const std::atomic<bool>* lastCancel_ = nullptr;
  std::map<ObjectId, std::map<ObjectId, ManagedRecord>> referencesSeen_;
  bool failObserve_ = false;
  std::chrono::milliseconds applyDelay_{0};
  int observeCalls_ = 0;
  std::vector<ObjectId> lastObserved_;
  Moves moves_;
  std::vector<ObjectId> applyOrder_;
  int inFlight_ = 0;
  int maxInFlight_ = 0;
  bool batches_ = false;
  std::vector<size_t> batchSizes_;
};

}  // namespace hyper::testing
