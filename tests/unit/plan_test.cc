#include "reconciler/plan.h"

#include <gtest/gtest.h>

#include <functional>

#include "base/sha256.h"

namespace hyper {
namespace {

PlanAction action(ActionType type, std::string kind, std::string name, std::string reason = "",
                  std::vector<FieldChange> changes = {}) {
  PlanAction a;
  a.type = type;
  a.id = {std::move(kind), std::move(name)};
  a.provider = "net";
  a.reason = std::move(reason);
  a.changes = std::move(changes);
  return a;
}

FieldChange change(std::string path, Json before, Json after, bool forcesReplace = false) {
  FieldChange c;
  c.path = std::move(path);
  c.before = std::move(before);
  c.after = std::move(after);
  c.forcesReplace = forcesReplace;
  return c;
}

// The plan of the example in the design: one of each action and an orphan.
Plan examplePlan() {
  Plan p;
  p.revision = "3f1c2a";
  p.actions.push_back(action(ActionType::Create, "Network", "lab", "",
                             {change("spec.cidr", nullptr, "10.77.0.0/24")}));
  PlanAction update = action(ActionType::Update, "Network", "lab", "bridge mtu changed by hand",
                             {change("spec.mtu", 1400, 1500)});
  update.drift = true;
  p.actions.push_back(update);
  p.actions.push_back(action(ActionType::Replace, "Network", "old", "bridge name changes",
                             {change("spec.bridge", "hb-a", "hb-b", true)}));
  p.actions.push_back(action(ActionType::Delete, "NetworkPolicy", "x"));
  p.orphans.push_back({"NetworkPolicy", "y"});
  return p;
}

TEST(PlanRenderTest, MatchesTerraformStyleExample) {
  EXPECT_EQ(examplePlan().render(),
            "  + Network/lab will be created\n"
            "      + spec.cidr: \"10.77.0.0/24\"\n"
            "  ~ Network/lab will be updated in place (drift: bridge mtu changed by hand)\n"
            "      ~ spec.mtu: 1400 -> 1500\n"
            "-/+ Network/old must be replaced (bridge name changes)\n"
            "      ~ spec.bridge: \"hb-a\" -> \"hb-b\" (forces replacement)\n"
            "  - NetworkPolicy/x will be deleted\n"
            "Orphaned (in the inventory, gone from the source; `--prune` deletes): "
            "NetworkPolicy/y\n"
            "Plan: 1 to create, 1 to update, 1 to replace, 1 to delete.\n");
}

struct RenderCase {
  std::string name;
  Plan plan;
  std::string expected;
};

// gtest prints a failing case by name instead of as raw bytes.
void PrintTo(const RenderCase& c, std::ostream* os) { *os << c.name; }

class PlanRenderCaseTest : public ::testing::TestWithParam<RenderCase> {};

TEST_P(PlanRenderCaseTest, RendersText) {
  EXPECT_EQ(GetParam().plan.render(), GetParam().expected);
}

Plan planOf(std::vector<PlanAction> actions, std::vector<ObjectId> orphans = {}) {
  Plan p;
  p.revision = "r1";
  p.actions = std::move(actions);
  p.orphans = std::move(orphans);
  return p;
}

PlanAction withDrift(PlanAction a) {
  a.drift = true;
  return a;
}

FieldChange sensitiveChange(std::string path, Json before, Json after) {
  FieldChange c = change(std::move(path), std::move(before), std::move(after));
  c.sensitive = true;
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PlanRenderCaseTest,
    ::testing::Values(
        RenderCase{"Empty", planOf({}), "No changes. The host matches the desired state.\n"},
        RenderCase{"EmptyWithOrphans", planOf({}, {{"VM", "a"}, {"VM", "b"}}),
                   "Orphaned (in the inventory, gone from the source; `--prune` deletes): VM/a, "
                   "VM/b\n"
                   "No changes. The host matches the desired state.\n"},
        RenderCase{"CreateWithReasonAndNestedValue",
                   planOf({action(ActionType::Create, "VM", "web", "not on the host",
                                  {change("spec.memory", nullptr, 512),
                                   change("spec.net", nullptr, Json{{"ip", "10.0.0.2"}})})}),
                   "  + VM/web will be created (not on the host)\n"
                   "      + spec.memory: 512\n"
                   "      + spec.net: {\"ip\":\"10.0.0.2\"}\n"
                   "Plan: 1 to create, 0 to update, 0 to replace, 0 to delete.\n"},
        RenderCase{"UpdateRemovesAField",
                   planOf({action(ActionType::Update, "Network", "lab", "spec changed",
                                  {change("spec.nat", true, nullptr)})}),
                   "  ~ Network/lab will be updated in place (spec changed)\n"
                   "      - spec.nat: true\n"
                   "Plan: 0 to create, 1 to update, 0 to replace, 0 to delete.\n"},
        RenderCase{"DriftWithoutReason",
                   planOf({withDrift(action(ActionType::Create, "Network", "lab"))}),
                   "  + Network/lab will be created (drift)\n"
                   "Plan: 1 to create, 0 to update, 0 to replace, 0 to delete.\n"},
        RenderCase{"ReplaceCountsOnce",
                   planOf({action(ActionType::Replace, "VM", "a", "kernel changes",
                                  {change("spec.kernel", "k1", "k2", true),
                                   change("spec.memory", 256, 512)})}),
                   "-/+ VM/a must be replaced (kernel changes)\n"
                   "      ~ spec.kernel: \"k1\" -> \"k2\" (forces replacement)\n"
                   "      ~ spec.memory: 256 -> 512\n"
                   "Plan: 0 to create, 0 to update, 1 to replace, 0 to delete.\n"},
        RenderCase{"DeleteWithReason",
                   planOf({action(ActionType::Delete, "VM", "a", "gone from the source"),
                           action(ActionType::Delete, "VM", "b")}),
                   "  - VM/a will be deleted (gone from the source)\n"
                   "  - VM/b will be deleted\n"
                   "Plan: 0 to create, 0 to update, 0 to replace, 2 to delete.\n"},
        RenderCase{"SensitiveValueHidden",
                   planOf({action(ActionType::Update, "Secret", "db", "spec changed",
                                  {sensitiveChange("spec.value", "hunter2", "hunter3"),
                                   sensitiveChange("spec.extra", nullptr, "s3cret")})}),
                   "  ~ Secret/db will be updated in place (spec changed)\n"
                   "      ~ spec.value: (sensitive value)\n"
                   "      + spec.extra: (sensitive value)\n"
                   "Plan: 0 to create, 1 to update, 0 to replace, 0 to delete.\n"}),
    [](const ::testing::TestParamInfo<RenderCase>& info) { return info.param.name; });

TEST(PlanRenderTest, ColorAddsAnsiOnlyWhenAsked) {
  Plan p = examplePlan();
  std::string plain = p.render(false);
  std::string colored = p.render(true);
  EXPECT_EQ(plain.find('\033'), std::string::npos);
  EXPECT_NE(colored.find("\033[32m  +\033[0m"), std::string::npos) << colored;
  EXPECT_NE(colored.find("\033[31m  -\033[0m"), std::string::npos) << colored;
  // Stripping the escapes gives the plain text back.
  std::string stripped;
  for (size_t i = 0; i < colored.size(); ++i) {
    if (colored[i] == '\033') {
      i = colored.find('m', i);
      continue;
    }
    stripped += colored[i];
  }
  EXPECT_EQ(stripped, plain);
}

TEST(PlanTest, ActionTypeNames) {
  EXPECT_STREQ(actionTypeName(ActionType::Create), "create");
  EXPECT_STREQ(actionTypeName(ActionType::Update), "update");
  EXPECT_STREQ(actionTypeName(ActionType::Replace), "replace");
  EXPECT_STREQ(actionTypeName(ActionType::Delete), "delete");
}

TEST(PlanJsonTest, HasDocumentedShape) {
  Plan p = examplePlan();
  p.actions[2].dependsOn = {{"Network", "lab"}};
  Json j = p.toJson();
  EXPECT_EQ(j["revision"], "3f1c2a");
  ASSERT_EQ(j["actions"].size(), 4u);
  EXPECT_EQ(j["summary"], (Json{{"create", 1}, {"update", 1}, {"replace", 1}, {"delete", 1}}));
  EXPECT_EQ(j["orphans"], Json::array({"NetworkPolicy/y"}));

  const Json& update = j["actions"][1];
  EXPECT_EQ(update["type"], "update");
  EXPECT_EQ(update["id"], "Network/lab");
  EXPECT_EQ(update["kind"], "Network");
  EXPECT_EQ(update["name"], "lab");
  EXPECT_EQ(update["provider"], "net");
  EXPECT_EQ(update["reason"], "bridge mtu changed by hand");
  EXPECT_EQ(update["drift"], true);
  EXPECT_EQ(update["dependsOn"], Json::array());
  ASSERT_EQ(update["changes"].size(), 1u);
  EXPECT_EQ(update["changes"][0], (Json{{"path", "spec.mtu"},
                                        {"before", 1400},
                                        {"after", 1500},
                                        {"forcesReplace", false},
                                        {"sensitive", false}}));

  const Json& replace = j["actions"][2];
  EXPECT_EQ(replace["type"], "replace");
  EXPECT_EQ(replace["changes"][0]["forcesReplace"], true);
  EXPECT_EQ(replace["dependsOn"], Json::array({"Network/lab"}));

  EXPECT_EQ(j["actions"][0]["changes"][0]["before"], nullptr);
  EXPECT_TRUE(j["actions"][0]["changes"][0].contains("before"));
  EXPECT_EQ(j["actions"][3]["type"], "delete");
}

TEST(PlanJsonTest, EmptyPlan) {
  Json j = Plan{}.toJson();
  EXPECT_EQ(j["actions"], Json::array());
  EXPECT_EQ(j["orphans"], Json::array());
  EXPECT_EQ(j["summary"], (Json{{"create", 0}, {"update", 0}, {"replace", 0}, {"delete", 0}}));
}

TEST(PlanSensitiveTest, ValuesNeverLeaveThePlan) {
  Plan p = planOf({action(ActionType::Update, "Secret", "db", "spec changed",
                          {sensitiveChange("spec.value", "hunter2-old", "hunter2-new")})});
  EXPECT_EQ(p.render(false).find("hunter2"), std::string::npos);
  EXPECT_EQ(p.render(true).find("hunter2"), std::string::npos);
  Json j = p.toJson();
  EXPECT_EQ(j.dump().find("hunter2"), std::string::npos);
  const Json& c = j["actions"][0]["changes"][0];
  EXPECT_FALSE(c.contains("before"));
  EXPECT_FALSE(c.contains("after"));
  EXPECT_EQ(c["sensitive"], true);
  EXPECT_EQ(c["path"], "spec.value");

  // The hash cannot be used to guess the value either.
  Plan other = p;
  other.actions[0].changes[0].after = "something-else";
  EXPECT_EQ(p.hash(), other.hash());
}

TEST(PlanHashTest, StableForEqualPlans) {
  Plan a = examplePlan();
  Plan b = examplePlan();
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(a.hash().size(), 64u);
  EXPECT_EQ(a.hash().find_first_not_of("0123456789abcdef"), std::string::npos);
  // Orphans only say what prune would do; they are not part of what is executed.
  b.orphans.clear();
  EXPECT_EQ(a.hash(), b.hash());
  // An empty plan has a hash too, and it depends on the revision.
  Plan e1;
  e1.revision = "r1";
  Plan e2;
  e2.revision = "r2";
  EXPECT_NE(e1.hash(), e2.hash());
}

TEST(PlanHashTest, HashesTheCanonicalActionsAndRevision) {
  // The hash is recorded in the revision history and compared across machines, so what goes into
  // it is pinned here: a change of serialisation must be deliberate.
  Plan p = planOf({action(ActionType::Create, "Network", "lab", "not on the host",
                          {change("spec.cidr", nullptr, "10.77.0.0/24")})});
  EXPECT_EQ(p.hash(), Plan(p).hash());
  Json hashed = {{"revision", "r1"},
                 {"actions",
                  {{{"type", "create"},
                    {"id", "Network/lab"},
                    {"kind", "Network"},
                    {"name", "lab"},
                    {"provider", "net"},
                    {"reason", "not on the host"},
                    {"drift", false},
                    {"changes",
                     {{{"path", "spec.cidr"},
                       {"before", nullptr},
                       {"after", "10.77.0.0/24"},
                       {"forcesReplace", false},
                       {"sensitive", false}}}},
                    {"dependsOn", Json::array()}}}}};
  EXPECT_EQ(p.hash(), sha256Hex(canonicalJson(hashed)));
}

struct HashMutation {
  std::string name;
  std::function<void(Plan&)> mutate;
};

void PrintTo(const HashMutation& c, std::ostream* os) { *os << c.name; }

class PlanHashChangeTest : public ::testing::TestWithParam<HashMutation> {};

TEST_P(PlanHashChangeTest, DiffersWhenTheActionsChange) {
  Plan before = examplePlan();
  Plan after = examplePlan();
  GetParam().mutate(after);
  EXPECT_NE(before.hash(), after.hash());
}

INSTANTIATE_TEST_SUITE_P(
    Mutations, PlanHashChangeTest,
    ::testing::Values(
        HashMutation{"Revision", [](Plan& p) { p.revision = "other"; }},
        HashMutation{"ActionType", [](Plan& p) { p.actions[1].type = ActionType::Replace; }},
        HashMutation{"ActionName", [](Plan& p) { p.actions[0].id.name = "lab2"; }},
        HashMutation{"ChangeAfter", [](Plan& p) { p.actions[1].changes[0].after = 9000; }},
        HashMutation{"ChangeBefore", [](Plan& p) { p.actions[1].changes[0].before = 1399; }},
        HashMutation{"ForcesReplace",
                     [](Plan& p) { p.actions[1].changes[0].forcesReplace = true; }},
        HashMutation{"Reason", [](Plan& p) { p.actions[2].reason = "another reason"; }},
        HashMutation{"Drift", [](Plan& p) { p.actions[0].drift = true; }},
        HashMutation{"DependsOn",
                     [](Plan& p) {
                       p.actions[2].dependsOn.push_back({"VM", "a"});
                     }},
        HashMutation{"ExtraAction",
                     [](Plan& p) { p.actions.push_back(action(ActionType::Delete, "VM", "z")); }},
        HashMutation{"Order", [](Plan& p) { std::swap(p.actions[0], p.actions[1]); }},
        HashMutation{"Disruption", [](Plan& p) { p.actions[1].disruption = Disruption::Restart; }},
        HashMutation{"PrivateData",
                     [](Plan& p) {
                       p.actions[1].privateData = {{"tap", "hyt-a"}};
                     }},
        HashMutation{"BecomesSensitive",
                     [](Plan& p) { p.actions[1].changes[0].sensitive = true; }}),
    [](const ::testing::TestParamInfo<HashMutation>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

TEST(PlanDisruptionTest, NamedInTextAndJsonAbsentWhenNone) {
  EXPECT_STREQ(disruptionName(Disruption::None), "");
  EXPECT_STREQ(disruptionName(Disruption::InPlace), "in-place");
  EXPECT_STREQ(disruptionName(Disruption::Restart), "restart");
  Plan p;
  p.actions.push_back(action(ActionType::Update, "VM", "a", "tap deleted by hand"));
  EXPECT_FALSE(p.toJson()["actions"][0].contains("disruption"));
  EXPECT_EQ(p.render().find('['), std::string::npos);
  p.actions[0].disruption = Disruption::Restart;
  EXPECT_EQ(p.toJson()["actions"][0]["disruption"], "restart");
  EXPECT_NE(p.render().find("VM/a will be updated in place [restart]"), std::string::npos)
      << p.render();
}

// Private plan data travels in the JSON (and so the hash) for apply, but is not shown to people.
TEST(PlanPrivateDataTest, InJsonNotInText) {
  Plan p;
  p.actions.push_back(action(ActionType::Create, "VM", "a"));
  const std::string textBefore = p.render();
  EXPECT_FALSE(p.toJson()["actions"][0].contains("private"));
  p.actions[0].privateData = {{"tap", "hyt-a"}};
  EXPECT_EQ(p.toJson()["actions"][0]["private"]["tap"], "hyt-a");
  EXPECT_EQ(p.render(), textBefore);
}

}  // namespace
}  // namespace hyper
