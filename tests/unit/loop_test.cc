// The hyperd loop (hyperd/loop.h) against the fake provider and an in-memory source, with a
// real SQLite inventory and event log in a temp dir and a manual clock for backoff.

#include "hyperd/loop.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "providers/builtin.h"
#include "tests/fakes/fake_provider.h"
#include "tests/fakes/fake_source.h"
#include "tests/fakes/loop_world.h"

namespace hyper::controller {
namespace {

using hyper::testing::FakeProvider;
using hyper::testing::FakeSource;

class ManualClock : public Clock {
 public:
  TimePoint now() const override { return now_; }
  void advance(std::chrono::milliseconds d) { now_ += d; }

 private:
  TimePoint now_ = std::chrono::steady_clock::now();
};

class RecordingSink : public AlertSink {
 public:
  void send(const Alert& alert) override {
    std::lock_guard<std::mutex> lk(mu);
    alerts.push_back(alert);
  }
  std::vector<Alert> of(const std::string& kind) {
    std::lock_guard<std::mutex> lk(mu);
    std::vector<Alert> out;
    for (const auto& a : alerts) {
      if (a.kind == kind) {
        out.push_back(a);
      }
    }
    return out;
  }
  std::mutex mu;
  std::vector<Alert> alerts;
};

std::string thing(const std::string& name, const std::string& extraSpec = "") {
  return "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata:\n  name: " + name +
         "\nspec:\n  size: 1\n" + extraSpec + "---\n";
}

std::string vm(const std::string& name, bool running = true) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata:\n  name: " + name +
         "\nspec:\n  kernel: {path: /boot/vmlinuz}\n  running: " + (running ? "true" : "false") +
         "\n---\n";
}

class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // VM too: the hold counts running VMs (the fake stands in for the VM provider).
    auto world = test::LoopWorld::create("loop-test", {"FakeThing", "VM"});
    ASSERT_TRUE(world.isOk()) << world.status().message();
    world_ = std::move(*world);
    dir_ = world_->dir();
    fake_ = &world_->fake();
    engine_ = &world_->engine();
    inventory_ = &world_->inventory();
    events_ = &world_->events();
    LoopOptions options;
    options.backoffBase = std::chrono::milliseconds(1000);
    // Which objects run, from the VM kind's record, as hyperd sets it.
    auto builtin = providers::builtinKinds();
    ASSERT_TRUE(builtin.isOk()) << builtin.status().message();
    options.hold.running = (*builtin)->runningObjects();
    controller_ = std::make_unique<Controller>(*engine_, *inventory_, *events_, source_, sink_,
                                               metrics_, options, clock_);
  }
  void TearDown() override { controller_.reset(); }

  std::vector<std::string> eventTypes() {
    auto all = events_->latest(1000);
    EXPECT_TRUE(all.isOk());
    std::vector<std::string> out;
    for (const auto& e : *all) {
      out.push_back(e.type);
    }
    return out;
  }
  bool condition(const std::string& name, const std::string& type) {
    auto s = controller_->objectStatus({"FakeThing", name});
    EXPECT_TRUE(s.has_value()) << name;
    if (!s) {
      return false;
    }
    const Condition* c = s->find(type);
    return c != nullptr && c->status();
  }

  std::unique_ptr<test::LoopWorld> world_;  // outlives the controller (declared first)
  std::string dir_;
  FakeProvider* fake_ = nullptr;
  Engine* engine_ = nullptr;
  Inventory* inventory_ = nullptr;
  EventLog* events_ = nullptr;
  FakeSource source_;
  RecordingSink sink_;
  Metrics metrics_;
  ManualClock clock_;
  std::unique_ptr<Controller> controller_;
};

TEST_F(LoopTest, FirstReconcileAppliesAndMarksReady) {
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  ReconcileSummary s = controller_->reconcileOnce("test", true);
  EXPECT_EQ(s.error, "");
  EXPECT_EQ(s.revision, source_.revision());
  EXPECT_EQ(s.planned, 2u);
  EXPECT_EQ(s.succeeded, 2u);
  EXPECT_TRUE(fake_->hostState({"FakeThing", "a"}).has_value());
  EXPECT_TRUE(condition("a", "Ready"));
  EXPECT_FALSE(condition("a", "Stalled"));
  EXPECT_TRUE(controller_->ready());
  auto records = inventory_->list();
  ASSERT_TRUE(records.isOk());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].revision, source_.revision());
}

TEST_F(LoopTest, ARevisionLoadedAfterAnApplyHoldsTheRecordsSpecTrees) {
  source_.set({{"a.yaml", thing("a")}, {"b.yaml", thing("b")}});
  ASSERT_EQ(controller_->reconcileOnce("test", true).succeeded, 2u);
  // a.yaml is parsed again (a comment changed it) into an equal object: it takes the record's
  // tree rather than keeping a second one.
  std::vector<SourceFile> next = {{"a.yaml", "# edited\n" + thing("a")}, {"b.yaml", thing("b")}};
  source_.set(next);
  ReconcileSummary s = controller_->reconcileOnce("test", true);
  EXPECT_EQ(s.error, "");
  EXPECT_EQ(s.planned, 0u);
  RevisionResult inForce = engine_->load(next);  // unchanged: the revision just adopted
  ASSERT_TRUE(inForce.unchanged);
  ASSERT_TRUE(inForce.revision);
  auto records = inventory_->snapshot();
  ASSERT_TRUE(records.isOk());
  size_t shared = 0;
  for (const auto& o : inForce.revision->objects) {
    for (const auto& r : **records) {
      if (r.id == o->id) {
        EXPECT_TRUE(o->spec.sharesWith(r.spec)) << o->id.str();
        shared += o->spec.sharesWith(r.spec) ? 1 : 0;
      }
    }
  }
  EXPECT_EQ(shared, 2u);
}

