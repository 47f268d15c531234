// The broker against hostile callers, below the socket: bounded parsing that never quotes the
// caller, per-uid counters, the slot queue's deadline and refusal, group intersection, log
// escaping and cgroup detection.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "broker/bounded_json.h"
#include "broker/cgroup.h"
#include "broker/limits.h"
#include "broker/log_text.h"
#include "broker/peer.h"
#include "broker/request.h"
#include "broker/rules.h"
#include "broker/slots.h"

namespace hyper::broker {
namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string nested(int depth, const std::string& inner = "1") {
  return std::string(static_cast<size_t>(depth), '[') + inner +
         std::string(static_cast<size_t>(depth), ']');
}

TEST(BrokerBoundedJsonTest, DepthAtTheLimitPassesOneMoreIsRefused) {
  JsonLimits limits{1024, 4};
  auto atLimit = parseBoundedJson(nested(4), limits);
  ASSERT_TRUE(atLimit.isOk()) << atLimit.status().message();
  auto over = parseBoundedJson(nested(5), limits);
  ASSERT_FALSE(over.isOk());
  EXPECT_EQ(over.status().message(), "nested deeper than 4 levels of objects and arrays");
  // Objects count like arrays.
  EXPECT_FALSE(parseBoundedJson(R"({"a":{"b":{"c":{"d":{}}}}})", limits).isOk());
  EXPECT_TRUE(parseBoundedJson(R"({"a":{"b":{"c":{"d":1}}}})", limits).isOk());
}

TEST(BrokerBoundedJsonTest, AHundredThousandLevelsAreRefusedWithoutRecursion) {
  // Opened and never closed, and opened and closed: both refused at the limit, not parsed.
  std::string open(100000, '[');
  auto unclosed = parseBoundedJson(open, JsonLimits{1 << 20, 16});
  ASSERT_FALSE(unclosed.isOk());
  EXPECT_TRUE(contains(unclosed.status().message(), "nested deeper than 16"))
      << unclosed.status().message();
  auto closed = parseBoundedJson(nested(100000), JsonLimits{1 << 20, 16});
  ASSERT_FALSE(closed.isOk());
  EXPECT_TRUE(contains(closed.status().message(), "nested deeper than 16"));
}

TEST(BrokerBoundedJsonTest, SizeAtTheLimitPassesOneByteMoreIsRefused) {
  std::string text = "\"" + std::string(8, 'x') + "\"";  // 10 bytes
  EXPECT_TRUE(parseBoundedJson(text, JsonLimits{10, 4}).isOk());
  auto over = parseBoundedJson(text, JsonLimits{9, 4});
  ASSERT_FALSE(over.isOk());
  EXPECT_EQ(over.status().message(), "longer than 9 bytes");
}

TEST(BrokerBoundedJsonTest, SyntaxErrorNamesTheOffsetNotTheText) {
  auto bad = parseBoundedJson(R"({"a":"MARKER-7f3a" MARKER-7f3a})", JsonLimits{});
  ASSERT_FALSE(bad.isOk());
  EXPECT_TRUE(contains(bad.status().message(), "syntax error at byte")) << bad.status().message();
  EXPECT_FALSE(contains(bad.status().message(), "MARKER")) << bad.status().message();
}

// Every way a request can be wrong, with the same distinctive value in it: no error may quote it.
struct NoEchoCase {
  std::string name;
  std::string line;
  std::string error;  // what the error must say instead
};

class BrokerRequestNoEchoTest : public ::testing::TestWithParam<NoEchoCase> {};

TEST_P(BrokerRequestNoEchoTest, ErrorNamesTheFieldNotTheValue) {
  auto r = parseRequest(GetParam().line);
  ASSERT_FALSE(r.isOk());
  EXPECT_FALSE(contains(r.status().message(), "SECRET-MARKER")) << r.status().message();
  EXPECT_TRUE(contains(r.status().message(), GetParam().error)) << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerRequestNoEchoTest,
    ::testing::Values(
        NoEchoCase{"NotAnObject", R"(["SECRET-MARKER"])",
                   "request: expected a JSON object, got an array of 1"},
        NoEchoCase{"BadJson", R"({"command":"SECRET-MARKER)", "request is not valid JSON"},
        NoEchoCase{"AdminValue", R"({"admin":"SECRET-MARKER"})", "got a string of 13 bytes"},
        NoEchoCase{"AdminExtra", R"({"admin":"rules","x":"SECRET-MARKER"})", "other fields"},
        NoEchoCase{"Version", R"({"schemaVersion":"SECRET-MARKER","command":"make","cwd":"/"})",
                   "request.schemaVersion: expected \"1\", got a string of 13 bytes"},
        NoEchoCase{"RequestIdTooLong",
                   R"({"schemaVersion":"1","requestId":")" + std::string(120, 'x') +
                       R"(SECRET-MARKER","command":"make","cwd":"/"})",
                   "got a string of 133 bytes"},
        NoEchoCase{"CommandObject",
                   R"({"schemaVersion":"1","command":{"SECRET-MARKER":1},"cwd":"/"})",
                   "request.command: expected a command name"},
        NoEchoCase{"ArgsNotStrings",
                   R"({"schemaVersion":"1","command":"make","cwd":"/","args":[["SECRET-MARKER"]]})",
                   "request.args[0]: expected a string without NUL bytes, got an array of 1"},
        NoEchoCase{"CwdRelative", R"({"schemaVersion":"1","command":"make","cwd":"SECRET-MARKER"})",
                   "request.cwd: expected an absolute path"},
        NoEchoCase{
            "TimeoutString",
            R"({"schemaVersion":"1","command":"make","cwd":"/","timeoutSec":"SECRET-MARKER"})",
            "request.timeoutSec"},
        NoEchoCase{
            "EnvValueNested",
            R"({"schemaVersion":"1","command":"make","cwd":"/","env":{"A":["SECRET-MARKER"]}})",
            "request.env.A: expected a string, got an array"},
        NoEchoCase{"Deep",
                   "{\"schemaVersion\":\"1\",\"args\":" + nested(100000, "\"SECRET-MARKER\"") + "}",
                   "request is nested deeper than 8 levels"}),
    [](const ::testing::TestParamInfo<NoEchoCase>& info) { return info.param.name; });

