#include "netmodel/net_spec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>

#include "base/names.h"

namespace hyper::netmodel {
namespace {

Object makeObject(const std::string& kind, const std::string& name, const Json& spec) {
  Object o;
  o.id = {kind, name};
  o.spec = spec;
  return o;
}

struct BadSpecCase {
  std::string name;
  std::vector<Object> objects;
  std::string object;     // the object the diagnostic names
  std::string fieldPath;  // its field path
  std::string summary;    // a substring of its summary
};

class NetSpecValidateTest : public ::testing::TestWithParam<BadSpecCase> {};

TEST_P(NetSpecValidateTest, ReportsObjectFieldAndExpectation) {
  const auto& c = GetParam();
  std::vector<const Object*> ptrs;
  for (const auto& o : c.objects) {
    ptrs.push_back(&o);
  }
  Diagnostics diags;
  validateNetObjects(ptrs, diags);
  ASSERT_TRUE(diags.hasErrors()) << "no error";
  bool matched = false;
  for (const auto& d : diags.items()) {
    matched =
        matched || (d.severity == Severity::Error &&
                    (d.object.empty() ? std::string() : d.object.str()) == c.object &&
                    d.fieldPath == c.fieldPath && d.summary.find(c.summary) != std::string::npos);
  }
  EXPECT_TRUE(matched) << "expected " << c.object << " " << c.fieldPath << " ~ \"" << c.summary
                       << "\", got:\n"
                       << diags.format();
}

Json J(const char* text) { return Json::parse(text); }

Object net(const std::string& name, const Json& spec) { return makeObject("Network", name, spec); }
Object pol(const std::string& name, const Json& spec) {
  return makeObject("NetworkPolicy", name, spec);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, NetSpecValidateTest,
    ::testing::Values(
        BadSpecCase{"OctetTooBig",
                    {net("lab", {{"cidr", "10.77.0.256/24"}})},
                    "Network/lab",
                    "spec.cidr",
                    "octet 4 is 256, expected 0 to 255"},
        BadSpecCase{"PrefixTooBig",
                    {net("lab", {{"cidr", "10.77.0.0/40"}})},
                    "Network/lab",
                    "spec.cidr",
                    "expected 0 to 32"},
        BadSpecCase{"HostBitsSet",
                    {net("lab", {{"cidr", "10.77.0.1/24"}})},
                    "Network/lab",
                    "spec.cidr",
                    "has host bits set (expected a network address; did you mean 10.77.0.0/24?)"},
        BadSpecCase{"PrefixTooLongForVms",
                    {net("lab", {{"cidr", "10.77.0.0/31"}})},
                    "Network/lab",
                    "spec.cidr",
                    "has prefix /31 (expected a prefix from /8 to /30"},
        BadSpecCase{"LoopbackRange",
                    {net("lab", {{"cidr", "127.1.0.0/16"}})},
                    "Network/lab",
                    "spec.cidr",
                    "is inside 127.0.0.0/8 (loopback) (expected a private or routable unicast"},
        BadSpecCase{"MulticastRange",
                    {net("lab", {{"cidr", "239.1.0.0/16"}})},
                    "Network/lab",
                    "spec.cidr",
                    "multicast"},
        BadSpecCase{"GatewayOutside",
                    {net("lab", {{"cidr", "10.77.0.0/24"}, {"gateway", "10.78.0.1"}})},
                    "Network/lab",
                    "spec.gateway",
                    "gateway 10.78.0.1 is outside 10.77.0.0/24 (expected an address inside"},
        BadSpecCase{"GatewayIsNetworkAddress",
                    {net("lab", {{"cidr", "10.77.0.0/24"}, {"gateway", "10.77.0.0"}})},
                    "Network/lab",
                    "spec.gateway",
                    "is the network address of 10.77.0.0/24"},
        BadSpecCase{"GatewayIsBroadcast",
                    {net("lab", {{"cidr", "10.77.0.0/24"}, {"gateway", "10.77.0.255"}})},
                    "Network/lab",
                    "spec.gateway",
                    "is the broadcast address"},
        BadSpecCase{"GatewayBadOctet",
                    {net("lab", {{"cidr", "10.77.0.0/24"}, {"gateway", "10.77.0.999"}})},
                    "Network/lab",
                    "spec.gateway",
                    "octet 4 is 999"},
        BadSpecCase{"OverlappingCidrs",
                    {net("a", {{"cidr", "10.77.0.0/16"}}), net("b", {{"cidr", "10.77.3.0/24"}})},
                    "Network/b",
                    "spec.cidr",
                    "10.77.3.0/24 overlaps 10.77.0.0/16 of Network/a"},
        BadSpecCase{"SameExplicitBridge",
                    {net("a", {{"cidr", "10.1.0.0/24"}, {"bridge", "br0"}}),
                     net("b", {{"cidr", "10.2.0.0/24"}, {"bridge", "br0"}})},
                    "Network/b",
                    "spec.bridge",
                    "bridge name br0 is also the bridge of Network/a"},
        BadSpecCase{"ExplicitBridgeEqualsDerived",
                    {net("lab", {{"cidr", "10.1.0.0/24"}}),
                     net("other", {{"cidr", "10.2.0.0/24"}, {"bridge", "hb-lab"}})},
                    "Network/other",
                    "spec.bridge",
                    "bridge name hb-lab is also the bridge of Network/lab"},
        BadSpecCase{"DerivedBridgeEqualsExplicit",
                    {net("other", {{"cidr", "10.2.0.0/24"}, {"bridge", "hb-lab"}}),
                     net("lab", {{"cidr", "10.1.0.0/24"}})},
                    "Network/lab",
                    "spec.bridge",
                    "bridge name hb-lab (derived from the name) is also the bridge of"},
        BadSpecCase{"AllowWithModeNone",
                    {pol("p", J(R"({"network": "lab",
                                   "egress": {"mode": "none", "allow": [{"cidr": "10.0.0.0/8"}]}})"))},
                    "NetworkPolicy/p",
                    "spec.egress.allow",
                    "allow is given but mode is none (expected allow only with mode allowlist)"},
        BadSpecCase{"AllowWithModeAny",
                    {pol("p", J(R"({"network": "lab",
                                   "ingress": {"mode": "any", "allow": [{"cidr": "10.0.0.0/8"}]}})"))},
                    "NetworkPolicy/p",
                    "spec.ingress.allow",
                    "mode is any"},
        BadSpecCase{"PortsWithIcmp",
                    {pol("p", J(R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                                   {"cidr": "10.0.0.0/8"},
                                   {"cidr": "10.0.0.0/8", "protocol": "icmp", "ports": [53]}]}})"))},
                    "NetworkPolicy/p",
                    "spec.egress.allow[1].ports",
                    "ports [53] are given with protocol icmp (expected ports only with protocol "
                    "tcp or udp)"},
        BadSpecCase{"PortsWithoutProtocol",
                    {pol("p", J(R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                                   {"cidr": "10.0.0.0/8", "ports": [443]}]}})"))},
                    "NetworkPolicy/p",
                    "spec.egress.allow[0].ports",
                    "with protocol any"},
        BadSpecCase{"AllowCidrHostBits",
                    {pol("p", J(R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                                   {"cidr": "203.0.113.9/24"}]}})"))},
                    "NetworkPolicy/p",
                    "spec.egress.allow[0].cidr",
                    "did you mean 203.0.113.0/24?"},
        BadSpecCase{"PolicyNetworkNotDnsLabel",
                    {pol("p", {{"network", "Lab_1"}})},
                    "NetworkPolicy/p",
                    "spec.network",
                    "network name \"Lab_1\" has 'L' at position 1"}),
    [](const auto& info) { return info.param.name; });

TEST(NetSpecValidateTest, GoodObjectsHaveNoErrors) {
  std::vector<Object> objects = {
      net("lab", {{"cidr", "10.77.0.0/24"}, {"gateway", "10.77.0.254"}, {"nat", true}}),
      net("lab2", {{"cidr", "10.78.0.0/24"}, {"bridge", "br-two"}, {"mtu", 9000}}),
      pol("web", J(R"({"network": "lab", "selector": {"matchLabels": {"role": "web"}},
                       "egress": {"mode": "allowlist", "allow": [
                         {"cidr": "203.0.113.0/24", "ports": [443, 80], "protocol": "tcp"},
                         {"cidr": "198.51.100.7", "protocol": "icmp"}]},
                       "ingress": {"mode": "none"}})"))};
  std::vector<const Object*> ptrs;
  for (const auto& o : objects) {
    ptrs.push_back(&o);
  }
  Diagnostics diags;
  validateNetObjects(ptrs, diags);
  EXPECT_FALSE(diags.hasErrors()) << diags.format();
}

// The clashes between Networks are found through indexes, not by comparing every pair; the
// diagnostics are the ones every pair gives, in the same order: for each Network, each earlier
// one it clashes with, a CIDR overlap before a shared bridge. Random Networks in a small space
// (nested, equal and disjoint prefixes, explicit bridges that collide, a bad CIDR) against that
// pairwise oracle.
// A memo kept from call to call changes nothing of what validate says: over random revisions
// whose objects keep their spec tree (unchanged), get a new one (an equal spec or another), come
// and go, it says what a call without it says, and it keeps the last call's objects only.
TEST(NetSpecValidateTest, AMemoSaysWhatAFreshReadSays) {
  std::mt19937 rng(29);
  auto randomSpec = [&](int i, bool network) {
    if (!network) {
      Json spec = {{"network", "n" + std::to_string(rng() % 8)}};
      spec["egress"] = rng() % 4 == 0 ? J(R"({"mode": "none", "allow": [{"cidr": "10.0.0.0/8"}]})")
                                      : J(R"({"mode": "any"})");
      return spec;
    }
    int prefix = 22 + static_cast<int>(rng() % 6);
    uint32_t address = (10u << 24) | ((rng() % 4) << 8);
    Json spec = {{"cidr", rng() % 20 == 0 ? std::string("10.0.0.300/24")
                                          : Cidr{address, prefix}.canonical().str()}};
    if (rng() % 4 == 0) {
      spec["bridge"] = "hb-shared" + std::to_string(i % 2);
    }
    return spec;
  };
  NetSpecMemo memo;
  std::map<ObjectId, Object> pool;
  for (int round = 0; round < 300; ++round) {
    for (int i = 0; i < 8; ++i) {
      for (bool network : {true, false}) {
        Object o =
            network ? net("n" + std::to_string(i), Json()) : pol("p" + std::to_string(i), Json());
        auto it = pool.find(o.id);
        switch (rng() % 6) {
          case 0:  // gone
            if (it != pool.end()) {
              pool.erase(it);
            }
            break;
          case 1:  // a new tree with another (or the same) spec
            o.spec = randomSpec(i, network);
            pool[o.id] = o;
            break;
          case 2:  // a new tree with an equal spec
            if (it != pool.end()) {
              it->second.spec = Json(*it->second.spec);
            }
            break;
          case 3:  // the same spec on another bridge (or the same one)
            if (it != pool.end() && network) {
              Json spec = *it->second.spec;
              spec["bridge"] = "hb-shared" + std::to_string(rng() % 2);
              it->second.spec = spec;
            }
            break;
          default:  // kept, tree and all
            break;
        }
      }
    }
    std::vector<const Object*> ptrs;
    for (const auto& [id, o] : pool) {
      ptrs.push_back(&o);
    }
    if (round % 4 == 3) {  // not in id order: the memo is looked up rather than walked
      std::shuffle(ptrs.begin(), ptrs.end(), rng);
    }
    Diagnostics remembered, fresh;
    validateNetObjects(ptrs, remembered, &memo);
    validateNetObjects(ptrs, fresh);
    ASSERT_EQ(remembered.format(), fresh.format()) << "round " << round;
    ASSERT_EQ(memo.entries.size(), pool.size()) << "round " << round;
  }
}

// Near misses for the memo of the cross-object checks: a bridge that ends where the next name
// begins ("sh" + "zq" against "shz" + "q"), and a bridge named as its derived name would be, are
// other inputs, not the last call's.
TEST(NetSpecValidateTest, TheCrossCheckMemoTellsNearInputsApart) {
  auto run = [](NetSpecMemo& memo, const std::vector<Object>& objects) {
    std::vector<const Object*> ptrs;
    for (const auto& o : objects) {
      ptrs.push_back(&o);
    }
    Diagnostics remembered, fresh;
    validateNetObjects(ptrs, remembered, &memo);
    validateNetObjects(ptrs, fresh);
    EXPECT_EQ(remembered.format(), fresh.format());
    return fresh.format();
  };
  NetSpecMemo memo;
  EXPECT_EQ(run(memo, {net("a", {{"cidr", "10.0.1.0/24"}, {"bridge", "sh"}}),
                       net("zq", {{"cidr", "10.0.2.0/24"}, {"bridge", "shz"}})}),
            "");
  EXPECT_NE(run(memo, {net("a", {{"cidr", "10.0.1.0/24"}, {"bridge", "shz"}}),
                       net("q", {{"cidr", "10.0.2.0/24"}, {"bridge", "shz"}})})
                .find("bridge name shz is also the bridge of Network/a"),
            std::string::npos);
  // The same bridge, derived and then written out: the message says which.
  Object derived = net("b", {{"cidr", "10.0.3.0/24"}});
  ASSERT_TRUE(parseNetworkSpec(derived).isOk());
  const std::string bridge = parseNetworkSpec(derived)->bridge;
  std::string first = run(memo, {net("a", {{"cidr", "10.0.1.0/24"}, {"bridge", bridge}}), derived});
  EXPECT_NE(first.find("(derived from the name)"), std::string::npos) << first;
  std::string second = run(memo, {net("a", {{"cidr", "10.0.1.0/24"}, {"bridge", bridge}}),
                                  net("b", {{"cidr", "10.0.3.0/24"}, {"bridge", bridge}})});
  EXPECT_EQ(second.find("(derived from the name)"), std::string::npos) << second;
}

TEST(NetSpecValidateTest, ClashesAreEveryPairsInOrderFoundWithoutComparingEveryPair) {
  std::mt19937 rng(17);
  size_t clashes = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<Object> objects;
    int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      int prefix = 16 + static_cast<int>(rng() % 15);  // /16 .. /30
      uint32_t address = (10u << 24) | ((rng() % 2) << 16) | ((rng() % 4) << 8) | (rng() % 4) * 64;
      std::string cidr = Cidr{address, prefix}.canonical().str();
      Json spec = {{"cidr", rng() % 25 == 0 ? "10.0.0.300/24" : cidr}};
      if (rng() % 3 == 0) {
        spec["bridge"] = "hb-shared" + std::to_string(rng() % 2);
      }
      objects.push_back(net("n" + std::to_string(i), spec));
    }
    std::vector<const Object*> ptrs;
    for (const auto& o : objects) {
      ptrs.push_back(&o);
    }
    Diagnostics got;
    validateNetObjects(ptrs, got);

    // The oracle: each object's own checks (validated alone), then every earlier pair.
    Diagnostics want;
    // A bad CIDR overlaps nothing, but its Network still has a bridge.
    struct Parsed {
      const Object* object;
      std::optional<Cidr> cidr;
      std::string bridge;
      bool explicitBridge;
    };
    std::vector<Parsed> parsed;
    for (const Object& o : objects) {
      validateNetObjects({&o}, want);
      Object valid = o;
      valid.spec.mut()["cidr"] = "10.0.0.0/24";
      auto spec = parseNetworkSpec(valid);
      ASSERT_TRUE(spec.isOk()) << spec.status().message();
      auto cidr = Cidr::parse(o.spec["cidr"].get<std::string>());
      parsed.push_back({&o, parseNetworkSpec(o).isOk() ? std::optional<Cidr>(*cidr) : std::nullopt,
                        spec->bridge, o.spec->contains("bridge")});
    }
    for (size_t j = 0; j < parsed.size(); ++j) {
      for (size_t i = 0; i < j; ++i) {
        const auto& a = parsed[i];
        const auto& b = parsed[j];
        if (a.cidr && b.cidr && a.cidr->overlaps(*b.cidr)) {
          want.error(b.object->id, "spec.cidr",
                     b.cidr->str() + " overlaps " + a.cidr->str() + " of " + a.object->id.str() +
                         " (expected the CIDRs of different Networks not to overlap)");
        }
        if (a.bridge == b.bridge) {
          want.error(b.object->id, "spec.bridge",
                     "bridge name " + b.bridge +
                         (b.explicitBridge ? "" : " (derived from the name)") +
                         " is also the bridge of " + a.object->id.str() +
                         " (expected each Network to have its own bridge)");
        }
      }
    }
    // Same set, and the cross-object ones in the same order.
    auto lines = [](const Diagnostics& d) {
      std::vector<std::string> out;
      for (const auto& item : d.items()) {
        out.push_back(item.object.str() + " " + item.fieldPath + " " + item.summary);
      }
      return out;
    };
    std::vector<std::string> g = lines(got), w = lines(want);
    auto cross = [](const std::vector<std::string>& all) {
      std::vector<std::string> out;
      for (const auto& l : all) {
        if (l.find(" overlaps ") != std::string::npos ||
            l.find(" is also the bridge of ") != std::string::npos) {
          out.push_back(l);
        }
      }
      return out;
    };
    EXPECT_EQ(cross(g), cross(w)) << "round " << round;
    std::sort(g.begin(), g.end());
    std::sort(w.begin(), w.end());
    EXPECT_EQ(g, w) << "round " << round;
    clashes += cross(w).size();
  }
  EXPECT_GT(clashes, 100u) << "the random Networks hardly clash: the comparison means little";
}

