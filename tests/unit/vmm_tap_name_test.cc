#include <gtest/gtest.h>

#include "base/names.h"
#include "providers/vmm/tap_device.h"

namespace hyper::providers::vmm {
namespace {

struct TapNameCase {
  std::string name;
  std::string vm;
  std::string expected;  // empty: only the invariants are checked
};

class VmmTapNameTest : public ::testing::TestWithParam<TapNameCase> {};

TEST_P(VmmTapNameTest, FitsIfnamsizAndIsStable) {
  const auto& c = GetParam();
  std::string tap = tapNameFor(c.vm);
  EXPECT_EQ(checkInterfaceName(tap), "") << tap;
  EXPECT_LE(tap.size(), 15u) << tap;
  EXPECT_EQ(tap.rfind("hv-", 0), 0u) << tap;
  EXPECT_EQ(tap, tapNameFor(c.vm)) << "not deterministic";
  if (!c.expected.empty()) {
    EXPECT_EQ(tap, c.expected);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Names, VmmTapNameTest,
    ::testing::Values(TapNameCase{"Short", "web-1", "hv-web-1"},
                      TapNameCase{"ExactlyFits", "abcdefghijkl", "hv-abcdefghijkl"},
                      TapNameCase{"OneTooLong", "abcdefghijklm", ""},
                      TapNameCase{"MaxDnsLabel", std::string(63, 'a'), ""},
                      TapNameCase{"LongWithDashes", "web-" + std::string(50, 'x') + "-end", ""}),
    [](const ::testing::TestParamInfo<TapNameCase>& info) { return info.param.name; });

TEST(VmmTapName, LongNamesSharingAHeadDiffer) {
  std::string a = std::string(62, 'a') + "1";
  std::string b = std::string(62, 'a') + "2";
  EXPECT_NE(tapNameFor(a), tapNameFor(b));
  EXPECT_NE(tapNameFor("abcdefghijklm"), tapNameFor("abcdefghijkln"));
}

TEST(VmmTapName, OwnerAliasNamesTheVm) { EXPECT_EQ(tapOwnerAlias("web-1"), "hyper:VM/web-1"); }

}  // namespace
}  // namespace hyper::providers::vmm
