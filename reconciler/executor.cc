#include "reconciler/executor.h"

#include "base/log_context.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

namespace hyper {

namespace {

enum class NodeState { Pending, Queued, Running, Done };

struct Node {
  bool isDelete = false;
  NodeState state = NodeState::Pending;
  size_t waitingOn = 0;             // unfinished prerequisites
  std::vector<size_t> dependents;   // actions that wait for this one
  std::optional<size_t> blockedBy;  // the first prerequisite that did not succeed
  bool succeeded = false;
  bool inProgress = false;  // in progress, or waiting on one that is
  std::string cause;  // for an action that failed or was skipped: the root failure, for messages
};

std::string describe(const PlanAction& a) {
  return std::string(actionTypeName(a.type)) + " of " + a.id.str();
}

std::vector<ActionResult> runBatchGuarded(const BatchRunner& run,
                                          const std::vector<const PlanAction*>& actions) {
  std::string failure;
  try {
    std::vector<ActionResult> results = run(actions);
    if (results.size() == actions.size()) {
      return results;
    }
    failure = "a batch of " + std::to_string(actions.size()) + " actions gave " +
              std::to_string(results.size()) + " results";
  } catch (const std::exception& e) {
    failure = "a batch of " + std::to_string(actions.size()) + " actions threw: " + e.what();
  } catch (...) {
    failure = "a batch of " + std::to_string(actions.size()) + " actions threw";
  }
  std::vector<ActionResult> out;
  for (const PlanAction* a : actions) {
    out.emplace_back(Status::error(describe(*a) + ": " + failure));
  }
  return out;
}

ActionResult runGuarded(const ActionRunner& run, const PlanAction& action) {
  // The runner is other modules' code; an exception escaping on a worker thread would terminate
  // the process, so it becomes a failed action instead.
  try {
    return run(action);
  } catch (const std::exception& e) {
    return Status::error(describe(action) + " threw: " + e.what());
  } catch (...) {
    return Status::error(describe(action) + " threw an unknown exception");
  }
}

// One execution of a plan. Scheduling state lives under one mutex; workers block on a condition
// variable until an action is ready or everything is done.
//
// Ordering: a delete of X waits for the deletes of every object that refers to X (children are
// deleted first). Every non-delete waits until all deletes have finished (deletes free names and
// addresses that creates may need) and for the non-delete actions of the objects it refers to
// (parents first). Only real dependency edges propagate failure: a failed delete does not stop an
// unrelated create.
class PlanRun {
 public:
  PlanRun(const Plan& plan, const ActionRunner& run, const ExecutorOptions& options)
      : plan_(plan), run_(run), options_(options) {
    const auto& actions = plan.actions;
    nodes_.resize(actions.size());
    outcomes_.resize(actions.size());
    std::map<ObjectId, std::vector<size_t>> deletes;
    std::map<ObjectId, std::vector<size_t>> others;
    for (size_t i = 0; i < actions.size(); ++i) {
      nodes_[i].isDelete = actions[i].type == ActionType::Delete;
      (nodes_[i].isDelete ? deletes : others)[actions[i].id].push_back(i);
      outcomes_[i].id = actions[i].id;
      outcomes_[i].type = actions[i].type;
      if (nodes_[i].isDelete) {
        ++deletesLeft_;
      }
    }
    for (size_t i = 0; i < actions.size(); ++i) {
      for (const auto& target : actions[i].dependsOn) {
        if (nodes_[i].isDelete) {
          // i refers to target, so target's delete waits for i's.
          addEdges(i, deletes, target, /*waiterIsTarget=*/true);
        } else {
          addEdges(i, others, target, /*waiterIsTarget=*/false);
        }
      }
    }
  }

  std::vector<ActionOutcome> execute(int parallelism) {
    if (nodes_.empty()) {
      return {};
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      std::vector<size_t> skips;
      for (size_t i = 0; i < nodes_.size(); ++i) {
        release(i, skips);
      }
      settle(skips);
    }
    size_t workers =
        std::clamp<size_t>(static_cast<size_t>(std::max(parallelism, 1)), 1, nodes_.size());
    std::vector<std::thread> threads;
    threads.reserve(workers);
    const std::string& reconcileId = currentReconcileId();
    for (size_t w = 0; w < workers; ++w) {
      // Out of threads (EAGAIN) is an environmental failure: run with the workers we have, and on
      // this thread alone if there are none, rather than let the exception escape.
      try {
        threads.emplace_back([this, reconcileId] {
          ReconcileIdScope scope(reconcileId);  // the providers' log lines name the reconcile
          work();
        });
      } catch (const std::system_error&) {
        break;
      }
    }
    if (threads.empty()) {
      work();
    }
    for (auto& t : threads) {
      t.join();
    }
    return std::move(outcomes_);
  }

