// The steps of Controller::reconcileOnce (hyperd/loop_steps.h), one at a time: advance the
// source, plan, defer, report drift, apply, record, finish. The member steps are reached through
// LoopStepsPeer (a friend of Controller); the free ones directly. Fake provider, in-memory source,
// real SQLite inventory and event log in a temp dir, manual clock. loop_test.cc tests the whole.

#include "hyperd/loop_steps.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>

#include "tests/fakes/fake_provider.h"
#include "tests/fakes/fake_source.h"
#include "tests/fakes/loop_world.h"

namespace hyper::controller {

// Controller's private steps, for these tests.
class LoopStepsPeer {
 public:
  explicit LoopStepsPeer(Controller& c) : c_(c) {}
  SourceStep advanceSource(bool fetch, std::shared_ptr<const Revision> current,
                           const LoopOptions& options) {
    return c_.advanceSource(fetch, std::move(current), options, "rid-test");
  }
  PlanStep planRevision(const Revision& current, const LoopOptions& options,
                        const std::string& priorError) {
    return c_.planRevision(current, options, priorError, "rid-test");
  }
  Deferral deferActions(const Plan& plan, const Revision& current,
                        const std::vector<ManagedRecord>& managed, const LoopOptions& options,
                        Clock::TimePoint now) {
    return c_.deferActions(plan, current, managed, options, now);
  }
  void reportDrift(const Deferral& deferral, const std::string& revision) {
    c_.reportDrift(deferral, revision, "rid-test");
  }
  ApplyStep applyPlan(const ApplyInput& in) { return c_.applyPlan(in); }
  void recordObjects(const RecordInput& in) { c_.recordObjects(in); }
  std::optional<Event> recordOutcome(ObjectStatus& s, const ActionOutcome& o,
                                     const RecordInput& in) {
    return c_.recordOutcome(s, o, in);
  }
  void finishReconcile(ReconcileSummary& summary, const Revision* current) {
    c_.finishReconcile(summary, std::chrono::steady_clock::now(), current);
  }

 private:
  Controller& c_;
};

namespace {

using hyper::testing::FakeProvider;
using hyper::testing::FakeSource;
using std::chrono::milliseconds;

class ManualClock : public Clock {
 public:
  TimePoint now() const override { return now_; }
  void advance(milliseconds d) { now_ += d; }

 private:
  TimePoint now_ = std::chrono::steady_clock::now();
};

class CountingSink : public AlertSink {
 public:
  void send(const Alert& alert) override {
    std::lock_guard<std::mutex> lk(mu);
    kinds.push_back(alert.kind);
  }
  size_t count(const std::string& kind) {
    std::lock_guard<std::mutex> lk(mu);
    return std::count(kinds.begin(), kinds.end(), kind);
  }
  std::mutex mu;
  std::vector<std::string> kinds;
};

std::string thing(const std::string& name, const std::string& extraSpec = "") {
  return "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata:\n  name: " + name +
         "\nspec:\n  size: 1\n" + extraSpec + "---\n";
}

ObjectId fakeId(const std::string& name) { return {"FakeThing", name}; }

PlanAction action(const std::string& name, std::vector<std::string> dependsOn = {}) {
  PlanAction a;
  a.id = {"FakeThing", name};
  a.reason = "not on the host";
  for (const auto& d : dependsOn) {
    a.dependsOn.push_back({"FakeThing", d});
  }
  return a;
}

ActionOutcome outcome(const std::string& name, Status status, bool skipped = false) {
  ActionOutcome o;
  o.id = {"FakeThing", name};
  o.type = ActionType::Create;
  o.status = std::move(status);
  o.skipped = skipped;
  return o;
}

class LoopStepsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto world = test::LoopWorld::create("loop-steps", {"FakeThing"});
    ASSERT_TRUE(world.isOk()) << world.status().message();
    world_ = std::move(*world);
    dir_ = world_->dir();
    fake_ = &world_->fake();
    engine_ = &world_->engine();
    inventory_ = &world_->inventory();
    events_ = &world_->events();
    options_.backoffBase = milliseconds(1000);
    options_.backoffMax = milliseconds(5000);
    controller_ = std::make_unique<Controller>(*engine_, *inventory_, *events_, source_, sink_,
                                               metrics_, options_, clock_);
    steps_ = std::make_unique<LoopStepsPeer>(*controller_);
  }
  void TearDown() override {
    steps_.reset();
    controller_.reset();
  }