TEST_F(LoopTest, UnchangedSourceIsNotFetchedAndPlansNothing) {
  source_.set({{"a.yaml", thing("a")}});
  controller_->reconcileOnce("test", true);
  int fetches = source_.fetchCalls;
  ReconcileSummary s = controller_->reconcileOnce("poll", true);
  EXPECT_EQ(source_.fetchCalls, fetches);
  EXPECT_FALSE(s.sourceChanged);
  EXPECT_EQ(s.planned, 0u);
  // An observe-only trigger does not even ask the source.
  int checks = source_.changedCalls;
  controller_->reconcileOnce("drift-check", false);
  EXPECT_EQ(source_.changedCalls, checks);
}

// The informer pattern: once a full observe found the host in sync, a poll or webhook that
// brings no new revision plans from it without asking the provider, so a change no event
// reports (the fake has no event source) stays unseen until the drift check, which observes in
// full, finds it and corrects it. Everything else observes in full.
TEST_F(LoopTest, AQuietPollPlansFromTheLastObserveAndTheDriftCheckResyncs) {
  LoopOptions on;
  on.backoffBase = std::chrono::milliseconds(1000);
  on.planFromLastObserve = true;
  controller_->setOptions(on);
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  ReconcileSummary s = controller_->reconcileOnce("start", true);
  ASSERT_EQ(s.succeeded, 2u);
  // Something was applied: the next reconcile observes (that observe is the one kept).
  int observes = fake_->observeCalls();
  s = controller_->reconcileOnce("poll", true);
  EXPECT_TRUE(s.observed);
  EXPECT_EQ(fake_->observeCalls(), observes + 1);
  EXPECT_EQ(s.planned, 0u);
  const std::string planHash = s.planHash;

  fake_->setHostState({"FakeThing", "a"}, {{"size", 7}});  // by hand, no event
  observes = fake_->observeCalls();
  for (const char* trigger : {"poll", "webhook", "poll,webhook"}) {
    s = controller_->reconcileOnce(trigger, true);
    EXPECT_FALSE(s.observed) << trigger;
    EXPECT_EQ(s.planned, 0u) << trigger;
    EXPECT_EQ(s.planHash, planHash) << trigger;
    EXPECT_EQ(s.revision, source_.revision()) << trigger;
  }
  EXPECT_EQ(fake_->observeCalls(), observes);
  EXPECT_EQ((*fake_->hostState({"FakeThing", "a"}))["size"], 7);
  EXPECT_NE(metrics_.render().find("hyper_reconciles_from_cache_total 3"), std::string::npos)
      << metrics_.render();

  // The resync finds it.
  s = controller_->reconcileOnce("drift-check", false);
  EXPECT_TRUE(s.observed);
  EXPECT_EQ(s.drifted, 1u);
  EXPECT_EQ(s.succeeded, 1u);
  EXPECT_EQ((*fake_->hostState({"FakeThing", "a"}))["size"], 1);
  EXPECT_EQ(sink_.of("drift").size(), 1u);

  // Not in sync after a correction: the next poll observes, and then plans from that again.
  observes = fake_->observeCalls();
  EXPECT_TRUE(controller_->reconcileOnce("poll", true).observed);
  EXPECT_FALSE(controller_->reconcileOnce("poll", true).observed);
  EXPECT_EQ(fake_->observeCalls(), observes + 1);

  // Any other trigger observes in full.
  for (const char* trigger : {"host-event", "retry", "api", "poll,host-event", "start"}) {
    observes = fake_->observeCalls();
    EXPECT_TRUE(controller_->reconcileOnce(trigger, false).observed) << trigger;
    EXPECT_EQ(fake_->observeCalls(), observes + 1) << trigger;
  }
  // A new revision observes what it moved: the fake cannot say, so all of its objects.
  source_.set({{"a.yaml", thing("a") + thing("b") + thing("c")}});
  observes = fake_->observeCalls();
  s = controller_->reconcileOnce("poll", true);
  EXPECT_FALSE(s.observed);
  EXPECT_EQ(s.scoped, 3u);
  EXPECT_EQ(fake_->observeCalls(), observes + 1);
  EXPECT_EQ(s.succeeded, 1u);
  // After an apply the next poll observes in full, then plans from that; so does a write to the
  // inventory.
  EXPECT_TRUE(controller_->reconcileOnce("poll", true).observed);
  ASSERT_FALSE(controller_->reconcileOnce("poll", true).observed);
  auto record = inventory_->get({"FakeThing", "c"});
  ASSERT_TRUE(record.isOk() && record->has_value());
  ASSERT_TRUE(inventory_->put(**record).isOk());
  EXPECT_TRUE(controller_->reconcileOnce("poll", true).observed);
}

