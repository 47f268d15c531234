#include "providers/net/nft_ruleset.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace hyper::providers::net {
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
  return m;
}

// Loaded into nft 1.0.6 as is (the integration tests load every rendering they make).
constexpr const char* kGolden = R"nft(table inet hyper {}
delete table inet hyper
table inet hyper {
	set net-dmz-bridge {
		type ifname
		elements = { "br-dmz" }
	}

	set net-lab-bridge {
		type ifname
		elements = { "hb-lab" }
	}

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

	chain egress-forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		iifname @net-dmz-bridge jump pol-isolate-egress comment "NetworkPolicy/isolate"
		iifname @net-lab-bridge ip saddr @pol-web-sel jump pol-web-egress comment "NetworkPolicy/web"
		iifname @net-dmz-bridge drop comment "NetworkPolicy/isolate"
		iifname @net-lab-bridge ip saddr @pol-web-sel drop comment "NetworkPolicy/web"
	}

	chain egress-input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		iifname @net-dmz-bridge jump pol-isolate-egress comment "NetworkPolicy/isolate"
		iifname @net-lab-bridge ip saddr @pol-web-sel jump pol-web-egress comment "NetworkPolicy/web"
		iifname @net-dmz-bridge drop comment "NetworkPolicy/isolate"
		iifname @net-lab-bridge ip saddr @pol-web-sel drop comment "NetworkPolicy/web"
	}

	chain ingress-forward {
		type filter hook forward priority filter + 10; policy accept;
		ct state established,related accept
		oifname @net-dmz-bridge jump pol-isolate-ingress comment "NetworkPolicy/isolate"
		oifname @net-lab-bridge ip daddr @pol-web-sel jump pol-web-ingress comment "NetworkPolicy/web"
		oifname @net-lab-bridge ip daddr @pol-web-sel drop comment "NetworkPolicy/web"
	}

	chain ingress-output {
		type filter hook output priority filter; policy accept;
		ct state established,related accept
		oifname @net-dmz-bridge jump pol-isolate-ingress comment "NetworkPolicy/isolate"
		oifname @net-lab-bridge ip daddr @pol-web-sel jump pol-web-ingress comment "NetworkPolicy/web"
		oifname @net-lab-bridge ip daddr @pol-web-sel drop comment "NetworkPolicy/web"
	}

	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade comment "Network/lab"
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

TEST(NftRulesetTest, EmptyModelDeletesTheTable) {
  EXPECT_EQ(renderNftReplace(NftModel{}), "table inet hyper {}\ndelete table inet hyper\n");
}

TEST(NftRulesetTest, NetworkWithoutPoliciesHasOnlyTheSkeleton) {
  NftModel m;
  m.networks["lab"] = network("lab", R"({"cidr": "10.77.0.0/24"})");
  std::string text = renderNftTable(m);
  EXPECT_NE(text.find("elements = { \"hb-lab\" }"), std::string::npos) << text;
  EXPECT_EQ(text.find("masquerade"), std::string::npos) << text;
  EXPECT_EQ(text.find("jump"), std::string::npos) << text;
  EXPECT_EQ(text.find("drop"), std::string::npos) << text;
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
  EXPECT_EQ(dump.sets.size(), 1u);
  EXPECT_EQ(dump.chains.size(), 2u + nftBaseChains().size());
  EXPECT_TRUE(dump.hasChain("pol-web-egress"));
  EXPECT_FALSE(dump.hasChain("pol-other-egress"));
  for (const auto* group : {&dump.sets, &dump.chains, &dump.rules}) {
    for (const auto& item : *group) {
      EXPECT_FALSE(item.contains("handle")) << item.dump();
    }
  }
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
      if (part != "set:pol-web-sel") {  // web has no selector
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
  EXPECT_TRUE(flushed.flushed());
  for (const ObjectId& id : {ObjectId{"Network", "lab"}, ObjectId{"NetworkPolicy", "web"}}) {
    EXPECT_NE(fingerprintParts(dump, id), fingerprintParts(flushed, id)) << id.str();
    FingerprintParts missing = fingerprintParts(NftTableDump{}, id);
    for (const auto& [part, digest] : missing) {
      EXPECT_EQ(digest, "absent") << part;
    }
  }
}

TEST(NftFingerprintTest, SeesOneChangedRule) {
  NftTableDump dump = capturedDump("net_nft_dump_lab_web.json");
  FingerprintParts before = fingerprintParts(dump, {"NetworkPolicy", "web"});
  bool changed = false;
  for (auto& rule : dump.rules) {
    if (rule["chain"] == "pol-web-egress") {
      rule["expr"].back() = Json{{"drop", nullptr}};
      changed = true;
    }
  }
  ASSERT_TRUE(changed);
  FingerprintParts after = fingerprintParts(dump, {"NetworkPolicy", "web"});
  EXPECT_NE(before["chain:pol-web-egress"], after["chain:pol-web-egress"]);
  EXPECT_EQ(before["chain:pol-web-ingress"], after["chain:pol-web-ingress"]);
  EXPECT_EQ(fingerprintParts(dump, {"Network", "lab"}),
            fingerprintParts(capturedDump("net_nft_dump_lab_web.json"), {"Network", "lab"}));
}

TEST(NftFingerprintTest, FormatRoundTrips) {
  FingerprintParts parts = {{"chain:pol-web-egress", "0123456789abcdef"},
                            {"rules:NetworkPolicy/web", "absent"}};
  std::string text = formatFingerprint(parts);
  EXPECT_EQ(text, "chain:pol-web-egress=0123456789abcdef;rules:NetworkPolicy/web=absent");
  EXPECT_EQ(parseFingerprint(text), parts);
  EXPECT_TRUE(parseFingerprint("").empty());
}

}  // namespace
}  // namespace hyper::providers::net