  std::vector<Event> eventsOf(const std::string& type) {
    auto all = events_->latest(1000);
    EXPECT_TRUE(all.isOk());
    std::vector<Event> out;
    for (const auto& e : *all) {
      if (e.type == type) {
        out.push_back(e);
      }
    }
    return out;
  }
  const Condition* condition(const std::string& name, const std::string& type) {
    status_ = controller_->objectStatus({"FakeThing", name});
    if (!status_) {
      return nullptr;
    }
    return status_->find(type);
  }
  // The source's revision, in force.
  std::shared_ptr<const Revision> load(std::vector<SourceFile> files) {
    source_.set(std::move(files));
    SourceStep step = steps_->advanceSource(true, nullptr, options_);
    EXPECT_NE(step.current, nullptr) << step.error;
    return step.current;
  }
  std::vector<ManagedRecord> records() {
    auto listed = inventory_->list();
    EXPECT_TRUE(listed.isOk());
    return listed.isOk() ? *listed : std::vector<ManagedRecord>{};
  }

  std::unique_ptr<test::LoopWorld> world_;  // outlives the controller (declared first)
  std::string dir_;
  FakeProvider* fake_ = nullptr;
  Engine* engine_ = nullptr;
  Inventory* inventory_ = nullptr;
  EventLog* events_ = nullptr;
  FakeSource source_;
  CountingSink sink_;
  Metrics metrics_;
  ManualClock clock_;
  LoopOptions options_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<LoopStepsPeer> steps_;
  std::optional<ObjectStatus> status_;
};

// --- 1. Advance the source ---

TEST_F(LoopStepsTest, AdvanceSourceLoadsANewRevisionIntoForce) {
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  SourceStep step = steps_->advanceSource(false, nullptr, options_);  // none in force: checks
  ASSERT_NE(step.current, nullptr) << step.error;
  EXPECT_EQ(step.current->id, source_.revision());
  EXPECT_EQ(step.current->objects.size(), 2u);
  EXPECT_TRUE(step.sourceChanged);
  EXPECT_FALSE(step.revisionRejected);
  EXPECT_FALSE(step.revisionHeld);
  EXPECT_EQ(step.error, "");
  EXPECT_EQ(source_.fetchCalls, 1);
  EXPECT_EQ(controller_->appliedRevision(), source_.revision());
}

TEST_F(LoopStepsTest, AdvanceSourceWithoutFetchLeavesTheSourceAlone) {
  auto first = load({{"a.yaml", thing("a")}});
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  int checks = source_.changedCalls;
  SourceStep step = steps_->advanceSource(false, first, options_);
  EXPECT_EQ(source_.changedCalls, checks);
  ASSERT_NE(step.current, nullptr);
  EXPECT_EQ(step.current->id, first->id);
  EXPECT_FALSE(step.sourceChanged);
  // Asked to fetch, it takes the new one.
  step = steps_->advanceSource(true, first, options_);
  ASSERT_NE(step.current, nullptr);
  EXPECT_EQ(step.current->id, source_.revision());
  EXPECT_TRUE(step.sourceChanged);
}

TEST_F(LoopStepsTest, AdvanceSourceErrorKeepsTheRevisionAndIsReportedOnce) {
  auto first = load({{"a.yaml", thing("a")}});
  source_.error = "unreachable";
  for (int i = 0; i < 2; ++i) {
    SourceStep step = steps_->advanceSource(true, first, options_);
    EXPECT_EQ(step.error, "source fake: unreachable");
    ASSERT_NE(step.current, nullptr);
    EXPECT_EQ(step.current->id, first->id);
    EXPECT_FALSE(step.sourceChanged);
  }
  auto errors = eventsOf("source-error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message,
            "source fake: unreachable; revision " + first->id + " stays in force");
  EXPECT_EQ(errors[0].reconcileId, "rid-test");
  EXPECT_EQ(
      metrics_.counter("hyper_source_fetch_errors_total", "source checks or fetches that failed")
          .value(),
      2);
}

TEST_F(LoopStepsTest, AdvanceSourceRejectsAnInvalidRevision) {
  auto first = load({{"a.yaml", thing("a")}});
  source_.set({{"a.yaml", thing("a", "  invalid: true\n")}});
  SourceStep step = steps_->advanceSource(true, first, options_);
  EXPECT_TRUE(step.revisionRejected);
  EXPECT_TRUE(step.sourceChanged);
  ASSERT_NE(step.current, nullptr);
  EXPECT_EQ(step.current->id, first->id);
  EXPECT_EQ(controller_->appliedRevision(), first->id);
  auto rejected = eventsOf("revision-rejected");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].revision, source_.revision());
  EXPECT_NE(
      rejected[0].message.find("rejected: 1 problem(s); revision " + first->id + " stays in force"),
      std::string::npos)
      << rejected[0].message;
}