// A new revision over one in sync (found so by a full observe, or left so by an apply whose every
// action succeeded) observes and plans only what it moved; a hand change elsewhere waits for the
// first poll after it, which observes in full. Any other trigger observes in full.
TEST_F(LoopTest, ANewRevisionOverOneInSyncObservesAndPlansOnlyWhatItMoved) {
  LoopOptions on;
  on.planFromLastObserve = true;
  controller_->setOptions(on);
  std::vector<ObjectId> moves;  // what the fake says a change moves, besides the change
  fake_->setMoves([&](const RevisionChange&) { return moves; });
  auto ids = [](std::vector<std::string> names) {
    std::vector<ObjectId> out;
    for (auto& n : names) {
      out.push_back({"FakeThing", n});
    }
    return out;
  };
  const std::string red = "  color: red\n";
  source_.set({{"a.yaml", thing("a") + thing("b") + thing("c")}});
  ASSERT_EQ(controller_->reconcileOnce("start", true).succeeded, 3u);
  ASSERT_TRUE(controller_->reconcileOnce("poll", true).observed);  // in sync, observed

  fake_->setHostState({"FakeThing", "b"}, {{"size", 7}});  // by hand, no event
  source_.set({{"a.yaml", thing("a", red) + thing("b") + thing("c")}});
  ReconcileSummary s = controller_->reconcileOnce("webhook", true);
  EXPECT_TRUE(s.sourceChanged);
  EXPECT_FALSE(s.observed);
  EXPECT_EQ(s.scoped, 1u);
  EXPECT_EQ(fake_->lastObserved(), ids({"a"}));
  EXPECT_EQ(s.planned, 1u);
  EXPECT_EQ(s.succeeded, 1u);
  EXPECT_EQ((*fake_->hostState({"FakeThing", "b"}))["size"], 7) << "b was not observed";

  // In sync after that apply: the next push is scoped too; c leaves (pruned).
  source_.set({{"a.yaml", thing("a", red) + thing("b")}});
  s = controller_->reconcileOnce("source-change", true);
  EXPECT_EQ(s.scoped, 1u);
  EXPECT_EQ(fake_->lastObserved(), ids({"c"}));
  EXPECT_EQ(s.succeeded, 1u);
  EXPECT_FALSE(fake_->hostState({"FakeThing", "c"}).has_value());

  // What the provider says a change moves is observed with it: b's drift is found and repaired.
  moves = ids({"b"});
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  s = controller_->reconcileOnce("poll", true);
  EXPECT_EQ(s.scoped, 2u);
  EXPECT_EQ(fake_->lastObserved(), ids({"a", "b"}));
  EXPECT_EQ(s.drifted, 1u);
  EXPECT_EQ(s.succeeded, 2u);
  EXPECT_EQ((*fake_->hostState({"FakeThing", "b"}))["size"], 1);
  moves.clear();

  // A poll without a new revision after an apply observes in full (the apply is trusted for
  // the next revision's scope, not as an observe).
  int observes = fake_->observeCalls();
  s = controller_->reconcileOnce("poll", true);
  EXPECT_TRUE(s.observed);
  EXPECT_EQ(s.scoped, 0u);
  EXPECT_EQ(fake_->observeCalls(), observes + 1);

  // "Reconcile now" and host events observe in full even with a new revision.
  for (const char* trigger : {"api", "webhook,host-event:netlink"}) {
    fake_->setHostState({"FakeThing", "b"}, {{"size", 8}});
    source_.set({{"a.yaml", thing("a", trigger == std::string("api") ? red : "") + thing("b")}});
    s = controller_->reconcileOnce(trigger, true);
    EXPECT_TRUE(s.observed) << trigger;
    EXPECT_EQ(s.scoped, 0u) << trigger;
    EXPECT_EQ(s.drifted, 1u) << trigger;
    EXPECT_EQ(fake_->lastObserved(), ids({"a", "b"})) << trigger;
  }

  // A failed action leaves the host out of sync: the next revision observes in full.
  ASSERT_TRUE(controller_->reconcileOnce("poll", true).observed);
  fake_->setFailApply({{"FakeThing", "a"}});
  source_.set({{"a.yaml", thing("a", red) + thing("b")}});
  s = controller_->reconcileOnce("poll", true);
  EXPECT_EQ(s.scoped, 1u);
  EXPECT_EQ(s.failed, 1u);
  fake_->setFailApply({});
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  EXPECT_TRUE(controller_->reconcileOnce("poll", true).observed);
  EXPECT_NE(metrics_.render().find("hyper_reconciles_scoped_total 4"), std::string::npos)
      << metrics_.render();
}

// Something failing is not "in sync": every poll observes until it is done.
TEST_F(LoopTest, AFailingObjectKeepsEveryPollObserving) {
  LoopOptions on;
  on.backoffBase = std::chrono::milliseconds(1000);
  on.planFromLastObserve = true;
  controller_->setOptions(on);
  source_.set({{"a.yaml", thing("a")}});
  fake_->setFailApply({{"FakeThing", "a"}});
  ReconcileSummary s = controller_->reconcileOnce("start", true);
  ASSERT_EQ(s.failed, 1u);
  int observes = fake_->observeCalls();
  clock_.advance(std::chrono::milliseconds(100));  // still backing off: deferred, not applied
  s = controller_->reconcileOnce("poll", true);
  EXPECT_TRUE(s.observed);
  s = controller_->reconcileOnce("poll", true);
  EXPECT_TRUE(s.observed);
  EXPECT_EQ(fake_->observeCalls(), observes + 2);
}

