#include "reconciler/executor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "base/log_context.h"
#include "reconciler/engine.h"
#include "tests/fakes/fake_provider.h"

namespace hyper {
namespace {

ObjectId thing(const std::string& name) { return {"FakeThing", name}; }

PlanAction act(ActionType type, const std::string& name, std::vector<std::string> deps = {}) {
  PlanAction a;
  a.type = type;
  a.id = thing(name);
  a.provider = "fake";
  for (const auto& d : deps) {
    a.dependsOn.push_back(thing(d));
  }
  return a;
}

// Records which actions ran, in the order they started, and fails the ones asked to.
class Recorder {
 public:
  explicit Recorder(std::set<std::string> failing = {}) : failing_(std::move(failing)) {}

  ActionRunner runner() {
    return [this](const PlanAction& a) -> Status {
      std::lock_guard<std::mutex> lk(mu_);
      order_.push_back(std::string(actionTypeName(a.type)) + " " + a.id.name);
      if (failing_.count(a.id.name) > 0) {
        return Status::error("boom " + a.id.name);
      }
      return Status::ok();
    };
  }
  std::vector<std::string> order() const {
    std::lock_guard<std::mutex> lk(mu_);
    return order_;
  }
  // Position of an action in the start order, or -1 when it never ran.
  int position(const std::string& entry) const {
    auto o = order();
    auto it = std::find(o.begin(), o.end(), entry);
    return it == o.end() ? -1 : static_cast<int>(it - o.begin());
  }

 private:
  std::set<std::string> failing_;
  mutable std::mutex mu_;
  std::vector<std::string> order_;
};

// Holds every action until `target` actions are running at once. Once the target was reached,
// later actions pass straight through. The timeout is not a timing assertion: it only turns a
// broken (serial) executor into a failure instead of a hang. Reports the highest concurrency
// seen.
class Rendezvous {
 public:
  explicit Rendezvous(int target) : target_(target) {}

  Status arrive() {
    std::unique_lock<std::mutex> lk(mu_);
    ++running_;
    maxRunning_ = std::max(maxRunning_, running_);
    if (running_ >= target_) {
      reached_ = true;
      cv_.notify_all();
    }
    if (!gaveUp_ && !cv_.wait_for(lk, std::chrono::seconds(5), [this] { return reached_; })) {
      gaveUp_ = true;  // a serial executor: fail once, not once per action
    }
    --running_;
    return Status::ok();
  }
  int maxRunning() const {
    std::lock_guard<std::mutex> lk(mu_);
    return maxRunning_;
  }
  bool reached() const {
    std::lock_guard<std::mutex> lk(mu_);
    return reached_;
  }

 private:
  const int target_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int running_ = 0;
  int maxRunning_ = 0;
  bool reached_ = false;
  bool gaveUp_ = false;
};

class ExecutorOrderTest : public ::testing::TestWithParam<int> {};

std::string parallelismName(const ::testing::TestParamInfo<int>& info) {
  return "Parallelism" + std::to_string(info.param);
}

TEST_P(ExecutorOrderTest, CreatesParentsBeforeChildren) {
  // Listed children first, so running in plan order would be wrong.
  Plan plan;
  plan.actions = {act(ActionType::Create, "vm", {"net", "img"}),
                  act(ActionType::Update, "policy", {"net"}),
                  act(ActionType::Replace, "img", {"net"}), act(ActionType::Create, "net")};
  Recorder rec;
  auto outcomes = executePlan(plan, rec.runner(), {GetParam()});
  ASSERT_EQ(outcomes.size(), 4u);
  for (const auto& o : outcomes) {
    EXPECT_TRUE(o.status.isOk()) << o.id.str() << ": " << o.status.message();
  }
  int net = rec.position("create net");
  int img = rec.position("replace img");
  int vm = rec.position("create vm");
  int policy = rec.position("update policy");
  ASSERT_GE(net, 0);
  EXPECT_LT(net, img);
  EXPECT_LT(img, vm);
  EXPECT_LT(net, policy);
}

TEST_P(ExecutorOrderTest, DeletesChildrenBeforeParentsAndBeforeEverythingElse) {
  // A delete of X waits for the deletes of objects that refer to X. Listed parents first.
  Plan plan;
  plan.actions = {act(ActionType::Create, "fresh"), act(ActionType::Delete, "net"),
                  act(ActionType::Delete, "img", {"net"}),
                  act(ActionType::Delete, "vm", {"net", "img"}), act(ActionType::Update, "other")};
  Recorder rec;
  auto outcomes = executePlan(plan, rec.runner(), {GetParam()});
  ASSERT_EQ(outcomes.size(), 5u);
  int vm = rec.position("delete vm");
  int img = rec.position("delete img");
  int net = rec.position("delete net");
  ASSERT_GE(vm, 0);
  EXPECT_LT(vm, img);
  EXPECT_LT(img, net);
  // Deletes free names and addresses: every other action starts after the last delete.
  EXPECT_GT(rec.position("create fresh"), net);
  EXPECT_GT(rec.position("update other"), net);
}

TEST_P(ExecutorOrderTest, OutcomesInPlanOrder) {
  Plan plan;
  plan.actions = {act(ActionType::Delete, "d"), act(ActionType::Create, "c", {"b"}),
                  act(ActionType::Create, "b"), act(ActionType::Update, "u")};
  Recorder rec;
  auto outcomes = executePlan(plan, rec.runner(), {GetParam()});
  ASSERT_EQ(outcomes.size(), plan.actions.size());
  for (size_t i = 0; i < outcomes.size(); ++i) {
    EXPECT_EQ(outcomes[i].id, plan.actions[i].id);
    EXPECT_EQ(outcomes[i].type, plan.actions[i].type);
    EXPECT_FALSE(outcomes[i].skipped);
    EXPECT_GE(outcomes[i].seconds, 0.0);
  }
  EXPECT_EQ(rec.order().size(), 4u);
}

TEST_P(ExecutorOrderTest, FailureSkipsDependentsButNotIndependents) {
  Plan plan;
  plan.actions = {act(ActionType::Create, "net"), act(ActionType::Create, "vm", {"net"}),
                  act(ActionType::Create, "agent", {"vm"}), act(ActionType::Create, "other"),
                  act(ActionType::Create, "other-child", {"other"})};
  Recorder rec({"net"});
  auto outcomes = executePlan(plan, rec.runner(), {GetParam()});
  ASSERT_EQ(outcomes.size(), 5u);

  EXPECT_FALSE(outcomes[0].status.isOk());
  EXPECT_FALSE(outcomes[0].skipped);
  EXPECT_EQ(outcomes[0].status.message(), "boom net");

  EXPECT_TRUE(outcomes[1].skipped);
  EXPECT_EQ(outcomes[1].status.message(), "skipped: create of FakeThing/net failed");
  EXPECT_TRUE(outcomes[2].skipped);
  EXPECT_EQ(outcomes[2].status.message(),
            "skipped: create of FakeThing/vm was skipped because create of FakeThing/net failed");
  EXPECT_EQ(outcomes[1].seconds, 0.0);

  EXPECT_TRUE(outcomes[3].status.isOk());
  EXPECT_TRUE(outcomes[4].status.isOk());
  EXPECT_FALSE(outcomes[4].skipped);

  // Skipped actions never reach the runner.
  EXPECT_EQ(rec.position("create vm"), -1);
  EXPECT_EQ(rec.position("create agent"), -1);
  EXPECT_GE(rec.position("create other-child"), 0);
}

TEST_P(ExecutorOrderTest, FailedChildDeleteKeepsParent) {
  Plan plan;
  plan.actions = {act(ActionType::Delete, "vm", {"net"}), act(ActionType::Delete, "net"),
                  act(ActionType::Create, "fresh")};
  Recorder rec({"vm"});
  auto outcomes = executePlan(plan, rec.runner(), {GetParam()});
  EXPECT_FALSE(outcomes[0].status.isOk());
  EXPECT_TRUE(outcomes[1].skipped);
  EXPECT_EQ(outcomes[1].status.message(), "skipped: delete of FakeThing/vm failed");
  EXPECT_EQ(rec.position("delete net"), -1);
  // A failed delete does not hold back creates that do not depend on it.
  EXPECT_TRUE(outcomes[2].status.isOk()) << outcomes[2].status.message();
}

TEST_P(ExecutorOrderTest, DependencyOutsideThePlanIsNotWaitedFor) {
  Plan plan;
  plan.actions = {act(ActionType::Update, "vm", {"net-in-sync"})};
  Recorder rec;
  auto outcomes = executePlan(plan, rec.runner(), {GetParam()});
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].status.isOk());
  EXPECT_EQ(rec.order(), std::vector<std::string>{"update vm"});
}