TEST_F(LoopStepsTest, AdvanceSourceHoldsAMassDeleteUntilApproved) {
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  ReconcileSummary first = controller_->reconcileOnce("test", true);
  ASSERT_EQ(first.succeeded, 2u);
  auto inForce = std::make_shared<Revision>();
  inForce->id = first.revision;
  source_.set({});  // every manifest deleted
  SourceStep step = steps_->advanceSource(true, nullptr, options_);
  EXPECT_TRUE(step.revisionHeld);
  EXPECT_EQ(step.current, nullptr);
  EXPECT_EQ(controller_->heldRevision(), source_.revision());
  EXPECT_EQ(controller_->appliedRevision(), first.revision);
  // Still held without an approval; taken with one, whatever the trigger.
  step = steps_->advanceSource(false, inForce, options_);
  EXPECT_TRUE(step.revisionHeld);
  EXPECT_EQ(step.current->id, first.revision);
  ASSERT_TRUE(controller_->approve(source_.revision()).isOk());
  step = steps_->advanceSource(false, inForce, options_);
  EXPECT_FALSE(step.revisionHeld);
  EXPECT_TRUE(step.sourceChanged);
  ASSERT_NE(step.current, nullptr);
  EXPECT_EQ(step.current->id, source_.revision());
  EXPECT_EQ(controller_->appliedRevision(), source_.revision());
  EXPECT_EQ(controller_->heldRevision(), "");
  EXPECT_EQ(eventsOf("revision-approved").size(), 1u);
}

// --- 2. Plan ---

TEST_F(LoopStepsTest, PlanRevisionPlansAgainstTheInventory) {
  auto current = load({{"a.yaml", thing("a") + thing("b")}});
  PlanStep step = steps_->planRevision(*current, options_, "");
  EXPECT_EQ(step.error, "");
  EXPECT_TRUE(step.planErrors.empty());
  ASSERT_NE(step.records, nullptr);
  EXPECT_TRUE(step.records->empty());
  ASSERT_EQ(step.planned.plan.actions.size(), 2u);
  EXPECT_EQ(step.planned.plan.actions[0].type, ActionType::Create);
  EXPECT_EQ(step.planned.plan.revision, current->id);
}

TEST_F(LoopStepsTest, PlanRevisionStillPlansAfterASourceError) {
  auto current = load({{"a.yaml", thing("a")}});
  PlanStep step = steps_->planRevision(*current, options_, "source fake: unreachable");
  EXPECT_EQ(step.error, "source fake: unreachable");
  EXPECT_EQ(step.planned.plan.actions.size(), 1u);
}

TEST_F(LoopStepsTest, PlanRevisionDoesNotPlanAfterAnotherError) {
  auto current = load({{"a.yaml", thing("a")}});
  fake_->resetCounters();
  PlanStep step = steps_->planRevision(*current, options_, "inventory: broken");
  EXPECT_EQ(step.error, "inventory: broken");
  EXPECT_TRUE(step.planned.plan.actions.empty());
  EXPECT_EQ(fake_->observeCalls(), 0);
  EXPECT_EQ(step.planSeconds, 0);
}