TEST_F(LoopTest, InvalidRevisionIsRejectedWholeAndTheLastGoodStays) {
  source_.set({{"a.yaml", thing("a")}});
  controller_->reconcileOnce("test", true);
  std::string good = source_.revision();
  // One valid change and one invalid document: nothing of it may be applied.
  source_.set(
      {{"a.yaml", thing("a", "  size2: 5\n")}, {"b.yaml", thing("b", "  invalid: true\n")}});
  ReconcileSummary s = controller_->reconcileOnce("test", true);
  EXPECT_TRUE(s.revisionRejected);
  EXPECT_EQ(s.revision, good);
  EXPECT_EQ(controller_->appliedRevision(), good);
  EXPECT_FALSE(fake_->hostState({"FakeThing", "b"}).has_value());
  EXPECT_FALSE(fake_->hostState({"FakeThing", "a"})->contains("size2"));
  auto rejected = sink_.of("revision-rejected");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_NE(rejected[0].details.dump().find("b.yaml:"), std::string::npos)
      << rejected[0].details.dump();
  // The same bad revision is not re-validated and re-alerted on every poll.
  controller_->reconcileOnce("poll", true);
  EXPECT_EQ(sink_.of("revision-rejected").size(), 1u);
}

TEST_F(LoopTest, DriftIsAlertedOnceAndCorrected) {
  source_.set({{"a.yaml", thing("a")}});
  controller_->reconcileOnce("test", true);
  fake_->setHostState({"FakeThing", "a"}, {{"size", 7}});
  ReconcileSummary s = controller_->reconcileOnce("drift-check", false);
  EXPECT_EQ(s.drifted, 1u);
  EXPECT_EQ(s.succeeded, 1u);
  EXPECT_EQ((*fake_->hostState({"FakeThing", "a"}))["size"], 1);
  auto drift = sink_.of("drift");
  ASSERT_EQ(drift.size(), 1u);
  EXPECT_EQ(drift[0].object, "FakeThing/a");
  EXPECT_NE(drift[0].details.dump().find("spec.size"), std::string::npos) << drift[0].details;
  EXPECT_FALSE(condition("a", "Drifted"));
  s = controller_->reconcileOnce("drift-check", false);
  EXPECT_EQ(s.planned, 0u);
  EXPECT_EQ(sink_.of("drift").size(), 1u);
}

TEST_F(LoopTest, AlertOnlyDriftIsReportedNotCorrected) {
  source_.set({{"a.yaml", thing("a", "  driftPolicy: alert\n")}});
  controller_->reconcileOnce("test", true);
  fake_->setHostState({"FakeThing", "a"}, {{"size", 7}});
  ReconcileSummary s = controller_->reconcileOnce("drift-check", false);
  EXPECT_EQ(s.drifted, 1u);
  EXPECT_EQ(s.deferred, 1u);
  EXPECT_EQ((*fake_->hostState({"FakeThing", "a"}))["size"], 7);
  EXPECT_TRUE(condition("a", "Drifted"));
  EXPECT_FALSE(condition("a", "Ready"));
  ASSERT_EQ(controller_->driftJson().size(), 1u);
  // Still drifted on the next check, but one drift is one alert.
  controller_->reconcileOnce("drift-check", false);
  EXPECT_EQ(sink_.of("drift").size(), 1u);
  // The config default applies to objects that do not say.
  Object says;
  says.driftPolicy = DriftPolicy::Correct;
  EXPECT_EQ(driftPolicyOf(nullptr, DriftPolicy::Alert), DriftPolicy::Alert);
  EXPECT_EQ(driftPolicyOf(&says, DriftPolicy::Alert), DriftPolicy::Correct);
  says.driftPolicy.reset();
  EXPECT_EQ(driftPolicyOf(&says, DriftPolicy::Alert), DriftPolicy::Alert);
}

TEST_F(LoopTest, FailedObjectBacksOffWhileOthersGoOn) {
  fake_->setFailApply({{"FakeThing", "bad"}});
  source_.set({{"a.yaml", thing("bad") + thing("child", "  dependsOn: bad\n") + thing("good")}});
  ReconcileSummary s = controller_->reconcileOnce("test", true);
  EXPECT_EQ(s.failed, 2u);  // bad failed, child skipped
  EXPECT_TRUE(fake_->hostState({"FakeThing", "good"}).has_value());
  EXPECT_TRUE(condition("bad", "Stalled"));
  EXPECT_EQ(sink_.of("action-failed").size(), 1u);

  // Within the backoff: bad and its dependent are deferred, nothing is attempted.
  int calls = fake_->applyCalls();
  s = controller_->reconcileOnce("retry", false);
  EXPECT_EQ(s.deferred, 2u);
  EXPECT_EQ(fake_->applyCalls(), calls);

  // After the first backoff (1 s) it is retried; fixed now, it and the child converge.
  fake_->setFailApply({});
  clock_.advance(std::chrono::milliseconds(1001));
  s = controller_->reconcileOnce("retry", false);
  EXPECT_EQ(s.succeeded, 2u);
  EXPECT_TRUE(condition("bad", "Ready"));
  EXPECT_TRUE(condition("child", "Ready"));
}