TEST_P(ExecutorOrderTest, LongChainRunsInOrder) {
  Plan plan;
  const int n = 200;
  for (int i = n - 1; i >= 0; --i) {
    plan.actions.push_back(
        i == 0 ? act(ActionType::Create, "n0")
               : act(ActionType::Create, "n" + std::to_string(i), {"n" + std::to_string(i - 1)}));
  }
  Recorder rec;
  auto outcomes = executePlan(plan, rec.runner(), {GetParam()});
  ASSERT_EQ(rec.order().size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(rec.order()[i], "create n" + std::to_string(i));
  }
}

TEST_P(ExecutorOrderTest, LongChainOfSkipsDoesNotRecurse) {
  Plan plan;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    plan.actions.push_back(
        i == 0 ? act(ActionType::Create, "n0")
               : act(ActionType::Create, "n" + std::to_string(i), {"n" + std::to_string(i - 1)}));
  }
  Recorder rec({"n0"});
  auto outcomes = executePlan(plan, rec.runner(), {GetParam()});
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(n));
  EXPECT_TRUE(outcomes.back().skipped);
  EXPECT_EQ(rec.order().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Parallelism, ExecutorOrderTest, ::testing::Values(1, 2, 4, 16),
                         parallelismName);

TEST(ExecutorTest, IndependentActionsRunInParallel) {
  Plan plan;
  for (int i = 0; i < 8; ++i) {
    plan.actions.push_back(act(ActionType::Create, "t" + std::to_string(i)));
  }
  Rendezvous meet(2);
  auto outcomes =
      executePlan(plan, [&](const PlanAction&) { return meet.arrive(); }, {/*parallelism=*/4});
  EXPECT_TRUE(meet.reached()) << "independent actions never overlapped";
  EXPECT_GE(meet.maxRunning(), 2);
  EXPECT_LE(meet.maxRunning(), 4);
}

TEST(ExecutorTest, NeverMoreThanTheBound) {
  Plan plan;
  for (int i = 0; i < 24; ++i) {
    plan.actions.push_back(act(ActionType::Create, "t" + std::to_string(i)));
  }
  // Every worker is held until three are running, so a fourth would show up if it existed.
  Rendezvous meet(3);
  auto outcomes =
      executePlan(plan, [&](const PlanAction&) { return meet.arrive(); }, {/*parallelism=*/3});
  EXPECT_TRUE(meet.reached());
  EXPECT_EQ(meet.maxRunning(), 3);
  EXPECT_EQ(outcomes.size(), 24u);
}

TEST(ExecutorTest, DependentsDoNotOverlapTheirParent) {
  // A root with many children: children may run together but none while the root runs.
  Plan plan;
  plan.actions.push_back(act(ActionType::Create, "root"));
  for (int i = 0; i < 6; ++i) {
    plan.actions.push_back(act(ActionType::Create, "c" + std::to_string(i), {"root"}));
  }
  std::atomic<bool> rootRunning{false};
  std::atomic<int> overlaps{0};
  Rendezvous meet(2);
  auto outcomes = executePlan(plan,
                              [&](const PlanAction& a) {
                                if (a.id.name == "root") {
                                  rootRunning = true;
                                  std::this_thread::sleep_for(std::chrono::milliseconds(20));
                                  rootRunning = false;
                                  return Status::ok();
                                }
                                if (rootRunning) {
                                  ++overlaps;
                                }
                                return meet.arrive();
                              },
                              {4});
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_TRUE(meet.reached()) << "children of one parent should run in parallel";
}