TEST_F(LoopStepsTest, PlanRevisionReportsPlanErrors) {
  auto current = load({{"a.yaml", thing("a")}});
  fake_->setFailObserve(true);
  PlanStep step = steps_->planRevision(*current, options_, "");
  ASSERT_FALSE(step.planErrors.empty());
  EXPECT_EQ(step.error, "plan: " + step.planErrors.begin()->second);
  auto errors = eventsOf("plan-error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, step.error);
  EXPECT_EQ(errors[0].revision, current->id);
  EXPECT_EQ(sink_.count("plan-error"), 1u);
}

TEST(LoopPlanErrorsOf, KeysErrorsByObjectAndIgnoresWarnings) {
  Diagnostics d;
  d.error(fakeId("a"), "spec.size", "too big");
  d.error({}, "", "the whole plan");
  d.add({Severity::Warning, {}, fakeId("b"), "", "only a warning"});
  auto errors = planErrorsOf(d);
  ASSERT_EQ(errors.size(), 2u);
  ASSERT_TRUE(errors.count(fakeId("a")));
  EXPECT_NE(errors[fakeId("a")].find("too big"), std::string::npos);
  ASSERT_TRUE(errors.count(ObjectId{}));
  EXPECT_NE(errors[ObjectId{}].find("the whole plan"), std::string::npos);
  EXPECT_FALSE(errors.count(fakeId("b")));
}

// --- 3. Defer ---

TEST_F(LoopStepsTest, DeferActionsDefersEverythingWhileSuspended) {
  auto current = load({{"a.yaml", thing("a") + thing("b")}});
  PlanStep planned = steps_->planRevision(*current, options_, "");
  controller_->setSuspended(true);
  Deferral d = steps_->deferActions(planned.planned.plan, *current, {}, options_, clock_.now());
  EXPECT_EQ(d.deferred.size(), 2u);
  EXPECT_EQ(d.reasons[fakeId("a")], "suspended");
  EXPECT_TRUE(d.drifted.empty());
  controller_->setSuspended(false);
  d = steps_->deferActions(planned.planned.plan, *current, {}, options_, clock_.now());
  EXPECT_TRUE(d.deferred.empty());
  EXPECT_TRUE(d.reasons.empty());
}

TEST_F(LoopStepsTest, DeferActionsBacksOffAFailedObjectUntilItsRetryTime) {
  auto current = load({{"a.yaml", thing("a") + thing("b")}});
  fake_->setFailApply({{"FakeThing", "a"}});
  ReconcileSummary s = controller_->reconcileOnce("test", false);
  ASSERT_EQ(s.failed, 1u);
  auto managed = records();
  PlanStep planned = steps_->planRevision(*current, options_, "");
  ASSERT_EQ(planned.planned.plan.actions.size(), 1u);  // b was created
  Deferral d =
      steps_->deferActions(planned.planned.plan, *current, managed, options_, clock_.now());
  ASSERT_EQ(d.deferred.count(fakeId("a")), 1u);
  EXPECT_EQ(d.reasons[fakeId("a")], "backing off after 1 failure(s)");
  clock_.advance(milliseconds(1000));  // backoffBase
  d = steps_->deferActions(planned.planned.plan, *current, managed, options_, clock_.now());
  EXPECT_TRUE(d.deferred.empty());
}

TEST_F(LoopStepsTest, DeferActionsKeepsAlertOnlyDriftAndListsAllDrift) {
  auto current = load({{"a.yaml", thing("a", "  driftPolicy: alert\n") + thing("b")}});
  ASSERT_EQ(controller_->reconcileOnce("test", false).succeeded, 2u);
  fake_->setHostState({"FakeThing", "a"}, {{"size", 7}});
  fake_->setHostState({"FakeThing", "b"}, {{"size", 7}});
  PlanStep planned = steps_->planRevision(*current, options_, "");
  ASSERT_EQ(planned.planned.plan.actions.size(), 2u);
  Deferral d =
      steps_->deferActions(planned.planned.plan, *current, records(), options_, clock_.now());
  EXPECT_EQ(d.drifted.size(), 2u);
  EXPECT_EQ(d.deferred, (std::set<ObjectId>{{"FakeThing", "a"}}));
  EXPECT_EQ(d.reasons[fakeId("a")], "drift policy is alert: not corrected");
}

TEST(LoopDeferDependents, DefersWhatWaitsForADeferredActionTransitively) {
  Plan plan;
  plan.actions = {action("a"), action("b", {"a"}), action("c", {"b"}), action("d")};
  Deferral d;
  d.deferred = {{"FakeThing", "a"}};
  d.reasons[{"FakeThing", "a"}] = "suspended";
  deferDependents(plan, d);
  EXPECT_EQ(d.deferred,
            (std::set<ObjectId>{{"FakeThing", "a"}, {"FakeThing", "b"}, {"FakeThing", "c"}}));
  EXPECT_EQ(d.reasons[fakeId("b")], "waits for FakeThing/a (suspended)");
  EXPECT_EQ(d.reasons[fakeId("c")], "waits for FakeThing/b (waits for FakeThing/a (suspended))");
  EXPECT_FALSE(d.reasons.count(fakeId("d")));
}

TEST(LoopDeferDependents, ADependencyListedLaterInThePlanIsFollowed) {
  Plan plan;
  plan.actions = {action("x", {"y"}), action("y", {"z"}), action("z")};
  Deferral d;
  d.deferred = {{"FakeThing", "z"}};
  d.reasons[{"FakeThing", "z"}] = "backing off after 2 failure(s)";
  deferDependents(plan, d);
  EXPECT_EQ(d.deferred.size(), 3u);
  EXPECT_EQ(d.reasons[fakeId("x")],
            "waits for FakeThing/y (waits for FakeThing/z (backing off after 2 failure(s)))");
}

TEST(LoopWithoutDeferred, KeepsTheRevisionAndTheOrderOfTheRest) {
  Plan plan;
  plan.revision = "fake:1";
  plan.actions = {action("c"), action("a"), action("b")};
  Plan toRun = withoutDeferred(plan, {{"FakeThing", "a"}});
  EXPECT_EQ(toRun.revision, "fake:1");
  ASSERT_EQ(toRun.actions.size(), 2u);
  EXPECT_EQ(toRun.actions[0].id.name, "c");
  EXPECT_EQ(toRun.actions[1].id.name, "b");
  EXPECT_EQ(withoutDeferred(plan, {}).actions.size(), 3u);
}

// --- Drift ---

TEST_F(LoopStepsTest, ReportDriftAlertsOncePerDistinctDrift) {
  PlanAction a = action("a");
  a.type = ActionType::Update;
  a.drift = true;
  a.reason = "spec changed on the host";
  a.changes = {{"spec.size", 7, 1, false}};
  Deferral d;
  d.drifted = {&a};
  steps_->reportDrift(d, "fake:1");
  steps_->reportDrift(d, "fake:1");
  auto drift = eventsOf("drift");
  ASSERT_EQ(drift.size(), 1u);
  EXPECT_EQ(drift[0].message, "spec changed on the host; correcting");
  EXPECT_EQ(drift[0].object, "FakeThing/a");
  EXPECT_EQ(drift[0].revision, "fake:1");
  EXPECT_EQ(drift[0].details["corrected"], true);
  EXPECT_EQ(sink_.count("drift"), 1u);
  const Condition* drifted = condition("a", "Drifted");
  ASSERT_NE(drifted, nullptr);
  EXPECT_TRUE(drifted->status());
  EXPECT_EQ(drifted->reason(), "HostChanged");
  ASSERT_EQ(controller_->driftJson().size(), 1u);
  // Another difference is another drift; deferred, it says why it is not corrected.
  a.changes = {{"spec.size", 9, 1, false}};
  d.deferred = {a.id};
  d.reasons[a.id] = "drift policy is alert: not corrected";
  steps_->reportDrift(d, "fake:1");
  drift = eventsOf("drift");
  ASSERT_EQ(drift.size(), 2u);
  EXPECT_EQ(drift[1].message, "spec changed on the host; drift policy is alert: not corrected");
  EXPECT_EQ(drift[1].details["corrected"], false);
  EXPECT_EQ(
      metrics_.counter("hyper_drift_total", "drifts detected", {{"kind", "FakeThing"}}).value(), 2);
}

// --- 4. Apply ---

TEST_F(LoopStepsTest, ApplyPlanRunsTheActionsAndMarksThemReconciling) {
  auto current = load({{"a.yaml", thing("a") + thing("b")}});
  PlanStep planned = steps_->planRevision(*current, options_, "");
  ApplyStep step = steps_->applyPlan({planned.planned.plan, false, *current, *planned.records,
                                      &planned.unconfirmed, options_, "rid-test"});
  ASSERT_EQ(step.report.outcomes.size(), 2u);
  EXPECT_TRUE(step.report.ok());
  EXPECT_TRUE(fake_->hostState({"FakeThing", "a"}).has_value());
  EXPECT_TRUE(fake_->hostState({"FakeThing", "b"}).has_value());
  EXPECT_EQ(records().size(), 2u);
  const Condition* reconciling = condition("a", "Reconciling");  // until the record step
  ASSERT_NE(reconciling, nullptr);
  EXPECT_TRUE(reconciling->status());
  EXPECT_EQ(reconciling->reason(), "create");
}

TEST_F(LoopStepsTest, ApplyPlanWithNothingToRunTouchesNothing) {
  auto current = load({{"a.yaml", thing("a")}});
  Plan empty;
  empty.revision = current->id;
  std::vector<ManagedRecord> none;
  for (bool refreshOnly : {false, true}) {
    ApplyStep step =
        steps_->applyPlan({empty, refreshOnly, *current, none, nullptr, options_, "rid-test"});
    EXPECT_TRUE(step.report.outcomes.empty());
    EXPECT_EQ(step.applySeconds, 0);
  }
  EXPECT_EQ(fake_->applyCalls(), 0);
  EXPECT_FALSE(fake_->hostState({"FakeThing", "a"}).has_value());
  EXPECT_EQ(controller_->objectStatus({"FakeThing", "a"}), std::nullopt);
}

// --- 5. Record ---

TEST(LoopBackoffDelay, DoublesFromTheBaseUpToTheCap) {
  LoopOptions o;
  o.backoffBase = milliseconds(1000);
  o.backoffMax = milliseconds(5000);
  EXPECT_EQ(backoffDelay(0, o), milliseconds(1000));
  EXPECT_EQ(backoffDelay(1, o), milliseconds(1000));
  EXPECT_EQ(backoffDelay(2, o), milliseconds(2000));
  EXPECT_EQ(backoffDelay(3, o), milliseconds(4000));
  EXPECT_EQ(backoffDelay(4, o), milliseconds(5000));
  EXPECT_EQ(backoffDelay(1000, o), milliseconds(5000));  // the exponent stops at 20
}

TEST(LoopTallyOutcomes, CountsSkippedAsFailedAndLabelsTheMetric) {
  Metrics metrics;
  ApplyReport report;
  report.outcomes = {outcome("a", Status::ok()), outcome("b", Status::error("boom")),
                     outcome("c", Status::error("b failed"), /*skipped=*/true)};
  ActionTally tally = tallyOutcomes(report, metrics);
  EXPECT_EQ(tally.succeeded, 1u);
  EXPECT_EQ(tally.failed, 2u);
  auto count = [&](const char* result) {
    return metrics
        .counter("hyper_actions_total", "provider actions by result",
                 {{"action", "create"}, {"result", result}})
        .value();
  };
  EXPECT_EQ(count("succeeded"), 1);
  EXPECT_EQ(count("failed"), 1);
  EXPECT_EQ(count("skipped"), 1);
}

class LoopRecordTest : public LoopStepsTest {
 protected:
  RecordInput input(const Plan& plan, const Revision& current, const Deferral& deferral,
                    const ApplyReport& report) {
    return {plan,   plan.hash(), current,      deferral,  planErrors_,
            report, options_,    clock_.now(), "rid-test"};
  }
  std::map<ObjectId, std::string> planErrors_;
};

TEST_F(LoopRecordTest, RecordOutcomeOfAFailureBacksOffAndReportsIt) {
  Plan plan;
  Revision current;
  current.id = "fake:1";
  Deferral deferral;
  ApplyReport report;
  RecordInput in = input(plan, current, deferral, report);
  ObjectStatus s;
  auto failed = outcome("a", Status::error("injected failure"));
  std::optional<Event> e = steps_->recordOutcome(s, failed, in);
  EXPECT_EQ(s.failures, 1);
  EXPECT_EQ(s.retryAt, in.now + milliseconds(1000));
  EXPECT_TRUE(s.condition(ConditionType::Stalled).status());
  EXPECT_EQ(s.condition(ConditionType::Ready).reason(), "ActionFailed");
  EXPECT_FALSE(s.condition(ConditionType::Reconciling).status());
  EXPECT_EQ(s.condition(ConditionType::Reconciling).reason(), "Failed");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type, "action-failed");
  EXPECT_EQ(e->object, "FakeThing/a");
  EXPECT_EQ(e->revision, "fake:1");
  EXPECT_EQ(e->message, "injected failure; retry in 1.000 s");
  EXPECT_EQ(e->details["failures"], 1);
  e = steps_->recordOutcome(s, failed, in);
  EXPECT_EQ(s.failures, 2);
  EXPECT_EQ(s.retryAt, in.now + milliseconds(2000));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message, "injected failure; retry in 2.000 s");
}