TEST_F(LoopTest, BackoffGrowsExponentially) {
  fake_->setFailApply({{"FakeThing", "bad"}});
  source_.set({{"a.yaml", thing("bad")}});
  controller_->reconcileOnce("test", true);  // failure 1: next in 1 s
  clock_.advance(std::chrono::milliseconds(1001));
  controller_->reconcileOnce("retry", false);  // failure 2: next in 2 s
  auto st = controller_->objectStatus({"FakeThing", "bad"});
  ASSERT_TRUE(st);
  EXPECT_EQ(st->failures, 2);
  clock_.advance(std::chrono::milliseconds(1500));
  int calls = fake_->applyCalls();
  controller_->reconcileOnce("retry", false);
  EXPECT_EQ(fake_->applyCalls(), calls);  // 1.5 s < 2 s
  clock_.advance(std::chrono::milliseconds(600));
  controller_->reconcileOnce("retry", false);
  EXPECT_EQ(fake_->applyCalls(), calls + 1);
}

// A provider that says when to retry (RequeueAfter) overrides the exponential backoff.
TEST_F(LoopTest, ProviderRetryAfterReplacesTheBackoff) {
  fake_->setFailApply({{"FakeThing", "bad"}});
  fake_->setFailureHint(std::chrono::seconds(10), /*terminal=*/false);
  source_.set({{"a.yaml", thing("bad")}});
  controller_->reconcileOnce("test", true);
  auto st = controller_->objectStatus({"FakeThing", "bad"});
  ASSERT_TRUE(st);
  EXPECT_EQ(st->toJson({"FakeThing", "bad"}, clock_).value("retryInMs", 0), 10000);
  int calls = fake_->applyCalls();
  clock_.advance(std::chrono::milliseconds(1001));  // past the 1 s the backoff would give
  controller_->reconcileOnce("retry", false);
  EXPECT_EQ(fake_->applyCalls(), calls);
  clock_.advance(std::chrono::milliseconds(9000));
  controller_->reconcileOnce("retry", false);
  EXPECT_EQ(fake_->applyCalls(), calls + 1);
}

// A terminal failure (TerminalError) is not retried at all until the object's spec changes.
TEST_F(LoopTest, TerminalFailureWaitsForASpecChange) {
  fake_->setFailApply({{"FakeThing", "bad"}});
  fake_->setFailureHint(std::nullopt, /*terminal=*/true);
  source_.set({{"a.yaml", thing("bad")}});
  controller_->reconcileOnce("test", true);
  auto failed = sink_.of("action-failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_NE(failed[0].summary.find("not retried until its spec changes"), std::string::npos)
      << failed[0].summary;
  auto st = controller_->objectStatus({"FakeThing", "bad"});
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->toJson({"FakeThing", "bad"}, clock_).value("terminal", false));

  int calls = fake_->applyCalls();
  clock_.advance(std::chrono::hours(24));
  ReconcileSummary s = controller_->reconcileOnce("retry", false);
  EXPECT_EQ(fake_->applyCalls(), calls) << "a terminal failure is not retried on time alone";
  EXPECT_EQ(s.deferred, 1u);

  // A new spec is a new attempt, at once and without the old failure count.
  fake_->setFailApply({});
  source_.set({{"a.yaml", thing("bad", "  fixed: true\n")}});
  s = controller_->reconcileOnce("push", true);
  EXPECT_EQ(fake_->applyCalls(), calls + 1);
  EXPECT_EQ(s.succeeded, 1u);
  EXPECT_TRUE(condition("bad", "Ready"));
  st = controller_->objectStatus({"FakeThing", "bad"});
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->terminalSpec.empty());
}

// Every apply gets the loop's deadline and its stop flag (ApplyRequest).
TEST_F(LoopTest, AppliesCarryADeadlineAndTheStopFlag) {
  source_.set({{"a.yaml", thing("a")}});
  auto before = std::chrono::steady_clock::now();
  controller_->reconcileOnce("test", true);
  ASSERT_EQ(fake_->applyCalls(), 1);
  auto deadline = fake_->lastApplyDeadline();
  EXPECT_GE(deadline, before + LoopOptions{}.actionTimeout);
  EXPECT_LE(deadline, std::chrono::steady_clock::now() + LoopOptions{}.actionTimeout);
  ASSERT_NE(fake_->lastApplyCancel(), nullptr);
  EXPECT_FALSE(fake_->lastApplyCancel()->load());
}

TEST_F(LoopTest, SuspendedAppliesNothingButStillReportsDrift) {
  source_.set({{"a.yaml", thing("a")}});
  controller_->reconcileOnce("test", true);
  controller_->setSuspended(true);
  fake_->setHostState({"FakeThing", "a"}, {{"size", 9}});
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  ReconcileSummary s = controller_->reconcileOnce("test", true);
  EXPECT_EQ(s.succeeded, 0u);
  EXPECT_EQ(s.deferred, 2u);
  EXPECT_FALSE(fake_->hostState({"FakeThing", "b"}).has_value());
  EXPECT_EQ(sink_.of("drift").size(), 1u);
  controller_->setSuspended(false);
  s = controller_->reconcileOnce("resume", false);
  EXPECT_EQ(s.succeeded, 2u);
  EXPECT_TRUE(fake_->hostState({"FakeThing", "b"}).has_value());
}

