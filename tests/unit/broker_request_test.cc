#include "broker/request.h"

#include <gtest/gtest.h>

#include "broker/slots.h"

namespace hyper::broker {
namespace {

TEST(BrokerRequestTest, ParsesARunRequest) {
  auto r =
      parseRequest(R"({"schemaVersion":"1","requestId":"r1","command":"make","args":["-j4","all"],)"
                   R"("cwd":"/w","timeoutSec":30,"env":{"CC":"gcc"}})");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  ASSERT_TRUE(r->run.has_value());
  EXPECT_EQ(r->run->command, "make");
  EXPECT_EQ(r->run->args, (std::vector<std::string>{"-j4", "all"}));
  EXPECT_EQ(r->run->cwd, "/w");
  EXPECT_EQ(r->run->timeoutSec, 30);
  EXPECT_EQ(r->run->env.at("CC"), "gcc");
  auto again = parseRequest(runRequestToJson(*r->run).dump());
  ASSERT_TRUE(again.isOk()) << again.status().message();
  EXPECT_EQ(again->run->args, r->run->args);
}

TEST(BrokerRequestTest, ParsesAdmin) {
  auto r = parseRequest(R"({"admin":"rules"})");
  ASSERT_TRUE(r.isOk());
  ASSERT_TRUE(r->admin.has_value());
  EXPECT_EQ(r->admin->action, "rules");
  EXPECT_FALSE(parseRequest(R"({"admin":"shutdown"})").isOk());
}

struct BadRequestCase {
  std::string name;
  std::string line;
  std::string error;
};

class BrokerBadRequestTest : public ::testing::TestWithParam<BadRequestCase> {};

TEST_P(BrokerBadRequestTest, SaysWhatIsWrong) {
  auto r = parseRequest(GetParam().line);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find(GetParam().error), std::string::npos) << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerBadRequestTest,
    ::testing::Values(
        BadRequestCase{"NotJson", "{make", "not valid JSON"},
        BadRequestCase{"NotObject", "[1]", "expected a JSON object"},
        BadRequestCase{"NoVersion", R"({"command":"make","cwd":"/"})", "request.schemaVersion"},
        BadRequestCase{"NoCommand", R"({"schemaVersion":"1","cwd":"/"})", "request.command"},
        BadRequestCase{"RelativeCwd", R"({"schemaVersion":"1","command":"make","cwd":"w"})",
                       "request.cwd: expected an absolute path"},
        BadRequestCase{"ArgNotString",
                       R"({"schemaVersion":"1","command":"make","cwd":"/","args":[1]})",
                       "request.args[0]"},
        BadRequestCase{"ZeroTimeout",
                       R"({"schemaVersion":"1","command":"make","cwd":"/","timeoutSec":0})",
                       "request.timeoutSec"},
        BadRequestCase{"EnvNotStrings",
                       R"({"schemaVersion":"1","command":"make","cwd":"/","env":{"A":1}})",
                       "request.env.A"},
        BadRequestCase{"UnknownField",
                       R"({"schemaVersion":"1","command":"make","cwd":"/","shell":"sh"})",
                       "request.shell: unknown field"}),
    [](const ::testing::TestParamInfo<BadRequestCase>& info) { return info.param.name; });

TEST(BrokerSlotsTest, SecondWaitsAndAbandonedWaiterLeavesTheLine) {
  RuleSlots slots(1);
  auto far = std::chrono::steady_clock::now() + std::chrono::hours(1);
  bool queued = false;
  auto onQueued = [&] {
    queued = true;
    return true;
  };
  ASSERT_EQ(slots.acquire(
                far, [] { return false; }, onQueued),
            SlotWait::Acquired);
  EXPECT_FALSE(queued);
  // The slot is taken: a waiter that gives up gets none and is told it was queued.
  EXPECT_EQ(slots.acquire(
                far, [] { return true; }, onQueued),
            SlotWait::Abandoned);
  EXPECT_TRUE(queued);
  slots.release();
  // The abandoned ticket does not block the line.
  queued = false;
  EXPECT_EQ(slots.acquire(
                far, [] { return true; }, onQueued),
            SlotWait::Acquired);
  EXPECT_FALSE(queued);
  EXPECT_EQ(slots.running(), 1);
  slots.release();
}

}  // namespace
}  // namespace hyper::broker