TEST(ExecutorTest, FakeProviderConcurrencyStaysWithinBound) {
  testing::FakeProvider fake;
  fake.setApplyDelay(std::chrono::milliseconds(20));
  Plan plan;
  std::vector<Object> objects(12);
  for (int i = 0; i < 12; ++i) {
    objects[i].id = thing("t" + std::to_string(i));
    objects[i].spec = Json{{"n", i}};
    plan.actions.push_back(act(ActionType::Create, "t" + std::to_string(i)));
  }
  auto outcomes = executePlan(plan,
                              [&](const PlanAction& a) {
                                size_t i = static_cast<size_t>(std::stoi(a.id.name.substr(1)));
                                ApplyRequest req{&a, &objects[i], nullptr};
                                ApplyResponse resp;
                                fake.apply(req, resp);
                                return resp.diagnostics.hasErrors()
                                           ? Status::error(resp.diagnostics.format())
                                           : Status::ok();
                              },
                              {4});
  for (const auto& o : outcomes) {
    EXPECT_TRUE(o.status.isOk()) << o.status.message();
  }
  EXPECT_EQ(fake.applyCalls(), 12);
  EXPECT_EQ(fake.hostSnapshot().size(), 12u);
  EXPECT_GT(fake.maxConcurrentApplies(), 1);
  EXPECT_LE(fake.maxConcurrentApplies(), 4);
}

TEST(ExecutorTest, EmptyPlanRunsNothing) {
  bool called = false;
  auto outcomes = executePlan(Plan{},
                              [&](const PlanAction&) {
                                called = true;
                                return Status::ok();
                              },
                              {4});
  EXPECT_TRUE(outcomes.empty());
  EXPECT_FALSE(called);
}

TEST(ExecutorTest, NonPositiveParallelismStillRuns) {
  Plan plan;
  plan.actions = {act(ActionType::Create, "a"), act(ActionType::Create, "b", {"a"})};
  Recorder rec;
  auto outcomes = executePlan(plan, rec.runner(), {0});
  EXPECT_EQ(rec.order(), (std::vector<std::string>{"create a", "create b"}));
}

TEST(ExecutorTest, ThrowingRunnerFailsTheActionOnly) {
  Plan plan;
  plan.actions = {act(ActionType::Create, "a"), act(ActionType::Create, "b", {"a"}),
                  act(ActionType::Create, "c")};
  auto outcomes = executePlan(plan,
                              [](const PlanAction& a) -> Status {
                                if (a.id.name == "a") {
                                  throw std::runtime_error("library blew up");
                                }
                                return Status::ok();
                              },
                              {2});
  EXPECT_EQ(outcomes[0].status.message(), "create of FakeThing/a threw: library blew up");
  EXPECT_TRUE(outcomes[1].skipped);
  EXPECT_TRUE(outcomes[2].status.isOk());
}

TEST(ExecutorTest, CycleFailsInsteadOfHanging) {
  // Plans come from an acyclic graph; if one did not, the executor must still return.
  Plan plan;
  plan.actions = {act(ActionType::Create, "a", {"b"}), act(ActionType::Create, "b", {"a"}),
                  act(ActionType::Create, "c", {"a"}), act(ActionType::Create, "free"),
                  act(ActionType::Delete, "x", {"y"}), act(ActionType::Delete, "y", {"x"})};
  Recorder rec;
  auto outcomes = executePlan(plan, rec.runner(), {2});
  ASSERT_EQ(outcomes.size(), 6u);
  for (size_t i : {0u, 1u, 2u, 4u, 5u}) {
    EXPECT_FALSE(outcomes[i].status.isOk()) << outcomes[i].id.str();
  }
  EXPECT_NE(outcomes[0].status.message().find("cycle"), std::string::npos)
      << outcomes[0].status.message();
  EXPECT_TRUE(outcomes[3].status.isOk());
  EXPECT_EQ(rec.order(), std::vector<std::string>{"create free"});
}

