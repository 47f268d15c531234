// The hold policy (controller/hold.h): what a revision's prune would delete, when that is held,
// and the commit-message marker that approves it.

#include "controller/hold.h"

#include <gtest/gtest.h>

#include "providers/builtin.h"
#include "reconciler/engine.h"

namespace hyper::controller {
namespace {

ManagedRecord record(const std::string& kind, const std::string& name, Json spec = Json::object()) {
  ManagedRecord r;
  r.id = {kind, name};
  r.spec = std::move(spec);
  return r;
}

Revision revisionWith(const std::vector<ObjectId>& ids) {
  Revision r;
  for (const auto& id : ids) {
    auto o = std::make_shared<Object>();
    o->id = id;
    r.objects.push_back(o);
  }
  std::sort(r.objects.begin(), r.objects.end(),
            [](const auto& a, const auto& b) { return a->id < b->id; });
  return r;
}

TEST(HoldTest, CountsWhatAPruneDeletesAndWhichVmsRun) {
  std::vector<ManagedRecord> managed = {record("Network", "lab"), record("VM", "a"),
                                        record("VM", "b", {{"running", true}}),
                                        record("VM", "off", {{"running", false}})};
  // Which objects run is the VM kind's record's to say (KindRecord::running).
  auto kinds = providers::builtinKinds();
  ASSERT_TRUE(kinds.isOk()) << kinds.status().message();
  DeletionCounts c = countDeletions(revisionWith({{"Network", "lab"}, {"VM", "b"}}), managed,
                                    (*kinds)->runningObjects());
  EXPECT_EQ(c.objects, 2u);
  EXPECT_EQ(c.managed, 4u);
  EXPECT_EQ(c.deleted, 2u);  // VM/a and VM/off
  EXPECT_EQ(c.runningVms, 2u);
  EXPECT_EQ(c.deletedRunningVms, 1u);  // VM/off is stopped

  // Without the kinds' say, nothing runs.
  DeletionCounts none = countDeletions(revisionWith({}), managed, nullptr);
  EXPECT_EQ(none.deleted, 4u);
  EXPECT_EQ(none.runningVms, 0u);
}

TEST(HoldTest, CountsRecordsInAnyOrderAgainstTheRevision) {
  // The inventory's records come in id order; others are counted the same.
  Revision revision = revisionWith({{"Network", "b"}, {"Network", "d"}, {"VM", "a"}});
  std::vector<ManagedRecord> sorted = {record("Network", "a"), record("Network", "b"),
                                       record("Network", "c"), record("Network", "d"),
                                       record("VM", "a"),      record("VM", "z")};
  EXPECT_EQ(countDeletions(revision, sorted, nullptr).deleted, 3u);  // a, c, z
  std::vector<ManagedRecord> shuffled = {record("VM", "z"),      record("Network", "d"),
                                         record("VM", "a"),      record("Network", "a"),
                                         record("Network", "b"), record("Network", "c")};
  EXPECT_EQ(countDeletions(revision, shuffled, nullptr).deleted, 3u);
  std::vector<ManagedRecord> allKept = {record("VM", "a"), record("Network", "b"),
                                        record("Network", "d")};
  EXPECT_EQ(countDeletions(revision, allKept, nullptr).deleted, 0u);
}

struct VerdictCase {
  std::string name;
  DeletionCounts counts;
  HoldPolicy policy;
  bool hold;
  std::string reason;  // a part of it
};

class HoldVerdictTest : public ::testing::TestWithParam<VerdictCase> {};

TEST_P(HoldVerdictTest, Judges) {
  const VerdictCase& c = GetParam();
  HoldVerdict v = judgeDeletions(c.counts, c.policy);
  EXPECT_EQ(v.hold, c.hold) << v.reason;
  EXPECT_NE(v.reason.find(c.reason), std::string::npos) << v.reason;
}

HoldPolicy policy(bool deleteAll, int maxPercent, int maxVmPercent) {
  HoldPolicy p;
  p.deleteAll = deleteAll;
  p.maxDeletedPercent = maxPercent;
  p.maxDeletedRunningVmsPercent = maxVmPercent;
  return p;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HoldVerdictTest,
    ::testing::Values(
        VerdictCase{
            "EverythingDeleted", {0, 3, 3, 0, 0}, {}, true, "every managed object (3 of 3)"},
        VerdictCase{"AllButOne", {1, 3, 2, 0, 0}, {}, false, ""},
        VerdictCase{"NothingManagedEmptyRevision", {0, 0, 0, 0, 0}, {}, false, ""},
        VerdictCase{"EverythingDeletedAllowed", {0, 3, 3, 0, 0}, policy(false, 100, 50), false, ""},
        VerdictCase{"HalfTheVms", {2, 4, 2, 4, 2}, {}, false, ""},
        VerdictCase{"OneVmOverHalf", {3, 5, 3, 4, 3}, {}, true, "3 of 4 running VMs"},
        VerdictCase{"TheOnlyRunningVm", {1, 2, 1, 1, 1}, {}, true, "1 of 1 running VMs"},
        VerdictCase{"VmShareOff", {3, 5, 3, 4, 3}, policy(true, 100, 100), false, ""},
        VerdictCase{"ObjectShareAtLimit", {6, 10, 4, 0, 0}, policy(true, 40, 50), false, ""},
        VerdictCase{"ObjectShareOverLimit",
                    {5, 10, 5, 0, 0},
                    policy(true, 40, 50),
                    true,
                    "5 of 10 managed objects (more than 40%)"}),
    [](const auto& info) { return info.param.name; });

struct MarkerCase {
  std::string name;
  std::string message;
  bool allows;
};

class PruneMarkerTest : public ::testing::TestWithParam<MarkerCase> {};

TEST_P(PruneMarkerTest, Reads) {
  EXPECT_EQ(messageAllowsPrune(GetParam().message), GetParam().allows);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PruneMarkerTest,
    ::testing::Values(MarkerCase{"Trailer", "Remove the lab\n\nHyper-Allow-Prune: yes\n", true},
                      MarkerCase{"TrailerAnyCaseKey", "x\n\nhyper-allow-prune:   yes  \r\n", true},
                      MarkerCase{"NoTrailer", "Remove the lab\n", false},
                      MarkerCase{"Empty", "", false},
                      MarkerCase{"No", "x\n\nHyper-Allow-Prune: no\n", false},
                      MarkerCase{"YesAndMore", "x\n\nHyper-Allow-Prune: yess\n", false},
                      MarkerCase{"UpperYes", "x\n\nHyper-Allow-Prune: YES\n", false},
                      MarkerCase{"OtherKey", "x\n\nX-Hyper-Allow-Prune: yes\n", false},
                      MarkerCase{"QuotedInALine", "do not add Hyper-Allow-Prune: yes here\n",
                                 false},
                      MarkerCase{"NoValue", "x\n\nHyper-Allow-Prune:\n", false}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::controller
