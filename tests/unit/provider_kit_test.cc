// The plan skeleton the providers share (reconciler/provider_kit.h).

#include "reconciler/provider_kit.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace hyper {
namespace {

const ObjectId kId{"FakeThing", "a"};

TEST(ProviderKitPrune, DeletesOnlyWhatHyperManages) {
  Object desired;
  desired.id = kId;
  ManagedRecord record;
  record.id = kId;

  PlanRequest managedGone{kId, nullptr, nullptr, &record};
  PlanResponse resp;
  ASSERT_TRUE(planPrune(managedGone, resp));
  ASSERT_TRUE(resp.action.has_value());
  EXPECT_EQ(resp.action->type, ActionType::Delete);
  EXPECT_EQ(resp.action->reason, kPruneReason);

  PlanRequest neverManaged{kId, nullptr, nullptr, nullptr};
  PlanResponse none;
  EXPECT_TRUE(planPrune(neverManaged, none)) << "handled: nothing to do";
  EXPECT_FALSE(none.action.has_value());

  PlanRequest inSource{kId, &desired, nullptr, &record};
  PlanResponse untouched;
  EXPECT_FALSE(planPrune(inSource, untouched));
  EXPECT_FALSE(untouched.action.has_value());
}

TEST(ProviderKitMergeDrift, HostValueBecomesBeforeOfTheSpecChange) {
  PlanAction action;
  std::vector<FieldChange> spec = {{"spec.mtu", 1400, 1500}};
  std::vector<FieldChange> drift = {{"spec.mtu", 9000, 1500}, {"status.up", false, true}};
  mergeDrift(action, spec, drift);
  EXPECT_TRUE(action.drift);
  ASSERT_EQ(action.changes.size(), 2u);
  EXPECT_EQ(action.changes[0].path, "spec.mtu");
  EXPECT_EQ(action.changes[0].before, 9000) << "what the host has now";
  EXPECT_EQ(action.changes[0].after, 1500);
  EXPECT_EQ(action.changes[1].path, "status.up");
}

TEST(ProviderKitMergeDrift, NoDriftIsNotDrift) {
  PlanAction action;
  action.drift = true;
  mergeDrift(action, {{"spec.mtu", 1400, 1500}}, {});
  EXPECT_FALSE(action.drift);
  ASSERT_EQ(action.changes.size(), 1u);
  EXPECT_EQ(action.changes[0].before, 1400);
}

TEST(ProviderKitGuarded, AnExceptionBecomesAnErrorOnTheObject) {
  Diagnostics d;
  guarded(d, kId, "plan", [] { throw std::runtime_error("[json.exception.type_error.302]"); });
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d.items()[0].severity, Severity::Error);
  EXPECT_EQ(d.items()[0].object, kId);
  EXPECT_EQ(d.items()[0].summary, "plan <- [json.exception.type_error.302]");

  Diagnostics quiet;
  bool ran = false;
  guarded(quiet, kId, "plan", [&] { ran = true; });
  EXPECT_TRUE(ran);
  EXPECT_TRUE(quiet.empty());
}

TEST(ApplyRequestTimeLeft, CappedAndNeverNegative) {
  using namespace std::chrono_literals;
  ApplyRequest none;
  EXPECT_EQ(none.timeLeft(5000ms), 5000ms) << "no deadline: the cap";
  ApplyRequest soon;
  soon.deadline = ApplyRequest::Clock::now() + 1s;
  EXPECT_LE(soon.timeLeft(5000ms), 1000ms);
  EXPECT_GT(soon.timeLeft(5000ms), 500ms);
  ApplyRequest past;
  past.deadline = ApplyRequest::Clock::now() - 1s;
  EXPECT_EQ(past.timeLeft(5000ms), 0ms);
  std::atomic<bool> stop{false};
  past.cancel = &stop;
  EXPECT_FALSE(past.cancelled());
  stop = true;
  EXPECT_TRUE(past.cancelled());
  EXPECT_FALSE(none.cancelled());
}

}  // namespace
}  // namespace hyper
