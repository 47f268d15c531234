#include <gtest/gtest.h>

#include "providers/broker/broker_provider.h"

namespace hyper::providers::broker {
namespace {

Json spec() {
  return Json::parse(R"({"command":"/usr/bin/make","callers":{"groups":["users"]},
                         "workspace":"/home/{user}/ws","env":["CC"]})");
}

TEST(BrokerProviderTest, RuleFromObjectFillsTheBrokerDefaults) {
  auto rule = ruleFromObject("make", spec());
  ASSERT_TRUE(rule.isOk()) << rule.status().message();
  EXPECT_EQ((*rule)["name"], "make");
  EXPECT_EQ((*rule)["concurrency"], 1);
  EXPECT_EQ((*rule)["timeout"]["defaultSeconds"], 600);
  EXPECT_FALSE(ruleFromObject("make", Json::parse(R"({"command":"make","callers":{"uids":[1]},
                                                      "workspace":"/w"})"))
                   .isOk());
}

TEST(BrokerProviderTest, ValidateNamesTheSpecField) {
  Object o;
  o.id = {"BrokerRule", "make"};
  o.spec = Json::parse(R"({"command":"/usr/bin/make","callers":{"uids":[1]},
                           "workspace":"/home/{name}"})");
  BrokerProvider p({"/nonexistent/rules.json", "/nonexistent/sock"});
  ValidateResponse resp;
  p.validate({{&o}}, resp);
  ASSERT_TRUE(resp.diagnostics.hasErrors());
  EXPECT_EQ(resp.diagnostics.items()[0].fieldPath, "spec.workspace");
  EXPECT_NE(resp.diagnostics.items()[0].summary.find("{name}"), std::string::npos);
}

// Observed state as the provider's observe shapes it.
ObservedState observed(const Json& inFile, const Json& loaded, bool fileLoaded) {
  ObservedState s;
  s.exists = !inFile.is_null() || !loaded.is_null();
  s.fields = {
      {"file", inFile}, {"loaded", loaded}, {"brokerReachable", true}, {"fileLoaded", fileLoaded}};
  return s;
}

struct PlanCase {
  std::string name;
  bool managed;
  std::function<ObservedState(const Json& applied)> observe;
  std::optional<ActionType> want;
  bool drift;
};

class BrokerProviderPlanTest : public ::testing::TestWithParam<PlanCase> {};

TEST_P(BrokerProviderPlanTest, Plans) {
  Object desired;
  desired.id = {"BrokerRule", "make"};
  desired.spec = spec();
  Json applied = *ruleFromObject("make", spec());
  applied.erase("name");
  ManagedRecord record;
  record.id = desired.id;
  record.spec = spec();
  ObservedState obs = GetParam().observe(applied);
  BrokerProvider p({"/nonexistent/rules.json", "/nonexistent/sock"});
  PlanResponse resp;
  p.plan({desired.id, &desired, &obs, GetParam().managed ? &record : nullptr}, resp);
  ASSERT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
  ASSERT_EQ(resp.action.has_value(), GetParam().want.has_value())
      << (resp.action ? resp.action->reason : "no action");
  if (resp.action) {
    EXPECT_EQ(resp.action->type, *GetParam().want);
    EXPECT_EQ(resp.action->drift, GetParam().drift) << resp.action->reason;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerProviderPlanTest,
    ::testing::Values(PlanCase{"New", false,
                               [](const Json&) { return observed(nullptr, nullptr, true); },
                               ActionType::Create, false},
                      PlanCase{"InSync", true, [](const Json& a) { return observed(a, a, true); },
                               std::nullopt, false},
                      PlanCase{"FileEditedAndReloaded", true,
                               [](const Json& a) {
                                 Json edited = a;
                                 edited["callers"]["groups"] = {"everyone"};
                                 return observed(edited, edited, true);
                               },
                               ActionType::Update, true},
                      PlanCase{"FileEditedNotReloaded", true,
                               [](const Json& a) {
                                 Json edited = a;
                                 edited["concurrency"] = 9;
                                 return observed(edited, a, false);
                               },
                               ActionType::Update, true},
                      PlanCase{"RuleRemovedByHand", true,
                               [](const Json&) { return observed(nullptr, nullptr, true); },
                               ActionType::Update, true},
                      PlanCase{"FileRightButNotLoaded", true,
                               [](const Json& a) { return observed(a, a, false); },
                               ActionType::Update, true}),
    [](const ::testing::TestParamInfo<PlanCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::providers::broker