 private:
  void addEdges(size_t referrer, const std::map<ObjectId, std::vector<size_t>>& index,
                const ObjectId& target, bool waiterIsTarget) {
    auto it = index.find(target);
    if (it == index.end()) {
      return;  // not in the plan: nothing to wait for
    }
    for (size_t t : it->second) {
      if (t == referrer) {
        continue;
      }
      size_t first = waiterIsTarget ? referrer : t;
      size_t waiter = waiterIsTarget ? t : referrer;
      nodes_[first].dependents.push_back(waiter);
      ++nodes_[waiter].waitingOn;
    }
  }

  void work() {
    std::unique_lock<std::mutex> lk(mu_);
    while (true) {
      cv_.wait(lk, [this] { return !ready_.empty() || finished_ == nodes_.size(); });
      if (ready_.empty()) {
        return;
      }
      std::vector<size_t> batch = takeReady();
      for (size_t i : batch) {
        nodes_[i].state = NodeState::Running;
      }
      running_ += batch.size();
      lk.unlock();

      auto start = std::chrono::steady_clock::now();
      std::vector<ActionResult> results;
      if (batch.size() == 1) {
        results.push_back(runGuarded(run_, plan_.actions[batch[0]]));
      } else {
        std::vector<const PlanAction*> actions;
        for (size_t i : batch) {
          actions.push_back(&plan_.actions[i]);
        }
        results = runBatchGuarded(options_.runBatch, actions);
      }
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

      lk.lock();
      running_ -= batch.size();
      std::vector<size_t> skips;
      for (size_t k = 0; k < batch.size(); ++k) {
        size_t i = batch[k];
        if (nodes_[i].blockedBy) {
          // Taken with what it waits for, which did not succeed: runBatch did not carry it out.
          skip(i, skips);
          continue;
        }
        ActionResult& result = results[k];
        outcomes_[i].seconds = seconds;
        if (!result.status.isOk()) {
          outcomes_[i].retryAfter = result.retryAfter;
          outcomes_[i].terminal = result.terminal;
          outcomes_[i].inProgress = result.inProgress;
          nodes_[i].inProgress = result.inProgress;
        }
        finish(i, std::move(result.status), /*skipped=*/false, skips);
      }
      settle(skips);
    }
  }

  // The next ready action, with every other ready one of its batch key (in plan order of
  // readiness), up to maxBatch. Call with mu_ held and ready_ not empty.
  std::vector<size_t> takeReady() {
    size_t first = ready_.front();
    ready_.pop_front();
    std::vector<size_t> batch{first};
    if (!options_.batchKey || !options_.runBatch) {
      return batch;
    }
    const std::string key = options_.batchKey(plan_.actions[first]);
    if (key.empty()) {
      return batch;
    }
    std::deque<size_t> rest;
    for (size_t i : ready_) {
      if (batch.size() < options_.maxBatch && options_.batchKey(plan_.actions[i]) == key) {
        batch.push_back(i);
      } else {
        rest.push_back(i);
      }
    }
    ready_.swap(rest);
    if (options_.batchTakesDependents && deletesLeft_ == 0 &&
        options_.batchTakesDependents(plan_.actions[first])) {
      takeDependents(key, batch);
    }
    return batch;
  }

  // Adds to `batch` (non-deletes of `key`) every pending non-delete of that key whose unfinished
  // prerequisites are all in the batch, after them, up to maxBatch. Call with mu_ held.
  void takeDependents(const std::string& key, std::vector<size_t>& batch) {
    std::map<size_t, size_t> metInBatch;  // pending dependent -> its prerequisites in the batch
    for (size_t k = 0; k < batch.size() && batch.size() < options_.maxBatch; ++k) {
      if (nodes_[batch[k]].isDelete) {
        return;  // deletes go children first: only a batch of creates and updates grows
      }
      for (size_t d : nodes_[batch[k]].dependents) {
        Node& dep = nodes_[d];
        if (dep.state != NodeState::Pending || dep.isDelete || dep.blockedBy ||
            ++metInBatch[d] != dep.waitingOn || options_.batchKey(plan_.actions[d]) != key) {
          continue;
        }
        dep.state = NodeState::Queued;
        batch.push_back(d);
        if (batch.size() == options_.maxBatch) {
          break;
        }
      }
    }
  }