TEST_F(LoopRecordTest, RecordOutcomeOfASkipHasNoBackoffAndNoEvent) {
  Plan plan;
  Revision current;
  Deferral deferral;
  ApplyReport report;
  RecordInput in = input(plan, current, deferral, report);
  ObjectStatus s;
  std::optional<Event> e =
      steps_->recordOutcome(s, outcome("b", Status::error("a failed"), /*skipped=*/true), in);
  EXPECT_FALSE(e.has_value());
  EXPECT_EQ(s.failures, 0);
  EXPECT_EQ(s.retryAt, in.now);
  EXPECT_FALSE(s.condition(ConditionType::Stalled).status());
  EXPECT_EQ(s.condition(ConditionType::Ready).reason(), "DependencyFailed");
  EXPECT_EQ(s.condition(ConditionType::Ready).message(), "a failed");
}

TEST_F(LoopRecordTest, RecordOutcomeOfASuccessClearsFailuresAndDrift) {
  Plan plan;
  Revision current;
  Deferral deferral;
  ApplyReport report;
  RecordInput in = input(plan, current, deferral, report);
  ObjectStatus s;
  s.failures = 3;
  s.driftKey = "k";
  s.drift = {{"reason", "x"}};
  std::optional<Event> e = steps_->recordOutcome(s, outcome("a", Status::ok()), in);
  EXPECT_FALSE(e.has_value());
  EXPECT_EQ(s.failures, 0);
  EXPECT_EQ(s.driftKey, "");
  EXPECT_TRUE(s.drift.is_null());
  EXPECT_TRUE(s.condition(ConditionType::Ready).status());
  EXPECT_EQ(s.condition(ConditionType::Ready).message(), "create succeeded");
  EXPECT_FALSE(s.condition(ConditionType::Drifted).status());
}

