#include <gtest/gtest.h>

#include <algorithm>

#include "providers/net/nft_ruleset.h"

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
