#include "broker/rules.h"

#include <gtest/gtest.h>

namespace hyper::broker {
namespace {

const char* kGood = R"({"schemaVersion":"1","rules":[
  {"name":"make","command":"/usr/bin/make","callers":{"uids":[1000],"groups":["users"]},
   "workspace":"/home/{user}/workspace",
   "pathMapping":[{"from":"/workspace","to":"/home/{user}/workspace"}],
   "env":["PATH","CC"],"timeout":{"defaultSeconds":60,"maxSeconds":120},"concurrency":2}]})";

TEST(BrokerRulesTest, ParsesEveryField) {
  auto set = parseRules(kGood, "rules.json");
  ASSERT_TRUE(set.isOk()) << set.status().message();
  ASSERT_EQ(set->rules.size(), 1u);
  const Rule& r = set->rules[0];
  EXPECT_EQ(r.name, "make");
  EXPECT_EQ(r.commandName(), "make");
  EXPECT_EQ(r.uids, std::vector<unsigned>{1000});
  EXPECT_EQ(r.groups, std::vector<std::string>{"users"});
  EXPECT_EQ(r.workspace, "/home/{user}/workspace");
  ASSERT_EQ(r.pathMapping.size(), 1u);
  EXPECT_EQ(r.pathMapping[0].to, "/home/{user}/workspace");
  EXPECT_EQ(r.env, (std::vector<std::string>{"PATH", "CC"}));
  EXPECT_EQ(r.defaultTimeoutSec, 60);
  EXPECT_EQ(r.maxTimeoutSec, 120);
  EXPECT_EQ(r.concurrency, 2);
  EXPECT_EQ(set->hash.size(), 64u);
}

TEST(BrokerRulesTest, DefaultsAndRoundTrip) {
  auto set = parseRules(
      R"({"schemaVersion":"1","rules":[{"name":"m","command":"/usr/bin/make",
          "callers":{"uids":[0]},"workspace":"/w"}]})",
      "r");
  ASSERT_TRUE(set.isOk()) << set.status().message();
  EXPECT_EQ(set->rules[0].defaultTimeoutSec, 600);
  EXPECT_EQ(set->rules[0].maxTimeoutSec, 1800);
  EXPECT_EQ(set->rules[0].concurrency, 1);
  auto again = parseRules(rulesToJson(set->rules).dump(), "r");
  ASSERT_TRUE(again.isOk()) << again.status().message();
  EXPECT_EQ(rulesToJson(again->rules), rulesToJson(set->rules));
}

TEST(BrokerRulesTest, HashFollowsTheBytes) {
  auto a = parseRules(kGood, "a");
  auto b = parseRules(std::string(kGood) + "\n", "b");
  ASSERT_TRUE(a.isOk() && b.isOk());
  EXPECT_NE(a->hash, b->hash);
}

struct BadRulesCase {
  std::string name;
  std::string text;
  std::string error;  // a substring of the message
};

class BrokerBadRulesTest : public ::testing::TestWithParam<BadRulesCase> {};

TEST_P(BrokerBadRulesTest, NamesFieldAndExpectation) {
  auto set = parseRules(GetParam().text, "rules.json");
  ASSERT_FALSE(set.isOk()) << "accepted: " << GetParam().text;
  EXPECT_NE(set.status().message().find(GetParam().error), std::string::npos)
      << set.status().message();
  EXPECT_EQ(set.status().message().rfind("rules.json: ", 0), 0u) << set.status().message();
}

std::string rule(const std::string& fields) {
  return R"({"schemaVersion":"1","rules":[{"name":"make","command":"/usr/bin/make",)"
         R"("callers":{"groups":["users"]},"workspace":"/w")" +
         (fields.empty() ? "" : "," + fields) + "}]}";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerBadRulesTest,
    ::testing::Values(
        BadRulesCase{"NotJson", "{", "not valid JSON"},
        BadRulesCase{"NoVersion", R"({"rules":[]})", "schemaVersion: expected \"1\""},
        BadRulesCase{"UnknownTopField", R"({"schemaVersion":"1","rules":[],"x":1})",
                     "x: unknown field"},
        BadRulesCase{"RulesNotList", R"({"schemaVersion":"1","rules":{}})",
                     "rules: expected a list"},
        BadRulesCase{"RelativeCommand",
                     R"({"schemaVersion":"1","rules":[{"name":"m","command":"make",)"
                     R"("callers":{"uids":[1]},"workspace":"/w"}]})",
                     "rules[0].command: expected an absolute path to an executable, got \"make\""},
        BadRulesCase{"BadName",
                     R"({"schemaVersion":"1","rules":[{"name":"Make","command":"/bin/make",)"
                     R"("callers":{"uids":[1]},"workspace":"/w"}]})",
                     "rules[0].name"},
        BadRulesCase{"NoCallers",
                     R"({"schemaVersion":"1","rules":[{"name":"m","command":"/bin/make",)"
                     R"("callers":{},"workspace":"/w"}]})",
                     "rules[0].callers: expected at least one uid or group"},
        BadRulesCase{"NegativeUid",
                     R"({"schemaVersion":"1","rules":[{"name":"m","command":"/bin/make",)"
                     R"("callers":{"uids":[-1]},"workspace":"/w"}]})",
                     "rules[0].callers.uids[0]: expected a uid"},
        BadRulesCase{"UnknownRuleField", rule(R"("shell":true)"), "rules[0].shell: unknown field"},
        BadRulesCase{"RelativeWorkspace",
                     R"({"schemaVersion":"1","rules":[{"name":"m","command":"/bin/make",)"
                     R"("callers":{"uids":[1]},"workspace":"w"}]})",
                     "rules[0].workspace: expected an absolute path"},
        BadRulesCase{"UnknownTemplate",
                     R"({"schemaVersion":"1","rules":[{"name":"m","command":"/bin/make",)"
                     R"("callers":{"uids":[1]},"workspace":"/home/{name}"}]})",
                     "unknown template {name}"},
        BadRulesCase{"BadEnvName", rule(R"("env":["A-B"])"),
                     "rules[0].env[0]: expected a variable name"},
        BadRulesCase{"ZeroConcurrency", rule(R"("concurrency":0)"),
                     "rules[0].concurrency: expected an integer from 1"},
        BadRulesCase{"MaxBelowDefault", rule(R"("timeout":{"defaultSeconds":60,"maxSeconds":30})"),
                     "rules[0].timeout.maxSeconds: expected at least defaultSeconds (60), got 30"},
        BadRulesCase{"MappingNotAbsolute", rule(R"("pathMapping":[{"from":"w","to":"/w"}])"),
                     "rules[0].pathMapping[0].from: expected an absolute path"},
        BadRulesCase{
            "DuplicateName",
            R"({"schemaVersion":"1","rules":[)"
            R"({"name":"m","command":"/bin/make","callers":{"uids":[1]},"workspace":"/w"},)"
            R"({"name":"m","command":"/bin/make","callers":{"uids":[1]},"workspace":"/w"}]})",
            "rules[1].name: duplicate rule name \"m\""}),
    [](const ::testing::TestParamInfo<BadRulesCase>& info) { return info.param.name; });

TEST(BrokerRulesTest, MissingFileNamesThePath) {
  auto set = loadRules("/nonexistent/hyper-rules.json");
  ASSERT_FALSE(set.isOk());
  EXPECT_NE(set.status().message().find("/nonexistent/hyper-rules.json"), std::string::npos);
}

}  // namespace
}  // namespace hyper::broker