TEST(ExecutorTest, WorkersCarryTheCallersReconcileId) {
  Plan plan;
  plan.actions = {act(ActionType::Create, "a"), act(ActionType::Create, "b"),
                  act(ActionType::Create, "c", {"a"})};
  std::mutex mu;
  std::set<std::string> seen;
  {
    ReconcileIdScope scope("r-test-1");
    executePlan(plan,
                [&](const PlanAction&) {
                  std::lock_guard<std::mutex> lk(mu);
                  seen.insert(currentReconcileId());
                  return Status::ok();
                },
                {4});
  }
  EXPECT_EQ(seen, (std::set<std::string>{"r-test-1"}));
  EXPECT_EQ(currentReconcileId(), "");  // the scope restored the thread's previous (none)
}

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

// What a failed action says about retrying reaches its outcome; a success carries none of it.
TEST(ExecutorTest, RetryHintsOfFailuresReachTheOutcome) {
  Plan plan;
  plan.actions = {act(ActionType::Create, "later"), act(ActionType::Create, "never"),
                  act(ActionType::Create, "fine")};
  ActionRunner run = [](const PlanAction& a) -> ActionResult {
    ActionResult r(a.id.name == "fine" ? Status::ok() : Status::error("no"));
    r.retryAfter = std::chrono::milliseconds(a.id.name == "later" ? 2500 : 100);
    r.terminal = a.id.name == "never";
    if (a.id.name == "fine") {
      r.terminal = true;  // ignored: only a failure is retried
    }
    return r;
  };
  auto outcomes = executePlan(plan, run, ExecutorOptions{2});
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].retryAfter, std::chrono::milliseconds(2500));
  EXPECT_FALSE(outcomes[0].terminal);
  EXPECT_TRUE(outcomes[1].terminal);
  EXPECT_TRUE(outcomes[2].status.isOk());
  EXPECT_FALSE(outcomes[2].retryAfter.has_value());
  EXPECT_FALSE(outcomes[2].terminal);
}

// Work a provider took into its own queue: not a failure, and what depends on it waits.
TEST(ExecutorTest, InProgressIsNoFailureAndItsDependentsWait) {
  Plan plan;
  plan.actions = {act(ActionType::Create, "build"), act(ActionType::Create, "vm", {"build"}),
                  act(ActionType::Create, "disk", {"vm"}), act(ActionType::Create, "net")};
  ActionRunner run = [](const PlanAction& a) -> ActionResult {
    if (a.id.name != "build") {
      return Status::ok();
    }
    ActionResult r(Status::error("create FakeThing/build: in progress (queued)"));
    r.inProgress = true;
    r.retryAfter = std::chrono::seconds(30);
    return r;
  };
  ApplyReport report;
  report.outcomes = executePlan(plan, run, ExecutorOptions{2});
  ASSERT_EQ(report.outcomes.size(), 4u);
  EXPECT_TRUE(report.outcomes[0].inProgress);
  EXPECT_FALSE(report.outcomes[0].failed());
  EXPECT_EQ(report.outcomes[0].retryAfter, std::chrono::seconds(30));
  for (size_t i : {1u, 2u}) {
    EXPECT_TRUE(report.outcomes[i].skipped) << i;
    EXPECT_TRUE(report.outcomes[i].waiting) << i << ": waits, through the chain";
    EXPECT_FALSE(report.outcomes[i].failed()) << i;
    EXPECT_NE(report.outcomes[i].status.message().find("is in progress"), std::string::npos)
        << report.outcomes[i].status.message();
  }
  EXPECT_TRUE(report.outcomes[3].status.isOk()) << "independent work goes on";
  EXPECT_EQ(report.failed(), 0u);
  EXPECT_EQ(report.inProgress(), 3u);
  EXPECT_FALSE(report.ok()) << "not done yet";
}

