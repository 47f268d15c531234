#include "netmodel/link_state.h"

#include <gtest/gtest.h>

#include <random>

namespace hyper::netmodel {
namespace {

// Captured from `ip -d -j addr show` (iproute2 6.1) in a namespace holding hyper's bridge with its
// gateway address and a veth pair, one end enslaved to the bridge; bulky fields trimmed.
constexpr const char* kCaptured = R"json([
{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue","operstate":"UNKNOWN","link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"::1","prefixlen":128,"scope":"host","valid_life_time":4294967295,"preferred_life_time":4294967295}]},
{"ifindex":2,"ifname":"hb-lab","flags":["BROADCAST","MULTICAST","UP"],"mtu":1400,"qdisc":"noqueue","operstate":"UNKNOWN","link_type":"ether","address":"4e:27:65:af:68:e9","broadcast":"ff:ff:ff:ff:ff:ff","linkinfo":{"info_kind":"bridge","info_data":{"forward_delay":1500,"hello_time":200,"max_age":2000}},"ifalias":"hyper:Network/lab","addr_info":[{"family":"inet","local":"10.77.0.1","prefixlen":24,"scope":"global","label":"hb-lab","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::b44a:88ff:feb1:4176","prefixlen":64,"scope":"link","tentative":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]},
{"ifindex":3,"link":"vh","ifname":"vc","flags":["BROADCAST","MULTICAST","M-DOWN"],"mtu":1500,"qdisc":"noop","operstate":"DOWN","link_type":"ether","address":"4a:1a:ab:25:b1:9d","broadcast":"ff:ff:ff:ff:ff:ff","linkinfo":{"info_kind":"veth"},"addr_info":[]},
{"ifindex":4,"link":"vc","ifname":"vh","flags":["BROADCAST","MULTICAST","M-DOWN"],"mtu":1500,"qdisc":"noop","master":"hb-lab","operstate":"DOWN","link_type":"ether","address":"4e:27:65:af:68:e9","broadcast":"ff:ff:ff:ff:ff:ff","linkinfo":{"info_kind":"veth","info_slave_kind":"bridge","info_slave_data":{"state":"disabled","priority":32,"cost":2}},"addr_info":[]},
{"ifindex":5,"ifname":"hv-web-1","flags":["BROADCAST","MULTICAST","UP"],"mtu":1500,"master":"hb-lab","linkinfo":{"info_kind":"tun","info_slave_kind":"bridge","info_slave_data":{"state":"forwarding","isolated":true}},"ifalias":"hyper:VM/web-1","addr_info":[]}
])json";

TEST(LinkStateTest, ParsesCapturedDump) {
  auto table = parseLinkTable(kCaptured);
  ASSERT_TRUE(table.isOk()) << table.status().message();
  ASSERT_EQ(table->links.size(), 5u);

  const LinkState* lo = table->find("lo");
  ASSERT_NE(lo, nullptr);
  EXPECT_EQ(lo->kind, "");
  EXPECT_TRUE(lo->up);
  EXPECT_EQ(lo->ipv4Strings(), std::vector<std::string>{"127.0.0.1/8"});  // ::1 is not IPv4

  const LinkState* bridge = table->find("hb-lab");
  ASSERT_NE(bridge, nullptr);
  EXPECT_EQ(bridge->kind, "bridge");
  EXPECT_EQ(bridge->mtu, 1400);
  EXPECT_TRUE(bridge->up);
  EXPECT_EQ(bridge->alias, ownerAlias("lab"));
  EXPECT_EQ(bridge->ipv4Strings(), std::vector<std::string>{"10.77.0.1/24"});

  const LinkState* port = table->find("vh");
  ASSERT_NE(port, nullptr);
  EXPECT_EQ(port->kind, "veth");
  EXPECT_FALSE(port->up);
  EXPECT_EQ(port->alias, "");
  EXPECT_TRUE(port->ipv4.empty());
  EXPECT_EQ(port->master, "hb-lab");
  EXPECT_FALSE(port->isolated);

  const LinkState* tap = table->find("hv-web-1");
  ASSERT_NE(tap, nullptr);
  EXPECT_EQ(tap->master, "hb-lab");
  EXPECT_TRUE(tap->isolated);
  EXPECT_EQ(bridge->master, "");
  EXPECT_FALSE(bridge->isolated);

  EXPECT_EQ(table->find("hb-other"), nullptr);
}

struct OddInputCase {
  std::string name;
  std::string json;
  bool ok;
  size_t links;
};

class LinkStateOddInputTest : public ::testing::TestWithParam<OddInputCase> {};