TEST(ConditionTest, KeepsItsSinceUntilItsStatusChanges) {
  Condition c;
  EXPECT_FALSE(c.set());
  auto message = std::make_shared<const std::string>("m");
  c.assign(true, "InSync", message, 100);
  EXPECT_TRUE(c.set());
  EXPECT_EQ(c.since(), 100);
  c.assign(true, "Applied", nullptr, 200);  // the same status: since stays
  EXPECT_EQ(c.since(), 100);
  EXPECT_EQ(c.reason(), "Applied");
  EXPECT_EQ(c.message(), "");
  c.assign(false, "ActionFailed", message, 300);
  EXPECT_EQ(c.since(), 300);
  EXPECT_EQ(c.message().data(), message->data());  // shared, not copied
  EXPECT_EQ(parseConditionType("Stalled"), ConditionType::Stalled);
  EXPECT_FALSE(parseConditionType("Held").has_value());
}

TEST_F(LoopRecordTest, ObjectsInSyncShareTheirReadyMessageAndRevision) {
  auto current = load({{"a.yaml", thing("a") + thing("b")}});
  ASSERT_EQ(controller_->reconcileOnce("test", false).succeeded, 2u);
  ASSERT_EQ(controller_->reconcileOnce("test", false).planned, 0u);
  auto a = controller_->objectStatus({"FakeThing", "a"});
  auto b = controller_->objectStatus({"FakeThing", "b"});
  ASSERT_TRUE(a && b);
  const Condition* readyA = a->find("Ready");
  const Condition* readyB = b->find("Ready");
  ASSERT_TRUE(readyA && readyB);
  EXPECT_EQ(readyA->message(), "the host matches revision " + current->id);
  EXPECT_EQ(readyA->message().data(), readyB->message().data());
  EXPECT_EQ(readyA->reason().data(), readyB->reason().data());
  EXPECT_EQ(a->find("Bogus"), nullptr);
  // Applied from one revision: one string for both.
  ASSERT_TRUE(a->revision && b->revision);
  EXPECT_EQ(*a->revision, current->id);
  EXPECT_EQ(a->revision, b->revision);
}

