// Tables written by delta (nftDelta) on the real kernel, in a network namespace of the test's
// own: the kernel takes every delta, the tables then list as a replace of the same model would
// (the digests every fingerprint is made of), and a dump patched from the parts the delta
// changed (NftTableDump::patched) equals a full listing. The delta of the changed objects' scope
// alone (what NetProvider renders) is the delta of the whole tables.

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <random>
#include <set>

#include "host/nft.h"
#include "providers/net/net_provider.h"
#include "providers/net/nft_ruleset.h"
#include "tests/integration/netns_util.h"

namespace hyper::providers::net {
namespace {

using netmodel::parseNetworkSpec;
using netmodel::parsePolicySpec;

// Everything of a dump that fingerprints read, as "what=digest" lines in name order.
std::map<std::string, std::string> digests(const NftTableDump& d) {
  std::map<std::string, std::string> out;
  out["present"] = std::to_string(d.present) + std::to_string(d.bridgePresent) +
                   std::to_string(d.anyInetRule) + std::to_string(d.guardSets) +
                   std::to_string(d.networkMaps);
  for (const auto& [name, c] : d.chainDigests) {
    out["chain:" + name] = c.all.str() + " " + c.uncommented.str();
  }
  for (const auto& [name, s] : d.setDigests) {
    out["set:" + name] = s.str();
  }
  for (const auto& [comment, s] : d.commentDigests) {
    out["comment:" + comment] = s.str();
  }
  for (const auto& [tap, elements] : d.guardElementsByTap) {
    std::string all;
    for (const auto& e : elements) {
      all += e + "\n";
    }
    out["guard:" + tap] = all;
  }
  for (const auto& [network, s] : d.mapsDigestByNetwork) {
    out["maps:" + network] = s.str();
  }
  return out;
}

// The scope of every object that differs between two models, as NetProvider builds it from its
// steps.
NftScope scopeOf(const NftModel& before, const NftModel& after) {
  NftScope scope;
  auto ports = [](const NftModel& m, const std::string& name) {
    auto it = m.ports.find(name);
    return it == m.ports.end() ? std::vector<TapBinding>{} : it->second;
  };
  std::set<std::string> networks;
  for (const auto* m : {&before, &after}) {
    for (const auto& [name, spec] : m->networks) {
      networks.insert(name);
    }
  }
  for (const auto& name : networks) {
    auto a = before.networks.find(name), b = after.networks.find(name);
    if (a == before.networks.end() || b == after.networks.end() || !(a->second == b->second) ||
        ports(before, name) != ports(after, name)) {
      scope.addNetwork(name);
    }
  }
  std::set<std::string> policies;
  for (const auto* m : {&before, &after}) {
    for (const auto& [name, spec] : m->policies) {
      policies.insert(name);
    }
  }
  for (const auto& name : policies) {
    auto a = before.policies.find(name), b = after.policies.find(name);
    auto selected = [&](const NftModel& m) {
      auto it = m.selected.find(name);
      return it == m.selected.end() ? std::vector<std::string>{} : it->second;
    };
    if (a == before.policies.end() || b == after.policies.end() || !(a->second == b->second) ||
        selected(before) != selected(after)) {
      scope.addPolicy(name, before, b == after.policies.end() ? nullptr : &b->second.network);
    }
  }
  return scope;
}

std::vector<std::string> sorted(const std::vector<NftPart>& parts) {
  std::vector<std::string> out;
  for (const auto& p : parts) {
    out.push_back(p.family + " " + std::to_string(static_cast<int>(p.kind)) + " " + p.name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<NftTableDump> listAll() {
  HYPER_ASSIGN_OR_RETURN(std::string json, host::nftListRulesetJson());
  return parseNftTableDump(json);
}

// A model over a small world, so that changes meet: networks n0..n4 (two bridge names each, NAT
// or not, VMs or not), policies p0..p4 on n0..n5 (n5 is never managed), with or without a
// selector and its addresses, each direction any, none or an allowlist.
class RandomModels {
 public:
  explicit RandomModels(uint32_t seed) : rng_(seed) {}

  NftModel next(NftModel m) {
    int changes = 1 + pick(3);
    for (int i = 0; i < changes; ++i) {
      int what = pick(4);
      std::string n = "n" + std::to_string(pick(5));
      std::string p = "p" + std::to_string(pick(5));
      if (what == 0) {
        setNetwork(m, n);
      } else if (what == 1 && m.networks.size() > 1) {
        m.networks.erase(n);
        m.ports.erase(n);
      } else if (what == 2) {
        setPolicy(m, p);
      } else {
        m.policies.erase(p);
        m.selected.erase(p);
      }
    }
    if (m.networks.empty()) {
      setNetwork(m, "n0");
    }
    return m;
  }

 private:
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  void setNetwork(NftModel& m, const std::string& name) {
    int i = name[1] - '0';
    std::string spec = "{\"cidr\": \"10.8" + std::to_string(i) + ".0.0/24\"" +
                       (pick(2) ? ", \"nat\": true" : "") +
                       (pick(2) ? ", \"bridge\": \"br-" + name + "\"" : "") + "}";
    auto parsed = parseNetworkSpec(name, Json::parse(spec));
    ASSERT_TRUE(parsed.isOk()) << parsed.status().message();
    m.networks[name] = *parsed;
    std::vector<TapBinding> ports;
    for (int vm = 0; vm < pick(3); ++vm) {
      std::string id = std::to_string(i) + std::to_string(vm + pick(2));
      ports.push_back({"hv-" + name + "-" + id, "10.8" + std::to_string(i) + ".0.1" + id,
                       "52:54:00:00:" + std::to_string(10 + i) + ":" + std::to_string(10 + vm),
                       "vm" + id});
    }
    std::sort(ports.begin(), ports.end(),
              [](const TapBinding& a, const TapBinding& b) { return a.tap < b.tap; });
    ports.erase(
        std::unique(ports.begin(), ports.end(),
                    [](const TapBinding& a, const TapBinding& b) { return a.tap == b.tap; }),
        ports.end());
    if (ports.empty()) {
      m.ports.erase(name);
    } else {
      m.ports[name] = ports;
    }
  }

  std::string traffic() {
    switch (pick(3)) {
      case 0:
        return R"({"mode": "any"})";
      case 1:
        return R"({"mode": "none"})";
      default:
        return std::string(R"({"mode": "allowlist", "allow": [{"cidr": "203.0.113.0/24",)") +
               R"( "protocol": "tcp", "ports": [)" + std::to_string(400 + pick(3)) + "]}]}";
    }
  }

  void setPolicy(NftModel& m, const std::string& name) {
    bool selector = pick(2);
    std::string spec = "{\"network\": \"n" + std::to_string(pick(6)) + "\"" +
                       (selector ? R"(, "selector": {"matchLabels": {"role": "web"}})" : "") +
                       ", \"egress\": " + traffic() + ", \"ingress\": " + traffic() + "}";
    auto parsed = parsePolicySpec(name, Json::parse(spec));
    ASSERT_TRUE(parsed.isOk()) << parsed.status().message() << "\n" << spec;
    m.policies[name] = *parsed;
    m.selected.erase(name);
    if (selector) {
      std::vector<std::string>& selected = m.selected[name];
      for (int a = 0; a < pick(4); ++a) {
        selected.push_back("10.90.0." + std::to_string(10 + pick(6)));
      }
      std::sort(selected.begin(), selected.end());
      selected.erase(std::unique(selected.begin(), selected.end()), selected.end());
    }
  }

  std::mt19937 rng_;
};

// Policy p0 on n0 allowing some egress and any ingress, then denying all ingress: the ingress
// chain of n0 gets a drop, its egress chain stays, and both hold the policy's rules.
class OneSideOfAPolicy {
 public:
  NftModel next(const NftModel& m) {
    NftModel out = m;
    if (out.networks.empty()) {
      out.networks["n0"] = *parseNetworkSpec("n0", Json::parse(R"({"cidr": "10.80.0.0/24"})"));
    }
    const char* ingress =
        step_++ % 2 ? R"("ingress": {"mode": "none"})" : R"("ingress": {"mode": "any"})";
    out.policies["p0"] = *parsePolicySpec(
        "p0", Json::parse(std::string(R"({"network": "n0", "egress": {"mode": "allowlist",
            "allow": [{"cidr": "203.0.113.0/24"}]}, )") +
                          ingress + "}"));
    return out;
  }

 private:
  int step_ = 0;
};

// Writes each model `models` makes after the first by delta, and checks the tables and the
// patched dump against full listings after each.
template <typename Models>
void walk(Models& models, int steps, size_t& relisted, size_t& removed, size_t& commented) {
  NftModel model = models.next(NftModel{});
  ASSERT_TRUE(host::nftApply(renderNftReplace(model)).isOk());
  auto dump = listAll();
  ASSERT_TRUE(dump.isOk()) << dump.status().message();
  NftTableDump cached = std::move(*dump);
  cached.dropItems();
  for (int step = 0; step < steps; ++step) {
    NftModel next = models.next(model);
    auto delta = nftDelta(renderNftBlocks(model), renderNftBlocks(next));
    ASSERT_TRUE(delta.has_value()) << "step " << step;
    // What the provider writes: the delta of the changed objects' scope alone is the same.
    NftScope scope = scopeOf(model, next);
    auto scoped = nftDelta(renderNftBlocks(model, scope), renderNftBlocks(next, scope), true);
    ASSERT_TRUE(scoped.has_value()) << "step " << step;
    ASSERT_EQ(scoped->commands, delta->commands) << "step " << step;
    ASSERT_EQ(sorted(scoped->relist), sorted(delta->relist)) << "step " << step;
    ASSERT_EQ(sorted(scoped->gone), sorted(delta->gone)) << "step " << step;
    ASSERT_EQ(scoped->comments, delta->comments) << "step " << step;
    Status written = host::nftApply(delta->commands);
    ASSERT_TRUE(written.isOk()) << "step " << step << ": " << written.message() << "\n"
                                << delta->commands;
    auto listed = listNftParts(delta->relist);
    ASSERT_TRUE(listed.isOk()) << "step " << step << ": " << listed.status().message();
    NftTableDump patched = cached.patched(*delta, std::move(*listed));
    auto full = listAll();
    ASSERT_TRUE(full.isOk()) << full.status().message();
    ASSERT_EQ(digests(patched), digests(*full)) << "step " << step << "\n" << delta->commands;
    // The same model written whole lists the same.
    ASSERT_TRUE(host::nftApply(renderNftReplace(next)).isOk()) << "step " << step;
    auto replaced = listAll();
    ASSERT_TRUE(replaced.isOk());
    ASSERT_EQ(digests(*replaced), digests(*full)) << "step " << step << "\n" << delta->commands;
    // The next step starts from the delta's tables or the replace's, alternately: both hold the
    // model, in another order of their chains.
    if (step % 2 == 0) {
      ASSERT_TRUE(host::nftApply(renderNftReplace(model)).isOk());
      ASSERT_TRUE(host::nftApply(delta->commands).isOk()) << "step " << step;
    }
    cached = std::move(patched);
    model = std::move(next);
    relisted += delta->relist.size();
    removed += delta->gone.size();
    commented += delta->comments.size();
  }
}

TEST(NftDeltaIntegrationTest, DeltasLeaveTheTablesAsAReplaceWouldAndPatchedDumpsEqualListings) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root (network namespaces)";
  }
  auto ns = test::EnteredNetns::enter("delta");
  ASSERT_TRUE(ns.isOk()) << ns.status().message();
  ASSERT_TRUE((*ns)->active());

  size_t relisted = 0, removed = 0, commented = 0;
  OneSideOfAPolicy oneSide;
  walk(oneSide, 3, relisted, removed, commented);
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_EQ(commented, 3u);  // each step: the policy's comment, over both of n0's chains
  RandomModels models(20261207);
  walk(models, 60, relisted, removed, commented);
  // The walk met every kind of change.
  EXPECT_GT(relisted, 60u);
  EXPECT_GT(removed, 10u);
  EXPECT_GT(commented, 10u);
}

}  // namespace
}  // namespace hyper::providers::net