// Batching: the actions of one key that are ready together run as one batch, after what they
// depend on; another key, or none, runs alone; each action keeps its own result.
TEST(ExecutorBatchTest, ReadyActionsOfOneKeyRunTogetherInDependencyWaves) {
  Plan plan;
  // Four networks, then a policy on each (each policy depends on its network), and a VM alone.
  for (int i = 0; i < 4; ++i) {
    plan.actions.push_back(act(ActionType::Create, "net" + std::to_string(i)));
  }
  for (int i = 0; i < 4; ++i) {
    plan.actions.push_back(
        act(ActionType::Create, "pol" + std::to_string(i), {"net" + std::to_string(i)}));
  }
  plan.actions.push_back(act(ActionType::Create, "vm", {"net0"}));
  std::mutex mu;
  std::vector<std::vector<std::string>> batches;
  std::vector<std::string> alone;
  std::set<std::string> done;
  ExecutorOptions options{4};
  options.batchKey = [](const PlanAction& a) {
    return a.id.name == "vm" ? std::string() : std::string("net");
  };
  options.runBatch = [&](const std::vector<const PlanAction*>& actions) {
    std::lock_guard<std::mutex> lk(mu);
    std::vector<std::string> names;
    std::vector<ActionResult> results;
    for (const PlanAction* a : actions) {
      names.push_back(a->id.name);
      // A policy must come after its network.
      if (a->id.name.rfind("pol", 0) == 0 && !done.count("net" + a->id.name.substr(3))) {
        results.emplace_back(Status::error("ran before its network"));
      } else if (a->id.name == "net2") {
        results.emplace_back(Status::error("boom net2"));
      } else {
        results.emplace_back(Status::ok());
      }
      done.insert(a->id.name);
    }
    batches.push_back(names);
    return results;
  };
  auto runAlone = [&](const PlanAction& a) -> ActionResult {
    std::lock_guard<std::mutex> lk(mu);
    alone.push_back(a.id.name);
    done.insert(a.id.name);
    return Status::ok();
  };
  auto outcomes = executePlan(plan, runAlone, options);
  ASSERT_EQ(outcomes.size(), 9u);
  ASSERT_EQ(batches.size(), 2u) << "networks in one batch, then the policies whose network is done";
  EXPECT_EQ(batches[0], (std::vector<std::string>{"net0", "net1", "net2", "net3"}));
  EXPECT_EQ(batches[1], (std::vector<std::string>{"pol0", "pol1", "pol3"}));
  EXPECT_EQ(alone, std::vector<std::string>{"vm"}) << "a VM has no key: it runs alone";
  for (size_t i : {0u, 1u, 3u, 4u, 5u, 7u, 8u}) {
    EXPECT_TRUE(outcomes[i].status.isOk())
        << outcomes[i].id.str() << ": " << outcomes[i].status.message();
  }
  EXPECT_EQ(outcomes[2].status.message(), "boom net2") << "a batch-mate's failure is its own";
  EXPECT_TRUE(outcomes[6].skipped) << "the policy on the failed network is skipped";
}

