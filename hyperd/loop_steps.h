#pragma once

// The steps of Controller::reconcileOnce (loop.cc), each with its input and output: advance the
// source, plan, defer, apply, record. The loop itself includes only loop.h; this header is for
// loop.cc and the steps' unit tests (tests/unit/loop_steps_test.cc).

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "hyperd/loop.h"

namespace hyper::controller {

// advanceSource: which revision is in force after checking the source (when asked or none is in
// force yet), loading and validating what moved, judging a hold, and taking an approval.
struct SourceStep {
  std::shared_ptr<const Revision> current;  // the revision in force afterwards (null: none yet)
  std::string error;                        // "source <describe>: <why>" when the source failed
  bool sourceChanged = false;               // a new revision was loaded, or an approved one taken
  bool revisionRejected = false;
  bool revisionHeld = false;
  double fetchSeconds = 0;
  double loadSeconds = 0;
};

// planRevision: the inventory's records and the plan against them.
struct PlanStep {
  // A shared snapshot of the cached records: no copy, and the apply does not change it.
  std::shared_ptr<const RecordList> records;
  // Creates a crash or a failure left unconfirmed: deleted by a prune once gone from the source.
  RecordList unconfirmed;
  PlanResult planned;
  std::map<ObjectId, std::string> planErrors;  // the plan's error diagnostics, by object
  std::string error;  // the reconcile's error after planning (the prior one, or a newer one)
  double planSeconds = 0;
};

// deferActions: what of the plan is not run now, and why (backoff, alert-only drift policy,
// suspension, or waiting for one of those), and the actions that are drift.
struct Deferral {
  std::set<ObjectId> deferred;
  std::map<ObjectId, std::string> reasons;
  std::vector<const PlanAction*> drifted;  // into the plan deferActions was given
};

// applyPlan's input: the plan without what is deferred.
struct ApplyInput {
  const Plan& toRun;
  // The whole plan was empty and had no errors: the records are still refreshed (labels or spec
  // text that moved without a host change).
  bool refreshOnly = false;
  const Revision& current;
  const RecordList& managed;
  const RecordList* unconfirmed = nullptr;
  const LoopOptions& options;
  std::string reconcileId;
  // toRun is the whole plan (nothing deferred) and it planned without errors
  // (ApplyOptions::wholePlan).
  bool wholePlan = false;
};

struct ApplyStep {
  ApplyReport report;
  double applySeconds = 0;
};

// recordObjects's input: everything that decides the objects' conditions and backoff.
struct RecordInput {
  const Plan& plan;  // the whole plan, deferred actions included
  std::string planHash;
  const Revision& current;
  const Deferral& deferral;
  const std::map<ObjectId, std::string>& planErrors;
  const ApplyReport& report;
  const LoopOptions& options;
  Clock::TimePoint now;  // the time deferral was judged at; retries count from it
  std::string reconcileId;
};

struct ActionTally {
  size_t succeeded = 0;
  size_t failed = 0;      // failed or skipped
  size_t inProgress = 0;  // in progress in a provider, or waiting for one
};

// The free steps (no controller state).

// The plan's error diagnostics by object ("Kind/name"; an empty id for the whole plan).
std::map<ObjectId, std::string> planErrorsOf(const Diagnostics& diagnostics);
// Defers, transitively, every action that depends on a deferred one ("waits for ...").
void deferDependents(const Plan& plan, Deferral& deferral);
// The plan without the deferred actions (same revision, same order).
Plan withoutDeferred(const Plan& plan, const std::set<ObjectId>& deferred);
// The wait after `failures` consecutive failed actions: backoffBase doubled per failure after
// the first, at most backoffMax.
std::chrono::milliseconds backoffDelay(int failures, const LoopOptions& options);
// Counts the outcomes and adds them to hyper_actions_total.
ActionTally tallyOutcomes(const ApplyReport& report, Metrics& metrics);

}  // namespace hyper::controller
