// The loop's per-object backoff up to and past its cap (hyperd/loop.h, LoopOptions): every
// failed attempt doubles the wait from backoffBase until it would pass backoffMax, then it stays
// at backoffMax exactly, however many failures follow. The manual clock is moved to each retry
// time, so nothing sleeps. loop_test.cc has the first steps.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "hyperd/loop.h"
#include "tests/fakes/fake_provider.h"
#include "tests/fakes/fake_source.h"
#include "tests/fakes/loop_world.h"

namespace hyper::controller {
namespace {

using hyper::testing::FakeProvider;
using hyper::testing::FakeSource;
using std::chrono::milliseconds;

class ManualClock : public Clock {
 public:
  TimePoint now() const override { return now_; }
  void advanceTo(TimePoint t) { now_ = std::max(now_, t); }

 private:
  TimePoint now_ = std::chrono::steady_clock::now();
};

class NullSink : public AlertSink {
 public:
  void send(const Alert&) override {}
};

class LoopBackoffCapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto world = test::LoopWorld::create("loop-backoff", {"FakeThing"});
    ASSERT_TRUE(world.isOk()) << world.status().message();
    world_ = std::move(*world);
    dir_ = world_->dir();
    fake_ = &world_->fake();
    engine_ = &world_->engine();
    inventory_ = &world_->inventory();
    events_ = &world_->events();
  }
  void TearDown() override { controller_.reset(); }

  void start(LoopOptions options) {
    controller_ = std::make_unique<Controller>(*engine_, *inventory_, *events_, source_, sink_,
                                               metrics_, options, clock_);
    fake_->setFailApply({{"FakeThing", "bad"}});
    source_.set({{"a.yaml",
                  "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata:\n  name: bad\n"
                  "spec:\n  size: 1\n"}});
  }

  // Moves the clock to the object's retry time, runs one reconcile, and returns the delay it set
  // after that attempt (the next retry time minus now), checking that the attempt was made.
  milliseconds failOnce() {
    if (auto st = controller_->objectStatus({"FakeThing", "bad"}); st && st->failures > 0) {
      clock_.advanceTo(st->retryAt);
    }
    int calls = fake_->applyCalls();
    int failuresBefore = failures();
    controller_->reconcileOnce("test", calls == 0);
    EXPECT_EQ(fake_->applyCalls(), calls + 1) << "no attempt at the retry time";
    EXPECT_EQ(failures(), failuresBefore + 1);
    auto st = controller_->objectStatus({"FakeThing", "bad"});
    EXPECT_TRUE(st.has_value());
    return st ? std::chrono::duration_cast<milliseconds>(st->retryAt - clock_.now())
              : milliseconds(-1);
  }
  int failures() {
    auto st = controller_->objectStatus({"FakeThing", "bad"});
    return st ? st->failures : 0;
  }

  std::unique_ptr<test::LoopWorld> world_;  // outlives the controller (declared first)
  std::string dir_;
  FakeProvider* fake_ = nullptr;
  Engine* engine_ = nullptr;
  Inventory* inventory_ = nullptr;
  EventLog* events_ = nullptr;
  FakeSource source_;
  NullSink sink_;
  Metrics metrics_;
  ManualClock clock_;
  std::unique_ptr<Controller> controller_;
};

TEST_F(LoopBackoffCapTest, DoublesUpToTheCapThenStaysExactlyAtIt) {
  LoopOptions options;
  options.backoffBase = milliseconds(1000);
  options.backoffMax = milliseconds(10000);  // between 8 s and 16 s: the fifth step is cut
  start(options);
  const std::vector<milliseconds> want = {milliseconds(1000),  milliseconds(2000),
                                          milliseconds(4000),  milliseconds(8000),
                                          milliseconds(10000), milliseconds(10000)};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(failOnce().count(), want[i].count()) << "after failure " << i + 1;
  }
}

TEST_F(LoopBackoffCapTest, NoRetryBeforeTheCappedDelayAndOneAtIt) {
  LoopOptions options;
  options.backoffBase = milliseconds(1000);
  options.backoffMax = milliseconds(10000);
  start(options);
  for (int i = 0; i < 5; ++i) {
    failOnce();
  }
  auto st = controller_->objectStatus({"FakeThing", "bad"});
  ASSERT_TRUE(st);
  // One millisecond before the retry time: deferred, nothing attempted.
  clock_.advanceTo(st->retryAt - milliseconds(1));
  int calls = fake_->applyCalls();
  ReconcileSummary s = controller_->reconcileOnce("early", false);
  EXPECT_EQ(s.deferred, 1u);
  EXPECT_EQ(fake_->applyCalls(), calls);
  // At it: attempted.
  clock_.advanceTo(st->retryAt);
  controller_->reconcileOnce("due", false);
  EXPECT_EQ(fake_->applyCalls(), calls + 1);
}

TEST_F(LoopBackoffCapTest, TheDefaultCapIsReachedAndHeld) {
  start(LoopOptions{});  // 1 s doubling, at most 300 s
  milliseconds last{0};
  for (int i = 1; i <= 9; ++i) {
    last = failOnce();
  }
  EXPECT_EQ(last.count(), 256000) << "the step before the cap is below it";
  EXPECT_EQ(failOnce().count(), 300000) << "512 s is cut to the cap";
}

TEST_F(LoopBackoffCapTest, VeryManyFailuresStayAtTheCap) {
  LoopOptions options;
  options.backoffBase = milliseconds(1000);
  options.backoffMax = milliseconds(300000);
  start(options);
  // Past 64 doublings, where an unclamped shift would overflow.
  for (int i = 1; i <= 70; ++i) {
    milliseconds d = failOnce();
    ASSERT_GT(d.count(), 0) << "after failure " << i;
    ASSERT_LE(d.count(), 300000) << "after failure " << i;
    if (i >= 10) {
      ASSERT_EQ(d.count(), 300000) << "after failure " << i;
    }
  }
  EXPECT_EQ(failures(), 70);
}

TEST_F(LoopBackoffCapTest, ASuccessStartsTheNextBackoffFromTheBase) {
  LoopOptions options;
  options.backoffBase = milliseconds(1000);
  options.backoffMax = milliseconds(10000);
  start(options);
  for (int i = 0; i < 6; ++i) {
    failOnce();
  }
  auto st = controller_->objectStatus({"FakeThing", "bad"});
  ASSERT_TRUE(st);
  clock_.advanceTo(st->retryAt);
  fake_->setFailApply({});
  ReconcileSummary s = controller_->reconcileOnce("fixed", false);
  EXPECT_EQ(s.succeeded, 1u);
  EXPECT_EQ(failures(), 0);

  // Broken again (the host lost it and the apply fails): the first retry is 1 s, not the cap.
  fake_->eraseHostState({"FakeThing", "bad"});
  fake_->setFailApply({{"FakeThing", "bad"}});
  EXPECT_EQ(failOnce().count(), 1000);
}

}  // namespace
}  // namespace hyper::controller