TEST_F(LoopRecordTest, AnObjectLeftInSyncByANewRevisionIsReadyWithTheNewRevisionsName) {
  options_.prune = false;
  controller_->setOptions(options_);
  auto first = load({{"a.yaml", thing("a") + thing("b") + thing("x")}});
  ASSERT_EQ(controller_->reconcileOnce("test", false).succeeded, 3u);
  ASSERT_EQ(controller_->reconcileOnce("test", false).planned, 0u);
  ASSERT_EQ(condition("a", "Ready")->message(), "the host matches revision " + first->id);
  int64_t since = condition("a", "Ready")->since();

  // a unchanged, b changed, c new, x gone from the source (kept: no prune, still managed).
  auto second = load({{"a.yaml", thing("a") + thing("b", "  color: red\n") + thing("c")}});
  ASSERT_NE(second->id, first->id);
  ReconcileSummary applied = controller_->reconcileOnce("test", false);
  EXPECT_EQ(applied.succeeded, 2u);
  EXPECT_TRUE(condition("a", "Ready")->status());
  EXPECT_EQ(condition("a", "Ready")->message(), "the host matches revision " + second->id);
  EXPECT_EQ(condition("a", "Ready")->since(), since);
  EXPECT_EQ(condition("a", "Reconciling")->reason(), "Done");
  EXPECT_EQ(condition("b", "Ready")->message(), "update succeeded");
  EXPECT_EQ(condition("c", "Ready")->message(), "create succeeded");
  EXPECT_TRUE(controller_->objectStatus(fakeId("x")).has_value());

  ASSERT_EQ(controller_->reconcileOnce("test", false).planned, 0u);
  const Condition* readyA = condition("a", "Ready");
  std::string_view messageA = readyA->message();
  for (const char* name : {"b", "c"}) {
    EXPECT_EQ(condition(name, "Ready")->message(), "the host matches revision " + second->id);
    EXPECT_EQ(condition(name, "Ready")->message().data(), messageA.data()) << name;
  }
}