TEST(BrokerRequestNoEchoTest, UnknownFieldNameIsEscapedAndCut) {
  auto r = parseRequest("{\"schemaVersion\":\"1\",\"sh\\nell\":1}");
  ASSERT_FALSE(r.isOk());
  EXPECT_TRUE(contains(r.status().message(), "request.sh\\nell: unknown field"))
      << r.status().message();
  auto longKey = parseRequest("{\"" + std::string(200, 'k') + "\":1}");
  ASSERT_FALSE(longKey.isOk());
  EXPECT_TRUE(contains(longKey.status().message(), std::string(40, 'k') + "...: unknown"));
  EXPECT_FALSE(contains(longKey.status().message(), std::string(41, 'k')));
}

TEST(BrokerRulesLimitsTest, DeepOrHugeRuleFilesAreRefusedUnparsed) {
  auto deep = parseRules("{\"schemaVersion\":\"1\",\"rules\":" + nested(100000) + "}", "r.json");
  ASSERT_FALSE(deep.isOk());
  EXPECT_EQ(deep.status().message(), "r.json: nested deeper than 16 levels of objects and arrays");
  std::string huge = "{\"schemaVersion\":\"1\",\"rules\":[],\"pad\":\"" +
                     std::string(kMaxRuleFileBytes, ' ') + "\"}";
  auto big = parseRules(huge, "r.json");
  ASSERT_FALSE(big.isOk());
  EXPECT_TRUE(contains(big.status().message(), "longer than 4194304 bytes"))
      << big.status().message();
}

TEST(BrokerRulesLimitsTest, NoNewPrivsAndCgroupLimits) {
  auto rule = [](const std::string& extra) {
    return parseRules(R"({"schemaVersion":"1","rules":[{"name":"m","command":"/usr/bin/make",
        "callers":{"uids":[0]},"workspace":"/w")" +
                          extra + "}]}",
                      "r");
  };
  auto plain = rule("");
  ASSERT_TRUE(plain.isOk()) << plain.status().message();
  EXPECT_TRUE(plain->rules[0].noNewPrivs);
  EXPECT_EQ(plain->rules[0].pidsMax, 0);
  EXPECT_FALSE(ruleToJson(plain->rules[0]).contains("noNewPrivs"));
  auto set = rule(R"(,"noNewPrivs":false,"pidsMax":64,"memoryMaxBytes":1048576)");
  ASSERT_TRUE(set.isOk()) << set.status().message();
  EXPECT_FALSE(set->rules[0].noNewPrivs);
  EXPECT_EQ(set->rules[0].pidsMax, 64);
  EXPECT_EQ(set->rules[0].memoryMaxBytes, 1048576);
  auto again = parseRules(rulesToJson(set->rules).dump(), "again");
  ASSERT_TRUE(again.isOk()) << again.status().message();
  EXPECT_FALSE(again->rules[0].noNewPrivs);
  EXPECT_EQ(again->rules[0].memoryMaxBytes, 1048576);
  // Near misses: one below the smallest memory limit, a string for a boolean, zero pids.
  auto small = rule(R"(,"memoryMaxBytes":1048575)");
  ASSERT_FALSE(small.isOk());
  EXPECT_TRUE(contains(small.status().message(),
                       "rules[0].memoryMaxBytes: expected an integer from 1048576"));
  EXPECT_FALSE(rule(R"(,"noNewPrivs":"false")").isOk());
  EXPECT_FALSE(rule(R"(,"pidsMax":0)").isOk());
  EXPECT_TRUE(rule(R"(,"pidsMax":1)").isOk());
}