TEST_P(LinkStateOddInputTest, NeverThrows) {
  const auto& c = GetParam();
  auto table = parseLinkTable(c.json);
  ASSERT_EQ(table.isOk(), c.ok) << table.status().message();
  if (c.ok) {
    EXPECT_EQ(table->links.size(), c.links);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LinkStateOddInputTest,
    ::testing::Values(OddInputCase{"NotJson", "RTNETLINK answers: oops", false, 0},
                      OddInputCase{"NotAnArray", R"({"ifname": "lo"})", false, 0},
                      OddInputCase{"Empty", "[]", true, 0},
                      OddInputCase{"LinkWithoutName", R"([{"mtu": 1500}, {"ifname": "a"}])", true,
                                   1},
                      OddInputCase{"WrongTypes",
                                   R"([{"ifname": "a", "mtu": "big", "flags": "UP", "ifalias": 3,
                          "linkinfo": [], "addr_info": [{"family": 4}, {"family": "inet",
                          "local": "300.1.1.1", "prefixlen": 8}, "x"]}])",
                                   true, 1}),
    [](const auto& info) { return info.param.name; });

TEST(LinkStateTest, SkipsBadAddressesKeepsGoodOnes) {
  auto table = parseLinkTable(R"([{"ifname": "eth0", "flags": ["UP"], "addr_info": [
      {"family": "inet", "local": "300.1.1.1", "prefixlen": 8},
      {"family": "inet", "local": "192.0.2.10", "prefixlen": 40},
      {"family": "inet", "local": "192.0.2.10", "prefixlen": 24}]}])");
  ASSERT_TRUE(table.isOk());
  EXPECT_EQ(table->links[0].ipv4Strings(), std::vector<std::string>{"192.0.2.10/24"});
}

// What LinkIndex::firstOverlap must answer, by the scan it replaces.
std::optional<LinkAddress> scanFirstOverlap(const LinkTable& table, const Cidr& cidr,
                                            std::string_view exceptAlias) {
  for (const auto& link : table.links) {
    if (link.alias == exceptAlias) {
      continue;
    }
    for (const auto& addr : link.ipv4) {
      if (addr.overlaps(cidr)) {
        return LinkAddress{&link, addr};
      }
    }
  }
  return std::nullopt;
}

// The index answers what a scan of the links answers, on random tables of nested, disjoint and
// repeated prefixes and random queries: the first hit in listing order among several, the alias
// that is skipped, names that repeat (the first wins) and names that are absent.
TEST(LinkIndexTest, FindAndFirstOverlapAnswerWhatAScanAnswers) {
  std::mt19937 rng(17);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const char* aliases[] = {"", "hyper:Network/a", "hyper:Network/b", "other"};
  auto address = [&] {  // few distinct bits, so prefixes often nest or coincide
    return 0x0a000000u | (static_cast<uint32_t>(pick(4)) << 16) |
           (static_cast<uint32_t>(pick(4)) << 8) | static_cast<uint32_t>(pick(4));
  };
  int hits = 0;
  int misses = 0;
  for (int round = 0; round < 200; ++round) {
    LinkTable table;
    for (int i = 1 + pick(40); i > 0; --i) {
      LinkState link;
      link.name = "l" + std::to_string(pick(30));
      link.alias = aliases[pick(4)];
      for (int a = pick(4); a > 0; --a) {
        const int prefixes[] = {8, 16, 20, 24, 30, 32, 0};
        link.ipv4.push_back(Cidr{address(), prefixes[pick(7)]});
      }
      table.links.push_back(link);
    }
    const LinkIndex index(table);
    for (int q = 0; q < 50; ++q) {
      std::string name = "l" + std::to_string(pick(32));
      EXPECT_EQ(index.find(name), table.find(name)) << name;
      const int prefixes[] = {8, 12, 16, 22, 24, 28, 32, 0};
      Cidr query{address(), prefixes[pick(8)]};
      const char* except = aliases[pick(4)];
      auto got = index.firstOverlap(query, except);
      auto want = scanFirstOverlap(table, query, except);
      ASSERT_EQ(got.has_value(), want.has_value()) << query.str() << " except " << except;
      if (!got) {
        ++misses;
        continue;
      }
      ++hits;
      EXPECT_EQ(got->link, want->link) << query.str();
      EXPECT_EQ(got->address.str(), want->address.str()) << query.str();
    }
  }
  EXPECT_GT(hits, 1000);  // the queries find things, and miss some
  EXPECT_GT(misses, 100);
}

}  // namespace
}  // namespace hyper::netmodel