TEST_F(LoopTest, SourceErrorKeepsTheRevisionAndIsReportedOnce) {
  source_.set({{"a.yaml", thing("a")}});
  controller_->reconcileOnce("test", true);
  source_.error = "fetch file:///nowhere ref main <- connection refused";
  ReconcileSummary s = controller_->reconcileOnce("poll", true);
  EXPECT_NE(s.error.find("connection refused"), std::string::npos);
  EXPECT_EQ(s.revision, controller_->appliedRevision());
  EXPECT_FALSE(s.revision.empty());
  controller_->reconcileOnce("poll", true);
  EXPECT_EQ(sink_.of("source-error").size(), 1u);
  // The observe part goes on: drift is still corrected while the source is down.
  fake_->setHostState({"FakeThing", "a"}, {{"size", 3}});
  s = controller_->reconcileOnce("poll", true);
  EXPECT_EQ(s.succeeded, 1u);
}

TEST_F(LoopTest, ForcePushIsReportedAndConverged) {
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  controller_->reconcileOnce("test", true);
  EXPECT_TRUE(sink_.of("source-rewound").empty());
  source_.set({{"a.yaml", thing("a")}});
  source_.rewindNext = true;
  ReconcileSummary s = controller_->reconcileOnce("webhook", true);
  EXPECT_EQ(s.revision, source_.revision());
  EXPECT_FALSE(fake_->hostState({"FakeThing", "b"}).has_value());
  auto rewound = sink_.of("source-rewound");
  ASSERT_EQ(rewound.size(), 1u);
  EXPECT_NE(rewound[0].summary.find("force-push"), std::string::npos) << rewound[0].summary;
}

TEST_F(LoopTest, RemovedObjectIsPruned) {
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  controller_->reconcileOnce("test", true);
  fake_->setHostState({"FakeThing", "hand-made"}, {{"size", 1}});  // never managed
  source_.set({{"a.yaml", thing("a")}});
  ReconcileSummary s = controller_->reconcileOnce("test", true);
  EXPECT_EQ(s.succeeded, 1u);
  EXPECT_FALSE(fake_->hostState({"FakeThing", "b"}).has_value());
  EXPECT_TRUE(fake_->hostState({"FakeThing", "hand-made"}).has_value());
  EXPECT_FALSE(controller_->objectStatus({"FakeThing", "b"}).has_value());
}

TEST_F(LoopTest, RunCoalescesTriggersAndStops) {
  source_.set({{"a.yaml", thing("a")}});
  std::thread loop([&] { controller_->run(); });
  uint64_t t1 = controller_->trigger("one", true);
  uint64_t t2 = controller_->trigger("two", false);
  ReconcileSummary summary;
  ASSERT_TRUE(controller_->waitFor(t2, std::chrono::seconds(10), &summary));
  EXPECT_TRUE(controller_->waitFor(t1, std::chrono::seconds(1)));
  EXPECT_TRUE(fake_->hostState({"FakeThing", "a"}).has_value());
  controller_->stop();
  loop.join();
  // After stop, waiting for a new ticket returns false instead of hanging.
  EXPECT_FALSE(controller_->waitFor(controller_->trigger("late", false), std::chrono::seconds(1)));
}

// lastReconcile() is the summary statusJson() reports, without counting the objects.
TEST_F(LoopTest, LastReconcileIsTheSummaryOfTheLastReconcile) {
  EXPECT_TRUE(controller_->lastReconcile().reconcileId.empty());
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  ReconcileSummary s = controller_->reconcileOnce("start", true);
  ReconcileSummary last = controller_->lastReconcile();
  EXPECT_FALSE(last.reconcileId.empty());
  EXPECT_EQ(last.reconcileId, s.reconcileId);
  EXPECT_EQ(last.succeeded, 2u);
  EXPECT_EQ(last.revision, source_.revision());
  EXPECT_EQ(controller_->statusJson()["lastReconcile"]["reconcileId"], last.reconcileId);
}