TEST(NetSpecValidateTest, EmptyAllowlistIsAWarning) {
  Object p = pol("p", J(R"({"network": "lab", "egress": {"mode": "allowlist"}})"));
  Diagnostics diags;
  validateNetObjects({&p}, diags);
  EXPECT_FALSE(diags.hasErrors());
  ASSERT_EQ(diags.size(), 1u);
  EXPECT_EQ(diags.items()[0].fieldPath, "spec.egress.allow");
}

TEST(NetSpecParseTest, NetworkDefaultsAreNormalised) {
  auto spec = parseNetworkSpec(net("lab", {{"cidr", "10.77.0.0/24"}}));
  ASSERT_TRUE(spec.isOk()) << spec.status().message();
  EXPECT_EQ(spec->bridge, "hb-lab");
  EXPECT_EQ(formatIpv4(spec->gateway), "10.77.0.1");
  EXPECT_EQ(spec->gatewayCidr(), "10.77.0.1/24");
  EXPECT_EQ(spec->mtu, 1500);
  EXPECT_FALSE(spec->nat);
  EXPECT_EQ(spec->toJson(), Json::parse(R"({"cidr":"10.77.0.0/24","gateway":"10.77.0.1",
                                             "bridge":"hb-lab","nat":false,"mtu":1500})"));

  // The same network written out in full normalises to the same value.
  auto explicitSpec = parseNetworkSpec(net("lab", {{"cidr", "10.77.0.0/24"},
                                                   {"gateway", "10.77.0.1"},
                                                   {"bridge", "hb-lab"},
                                                   {"nat", false},
                                                   {"mtu", 1500}}));
  ASSERT_TRUE(explicitSpec.isOk());
  EXPECT_EQ(*explicitSpec, *spec);
}