  // Queues node i if everything it waits for is done; if one of those did not succeed, i is
  // skipped instead (collected in `skips`, resolved by settle() without recursion, so a long
  // chain of skips cannot overflow the stack).
  void release(size_t i, std::vector<size_t>& skips) {
    Node& n = nodes_[i];
    if (n.state != NodeState::Pending || n.waitingOn > 0 || (!n.isDelete && deletesLeft_ > 0)) {
      return;
    }
    n.state = NodeState::Queued;
    if (n.blockedBy) {
      skips.push_back(i);
    } else {
      ready_.push_back(i);
    }
  }

  void finish(size_t i, Status status, bool skipped, std::vector<size_t>& skips) {
    Node& n = nodes_[i];
    n.state = NodeState::Done;
    n.succeeded = status.isOk();
    if (!n.succeeded && !skipped) {
      n.cause = describe(plan_.actions[i]) + (n.inProgress ? " is in progress" : " failed");
    }
    outcomes_[i].status = std::move(status);
    outcomes_[i].skipped = skipped;
    ++finished_;
    for (size_t d : n.dependents) {
      Node& dep = nodes_[d];
      --dep.waitingOn;
      if (!n.succeeded && !dep.blockedBy) {
        dep.blockedBy = i;
      }
      release(d, skips);
    }
    if (n.isDelete && --deletesLeft_ == 0) {
      for (size_t k = 0; k < nodes_.size(); ++k) {
        release(k, skips);
      }
    }
  }

  void skip(size_t i, std::vector<size_t>& skips) {
    size_t b = *nodes_[i].blockedBy;
    const Node& blocker = nodes_[b];
    std::string message = "skipped: ";
    if (outcomes_[b].skipped) {
      message += describe(plan_.actions[b]) + " was skipped because " + blocker.cause;
    } else {
      message += blocker.cause;
    }
    nodes_[i].cause = blocker.cause;
    nodes_[i].inProgress = blocker.inProgress;
    outcomes_[i].waiting = blocker.inProgress;
    finish(i, Status::error(message), /*skipped=*/true, skips);
  }

  // Resolves pending skips, breaks a stall, and wakes workers.
  void settle(std::vector<size_t>& skips) {
    while (true) {
      while (!skips.empty()) {
        size_t i = skips.back();
        skips.pop_back();
        skip(i, skips);
      }
      if (!ready_.empty() || running_ > 0 || finished_ == nodes_.size()) {
        break;
      }
      // Nothing ready, nothing running, not done: the remaining actions wait on each other. The
      // plan's invariants exclude this (the graph is acyclic), but hanging would be worse than
      // failing them.
      size_t stuck = nodes_.size();
      for (size_t i = 0; i < nodes_.size() && stuck == nodes_.size(); ++i) {
        if (nodes_[i].state == NodeState::Pending && nodes_[i].waitingOn > 0) {
          stuck = i;
        }
      }
      if (stuck == nodes_.size()) {
        break;  // unreachable: a pending non-delete without prerequisites implies a stuck delete
      }
      finish(
          stuck,
          Status::error(describe(plan_.actions[stuck]) + " not run: its dependencies form a cycle"),
          /*skipped=*/false, skips);
    }
    cv_.notify_all();
  }

  const Plan& plan_;
  const ActionRunner& run_;
  const ExecutorOptions& options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Node> nodes_;
  std::vector<ActionOutcome> outcomes_;
  std::deque<size_t> ready_;
  size_t finished_ = 0;
  size_t running_ = 0;
  size_t deletesLeft_ = 0;
};

}  // namespace

std::vector<ActionOutcome> executePlan(const Plan& plan, const ActionRunner& run,
                                       const ExecutorOptions& options) {
  PlanRun planRun(plan, run, options);
  return planRun.execute(options.parallelism);
}

}  // namespace hyper