// A host event source's reconcile is triggered as "host-event:<source>", and every reconcile that
// observed in full is counted by what triggered it: what an idle hyperd's CPU goes to.
TEST_F(LoopTest, AFullObserveIsCountedByTheSourceOfItsEvent) {
  LoopOptions on;
  on.hostDebounce = std::chrono::milliseconds(5);
  on.planFromLastObserve = true;
  controller_->setOptions(on);
  source_.set({{"a.yaml", thing("a")}});
  int events = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(events, 0);
  controller_->addHostEvents("test-links", events, [events] {
    uint64_t n = 0;
    return ::read(events, &n, sizeof n) == sizeof n && n > 0;
  });
  std::thread loop([&] { controller_->run(); });
  ASSERT_TRUE(controller_->waitFor(controller_->trigger("poll", true), std::chrono::seconds(10)));
  const std::string counted = "hyper_full_observes_total{trigger=\"host-event:test-links\"} 1";
  EXPECT_EQ(metrics_.render().find(counted), std::string::npos) << metrics_.render();
  int observes = fake_->observeCalls();
  uint64_t one = 1;
  ASSERT_EQ(::write(events, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (metrics_.render().find(counted) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  controller_->stop();
  loop.join();
  ::close(events);
  EXPECT_NE(metrics_.render().find(counted), std::string::npos) << metrics_.render();
  EXPECT_EQ(fake_->observeCalls(), observes + 1);
  EXPECT_NE(metrics_.render().find("hyper_full_observes_total{trigger=\"start\"}"),
            std::string::npos)
      << metrics_.render();
}

// Housekeeping (hyperd's gc) runs on the loop's own thread at its interval, so never beside a
// reconcile's applies, and reconciles go on around it.
TEST_F(LoopTest, MaintenanceRunsOnTheLoopThreadBetweenReconciles) {
  SteadyClock steady;
  std::atomic<int> runs{0};
  std::atomic<bool> overlapped{false};
  std::thread::id loopThread;
  std::mutex mu;
  LoopOptions options;
  options.maintenanceInterval = std::chrono::milliseconds(20);
  options.maintenance = [&] {
    std::lock_guard<std::mutex> lk(mu);
    if (loopThread == std::thread::id()) {
      loopThread = std::this_thread::get_id();
    }
    // Another thread would mean it could run beside an apply.
    overlapped = overlapped || loopThread != std::this_thread::get_id();
    ++runs;
  };
  Controller controller(*engine_, *inventory_, *events_, source_, sink_, metrics_, options, steady);
  fake_->setApplyDelay(std::chrono::milliseconds(50));
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  std::thread loop([&] { controller.run(); });
  std::thread::id runner = loop.get_id();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (runs < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  controller.stop();
  loop.join();
  EXPECT_GE(runs.load(), 3);
  EXPECT_EQ(loopThread, runner);
  EXPECT_FALSE(overlapped.load());
  EXPECT_TRUE(fake_->hostState({"FakeThing", "b"}).has_value()) << "reconciles went on";

  // A zero interval: never.
  std::atomic<int> never{0};
  LoopOptions off;
  off.maintenance = [&] { ++never; };
  Controller idle(*engine_, *inventory_, *events_, source_, sink_, metrics_, off, steady);
  std::thread idleLoop([&] { idle.run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  idle.stop();
  idleLoop.join();
  EXPECT_EQ(never.load(), 0);
}

TEST_F(LoopTest, InterruptedJournalEntriesAreClosedAtStartup) {
  PlanAction action;
  action.id = {"FakeThing", "a"};
  auto id = inventory_->journalBegin("crashed", action);
  ASSERT_TRUE(id.isOk());
  controller_->recoverJournal();
  auto left = inventory_->unfinishedJournal();
  ASSERT_TRUE(left.isOk());
  EXPECT_TRUE(left->empty());
  auto types = eventTypes();
  EXPECT_NE(std::find(types.begin(), types.end(), "action-interrupted"), types.end());
}

TEST_F(LoopTest, RevisionDeletingEverythingIsHeldUntilApproved) {
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  controller_->reconcileOnce("test", true);
  std::string good = source_.revision();
  source_.set({});  // every manifest deleted
  std::string empty = source_.revision();
  ReconcileSummary s = controller_->reconcileOnce("webhook", true);
  EXPECT_TRUE(s.revisionHeld);
  EXPECT_EQ(s.revision, good);
  EXPECT_EQ(controller_->appliedRevision(), good);
  EXPECT_EQ(controller_->heldRevision(), empty);
  EXPECT_TRUE(fake_->hostState({"FakeThing", "a"}).has_value());
  EXPECT_TRUE(fake_->hostState({"FakeThing", "b"}).has_value());
  nlohmann::json status = controller_->statusJson();
  ASSERT_TRUE(status["held"].is_object()) << status.dump();
  EXPECT_EQ(status["held"]["revision"], empty);
  EXPECT_EQ(status["held"]["counts"]["managed"], 2);
  EXPECT_EQ(status["held"]["counts"]["deleted"], 2);
  EXPECT_EQ(status["held"]["counts"]["objects"], 0);
  EXPECT_EQ(status["conditions"][0]["type"], "Held");
  EXPECT_EQ(status["conditions"][0]["status"], "True");
  auto held = sink_.of("revision-held");
  ASSERT_EQ(held.size(), 1u);
  EXPECT_NE(held[0].summary.find("every managed object (2 of 2)"), std::string::npos)
      << held[0].summary;
  EXPECT_NE(held[0].summary.find("hyperctl approve " + empty), std::string::npos);
  auto types = eventTypes();
  EXPECT_NE(std::find(types.begin(), types.end(), "revision-held"), types.end());
  EXPECT_NE(metrics_.render().find("hyper_revision_held 1"), std::string::npos);
  // Still held on the next poll, and one hold is one alert.
  s = controller_->reconcileOnce("poll", true);
  EXPECT_TRUE(s.revisionHeld);
  EXPECT_EQ(sink_.of("revision-held").size(), 1u);
  EXPECT_TRUE(fake_->hostState({"FakeThing", "a"}).has_value());

  // Approval names that exact revision: the one in force, or a near one, is refused.
  EXPECT_FALSE(controller_->approve(good).isOk());
  EXPECT_FALSE(controller_->approve(empty.substr(0, empty.size() - 1)).isOk());
  EXPECT_FALSE(fake_->hostState({"FakeThing", "a"}) == std::nullopt);
  ASSERT_TRUE(controller_->approve(empty).isOk());
  s = controller_->reconcileOnce("approve", false);
  EXPECT_FALSE(s.revisionHeld);
  EXPECT_EQ(s.revision, empty);
  EXPECT_EQ(s.succeeded, 2u);
  EXPECT_FALSE(fake_->hostState({"FakeThing", "a"}).has_value());
  EXPECT_FALSE(fake_->hostState({"FakeThing", "b"}).has_value());
  EXPECT_EQ(controller_->heldRevision(), "");
  EXPECT_TRUE(controller_->statusJson()["held"].is_null());
  EXPECT_EQ(controller_->statusJson()["conditions"][0]["status"], "False");
  EXPECT_EQ(sink_.of("revision-approved").size(), 1u);
  EXPECT_NE(metrics_.render().find("hyper_revision_held 0"), std::string::npos);
  // Nothing is held any more: an approval now is an error, not a standing permission.
  EXPECT_FALSE(controller_->approve(empty).isOk());
}

TEST_F(LoopTest, ALaterRevisionIsJudgedAnew) {
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  controller_->reconcileOnce("test", true);
  source_.set({});
  std::string first = source_.revision();
  controller_->reconcileOnce("webhook", true);
  ASSERT_EQ(controller_->heldRevision(), first);
  ASSERT_TRUE(controller_->approve(first).isOk());
  // Before the approval is taken, the source moves on to another revision that deletes
  // everything (one new object, both managed ones gone): that one is held, the approval of the
  // first does not carry over.
  source_.set({{"c.yaml", thing("c")}});
  std::string second = source_.revision();
  ReconcileSummary s = controller_->reconcileOnce("webhook", true);
  EXPECT_TRUE(s.revisionHeld);
  EXPECT_EQ(controller_->heldRevision(), second);
  EXPECT_TRUE(fake_->hostState({"FakeThing", "a"}).has_value());
  EXPECT_FALSE(fake_->hostState({"FakeThing", "c"}).has_value());
  EXPECT_EQ(sink_.of("revision-held").size(), 2u);
  EXPECT_FALSE(controller_->approve(first).isOk());
  // A revision that keeps one managed object is not held, and ends the hold.
  source_.set({{"a.yaml", thing("a") + thing("c")}});
  s = controller_->reconcileOnce("webhook", true);
  EXPECT_FALSE(s.revisionHeld);
  EXPECT_EQ(controller_->heldRevision(), "");
  EXPECT_FALSE(fake_->hostState({"FakeThing", "b"}).has_value());
  EXPECT_TRUE(fake_->hostState({"FakeThing", "c"}).has_value());
}

TEST_F(LoopTest, DeletingHalfTheRunningVmsAppliesOneMoreIsHeld) {
  source_.set({{"a.yaml", thing("a") + vm("vm0") + vm("vm1") + vm("vm2") + vm("vm3") +
                              vm("vm-off", /*running=*/false)}});
  controller_->reconcileOnce("test", true);
  ASSERT_TRUE(fake_->hostState({"VM", "vm3"}).has_value());
  // Three of four running VMs: held.
  source_.set({{"a.yaml", thing("a") + vm("vm0") + vm("vm-off", false)}});
  ReconcileSummary s = controller_->reconcileOnce("webhook", true);
  EXPECT_TRUE(s.revisionHeld);
  EXPECT_TRUE(fake_->hostState({"VM", "vm1"}).has_value());
  nlohmann::json held = controller_->statusJson()["held"];
  ASSERT_TRUE(held.is_object());
  EXPECT_EQ(held["counts"]["runningVms"], 4);
  EXPECT_EQ(held["counts"]["deletedRunningVms"], 3);
  EXPECT_NE(held["reason"].get<std::string>().find("3 of 4 running VMs"), std::string::npos);
  // Exactly half of them, and the stopped one (not running, not counted): applied.
  source_.set({{"a.yaml", thing("a") + vm("vm0") + vm("vm1")}});
  s = controller_->reconcileOnce("webhook", true);
  EXPECT_FALSE(s.revisionHeld);
  EXPECT_EQ(controller_->heldRevision(), "");
  EXPECT_FALSE(fake_->hostState({"VM", "vm2"}).has_value());
  EXPECT_FALSE(fake_->hostState({"VM", "vm3"}).has_value());
  EXPECT_FALSE(fake_->hostState({"VM", "vm-off"}).has_value());
  EXPECT_TRUE(fake_->hostState({"VM", "vm1"}).has_value());
}

TEST_F(LoopTest, ARevisionThatSaysSoApprovesItself) {
  source_.set({{"a.yaml", thing("a") + thing("b")}});
  controller_->reconcileOnce("test", true);
  source_.allowPrune = true;  // git: "Hyper-Allow-Prune: yes" in the commit message
  source_.set({});
  ReconcileSummary s = controller_->reconcileOnce("webhook", true);
  EXPECT_FALSE(s.revisionHeld);
  EXPECT_EQ(s.revision, source_.revision());
  EXPECT_FALSE(fake_->hostState({"FakeThing", "a"}).has_value());
  EXPECT_TRUE(sink_.of("revision-held").empty());
  auto approved = sink_.of("revision-approved");
  ASSERT_EQ(approved.size(), 1u);
  EXPECT_NE(approved[0].summary.find("Hyper-Allow-Prune"), std::string::npos);
}

TEST_F(LoopTest, NoPruneHoldsNothing) {
  LoopOptions options;
  options.prune = false;
  controller_->setOptions(options);
  source_.set({{"a.yaml", thing("a")}});
  controller_->reconcileOnce("test", true);
  source_.set({});
  ReconcileSummary s = controller_->reconcileOnce("webhook", true);
  EXPECT_FALSE(s.revisionHeld);
  EXPECT_TRUE(fake_->hostState({"FakeThing", "a"}).has_value());  // not pruned either
}

}  // namespace
}  // namespace hyper::controller
