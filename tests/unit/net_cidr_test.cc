#include "netmodel/cidr.h"

#include <gtest/gtest.h>

namespace hyper::netmodel {
namespace {

struct ParseCase {
  std::string name;
  std::string text;
  bool allowBare;
  bool ok;
  std::string canonical;  // str() when ok
  std::string error;      // substring of the message when not ok
};

class CidrParseTest : public ::testing::TestWithParam<ParseCase> {};

TEST_P(CidrParseTest, Parses) {
  const auto& c = GetParam();
  auto r = Cidr::parse(c.text, c.allowBare);
  ASSERT_EQ(r.isOk(), c.ok) << r.status().message();
  if (c.ok) {
    EXPECT_EQ(r->str(), c.canonical);
  } else {
    EXPECT_NE(r.status().message().find(c.error), std::string::npos) << r.status().message();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CidrParseTest,
    ::testing::Values(
        ParseCase{"Network", "10.77.0.0/24", false, true, "10.77.0.0/24", ""},
        ParseCase{"HostBitsKeptAsWritten", "10.77.0.5/24", false, true, "10.77.0.5/24", ""},
        ParseCase{"Zero", "0.0.0.0/0", false, true, "0.0.0.0/0", ""},
        ParseCase{"Host32", "255.255.255.255/32", false, true, "255.255.255.255/32", ""},
        ParseCase{"BareAddressAllowed", "203.0.113.7", true, true, "203.0.113.7/32", ""},
        ParseCase{"BareAddressRefused", "203.0.113.7", false, false, "", "has no prefix length"},
        ParseCase{"OctetTooBig", "10.77.0.300/24", false, false, "", "octet 4 is 300"},
        ParseCase{"PrefixTooBig", "10.77.0.0/33", false, false, "", "prefix length \"33\""},
        ParseCase{"ThreeOctets", "10.77.0/24", false, false, "", "expected four octets"},
        ParseCase{"EmptyOctet", "10..0.0/24", false, false, "", "octet 2 is \"\""},
        ParseCase{"FiveOctets", "1.2.3.4.5/8", false, false, "", "octet 4 is \"4.5\""},
        ParseCase{"Sign", "+1.2.3.4/8", false, false, "", "octet 1"},
        ParseCase{"EmptyPrefix", "10.0.0.0/", false, false, "", "prefix length \"\""}),
    [](const auto& info) { return info.param.name; });

TEST(CidrTest, NetworkBroadcastAndMask) {
  auto c = Cidr::parse("10.77.0.5/24");
  ASSERT_TRUE(c.isOk());
  EXPECT_EQ(formatIpv4(c->network()), "10.77.0.0");
  EXPECT_EQ(formatIpv4(c->broadcast()), "10.77.0.255");
  EXPECT_FALSE(c->isNetworkAddress());
  EXPECT_EQ(c->canonical().str(), "10.77.0.0/24");
  EXPECT_EQ(Cidr{}.mask(), 0u);  // /0 must not shift by 32
  EXPECT_EQ((Cidr{0, 32}.mask()), 0xffffffffu);
}

struct RelationCase {
  std::string name;
  std::string a;
  std::string b;
  bool aContainsB;
  bool overlap;
};

class CidrRelationTest : public ::testing::TestWithParam<RelationCase> {};

TEST_P(CidrRelationTest, ContainsAndOverlaps) {
  const auto& c = GetParam();
  auto a = Cidr::parse(c.a, true);
  auto b = Cidr::parse(c.b, true);
  ASSERT_TRUE(a.isOk() && b.isOk());
  EXPECT_EQ(a->contains(*b), c.aContainsB);
  EXPECT_EQ(a->overlaps(*b), c.overlap);
  EXPECT_EQ(b->overlaps(*a), c.overlap);  // symmetric
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CidrRelationTest,
    ::testing::Values(RelationCase{"Same", "10.77.0.0/24", "10.77.0.0/24", true, true},
                      RelationCase{"Subnet", "10.77.0.0/16", "10.77.5.0/24", true, true},
                      RelationCase{"Supernet", "10.77.5.0/24", "10.77.0.0/16", false, true},
                      RelationCase{"Adjacent", "10.77.0.0/24", "10.77.1.0/24", false, false},
                      RelationCase{"Disjoint", "10.0.0.0/8", "192.168.0.0/16", false, false},
                      RelationCase{"HostInside", "10.77.0.0/24", "10.77.0.9", true, true},
                      RelationCase{"HostOutside", "10.77.0.0/24", "10.77.1.9", false, false},
                      RelationCase{"Everything", "0.0.0.0/0", "203.0.113.0/24", true, true},
                      // An interface address carries host bits; it still overlaps its network.
                      RelationCase{"InterfaceAddress", "10.77.0.0/24", "10.77.0.5/16", false,
                                   true}),
    [](const auto& info) { return info.param.name; });

TEST(Ipv4Test, FormatRoundTrips) {
  for (const char* text : {"0.0.0.0", "10.77.0.1", "255.255.255.255", "192.168.100.254"}) {
    auto v = parseIpv4(text);
    ASSERT_TRUE(v.isOk()) << text;
    EXPECT_EQ(formatIpv4(*v), text);
  }
}

}  // namespace
}  // namespace hyper::netmodel