TEST(NetSpecParseTest, LongNameDerivesAShortBridge) {
  std::string name = "a-very-long-network-name";
  auto spec = parseNetworkSpec(net(name, {{"cidr", "10.77.0.0/24"}}));
  ASSERT_TRUE(spec.isOk());
  EXPECT_EQ(spec->bridge, deriveInterfaceName("hb-", name));
  EXPECT_LE(spec->bridge.size(), 15u);
}

TEST(NetSpecParseTest, InvalidSpecIsAnErrorNotACrash) {
  auto spec = parseNetworkSpec(net("lab", {{"cidr", "10.77.0.5/24"}}));
  ASSERT_FALSE(spec.isOk());
  EXPECT_NE(spec.status().message().find("Network/lab: spec.cidr:"), std::string::npos)
      << spec.status().message();
  EXPECT_FALSE(parseNetworkSpec("lab", Json("not a mapping")).isOk());
  EXPECT_FALSE(parsePolicySpec("p", Json::array()).isOk());
}

TEST(NetSpecParseTest, PolicyDefaultsAreNormalised) {
  auto spec = parsePolicySpec(pol("p", J(R"({"network": "lab", "egress": {"mode": "allowlist",
    "allow": [{"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443, 80, 443]},
              {"cidr": "198.51.100.7"}]}})")));
  ASSERT_TRUE(spec.isOk()) << spec.status().message();
  EXPECT_FALSE(spec->matchLabels.has_value());
  EXPECT_EQ(spec->ingress.mode, TrafficMode::Any);
  ASSERT_EQ(spec->egress.allow.size(), 2u);
  EXPECT_EQ(spec->egress.allow[0].ports, (std::vector<int>{80, 443}));
  EXPECT_EQ(spec->egress.allow[1].cidr.str(), "198.51.100.7/32");
  EXPECT_EQ(spec->egress.allow[1].protocol, Protocol::Any);
  EXPECT_EQ(spec->toJson(), Json::parse(R"({
    "network": "lab",
    "egress": {"mode": "allowlist", "allow": [
      {"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [80, 443]},
      {"cidr": "198.51.100.7/32", "protocol": "any"}]},
    "ingress": {"mode": "any"}})"));
}

}  // namespace
}  // namespace hyper::netmodel
