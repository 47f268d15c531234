// Every allow rule of a NetworkPolicy keeps its protocol and its ports in the rendered nft table:
// a tcp or udp rule with ports opens those ports only, and one without ports opens the whole
// protocol only when it was written without ports. The assertions read the one rule that carries
// the allow entry's CIDR, whatever the rest of the table looks like, so that they hold when the
// table around the rule is restructured (net_nft_ruleset_test.cc has the golden table).

#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "providers/net/nft_ruleset.h"

namespace hyper::providers::net {

using netmodel::parseNetworkSpec;
using netmodel::parsePolicySpec;
namespace {

// What one rendered accept rule lets through.
struct Opens {
  std::string protocol;  // "tcp", "udp", "icmp" or "any"
  std::set<int> ports;   // empty: every port of the protocol
  bool operator==(const Opens&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Opens& o) {
  os << o.protocol << " ports {";
  for (int p : o.ports) {
    os << " " << p;
  }
  return os << " }";
}

bool hasWord(const std::string& line, const std::string& word) {
  std::istringstream in(line);
  for (std::string w; in >> w;) {
    if (w == word) {
      return true;
    }
  }
  return false;
}

// Reads protocol and ports from an nft rule: "tcp dport { 80, 443 }", "udp dport 53",
// "meta l4proto udp", "meta l4proto udp th dport { 53 }", "meta l4proto icmp".
Opens readRule(const std::string& line) {
  Opens o{"any", {}};
  for (const char* proto : {"tcp", "udp", "icmp"}) {
    if (hasWord(line, proto)) {
      EXPECT_EQ(o.protocol, "any") << "two protocols in one rule: " << line;
      o.protocol = proto;
    }
  }
  size_t dport = line.find("dport");
  if (dport != std::string::npos) {
    std::string rest = line.substr(dport + 5);
    size_t open = rest.find_first_not_of(' ');
    std::string ports;
    if (open != std::string::npos && rest[open] == '{') {
      size_t close = rest.find('}', open);
      EXPECT_NE(close, std::string::npos) << line;
      ports = rest.substr(open + 1, close == std::string::npos ? 0 : close - open - 1);
    } else if (open != std::string::npos) {
      ports = rest.substr(open, rest.find(' ', open) - open);
    }
    for (char& c : ports) {
      c = c == ',' ? ' ' : c;
    }
    std::istringstream in(ports);
    for (int p; in >> p;) {
      o.ports.insert(p);
    }
    EXPECT_FALSE(o.ports.empty()) << "dport without a port: " << line;
  }
  return o;
}

// The accept rules that mention `cidr`.
std::vector<std::string> rulesFor(const std::string& table, const std::string& cidr) {
  std::vector<std::string> out;
  std::istringstream in(table);
  for (std::string line; std::getline(in, line);) {
    if (line.find(" " + cidr + " ") != std::string::npos && hasWord(line, "accept")) {
      out.push_back(line);
    }
  }
  return out;
}

NftModel modelWith(const std::string& direction, const std::string& allow) {
  NftModel m;
  auto net = parseNetworkSpec("lab", Json::parse(R"({"cidr": "10.77.0.0/24"})"));
  EXPECT_TRUE(net.isOk()) << net.status().message();
  m.networks["lab"] = *net;
  auto pol =
      parsePolicySpec("web", Json::parse(R"({"network": "lab", ")" + direction +
                                         R"(": {"mode": "allowlist", "allow": [)" + allow + "]}}"));
  EXPECT_TRUE(pol.isOk()) << pol.status().message();
  m.policies["web"] = *pol;
  return m;
}

struct PortsCase {
  std::string name;
  std::string direction;              // "egress" or "ingress"
  std::string allow;                  // the allow entries, JSON
  std::map<std::string, Opens> want;  // by CIDR
};

// Failures name the case, not its bytes.
void PrintTo(const PortsCase& c, std::ostream* os) { *os << c.name; }

class NftPortsTest : public ::testing::TestWithParam<PortsCase> {};

TEST_P(NftPortsTest, EachAllowRuleOpensWhatItSays) {
  const PortsCase& c = GetParam();
  std::string table = renderNftTable(modelWith(c.direction, c.allow));
  for (const auto& [cidr, want] : c.want) {
    auto rules = rulesFor(table, cidr);
    ASSERT_EQ(rules.size(), 1u) << "expected one accept rule for " << cidr << " in\n" << table;
    EXPECT_EQ(readRule(rules[0]), want) << rules[0];
    const char* addr = c.direction == "egress" ? "daddr" : "saddr";
    EXPECT_NE(rules[0].find(std::string(addr) + " " + cidr), std::string::npos)
        << "the CIDR is matched as the " << addr << ": " << rules[0];
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, NftPortsTest,
    ::testing::Values(
        PortsCase{"TcpKeepsItsPorts",
                  "egress",
                  R"({"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443, 80]})",
                  {{"203.0.113.0/24", {"tcp", {80, 443}}}}},
        PortsCase{"UdpKeepsItsPort",
                  "egress",
                  R"({"cidr": "192.0.2.53/32", "protocol": "udp", "ports": [53]})",
                  {{"192.0.2.53/32", {"udp", {53}}}}},
        PortsCase{"UdpKeepsItsPorts",
                  "egress",
                  R"({"cidr": "192.0.2.0/24", "protocol": "udp", "ports": [5353, 53, 123]})",
                  {{"192.0.2.0/24", {"udp", {53, 123, 5353}}}}},
        PortsCase{"UdpWithoutPortsIsTheWholeProtocol",
                  "egress",
                  R"({"cidr": "192.0.2.0/24", "protocol": "udp"})",
                  {{"192.0.2.0/24", {"udp", {}}}}},
        PortsCase{"TcpWithoutPortsIsTheWholeProtocol",
                  "egress",
                  R"({"cidr": "192.0.2.0/24", "protocol": "tcp"})",
                  {{"192.0.2.0/24", {"tcp", {}}}}},
        PortsCase{"IcmpHasNoPorts",
                  "egress",
                  R"({"cidr": "198.51.100.7", "protocol": "icmp"})",
                  {{"198.51.100.7/32", {"icmp", {}}}}},
        PortsCase{"NoProtocolIsEverything",
                  "egress",
                  R"({"cidr": "198.51.100.0/24"})",
                  {{"198.51.100.0/24", {"any", {}}}}},
        // Side by side, each keeps its own: udp does not take tcp's ports or lose its own.
        PortsCase{"TcpAndUdpSideBySide",
                  "egress",
                  R"({"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [53, 853]},
                     {"cidr": "192.0.2.0/24", "protocol": "udp", "ports": [53]},
                     {"cidr": "198.51.100.0/24", "protocol": "udp"})",
                  {{"203.0.113.0/24", {"tcp", {53, 853}}},
                   {"192.0.2.0/24", {"udp", {53}}},
                   {"198.51.100.0/24", {"udp", {}}}}},
        PortsCase{"IngressUdpKeepsItsPort",
                  "ingress",
                  R"({"cidr": "10.99.0.0/16", "protocol": "udp", "ports": [161]})",
                  {{"10.99.0.0/16", {"udp", {161}}}}},
        PortsCase{"IngressTcpKeepsItsPort",
                  "ingress",
                  R"({"cidr": "10.99.0.0/16", "protocol": "tcp", "ports": [22]})",
                  {{"10.99.0.0/16", {"tcp", {22}}}}},
        PortsCase{"HighestPort",
                  "egress",
                  R"({"cidr": "192.0.2.0/24", "protocol": "udp", "ports": [65535]})",
                  {{"192.0.2.0/24", {"udp", {65535}}}}}),
    [](const ::testing::TestParamInfo<PortsCase>& info) { return info.param.name; });

// The reader itself: it must tell the near misses apart, or the table above proves nothing.
TEST(NftPortsReaderTest, TellsPortsAndProtocolsApart) {
  EXPECT_EQ(readRule("ip daddr 1.2.3.0/24 udp dport { 53 } accept"), (Opens{"udp", {53}}));
  EXPECT_EQ(readRule("ip daddr 1.2.3.0/24 udp dport 53 accept"), (Opens{"udp", {53}}));
  EXPECT_EQ(readRule("ip daddr 1.2.3.0/24 meta l4proto udp th dport { 53, 54 } accept"),
            (Opens{"udp", {53, 54}}));
  EXPECT_EQ(readRule("ip daddr 1.2.3.0/24 meta l4proto udp accept"), (Opens{"udp", {}}));
  EXPECT_EQ(readRule("ip daddr 1.2.3.0/24 accept"), (Opens{"any", {}}));
  EXPECT_FALSE(readRule("ip daddr 1.2.3.0/24 meta l4proto udp accept") == (Opens{"udp", {53}}));
  EXPECT_FALSE(readRule("ip daddr 1.2.3.0/24 tcp dport { 53 } accept") == (Opens{"udp", {53}}));
}

}  // namespace
}  // namespace hyper::providers::net