TEST(BrokerUidCounterTest, LimitPerUidAndOtherUidsUnaffected) {
  UidCounter c;
  EXPECT_TRUE(c.tryAdd(1000, 2));
  EXPECT_TRUE(c.tryAdd(1000, 2));
  EXPECT_FALSE(c.tryAdd(1000, 2));  // the third of a limit of two
  EXPECT_EQ(c.count(1000), 2);
  EXPECT_TRUE(c.tryAdd(1001, 2));  // another uid has its own count
  c.remove(1000);
  EXPECT_TRUE(c.tryAdd(1000, 2));  // a freed unit can be taken again
  EXPECT_FALSE(c.tryAdd(1000, 2));
  EXPECT_FALSE(c.tryAdd(7, 0));
  EXPECT_EQ(c.count(7), 0);
}

TEST(BrokerSlotsTest, WaitPastTheDeadlineTimesOutAndLeavesTheLine) {
  RuleSlots slots(1);
  auto far = std::chrono::steady_clock::now() + std::chrono::hours(1);
  auto wait = [] { return true; };
  ASSERT_EQ(slots.acquire(
                far, [] { return false; }, wait),
            SlotWait::Acquired);
  auto soon = std::chrono::steady_clock::now() + std::chrono::milliseconds(30);
  EXPECT_EQ(slots.acquire(
                soon, [] { return false; }, wait),
            SlotWait::TimedOut);
  slots.release();
  // The timed-out ticket does not block the next caller; a free slot is taken even when the
  // deadline has passed (the deadline bounds waiting, not running).
  auto past = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  EXPECT_EQ(slots.acquire(
                past, [] { return false; }, wait),
            SlotWait::Acquired);
  slots.release();
}

TEST(BrokerSlotsTest, RefusedWaiterDoesNotQueue) {
  RuleSlots slots(1);
  auto far = std::chrono::steady_clock::now() + std::chrono::hours(1);
  ASSERT_EQ(slots.acquire(
                far, [] { return false; }, [] { return true; }),
            SlotWait::Acquired);
  int asked = 0;
  EXPECT_EQ(slots.acquire(
                far, [] { return false; },
                [&] {
                  ++asked;
                  return false;
                }),
            SlotWait::Refused);
  EXPECT_EQ(asked, 1);
  slots.release();
  EXPECT_EQ(slots.acquire(
                far, [] { return false; }, [] { return true; }),
            SlotWait::Acquired);
  slots.release();
}

TEST(BrokerPeerGroupsTest, RunGetsOnlyGroupsTheProcessHasAndTheUserIsIn) {
  std::vector<gid_t> user = {100, 27, 44, 1000};
  // The process dropped 44 and holds 0 (which the user is not in): neither reaches the run.
  EXPECT_EQ(intersectGroups(user, {100, 27, 0, 1000}), (std::vector<gid_t>{100, 27, 1000}));
  // The primary group stays even when the process's list leaves it out.
  EXPECT_EQ(intersectGroups(user, {}), (std::vector<gid_t>{100}));
  EXPECT_EQ(intersectGroups(user, user), user);
}

TEST(BrokerLogTextTest, ControlCharactersAreEscaped) {
  EXPECT_EQ(escapeForLog("a\nb"), "a\\nb");
  EXPECT_EQ(escapeForLog("x\r\t\x1b[31m\x7f"), "x\\r\\t\\x1b[31m\\x7f");
  EXPECT_EQ(escapeForLog("back\\slash"), "back\\\\slash");
  EXPECT_EQ(escapeForLog("plain /path-1 ünï"), "plain /path-1 ünï");
  EXPECT_EQ(escapeForLog(std::string("nul\0x", 5)), "nul\\x00x");
}

TEST(BrokerCgroupTest, MissingHierarchiesAreNamed) {
  // A mount table without any cgroup: nothing to use, and the reason says what is missing.
  auto none = detectCgroups("proc /proc proc rw 0 0\n", "", "hyper-broker-test");
  EXPECT_FALSE(none.pids());
  EXPECT_FALSE(none.memory());
  EXPECT_TRUE(contains(none.missing, "no cgroup2 mount")) << none.missing;
  EXPECT_TRUE(contains(none.missing, "no cgroup v1 pids hierarchy")) << none.missing;
  EXPECT_TRUE(contains(none.missing, "no cgroup v1 memory hierarchy")) << none.missing;
  // A v1 pids hierarchy that is a mount in name only (a path that does not exist): not used.
  auto fake = detectCgroups("cgroup /nonexistent/pids cgroup rw,pids 0 0\n", "8:pids:/svc\n",
                            "hyper-broker-test");
  EXPECT_FALSE(fake.pids());
  EXPECT_TRUE(
      contains(fake.missing, "cgroup v1 pids: mkdir /nonexistent/pids/svc/hyper-broker-test"))
      << fake.missing;
}

}  // namespace
}  // namespace hyper::broker
