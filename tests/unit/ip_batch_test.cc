// How the net provider places `ip -force -batch` failures on the actions whose lines they are
// (providers/net/net_provider.h, ipBatchFailures): pure parsing of what `ip` writes on stderr.
#include <gtest/gtest.h>

#include <string>

#include "providers/net/net_provider.h"

namespace hyper::providers::net {
namespace {

TEST(IpBatchFailuresTest, EachFailedLineGetsWhatWasSaidBeforeIt) {
  // What iproute2 6.1 writes for a batch whose lines 2 and 3 fail.
  auto failed = ipBatchFailures(
      "RTNETLINK answers: File exists\nCommand failed -:2\n"
      "Cannot find device \"hb-x\"\nCommand failed -:3\n");
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[2], "RTNETLINK answers: File exists");
  EXPECT_EQ(failed[3], "Cannot find device \"hb-x\"");
}

TEST(IpBatchFailuresTest, SeveralMessagesJoinAndAFailureWithoutOneSaysFailed) {
  auto failed = ipBatchFailures("Error: one\nError: two\nCommand failed -:7\nCommand failed -:9");
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[7], "Error: one; Error: two");
  EXPECT_EQ(failed[9], "failed");
}

TEST(IpBatchFailuresTest, NoFailureLinesOrGarbageGiveNothingAndStayBounded) {
  EXPECT_TRUE(ipBatchFailures("").empty());
  EXPECT_TRUE(ipBatchFailures("RTNETLINK answers: File exists\n").empty());
  EXPECT_TRUE(ipBatchFailures("Command failed -:\nCommand failed -:x\n").empty());
  // A line number too long to be one is cut, not overflowed; a flood of text is bounded.
  auto failed = ipBatchFailures(std::string(100000, 'e') + "\nCommand failed -:12345678901234\n");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed.begin()->first, 123456789u);
  EXPECT_LE(failed.begin()->second.size(), 256u);
}

}  // namespace
}  // namespace hyper::providers::net