// batchTakesDependents: a policy rides in its new network's batch, after it; one that also waits
// for something outside the batch does not; one whose network failed in the batch is skipped
// whatever the batch answered for it.
TEST(ExecutorBatchTest, ABatchTakesTheDependentsThatWaitOnlyForIt) {
  Plan plan;
  for (int i = 0; i < 3; ++i) {
    plan.actions.push_back(act(ActionType::Create, "net" + std::to_string(i)));
  }
  plan.actions.push_back(act(ActionType::Create, "pol0", {"net0"}));
  plan.actions.push_back(act(ActionType::Create, "pol1", {"net1"}));
  plan.actions.push_back(act(ActionType::Create, "pol01", {"net0", "vm"}));  // vm: not batched
  plan.actions.push_back(act(ActionType::Create, "vm"));
  plan.actions.push_back(act(ActionType::Create, "sub0", {"pol0"}));  // two levels down
  std::mutex mu;
  std::vector<std::vector<std::string>> batches;
  ExecutorOptions options{1};  // one worker: the vm runs after the first batch
  options.batchKey = [](const PlanAction& a) {
    return a.id.name == "vm" ? std::string() : std::string("net");
  };
  bool takes = true;
  options.batchTakesDependents = [&](const PlanAction&) { return takes; };
  options.runBatch = [&](const std::vector<const PlanAction*>& actions) {
    std::lock_guard<std::mutex> lk(mu);
    std::vector<std::string> names;
    std::vector<ActionResult> results;
    for (const PlanAction* a : actions) {
      names.push_back(a->id.name);
      // What a provider must not do is left to the provider; the executor ignores this answer.
      results.emplace_back(a->id.name == "net1" ? Status::error("boom net1") : Status::ok());
    }
    batches.push_back(names);
    return results;
  };
  std::vector<std::string> alone;
  auto runAlone = [&](const PlanAction& a) -> ActionResult {
    std::lock_guard<std::mutex> lk(mu);
    alone.push_back(a.id.name);
    return Status::ok();
  };
  auto outcomes = executePlan(plan, runAlone, options);
  ASSERT_EQ(outcomes.size(), 8u);
  ASSERT_FALSE(batches.empty());
  EXPECT_EQ(batches[0], (std::vector<std::string>{"net0", "net1", "net2", "pol0", "pol1", "sub0"}));
  EXPECT_EQ(batches.size(), 1u);
  EXPECT_EQ(alone, (std::vector<std::string>{"vm", "pol01"})) << "pol01 also waited for the vm";
  EXPECT_TRUE(outcomes[4].skipped) << outcomes[4].status.message();
  EXPECT_EQ(outcomes[4].status.message(), "skipped: create of FakeThing/net1 failed");
  for (size_t i : {0u, 2u, 3u, 5u, 6u, 7u}) {
    EXPECT_TRUE(outcomes[i].status.isOk())
        << outcomes[i].id.str() << ": " << outcomes[i].status.message();
  }

  // Without it, the policies wait for the next batch.
  takes = false;
  batches.clear();
  outcomes = executePlan(plan, runAlone, options);
  ASSERT_FALSE(batches.empty());
  EXPECT_EQ(batches[0], (std::vector<std::string>{"net0", "net1", "net2"}));
}

TEST(ExecutorBatchTest, ABatchThatThrowsOrAnswersShortFailsEachOfItsActions) {
  Plan plan;
  for (int i = 0; i < 3; ++i) {
    plan.actions.push_back(act(ActionType::Create, "n" + std::to_string(i)));
  }
  ExecutorOptions options{2};
  options.batchKey = [](const PlanAction&) { return std::string("k"); };
  options.runBatch = [](const std::vector<const PlanAction*>&) -> std::vector<ActionResult> {
    throw std::runtime_error("provider bug");
  };
  auto outcomes = executePlan(
      plan, [](const PlanAction&) -> ActionResult { return Status::ok(); }, options);
  ASSERT_EQ(outcomes.size(), 3u);
  for (const auto& o : outcomes) {
    EXPECT_NE(o.status.message().find("a batch of 3 actions threw: provider bug"),
              std::string::npos)
        << o.status.message();
  }
  options.runBatch = [](const std::vector<const PlanAction*>&) {
    return std::vector<ActionResult>(1);
  };
  outcomes = executePlan(
      plan, [](const PlanAction&) -> ActionResult { return Status::ok(); }, options);
  for (const auto& o : outcomes) {
    EXPECT_NE(o.status.message().find("a batch of 3 actions gave 1 results"), std::string::npos)
        << o.status.message();
  }
  options.maxBatch = 2;
  size_t largest = 0;
  options.runBatch = [&](const std::vector<const PlanAction*>& actions) {
    largest = std::max(largest, actions.size());
    return std::vector<ActionResult>(actions.size());
  };
  outcomes = executePlan(
      plan, [](const PlanAction&) -> ActionResult { return Status::ok(); }, options);
  EXPECT_EQ(largest, 2u) << "maxBatch bounds a batch";
  for (const auto& o : outcomes) {
    EXPECT_TRUE(o.status.isOk()) << o.status.message();
  }
}

}  // namespace
}  // namespace hyper