TEST_F(LoopRecordTest, RecordObjectsSetsEveryObjectsConditionsAndTheLastPlan) {
  // a: applied; b: deferred; c: a plan error; d: in sync; ghost: forgotten.
  auto current = load({{"a.yaml", thing("a") + thing("b") + thing("c") + thing("d")}});
  ASSERT_EQ(controller_->reconcileOnce("test", false).succeeded, 4u);
  PlanAction ghost = action("ghost");
  ghost.drift = true;
  Deferral drifted;
  drifted.drifted = {&ghost};
  steps_->reportDrift(drifted, current->id);
  ASSERT_TRUE(controller_->objectStatus({"FakeThing", "ghost"}).has_value());

  Plan plan;
  plan.revision = current->id;
  plan.actions = {action("a"), action("b")};
  Deferral deferral;
  deferral.deferred = {{"FakeThing", "b"}};
  deferral.reasons[{"FakeThing", "b"}] = "suspended";
  planErrors_[{"FakeThing", "c"}] = "c: broken";
  ApplyReport report;
  report.outcomes = {outcome("a", Status::error("injected failure"))};
  steps_->recordObjects(input(plan, *current, deferral, report));

  EXPECT_FALSE(controller_->objectStatus({"FakeThing", "ghost"}).has_value());
  EXPECT_EQ(condition("a", "Stalled")->reason(), "ActionFailed");
  EXPECT_EQ(status_->failures, 1);
  ASSERT_NE(status_->revision, nullptr);
  EXPECT_EQ(*status_->revision, current->id);
  EXPECT_EQ(condition("b", "Ready")->reason(), "Deferred");
  EXPECT_EQ(condition("b", "Ready")->message(), "suspended");
  EXPECT_FALSE(condition("b", "Ready")->status());
  EXPECT_EQ(condition("c", "Stalled")->reason(), "PlanFailed");
  EXPECT_EQ(condition("c", "Ready")->message(), "c: broken");
  // Planned again after a backoff: what broke its plan may be fixed on the host.
  auto c = controller_->objectStatus({"FakeThing", "c"});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->failures, 1);
  EXPECT_GT(c->retryAt, clock_.now());
  EXPECT_LT(c->retryAt, Clock::TimePoint::max());
  EXPECT_TRUE(condition("d", "Ready")->status());
  EXPECT_EQ(condition("d", "Ready")->message(), "the host matches revision " + current->id);
  auto failed = eventsOf("action-failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].object, "FakeThing/a");
  nlohmann::json last = controller_->lastPlanJson();
  EXPECT_EQ(last["hash"], plan.hash());
  EXPECT_EQ(last["reconcileId"], "rid-test");
  EXPECT_EQ(last["deferred"], (nlohmann::json{{"FakeThing/b", "suspended"}}));
  EXPECT_EQ(
      metrics_.gauge("hyper_objects", "objects whose condition is true", {{"condition", "Stalled"}})
          .value(),
      2);
}

// --- Finish ---

TEST_F(LoopStepsTest, FinishReconcileWithoutARevisionPublishesOnlyTheSummary) {
  ReconcileSummary s;
  s.reconcileId = "rid-test";
  s.error = "no valid revision yet";
  steps_->finishReconcile(s, nullptr);
  EXPECT_GT(s.finishedAt, 0);
  EXPECT_EQ(controller_->statusJson()["lastReconcile"]["error"], "no valid revision yet");
  EXPECT_FALSE(controller_->ready());
  EXPECT_EQ(metrics_.counter("hyper_reconciles_total", "reconciles run").value(), 0);
  EXPECT_TRUE(eventsOf("reconciled").empty());
}

TEST_F(LoopStepsTest, FinishReconcileCountsAndReportsWhatHappened) {
  auto current = load({{"a.yaml", thing("a")}});
  ReconcileSummary quiet;
  quiet.reconcileId = "rid-quiet";
  steps_->finishReconcile(quiet, current.get());  // nothing planned, source unchanged
  EXPECT_TRUE(eventsOf("reconciled").empty());
  EXPECT_TRUE(controller_->ready());
  ReconcileSummary s;
  s.reconcileId = "rid-test";
  s.trigger = "webhook";
  s.planned = 3;
  s.succeeded = 1;
  s.failed = 1;
  s.deferred = 1;
  steps_->finishReconcile(s, current.get());
  EXPECT_EQ(metrics_.counter("hyper_reconciles_total", "reconciles run").value(), 2);
  auto reconciled = eventsOf("reconciled");
  ASSERT_EQ(reconciled.size(), 1u);
  EXPECT_EQ(reconciled[0].level, "error");
  EXPECT_EQ(reconciled[0].revision, current->id);
  EXPECT_EQ(reconciled[0].message.rfind("reconciled (webhook): 3 planned, 1 succeeded, 1 failed, "
                                        "1 deferred in ",
                                        0),
            0u)
      << reconciled[0].message;
  EXPECT_EQ(controller_->statusJson()["lastReconcile"]["reconcileId"], "rid-test");
}

}  // namespace
}  // namespace hyper::controller
