#include <gtest/gtest.h>

#include "reconciler/plan.h"

namespace hyper {
namespace {

struct Expected {
  std::string path;
  Json before;
  Json after;
};

struct DiffCase {
  std::string name;
  std::string path;
  Json before;
  Json after;
  std::vector<Expected> changes;
};

// gtest prints a failing case by name instead of as raw bytes.
void PrintTo(const DiffCase& c, std::ostream* os) { *os << c.name; }

class DiffJsonTest : public ::testing::TestWithParam<DiffCase> {};

TEST_P(DiffJsonTest, ReportsEachDifferingLeaf) {
  const auto& c = GetParam();
  std::vector<FieldChange> out;
  diffJson(c.path, c.before, c.after, out);
  ASSERT_EQ(out.size(), c.changes.size()) << "before " << c.before << " after " << c.after;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].path, c.changes[i].path) << i;
    EXPECT_EQ(out[i].before, c.changes[i].before) << out[i].path;
    EXPECT_EQ(out[i].after, c.changes[i].after) << out[i].path;
    EXPECT_FALSE(out[i].forcesReplace) << "the provider decides what forces a replace";
    EXPECT_FALSE(out[i].sensitive) << "the provider decides what is sensitive";
  }
}

TEST_P(DiffJsonTest, AppendsWithoutClearing) {
  const auto& c = GetParam();
  std::vector<FieldChange> out(1);
  out[0].path = "already.there";
  diffJson(c.path, c.before, c.after, out);
  ASSERT_EQ(out.size(), c.changes.size() + 1);
  EXPECT_EQ(out[0].path, "already.there");
}

TEST_P(DiffJsonTest, NoChangesExactlyWhenEqual) {
  const auto& c = GetParam();
  std::vector<FieldChange> out;
  diffJson(c.path, c.before, c.after, out);
  EXPECT_EQ(out.empty(), c.before == c.after);
  // Diffing a value against itself is always empty, whichever side it is on.
  out.clear();
  diffJson(c.path, c.after, c.after, out);
  EXPECT_TRUE(out.empty());
}

TEST_P(DiffJsonTest, ReversedSwapsBeforeAndAfter) {
  const auto& c = GetParam();
  std::vector<FieldChange> forward;
  std::vector<FieldChange> backward;
  diffJson(c.path, c.before, c.after, forward);
  diffJson(c.path, c.after, c.before, backward);
  ASSERT_EQ(forward.size(), backward.size());
  for (size_t i = 0; i < forward.size(); ++i) {
    EXPECT_EQ(forward[i].path, backward[i].path);
    EXPECT_EQ(forward[i].before, backward[i].after);
    EXPECT_EQ(forward[i].after, backward[i].before);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DiffJsonTest,
    ::testing::Values(
        DiffCase{"EqualScalars", "spec.mtu", 1500, 1500, {}},
        DiffCase{"EqualObjects",
                 "spec",
                 Json{{"a", 1}, {"b", {{"c", "x"}}}},
                 Json{{"b", {{"c", "x"}}}, {"a", 1}},
                 {}},
        DiffCase{"BothNull", "spec", nullptr, nullptr, {}},
        DiffCase{"ScalarChanged", "spec.mtu", 1400, 1500, {{"spec.mtu", 1400, 1500}}},
        DiffCase{"ScalarTypeChanged", "spec.mtu", "1500", 1500, {{"spec.mtu", "1500", 1500}}},
        DiffCase{"FieldChanged",
                 "spec",
                 Json{{"cidr", "10.0.0.0/24"}, {"mtu", 1400}},
                 Json{{"cidr", "10.0.0.0/24"}, {"mtu", 1500}},
                 {{"spec.mtu", 1400, 1500}}},
        DiffCase{"NestedFieldChanged",
                 "spec",
                 Json{{"egress", {{"mode", "none"}, {"log", false}}}},
                 Json{{"egress", {{"mode", "any"}, {"log", false}}}},
                 {{"spec.egress.mode", "none", "any"}}},
        DiffCase{"FieldAdded",
                 "spec",
                 Json{{"a", 1}},
                 Json{{"a", 1}, {"b", 2}},
                 {{"spec.b", nullptr, 2}}},
        DiffCase{"FieldRemoved",
                 "spec",
                 Json{{"a", 1}, {"b", 2}},
                 Json{{"a", 1}},
                 {{"spec.b", 2, nullptr}}},
        DiffCase{"SeveralFieldsInKeyOrder",
                 "spec",
                 Json{{"z", 1}, {"a", 1}, {"m", 1}},
                 Json{{"z", 2}, {"a", 2}, {"m", 1}},
                 {{"spec.a", 1, 2}, {"spec.z", 1, 2}}},
        DiffCase{"CreateFromNothingReportsLeaves",
                 "spec",
                 nullptr,
                 Json{{"cidr", "10.77.0.0/24"}, {"nat", {{"enabled", true}}}},
                 {{"spec.cidr", nullptr, "10.77.0.0/24"}, {"spec.nat.enabled", nullptr, true}}},
        DiffCase{"DeleteToNothingReportsLeaves",
                 "spec",
                 Json{{"cidr", "10.77.0.0/24"}},
                 nullptr,
                 {{"spec.cidr", "10.77.0.0/24", nullptr}}},
        DiffCase{"ArraysCompareWhole",
                 "spec",
                 Json{{"ports", {80, 443}}},
                 Json{{"ports", {80, 8443}}},
                 {{"spec.ports", Json::array({80, 443}), Json::array({80, 8443})}}},
        DiffCase{"ArrayOfObjectsComparesWhole",
                 "spec.allow",
                 Json::array({{{"cidr", "10.0.0.0/8"}}}),
                 Json::array({{{"cidr", "10.0.0.0/9"}}}),
                 {{"spec.allow", Json::array({{{"cidr", "10.0.0.0/8"}}}),
                   Json::array({{{"cidr", "10.0.0.0/9"}}})}}},
        DiffCase{"ArrayOrderMatters",
                 "spec.l",
                 Json::array({1, 2}),
                 Json::array({2, 1}),
                 {{"spec.l", Json::array({1, 2}), Json::array({2, 1})}}},
        DiffCase{"ObjectBecomesScalar",
                 "spec",
                 Json{{"net", {{"ip", "10.0.0.2"}}}},
                 Json{{"net", "default"}},
                 {{"spec.net", Json{{"ip", "10.0.0.2"}}, "default"}}},
        DiffCase{"ObjectBecomesArray",
                 "spec.x",
                 Json{{"a", 1}},
                 Json::array({1}),
                 {{"spec.x", Json{{"a", 1}}, Json::array({1})}}},
        DiffCase{"EmptyObjectAgainstNothing",
                 "spec.labels",
                 nullptr,
                 Json::object(),
                 {{"spec.labels", nullptr, Json::object()}}},
        DiffCase{"NullMemberAgainstMissing",
                 "spec",
                 Json{{"a", nullptr}},
                 Json::object(),
                 {{"spec", Json{{"a", nullptr}}, Json::object()}}},
        DiffCase{
            "EmptyRootPath", "", Json{{"a", {{"b", 1}}}}, Json{{"a", {{"b", 2}}}}, {{"a.b", 1, 2}}},
        DiffCase{"KeyWithADotIsJoinedAsIs",
                 "spec",
                 Json{{"a.b", 1}},
                 Json{{"a.b", 2}},
                 {{"spec.a.b", 1, 2}}}),
    [](const ::testing::TestParamInfo<DiffCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper
