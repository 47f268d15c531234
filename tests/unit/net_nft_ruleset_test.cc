#include "providers/net/nft_ruleset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/sha256.h"

namespace hyper::providers::net {

using netmodel::NetworkSpec;
using netmodel::parseNetworkSpec;
using netmodel::parsePolicySpec;
using netmodel::PolicySpec;
namespace {

NetworkSpec network(const std::string& name, const char* spec) {
  auto r = parseNetworkSpec(name, Json::parse(spec));
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return r.isOk() ? *r : NetworkSpec{};
}

PolicySpec policy(const std::string& name, const char* spec) {
  auto r = parsePolicySpec(name, Json::parse(spec));
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return r.isOk() ? *r : PolicySpec{};
}

// Two networks (one with NAT), a policy with a selector and every kind of allow rule, a policy
// for a whole network, and one whose network hyper does not manage.
NftModel richModel() {
  NftModel m;
  m.networks["lab"] = network("lab", R"({"cidr": "10.77.0.0/24", "nat": true})");
  m.networks["dmz"] = network("dmz", R"({"cidr": "10.78.0.0/24", "bridge": "br-dmz"})");
  m.policies["web"] = policy("web", R"({"network": "lab",
      "selector": {"matchLabels": {"role": "web"}},
      "egress": {"mode": "allowlist", "allow": [
        {"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443, 80]},
        {"cidr": "198.51.100.7", "protocol": "icmp"},
        {"cidr": "192.0.2.0/24", "protocol": "udp"},
        {"cidr": "0.0.0.0/0"}]},
      "ingress": {"mode": "none"}})");
  m.policies["isolate"] = policy("isolate", R"({"network": "dmz", "egress": {"mode": "none"}})");
  m.policies["orphan"] = policy("orphan", R"({"network": "gone", "egress": {"mode": "none"}})");
  m.ports["lab"] = {{"hv-web-1", "10.77.0.10", "52:54:00:00:00:0a", "web-1"},
                    {"hv-web-2", "10.77.0.11", "52:54:00:00:00:0b", "web-2"}};
  return m;
}

// Loaded into nft 1.0.6 as is (the integration tests load every rendering they make).
constexpr const char* kGolden = R"nft(table inet hyper {}
delete table inet hyper
table bridge hyper {}
delete table bridge hyper
table inet hyper {
	set pol-web-sel {
		type ipv4_addr
		flags interval
	}

	chain pol-isolate-egress {
	}

	chain pol-isolate-ingress {
		accept
	}

	chain pol-orphan-egress {
	}

	chain pol-orphan-ingress {
		accept
	}

	chain pol-web-egress {
		ip daddr 203.0.113.0/24 tcp dport { 80, 443 } accept
		ip daddr 198.51.100.7/32 meta l4proto icmp accept
		ip daddr 192.0.2.0/24 meta l4proto udp accept
		ip daddr 0.0.0.0/0 accept
	}

	chain pol-web-ingress {
	}

	chain net-dmz-egress {
		jump pol-isolate-egress comment "NetworkPolicy/isolate"
		drop comment "NetworkPolicy/isolate"
	}

	chain net-dmz-ingress {
		jump pol-isolate-ingress comment "NetworkPolicy/isolate"
	}

	chain net-lab-egress {
		ip saddr @pol-web-sel jump pol-web-egress comment "NetworkPolicy/web"
		ip saddr @pol-web-sel drop comment "NetworkPolicy/web"
	}

	chain net-lab-ingress {
		ip daddr @pol-web-sel jump pol-web-ingress comment "NetworkPolicy/web"
		ip daddr @pol-web-sel drop comment "NetworkPolicy/web"
	}

	map egress-nets {
		type ifname : verdict
		elements = { "br-dmz" : jump net-dmz-egress, "hb-lab" : jump net-lab-egress }
	}

	map ingress-nets {
		type ifname : verdict
		elements = { "br-dmz" : jump net-dmz-ingress, "hb-lab" : jump net-lab-ingress }
	}

	chain egress-forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		iifname vmap @egress-nets
	}

	chain egress-input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		iifname vmap @egress-nets
	}

	chain ingress-forward {
		type filter hook forward priority filter + 10; policy accept;
		ct state established,related accept
		oifname vmap @ingress-nets
	}

	chain ingress-output {
		type filter hook output priority filter; policy accept;
		ct state established,related accept
		oifname vmap @ingress-nets
	}

	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade comment "Network/lab"
	}
}
table bridge hyper {
	set guard-taps {
		type ifname
		elements = { "hv-web-1", "hv-web-2" }
	}

	set guard-macs {
		type ifname . ether_addr
		elements = { "hv-web-1" . 52:54:00:00:00:0a, "hv-web-2" . 52:54:00:00:00:0b }
	}

	set guard-addrs {
		type ifname . ipv4_addr
		elements = { "hv-web-1" . 10.77.0.10, "hv-web-2" . 10.77.0.11 }
	}

	chain guard-prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname @guard-taps iifname . ether saddr != @guard-macs drop
		iifname @guard-taps iifname . arp saddr ether != @guard-macs drop
		iifname @guard-taps iifname . arp saddr ip != @guard-addrs drop
		iifname @guard-taps iifname . ip saddr != @guard-addrs drop
		iifname @guard-taps ether type != ip ether type != arp drop
	}
}
)nft";

TEST(NftRulesetTest, RendersGoldenTransaction) {
  EXPECT_EQ(renderNftReplace(richModel()), kGolden);
}

TEST(NftRulesetTest, RenderingIsStable) {
  NftModel a = richModel();
  NftModel b;
  // Insertion order must not matter.
  b.policies["orphan"] = a.policies["orphan"];
  b.policies["web"] = a.policies["web"];
  b.networks["lab"] = a.networks["lab"];
  b.policies["isolate"] = a.policies["isolate"];
  b.networks["dmz"] = a.networks["dmz"];
  EXPECT_EQ(renderNftTable(a), renderNftTable(b));
}

TEST(NftRulesetTest, EmptyModelDeletesTheTables) {
  EXPECT_EQ(renderNftReplace(NftModel{}),
            "table inet hyper {}\ndelete table inet hyper\n"
            "table bridge hyper {}\ndelete table bridge hyper\n");
}

// The text of one set of the bridge table.
std::string setText(const std::string& table, const std::string& set) {
  size_t at = table.find("\tset " + set + " {");
  return at == std::string::npos ? "" : table.substr(at, table.find("\t}", at) - at);
}

TEST(NftRulesetTest, GuardBindsEveryNetworksTapsToTheirMacsAndAddressesInSharedSets) {
  NftModel m = richModel();
  m.ports["dmz"] = {{"hv-db", "10.78.0.5", "52:54:00:00:00:0c", "db"}};
  // A tap named on two networks (placement never does) is bound once, by its first network.
  m.ports["lab"].push_back({"hv-db", "10.77.0.99", "52:54:00:00:00:99", "db"});
  std::string text = renderNftBridgeTable(m);
  EXPECT_EQ(setText(text, "guard-taps"),
            "\tset guard-taps {\n\t\ttype ifname\n"
            "\t\telements = { \"hv-db\", \"hv-web-1\", \"hv-web-2\" }\n");
  EXPECT_EQ(setText(text, "guard-macs"),
            "\tset guard-macs {\n\t\ttype ifname . ether_addr\n"
            "\t\telements = { \"hv-db\" . 52:54:00:00:00:0c, \"hv-web-1\" . 52:54:00:00:00:0a, "
            "\"hv-web-2\" . 52:54:00:00:00:0b }\n");
  EXPECT_EQ(setText(text, "guard-addrs"),
            "\tset guard-addrs {\n\t\ttype ifname . ipv4_addr\n"
            "\t\telements = { \"hv-db\" . 10.78.0.5, \"hv-web-1\" . 10.77.0.10, "
            "\"hv-web-2\" . 10.77.0.11 }\n");
  // Every check, once for all networks: MAC, ARP sender MAC and address, IPv4 source, other
  // protocols; no per-network set or rule.
  for (const char* rule : {
           "iifname @guard-taps iifname . ether saddr != @guard-macs drop",
           "iifname @guard-taps iifname . arp saddr ether != @guard-macs drop",
           "iifname @guard-taps iifname . arp saddr ip != @guard-addrs drop",
           "iifname @guard-taps iifname . ip saddr != @guard-addrs drop",
           "iifname @guard-taps ether type != ip ether type != arp drop",
       }) {
    EXPECT_NE(text.find(std::string("\t\t") + rule + "\n"), std::string::npos) << rule << "\n"
                                                                               << text;
  }
  EXPECT_EQ(text.find("net-"), std::string::npos) << text;
  EXPECT_EQ(text.find("comment"), std::string::npos) << text;
}

TEST(NftRulesetTest, NetworksWithoutVmsHaveEmptyGuardSets) {
  NftModel m;
  m.networks["lab"] = network("lab", R"({"cidr": "10.77.0.0/24"})");
  std::string text = renderNftBridgeTable(m);
  EXPECT_EQ(setText(text, "guard-taps"), "\tset guard-taps {\n\t\ttype ifname\n");
  EXPECT_EQ(text.find("elements"), std::string::npos) << text;
}

TEST(NftRulesetTest, AllowRulesKeepTheirProtocolAndPorts) {
  NftModel m;
  m.networks["lab"] = network("lab", R"({"cidr": "10.77.0.0/24"})");
  m.policies["dns"] = policy("dns", R"({"network": "lab", "egress": {"mode": "allowlist",
      "allow": [{"cidr": "10.77.0.1", "protocol": "udp", "ports": [53]},
                {"cidr": "10.77.0.2", "protocol": "tcp", "ports": [53, 853]},
                {"cidr": "10.77.0.3", "protocol": "udp"}]}})");
  std::string text = renderNftTable(m);
  EXPECT_NE(text.find("\t\tip daddr 10.77.0.1/32 udp dport 53 accept\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\t\tip daddr 10.77.0.2/32 tcp dport { 53, 853 } accept\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\t\tip daddr 10.77.0.3/32 meta l4proto udp accept\n"), std::string::npos)
      << text;
  // The near miss: a ported UDP rule never renders as "every UDP port".
  EXPECT_EQ(text.find("ip daddr 10.77.0.1/32 meta l4proto udp"), std::string::npos) << text;
  EXPECT_EQ(text.find("ip daddr 10.77.0.1/32 accept"), std::string::npos) << text;
}

struct BindingCase {
  std::string name;
  const char* json;
  bool kept;
};

class TapBindingTest : public ::testing::TestWithParam<BindingCase> {};

// Bindings come back from the inventory and go into nft input: anything off is left out.
TEST_P(TapBindingTest, KeepsOnlyWellFormedBindings) {
  auto list = TapBinding::listFromJson(Json::array({Json::parse(GetParam().json)}));
  EXPECT_EQ(list.size(), GetParam().kept ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TapBindingTest,
    ::testing::Values(
        BindingCase{"Good", R"({"tap": "hv-a", "ip": "10.77.0.10", "mac": "52:54:00:00:00:0a"})",
                    true},
        BindingCase{"UpperCaseMac",
                    R"({"tap": "hv-a", "ip": "10.77.0.10", "mac": "52:54:00:00:00:0A"})", false},
        BindingCase{"ShortMac", R"({"tap": "hv-a", "ip": "10.77.0.10", "mac": "52:54:00:00:00:0"})",
                    false},
        BindingCase{"MacWithDashes",
                    R"({"tap": "hv-a", "ip": "10.77.0.10", "mac": "52-54-00-00-00-0a"})", false},
        BindingCase{"QuoteInTap",
                    R"({"tap": "hv-a\"", "ip": "10.77.0.10", "mac": "52:54:00:00:00:0a"})", false},
        BindingCase{
            "TapTooLong",
            R"({"tap": "hv-0123456789abc", "ip": "10.77.0.10", "mac": "52:54:00:00:00:0a"})",
            false},
        BindingCase{"BadAddress",
                    R"({"tap": "hv-a", "ip": "10.77.0.256", "mac": "52:54:00:00:00:0a"})", false},
        BindingCase{"MissingMac", R"({"tap": "hv-a", "ip": "10.77.0.10"})", false}),
    [](const auto& info) { return info.param.name; });

TEST(NftRulesetTest, NetworkWithoutPoliciesHasOnlyTheSkeleton) {
  NftModel m;
  m.networks["lab"] = network("lab", R"({"cidr": "10.77.0.0/24"})");
  std::string text = renderNftTable(m);
  EXPECT_NE(text.find("elements = { \"hb-lab\" : jump net-lab-egress }"), std::string::npos)
      << text;
  EXPECT_NE(text.find("elements = { \"hb-lab\" : jump net-lab-ingress }"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\tchain net-lab-egress {\n\t}\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\tchain net-lab-ingress {\n\t}\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("masquerade"), std::string::npos) << text;
  EXPECT_EQ(text.find("jump pol-"), std::string::npos) << text;
  EXPECT_EQ(text.find("drop"), std::string::npos) << text;
  text += renderNftBridgeTable(m);
  for (const auto& chain : nftBaseChains()) {
    EXPECT_NE(text.find("chain " + chain + " {"), std::string::npos) << chain;
  }
}

TEST(NftRulesetTest, AnyPolicyAcceptsAndNeverDrops) {
  NftModel m;
  m.networks["lab"] = network("lab", R"({"cidr": "10.77.0.0/24"})");
  m.policies["open"] = policy("open", R"({"network": "lab"})");
  std::string text = renderNftTable(m);
  EXPECT_NE(text.find("chain pol-open-egress {\n\t\taccept\n\t}"), std::string::npos) << text;
  EXPECT_EQ(text.find("drop"), std::string::npos) << text;
  EXPECT_FALSE(m.anyNat());
}

std::string readTestdata(const std::string& name) {
  std::ifstream in(std::string(HYPER_SOURCE_DIR) + "/tests/unit/testdata/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << name;
  return ss.str();
}

// Captured with `nft -j list table inet hyper` after loading renderNftReplace() of
// {Network lab (nat), NetworkPolicy web on lab}, and of the same plus {Network dmz, NetworkPolicy
// isolate on dmz}.
NftTableDump capturedDump(const std::string& file) {
  auto dump = parseNftTableDump(readTestdata(file));
  EXPECT_TRUE(dump.isOk()) << dump.status().message();
  return dump.isOk() ? *dump : NftTableDump{};
}

TEST(NftDumpTest, ParsesCapturedDumpWithoutHandles) {
  NftTableDump dump = capturedDump("net_nft_dump_lab_web.json");
  EXPECT_TRUE(dump.present);
  EXPECT_FALSE(dump.flushed());
  // The two network maps; web has no selector set.
  EXPECT_EQ(dump.sets.size(), 2u);
  EXPECT_TRUE(dump.networkMaps);
  // web's and lab's two chains, and every base chain but guard-prerouting, which is in the
  // bridge table (not in this capture).
  EXPECT_EQ(dump.chains.size(), 4u + nftBaseChains().size() - 1);
  EXPECT_TRUE(dump.hasChain("pol-web-egress"));
  EXPECT_FALSE(dump.hasChain("pol-other-egress"));
  for (const auto* group : {&dump.sets, &dump.chains, &dump.rules}) {
    for (const auto& item : *group) {
      Json parsed = Json::parse(item.json);
      EXPECT_FALSE(parsed.contains("handle")) << item.json;
      EXPECT_EQ(item.json, canonicalJson(parsed));
    }
  }
}

// The dump keeps canonical text rather than JSON trees; the digests are those of the JSON
// (hyper before kept trees: an inventory's fingerprints must read the same after an upgrade).
TEST(NftFingerprintTest, DigestsAreThoseOfTheCanonicalJsonOfEachPart) {
  Json capture = Json::parse(readTestdata("net_nft_dump_lab_web.json"));
  Json chain = Json::array();
  Json labChain = Json::array();
  for (const auto& item : capture["nftables"]) {
    for (const auto& [key, value] : item.items()) {
      Json v = value;
      v.erase("handle");
      if ((key == "chain" && v["name"] == "pol-web-egress") ||
          (key == "rule" && v["chain"] == "pol-web-egress")) {
        chain.push_back(v);
      }
      // A Network's chain counts without the policies' rules in it (they are theirs).
      if (key == "chain" && v["name"] == "net-lab-egress") {
        labChain.push_back(v);
      }
    }
  }
  ASSERT_GE(chain.size(), 2u);
  ASSERT_EQ(labChain.size(), 1u);
  FingerprintParts parts =
      fingerprintParts(capturedDump("net_nft_dump_lab_web.json"), {"NetworkPolicy", "web"});
  EXPECT_EQ(parts["chain:pol-web-egress"], sha256Hex(canonicalJson(chain)).substr(0, 16));
  FingerprintParts lab =
      fingerprintParts(capturedDump("net_nft_dump_lab_web.json"), {"Network", "lab"});
  EXPECT_EQ(lab["chain:net-lab-egress"], sha256Hex(canonicalJson(labChain)).substr(0, 16));
}

TEST(NftDumpTest, IgnoresOtherTables) {
  auto dump = parseNftTableDump(R"({"nftables": [
      {"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "inet", "name": "other", "handle": 1}},
      {"chain": {"family": "inet", "table": "other", "name": "c", "handle": 1}},
      {"rule": {"family": "ip", "table": "hyper", "chain": "c", "handle": 2, "expr": []}}]})");
  ASSERT_TRUE(dump.isOk());
  EXPECT_FALSE(dump->present);
  EXPECT_TRUE(dump->chains.empty());
  EXPECT_TRUE(dump->rules.empty());
  EXPECT_FALSE(parseNftTableDump("Error: No such file or directory").isOk());
  EXPECT_FALSE(parseNftTableDump(R"({"nftables": 3})").isOk());
}

TEST(NftFingerprintTest, AnObjectsPartsDoNotDependOnOtherObjects) {
  NftTableDump small = capturedDump("net_nft_dump_lab_web.json");
  NftTableDump large = capturedDump("net_nft_dump_lab_web_dmz.json");
  for (const ObjectId& id : {ObjectId{"Network", "lab"}, ObjectId{"NetworkPolicy", "web"}}) {
    FingerprintParts a = fingerprintParts(small, id);
    EXPECT_EQ(a, fingerprintParts(large, id)) << id.str();
    for (const auto& [part, digest] : a) {
      // web has no selector; the captures hold only the inet table (the bridge table's parts:
      // ANetworkOwnsTheGuardElementsOfItsTaps).
      bool bridgePart = part == "chain:guard-prerouting" || part == "guard";
      if (part != "set:pol-web-sel" && !bridgePart) {
        EXPECT_NE(digest, "absent") << id.str() << " " << part;
      }
    }
  }
  EXPECT_NE(fingerprintParts(large, {"NetworkPolicy", "isolate"})["chain:pol-isolate-egress"],
            "absent");
  EXPECT_EQ(fingerprintParts(small, {"NetworkPolicy", "isolate"})["chain:pol-isolate-egress"],
            "absent");
}

TEST(NftFingerprintTest, SeesFlushAndDelete) {
  NftTableDump dump = capturedDump("net_nft_dump_lab_web.json");
  NftTableDump flushed = dump;
  flushed.rules.clear();
  flushed.reindex();
  EXPECT_TRUE(flushed.flushed());
  for (const ObjectId& id : {ObjectId{"Network", "lab"}, ObjectId{"NetworkPolicy", "web"}}) {
    EXPECT_NE(fingerprintParts(dump, id), fingerprintParts(flushed, id)) << id.str();
    FingerprintParts missing = fingerprintParts(NftTableDump{}, id);
    for (const auto& [part, digest] : missing) {
      EXPECT_EQ(digest, part == "layout" ? std::to_string(kNftLayout) : "absent") << part;
    }
  }
}

TEST(NftFingerprintTest, SeesOneChangedRule) {
  NftTableDump dump = capturedDump("net_nft_dump_lab_web.json");
  FingerprintParts before = fingerprintParts(dump, {"NetworkPolicy", "web"});
  bool changed = false;
  for (auto& rule : dump.rules) {
    if (rule.chain == "pol-web-egress") {
      Json parsed = Json::parse(rule.json);
      parsed["expr"].back() = Json{{"drop", nullptr}};
      rule = nftItem(parsed);
      changed = true;
    }
  }
  ASSERT_TRUE(changed);
  dump.reindex();
  FingerprintParts after = fingerprintParts(dump, {"NetworkPolicy", "web"});
  EXPECT_NE(before["chain:pol-web-egress"], after["chain:pol-web-egress"]);
  EXPECT_EQ(before["chain:pol-web-ingress"], after["chain:pol-web-ingress"]);
  EXPECT_EQ(fingerprintParts(dump, {"Network", "lab"}),
            fingerprintParts(capturedDump("net_nft_dump_lab_web.json"), {"Network", "lab"}));
}

// The net provider keeps a dump without its items (dropItems): every fingerprint, hasChain and
// flushed answer as before, from the digests reindex() worked out.
TEST(NftFingerprintTest, ADumpWithoutItsItemsAnswersTheSame) {
  for (const char* file : {"net_nft_dump_lab_web.json", "net_nft_dump_lab_web_dmz.json"}) {
    NftTableDump full = capturedDump(file);
    NftTableDump kept = capturedDump(file);
    kept.dropItems();
    EXPECT_TRUE(kept.sets.empty() && kept.chains.empty() && kept.rules.empty());
    ASSERT_FALSE(full.rules.empty());
    const std::vector<ObjectId> ids = {{"Network", "lab"},       {"Network", "dmz"},
                                       {"NetworkPolicy", "web"}, {"NetworkPolicy", "isolate"},
                                       {"Network", "gone"},      {"NetworkPolicy", "gone"}};
    for (const ObjectId& id : ids) {
      EXPECT_EQ(fingerprintParts(kept, id, {"hv-a"}), fingerprintParts(full, id, {"hv-a"}))
          << file << " " << id.str();
    }
    for (const auto& rule : full.rules) {
      EXPECT_TRUE(kept.hasChain(rule.chain)) << rule.chain;
    }
    EXPECT_FALSE(kept.hasChain("net-gone-egress"));
    EXPECT_EQ(kept.flushed(), full.flushed());
  }
}

// A `bridge hyper` table as nft -j lists it: tap hv-a bound to `mac`, hv-b (another network's)
// to a fixed one.
NftTableDump bridgeDump(const std::string& mac) {
  auto dump = parseNftTableDump(R"({"nftables": [
      {"table": {"family": "bridge", "name": "hyper", "handle": 1}},
      {"set": {"family": "bridge", "name": "guard-taps", "table": "hyper", "type": "ifname",
               "handle": 2, "elem": ["hv-b", "hv-a"]}},
      {"set": {"family": "bridge", "name": "guard-macs", "table": "hyper",
               "type": ["ifname", "ether_addr"], "handle": 3,
               "elem": [{"concat": ["hv-b", "52:54:00:00:00:0b"]}, {"concat": ["hv-a", ")" +
                                mac + R"("]}]}},
      {"set": {"family": "bridge", "name": "guard-addrs", "table": "hyper",
               "type": ["ifname", "ipv4_addr"], "handle": 4,
               "elem": [{"concat": ["hv-a", "10.77.0.10"]}, {"concat": ["hv-b", "10.78.0.5"]}]}},
      {"chain": {"family": "bridge", "table": "hyper", "name": "guard-prerouting", "handle": 5,
                 "type": "filter", "hook": "prerouting", "prio": -200, "policy": "accept"}},
      {"rule": {"family": "bridge", "table": "hyper", "chain": "guard-prerouting", "handle": 6,
                "expr": [{"drop": null}]}}]})");
  EXPECT_TRUE(dump.isOk()) << dump.status().message();
  return dump.isOk() ? *dump : NftTableDump{};
}

TEST(NftFingerprintTest, ANetworkOwnsTheGuardElementsOfItsTaps) {
  NftTableDump a = bridgeDump("52:54:00:00:00:0a");
  EXPECT_TRUE(a.bridgePresent);
  EXPECT_FALSE(a.present);
  EXPECT_FALSE(a.flushed());
  const std::vector<std::string> lab = {"hv-a"};
  const std::vector<std::string> dmz = {"hv-b"};
  FingerprintParts before = fingerprintParts(a, {"Network", "lab"}, lab);
  for (const char* part : {"guard", "chain:guard-prerouting"}) {
    EXPECT_NE(before[part], "absent") << part;
  }
  // The elements' listing order does not matter; another network's taps are not lab's.
  EXPECT_NE(before["guard"], fingerprintParts(a, {"Network", "dmz"}, dmz)["guard"]);
  // One MAC changed by hand (the last digit) is seen in the network of that tap, and only there.
  NftTableDump b = bridgeDump("52:54:00:00:00:0c");
  FingerprintParts after = fingerprintParts(b, {"Network", "lab"}, lab);
  EXPECT_NE(before["guard"], after["guard"]);
  EXPECT_EQ(before["chain:guard-prerouting"], after["chain:guard-prerouting"]);
  EXPECT_EQ(fingerprintParts(a, {"Network", "dmz"}, dmz),
            fingerprintParts(b, {"Network", "dmz"}, dmz));
  // A tap's elements taken away by hand are seen too; without the sets the part is absent.
  NftTableDump c = a;
  for (auto& set : c.sets) {
    if (set.name == "guard-addrs") {
      Json parsed = Json::parse(set.json);
      parsed["elem"] = Json::array({parsed["elem"][1]});
      set = nftItem(parsed);
    }
  }
  c.reindex();
  EXPECT_NE(before["guard"], fingerprintParts(c, {"Network", "lab"}, lab)["guard"]);
  EXPECT_EQ(fingerprintParts(NftTableDump{}, {"Network", "lab"}, lab)["guard"], "absent");
}

// The network maps' elements that jump to a network's chains are that network's: one changed by
// hand is its drift, and no other network's.
TEST(NftFingerprintTest, ANetworkOwnsTheMapElementsThatJumpToItsChains) {
  NftTableDump dump = capturedDump("net_nft_dump_lab_web_dmz.json");
  FingerprintParts lab = fingerprintParts(dump, {"Network", "lab"});
  FingerprintParts dmz = fingerprintParts(dump, {"Network", "dmz"});
  EXPECT_NE(lab["maps"], "absent");
  EXPECT_NE(lab["maps"], dmz["maps"]);
  NftTableDump edited = dump;
  bool changed = false;
  for (auto& set : edited.sets) {
    if (set.name != kEgressMap) {
      continue;
    }
    Json parsed = Json::parse(set.json);
    for (auto& element : parsed["elem"]) {
      if (element[0] == "hb-lab") {
        element[0] = "hb-other";  // lab's chain now reached from another bridge
        changed = true;
      }
    }
    set = nftItem(parsed);
  }
  ASSERT_TRUE(changed);
  edited.reindex();
  EXPECT_NE(fingerprintParts(edited, {"Network", "lab"})["maps"], lab["maps"]);
  EXPECT_EQ(fingerprintParts(edited, {"Network", "dmz"}), dmz);
  EXPECT_EQ(fingerprintParts(edited, {"NetworkPolicy", "web"}),
            fingerprintParts(dump, {"NetworkPolicy", "web"}));
  // Without the maps the part is absent.
  NftTableDump gone = dump;
  gone.sets.clear();
  gone.reindex();
  EXPECT_FALSE(gone.networkMaps);
  EXPECT_EQ(fingerprintParts(gone, {"Network", "lab"})["maps"], "absent");
}

// The maps part is the digest of each of the network's chains followed by the elements that jump
// to it ("<map>:<canonical JSON>"), as every hyper since layout 4 recorded it: the kept dump's
// per-network digest must give the same value, or every network would look changed by hand.
TEST(NftFingerprintTest, TheMapsDigestIsTheOneRecordedBefore) {
  NftTableDump dump = capturedDump("net_nft_dump_lab_web_dmz.json");
  const std::string lab =
      "net-lab-egress\n"
      "egress-nets:[\"hb-lab\",{\"jump\":{\"target\":\"net-lab-egress\"}}]\n"
      "net-lab-ingress\n"
      "ingress-nets:[\"hb-lab\",{\"jump\":{\"target\":\"net-lab-ingress\"}}]\n";
  EXPECT_EQ(fingerprintParts(dump, {"Network", "lab"})["maps"], sha256Hex(lab).substr(0, 16));
  // A network no element jumps to: its chains' names alone.
  EXPECT_EQ(fingerprintParts(dump, {"Network", "ghost"})["maps"],
            sha256Hex("net-ghost-egress\nnet-ghost-ingress\n").substr(0, 16));
  // A network whose name ends like a direction is still told apart from its neighbour.
  EXPECT_NE(fingerprintParts(dump, {"Network", "lab-egress"})["maps"],
            fingerprintParts(dump, {"Network", "lab"})["maps"]);
  NftTableDump kept = dump;
  kept.dropItems();
  EXPECT_EQ(fingerprintParts(kept, {"Network", "lab"})["maps"], sha256Hex(lab).substr(0, 16));
}

TEST(NftFingerprintTest, FormatRoundTrips) {
  FingerprintParts parts = {{"chain:pol-web-egress", "0123456789abcdef"},
                            {"rules:NetworkPolicy/web", "absent"}};
  std::string text = formatFingerprint(parts);
  EXPECT_EQ(text, "chain:pol-web-egress=0123456789abcdef;rules:NetworkPolicy/web=absent");
  EXPECT_EQ(parseFingerprint(text), parts);
  EXPECT_TRUE(parseFingerprint("").empty());
}

// Writing by difference (nftDelta): the commands, their order and what is listed back.
NftModel twoNetworks() {
  NftModel m;
  m.networks["lab"] = network("lab", R"({"cidr": "10.77.0.0/24", "nat": true})");
  m.networks["dmz"] = network("dmz", R"({"cidr": "10.78.0.0/24"})");
  m.policies["web"] = policy("web", R"({"network": "lab",
      "egress": {"mode": "allowlist", "allow": [{"cidr": "203.0.113.0/24"}]}})");
  m.ports["lab"] = {{"hv-web-1", "10.77.0.10", "52:54:00:00:00:0a", "web-1"}};
  return m;
}

bool has(const std::vector<NftPart>& parts, std::string_view name) {
  return std::any_of(parts.begin(), parts.end(), [&](const NftPart& p) { return p.name == name; });
}

TEST(NftDeltaTest, TheBlocksPrintAsTheTables) {
  NftModel m = twoNetworks();
  NftRender r = renderNftBlocks(m);
  EXPECT_EQ(printNftTable(kNftFamily, r.inet), renderNftTable(m));
  EXPECT_EQ(printNftTable(kNftBridgeFamily, r.bridge), renderNftBridgeTable(m));
  EXPECT_EQ(renderNftReplace(r, false), renderNftReplace(m));
  EXPECT_EQ(renderNftReplace(NftRender{}, true), renderNftReplace(NftModel{}));
}

TEST(NftDeltaTest, NothingChangedWritesNothing) {
  NftModel m = twoNetworks();
  auto delta = nftDelta(renderNftBlocks(m), renderNftBlocks(m));
  ASSERT_TRUE(delta.has_value());
  EXPECT_EQ(delta->commands, "");
  EXPECT_TRUE(delta->relist.empty());
  EXPECT_TRUE(delta->gone.empty());
  // An MTU is the bridge's, not the tables'.
  NftModel mtu = m;
  mtu.networks["dmz"].mtu = 1400;
  delta = nftDelta(renderNftBlocks(m), renderNftBlocks(mtu));
  ASSERT_TRUE(delta.has_value());
  EXPECT_EQ(delta->commands, "");
}

TEST(NftDeltaTest, AChangedPolicyRewritesItsChainOnly) {
  NftModel before = twoNetworks();
  NftModel after = before;
  after.policies["web"] = policy("web", R"({"network": "lab",
      "egress": {"mode": "allowlist", "allow": [
        {"cidr": "198.51.100.0/24", "protocol": "tcp", "ports": [443]}]}})");
  auto delta = nftDelta(renderNftBlocks(before), renderNftBlocks(after));
  ASSERT_TRUE(delta.has_value());
  EXPECT_EQ(delta->commands,
            "flush chain inet hyper pol-web-egress\n"
            "add rule inet hyper pol-web-egress ip daddr 198.51.100.0/24 tcp dport 443 accept\n");
  ASSERT_EQ(delta->relist.size(), 1u);
  EXPECT_EQ(delta->relist[0], (NftPart{"inet", NftBlock::Kind::Chain, "pol-web-egress"}));
  EXPECT_TRUE(delta->gone.empty());
  EXPECT_TRUE(delta->comments.empty());  // a policy's own chain has no commented rule
  // The same from the policy's scope alone: its chains and its network's.
  NftScope scope;
  scope.addPolicy("web", before, &after.policies["web"].network);
  NftRender few = renderNftBlocks(before, scope);
  EXPECT_EQ(few.inet.size(), 4u);  // pol-web-egress, pol-web-ingress, net-lab-egress, -ingress
  EXPECT_TRUE(few.bridge.empty());
  auto scoped = nftDelta(few, renderNftBlocks(after, scope), /*tablesStay=*/true);
  ASSERT_TRUE(scoped.has_value());
  EXPECT_EQ(scoped->commands, delta->commands);
  EXPECT_EQ(scoped->relist, delta->relist);
}

TEST(NftDeltaTest, ANetworksScopeHoldsTheSharedParts) {
  NftModel m = twoNetworks();
  NftScope scope;
  scope.addNetwork("dmz");
  NftRender r = renderNftBlocks(m, scope);
  std::vector<std::string> inet, bridge;
  for (const auto& b : r.inet) {
    inet.push_back(b.name);
  }
  for (const auto& b : r.bridge) {
    bridge.push_back(b.name);
  }
  EXPECT_EQ(inet, (std::vector<std::string>{"net-dmz-egress", "net-dmz-ingress", "egress-nets",
                                            "ingress-nets", "nat-postrouting"}));
  EXPECT_EQ(bridge, (std::vector<std::string>{"guard-taps", "guard-macs", "guard-addrs"}));
}

TEST(NftDeltaTest, ANewNetworkAddsItsChainsAndMapElementsAfterThem) {
  NftModel before = twoNetworks();
  NftModel after = before;
  after.networks["ops"] = network("ops", R"({"cidr": "10.79.0.0/24"})");
  auto delta = nftDelta(renderNftBlocks(before), renderNftBlocks(after));
  ASSERT_TRUE(delta.has_value());
  EXPECT_EQ(delta->commands,
            "table inet hyper {\n\tchain net-ops-egress {\n\t}\n\tchain net-ops-ingress {\n\t}\n}\n"
            "add element inet hyper egress-nets { \"hb-ops\" : jump net-ops-egress }\n"
            "add element inet hyper ingress-nets { \"hb-ops\" : jump net-ops-ingress }\n");
  EXPECT_TRUE(has(delta->relist, "net-ops-egress"));
  EXPECT_TRUE(has(delta->relist, "egress-nets"));
  EXPECT_TRUE(has(delta->relist, "ingress-nets"));
  EXPECT_FALSE(has(delta->relist, "guard-taps"));  // no VM on it: the guard stays as it is
}

TEST(NftDeltaTest, ARemovedNetworkLeavesTheMapsBeforeItsChainsAreDeleted) {
  NftModel before = twoNetworks();
  NftModel after = before;
  after.networks.erase("lab");
  after.ports.erase("lab");
  auto delta = nftDelta(renderNftBlocks(before), renderNftBlocks(after));
  ASSERT_TRUE(delta.has_value());
  const std::string& c = delta->commands;
  size_t elements = c.find("delete element inet hyper egress-nets { \"hb-lab\" }");
  size_t guard =
      c.find("delete element bridge hyper guard-macs { \"hv-web-1\" . 52:54:00:00:00:0a }");
  size_t nat = c.find("flush chain inet hyper nat-postrouting\n");
  size_t flush = c.find("flush chain inet hyper net-lab-egress\n");
  size_t remove = c.find("delete chain inet hyper net-lab-egress\n");
  ASSERT_NE(elements, std::string::npos) << c;
  ASSERT_NE(guard, std::string::npos) << c;
  ASSERT_NE(nat, std::string::npos) << c;
  ASSERT_NE(remove, std::string::npos) << c;
  EXPECT_LT(elements, flush);
  EXPECT_LT(flush, remove);
  // The policy's jumps went with the network's chains: its comment's rules are gone too.
  EXPECT_TRUE(has(delta->gone, "net-lab-egress"));
  EXPECT_TRUE(has(delta->gone, "net-lab-ingress"));
  EXPECT_NE(std::find(delta->comments.begin(), delta->comments.end(), "NetworkPolicy/web"),
            delta->comments.end());
  EXPECT_NE(std::find(delta->comments.begin(), delta->comments.end(), "Network/lab"),
            delta->comments.end());
  // The guard's digest is over its three sets: all listed again.
  EXPECT_TRUE(has(delta->relist, "guard-taps"));
  EXPECT_TRUE(has(delta->relist, "guard-addrs"));
}

TEST(NftDeltaTest, AChainHoldingACommentOfATouchedChainIsListedAgain) {
  // The policy's rules are in both of its network's chains; a change to the ingress side only
  // (a drop appears) lists the egress chain again too: the comment's digest spans both.
  NftModel before = twoNetworks();
  NftModel after = before;
  after.policies["web"] = policy("web", R"({"network": "lab",
      "egress": {"mode": "allowlist", "allow": [{"cidr": "203.0.113.0/24"}]},
      "ingress": {"mode": "none"}})");
  auto delta = nftDelta(renderNftBlocks(before), renderNftBlocks(after));
  ASSERT_TRUE(delta.has_value());
  EXPECT_NE(delta->commands.find("flush chain inet hyper net-lab-ingress\n"), std::string::npos);
  EXPECT_EQ(delta->commands.find("flush chain inet hyper net-lab-egress\n"), std::string::npos);
  EXPECT_TRUE(has(delta->relist, "net-lab-egress"));
  EXPECT_TRUE(has(delta->relist, "net-lab-ingress"));
  EXPECT_EQ(delta->comments, std::vector<std::string>{"NetworkPolicy/web"});
}

TEST(NftDeltaTest, ASelectorSetChangesByItsElements) {
  NftModel before = twoNetworks();
  before.policies["web"] = policy("web", R"({"network": "lab",
      "selector": {"matchLabels": {"role": "web"}}, "egress": {"mode": "none"}})");
  before.selected["web"] = {"10.77.0.10", "10.77.0.11"};
  NftModel after = before;
  after.selected["web"] = {"10.77.0.11", "10.77.0.12"};
  auto delta = nftDelta(renderNftBlocks(before), renderNftBlocks(after));
  ASSERT_TRUE(delta.has_value());
  EXPECT_EQ(delta->commands,
            "delete element inet hyper pol-web-sel { 10.77.0.10 }\n"
            "add element inet hyper pol-web-sel { 10.77.0.12 }\n");
  EXPECT_EQ(delta->relist, (std::vector<NftPart>{{"inet", NftBlock::Kind::Set, "pol-web-sel"}}));
  // No selector any more: the set goes after the rules that name it.
  NftModel none = before;
  none.policies["web"] = policy("web", R"({"network": "lab", "egress": {"mode": "none"}})");
  none.selected.erase("web");
  delta = nftDelta(renderNftBlocks(before), renderNftBlocks(none));
  ASSERT_TRUE(delta.has_value());
  size_t rules = delta->commands.find("flush chain inet hyper net-lab-egress\n");
  size_t set = delta->commands.find("delete set inet hyper pol-web-sel\n");
  ASSERT_NE(rules, std::string::npos) << delta->commands;
  ASSERT_NE(set, std::string::npos) << delta->commands;
  EXPECT_LT(rules, set);
  EXPECT_TRUE(has(delta->gone, "pol-web-sel"));
}

TEST(NftDeltaTest, MakingOrDeletingTheTablesOrChangingAHeadNeedsAReplace) {
  NftModel m = twoNetworks();
  EXPECT_FALSE(nftDelta(NftRender{}, renderNftBlocks(m)).has_value());
  EXPECT_FALSE(nftDelta(renderNftBlocks(m), NftRender{}).has_value());
  NftRender changed = renderNftBlocks(m);
  auto base = std::find_if(changed.inet.begin(), changed.inet.end(),
                           [](const NftBlock& b) { return b.name == "egress-forward"; });
  ASSERT_NE(base, changed.inet.end());
  base->head = "\t\ttype filter hook forward priority filter - 5; policy accept;\n";
  EXPECT_FALSE(nftDelta(renderNftBlocks(m), changed).has_value());
}

TEST(NftDeltaTest, RuleCommentIsWhatTheRuleEndsWith) {
  EXPECT_EQ(NftBlock::ruleComment("drop comment \"NetworkPolicy/web\""), "NetworkPolicy/web");
  EXPECT_EQ(NftBlock::ruleComment("drop"), "");
  EXPECT_EQ(NftBlock::ruleComment("ip saddr @x accept"), "");
}

}  // namespace
}  // namespace hyper::providers::net
