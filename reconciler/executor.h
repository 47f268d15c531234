#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "reconciler/plan.h"

namespace hyper {

// What running one action gave: its status and, for a failure, when to try again (the
// provider's ApplyResponse::retryAfter and terminal). A bare Status converts.
struct ActionResult {
  Status status;
  std::optional<std::chrono::milliseconds> retryAfter;
  bool terminal = false;
  // Not failed, not done: the provider took the work and runs it on its own (a build in its
  // queue); `status` says so, and retryAfter is when to look again.
  bool inProgress = false;

  ActionResult() = default;
  ActionResult(Status s) : status(std::move(s)) {}  // NOLINT: implicit on purpose
};

struct ActionOutcome {
  ObjectId id;
  ActionType type = ActionType::Create;
  Status status;         // ok, or why the action failed
  bool skipped = false;  // not run because an action it depends on failed
  double seconds = 0;
  std::optional<std::chrono::milliseconds> retryAfter;  // failed: retry after this long
  bool terminal = false;  // failed: retry only once the desired spec changes
  // The provider is still doing it (ActionResult::inProgress): not a failure. `waiting`: skipped
  // only because an action it depends on is in progress (or waiting itself).
  bool inProgress = false;
  bool waiting = false;
  bool failed() const { return !status.isOk() && !inProgress && !waiting; }
};

// Runs one action; must be safe to call from several threads for different objects.
using ActionRunner = std::function<ActionResult(const PlanAction&)>;
// Runs several actions together (one provider's batch); one result per action, in order.
using BatchRunner = std::function<std::vector<ActionResult>(const std::vector<const PlanAction*>&)>;

struct ExecutorOptions {
  int parallelism = 4;  // bounded worker pool
  // Batching: actions with the same non-empty batchKey that are ready at the same time run as one
  // call of runBatch (the net provider's: one `ip -batch` and one nftables transaction for all of
  // them) on one worker, at most maxBatch at once. An empty key, or no runBatch: one at a time.
  std::function<std::string(const PlanAction&)> batchKey;
  BatchRunner runBatch;
  size_t maxBatch = 4096;
  // Whether the batch of the key of this (ready) action may also take the non-delete actions of
  // that key that wait only for actions in the batch (a NetworkPolicy with its new Network), so
  // that they are one batch rather than one after another. They come after what they wait for;
  // runBatch must not carry one out when an action it waits for failed (its result is then the
  // skip, as if it had waited). Null: never.
  std::function<bool(const PlanAction&)> batchTakesDependents;
};

// Executes a plan in dependency order: deletes first, children before parents; then creates,
// updates and replaces, parents before children. Actions whose dependencies are done run in
// parallel on at most `parallelism` threads, or together as a batch (ExecutorOptions::batchKey).
// An action whose dependency failed is skipped (and reported), the rest go on; one whose
// dependency is in progress is skipped as waiting (also within a batch that took it with what it
// waits for). Returns one outcome per action, in plan order.
std::vector<ActionOutcome> executePlan(const Plan& plan, const ActionRunner& run,
                                       const ExecutorOptions& options);

}  // namespace hyper
