// checkDnsLabel (base/names.h) at its edges: every object name, policy network and broker
// rule name passes through it, and names become interface names, nft set names and paths.

#include <gtest/gtest.h>

#include "base/names.h"

namespace hyper {
namespace {

struct LabelCase {
  std::string name;
  std::string label;
  std::string error;  // "" = accepted; else a substring of the reason
};

// Failures name the case, not its bytes.
void PrintTo(const LabelCase& c, std::ostream* os) { *os << c.name; }

class DnsLabelTest : public ::testing::TestWithParam<LabelCase> {};

TEST_P(DnsLabelTest, Checks) {
  std::string why = checkDnsLabel(GetParam().label);
  if (GetParam().error.empty()) {
    EXPECT_EQ(why, "") << GetParam().label;
  } else {
    EXPECT_NE(why.find(GetParam().error), std::string::npos) << "reason: '" << why << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DnsLabelTest,
    ::testing::Values(LabelCase{"OneCharacter", "a", ""}, LabelCase{"Digit", "0", ""},
                      LabelCase{"StartsWithDigit", "0web", ""}, LabelCase{"InnerDash", "web-1", ""},
                      LabelCase{"DoubleDash", "web--1", ""},
                      LabelCase{"SixtyThree", std::string(63, 'a'), ""},
                      LabelCase{"SixtyFour", std::string(64, 'a'),
                                "is 64 characters long (expected at most 63)"},
                      LabelCase{"Empty", "", "must not be empty"},
                      LabelCase{"LeadingDash", "-web", "must not start or end with '-'"},
                      LabelCase{"TrailingDash", "web-", "must not start or end with '-'"},
                      LabelCase{"OnlyDash", "-", "must not start or end with '-'"},
                      LabelCase{"UpperCaseFirst", "Web", "has 'W' at position 1"},
                      LabelCase{"UpperCaseLast", "weB", "has 'B' at position 3"},
                      LabelCase{"Underscore", "web_1", "has '_' at position 4"},
                      LabelCase{"Dot", "web.1", "has '.' at position 4"},
                      LabelCase{"Slash", "a/b", "has '/' at position 2"},
                      LabelCase{"DotDot", "..", "has '.' at position 1"},
                      LabelCase{"Space", "web 1", "has 0x20 at position 4"},
                      LabelCase{"TrailingNewline", "web\n", "has 0x0a at position 4"},
                      LabelCase{"TrailingNul", std::string("web\0", 4), "has 0x00 at position 4"},
                      LabelCase{"NonAscii", "w\xc3\xa9", "has 0xc3 at position 2"}),
    [](const ::testing::TestParamInfo<LabelCase>& info) { return info.param.name; });

struct InterfaceCase {
  std::string name;
  std::string ifname;
  bool ok;
};

// Failures name the case, not its bytes.
void PrintTo(const InterfaceCase& c, std::ostream* os) { *os << c.name; }

class InterfaceNameTest : public ::testing::TestWithParam<InterfaceCase> {};

TEST_P(InterfaceNameTest, Checks) {
  EXPECT_EQ(checkInterfaceName(GetParam().ifname).empty(), GetParam().ok)
      << checkInterfaceName(GetParam().ifname);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InterfaceNameTest,
    ::testing::Values(InterfaceCase{"Fifteen", std::string(15, 'b'), true},
                      InterfaceCase{"Sixteen", std::string(16, 'b'), false},
                      InterfaceCase{"Empty", "", false}, InterfaceCase{"Dot", ".", false},
                      InterfaceCase{"DotDot", "..", false}, InterfaceCase{"ThreeDots", "...", true},
                      InterfaceCase{"Slash", "br/0", false}, InterfaceCase{"Colon", "br:0", false},
                      InterfaceCase{"Space", "br 0", false}, InterfaceCase{"Del", "br\x7f", false},
                      InterfaceCase{"Plain", "hb-lab", true}),
    [](const ::testing::TestParamInfo<InterfaceCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper
