#include "providers/net/net_provider.h"

#include <gtest/gtest.h>
#include <net/if.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "base/sha256.h"
#include "host/command.h"
#include "host/nft.h"
#include "netmodel/link_dump.h"
#include "netmodel/link_state.h"
#include "netmodel/placement.h"
#include "reconciler/inventory.h"
#include "tests/integration/netns_util.h"

// Every test runs in a network namespace of its own, entered by the test thread; the provider's
// `ip` and `nft` children inherit it. Nothing here touches the machine's own interfaces or
// firewall. The tests drive the provider the way the engine does (observe, plan each object,
// apply in dependency order, record what was applied) with a small in-memory inventory.

namespace hyper::providers::net {

using netmodel::LinkState;
using netmodel::LinkTable;
using netmodel::parseLinkTable;
namespace {

struct Planned {
  std::vector<PlanAction> actions;
  Diagnostics diagnostics;
  std::map<ObjectId, ObservedState> observed;

  const PlanAction* find(const ObjectId& id) const {
    for (const auto& a : actions) {
      if (a.id == id) {
        return &a;
      }
    }
    return nullptr;
  }
  std::string describe() const {
    std::string out = diagnostics.format();
    for (const auto& a : actions) {
      out += std::string(actionTypeName(a.type)) + " " + a.id.str() + ": " + a.reason + "\n";
    }
    return out;
  }
};

Object makeObject(const std::string& kind, const std::string& name, const std::string& spec) {
  Object o;
  o.id = {kind, name};
  o.spec = Json::parse(spec);
  return o;
}

Result<std::string> run(const std::vector<std::string>& argv) { return host::runChecked(argv); }

class NetProviderIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (network namespaces)";
    }
    auto ns = test::EnteredNetns::enter("net");
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
    // Guard: nothing below may run in the machine's own namespace.
    ASSERT_TRUE(ns_->active());
  }

  void expectOnlyM1AndItsPolicyFail(const std::function<void()>& breakM1,
                                    const std::string& m1Error);

  // Observes `desired` and every inventory record with `provider`; with a revision as the engine
  // does (every record as the inventory too), and only `scope` when given.
  std::map<ObjectId, ObservedState> observeRecords(
      NetProvider& provider, const std::vector<const Object*>& desired,
      const std::vector<std::shared_ptr<const Object>>* revision,
      const std::vector<ObjectId>* scope = nullptr) {
    std::vector<ManagedRecord> all;
    ObserveRequest req;
    req.desired = desired;
    for (const auto& [id, record] : inventory_) {
      req.managed.push_back(&record);
      all.push_back(record);
    }
    const RecordList records(all);
    if (revision) {
      req.revision = revision;
      req.inventory = &records;
    }
    req.scope = scope;
    ObserveResponse resp;
    provider.observe(req, resp);
    EXPECT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
    return resp.observed;
  }

  // Observe and plan, like Engine::plan: every desired object, and with `prune` every managed
  // object that left the source; with `scope` (a push's), only those objects.
  Planned plan(const std::vector<const Object*>& desired, bool prune = false,
               const std::vector<ObjectId>* scope = nullptr) {
    EXPECT_TRUE(ns_->active());
    Planned p;
    ObserveRequest oreq;
    oreq.desired = desired;
    oreq.scope = scope;
    for (const auto& [id, record] : inventory_) {
      oreq.managed.push_back(&record);
    }
    ObserveResponse oresp;
    provider_.observe(oreq, oresp);
    p.diagnostics.append(oresp.diagnostics);
    p.observed = oresp.observed;
    auto planOne = [&](const ObjectId& id, const Object* d) {
      auto rec = inventory_.find(id);
      auto obs = p.observed.find(id);
      EXPECT_NE(obs, p.observed.end()) << "observe() reported nothing for " << id.str();
      PlanRequest req{id, d, obs == p.observed.end() ? nullptr : &obs->second,
                      rec == inventory_.end() ? nullptr : &rec->second};
      PlanResponse resp;
      provider_.plan(req, resp);
      p.diagnostics.append(resp.diagnostics);
      if (resp.action) {
        resp.action->id = id;
        resp.action->provider = "net";
        if (d) {  // as the engine's graph has it
          for (const Reference& ref : provider_.references(*d)) {
            resp.action->dependsOn.push_back(ref.target);
          }
        }
        p.actions.push_back(*resp.action);
      }
    };
    for (const Object* o : desired) {
      if (scope == nullptr || std::find(scope->begin(), scope->end(), o->id) != scope->end()) {
        planOne(o->id, o);
      }
    }
    if (prune) {
      for (const auto& [id, record] : inventory_) {
        bool inSource = std::any_of(desired.begin(), desired.end(),
                                    [&](const Object* o) { return o->id == id; });
        if (!inSource) {
          planOne(id, nullptr);
        }
      }
    }
    return p;
  }

  // Applies like Engine::apply: deletes first (policies before networks), then the rest
  // (networks before policies); records each success in the inventory.
  Status apply(const Planned& p, const std::vector<const Object*>& desired) {
    EXPECT_TRUE(ns_->active());
    std::vector<PlanAction> order = p.actions;
    auto rank = [](const PlanAction& a) {
      bool del = a.type == ActionType::Delete;
      bool net = a.id.kind == "Network";
      return del ? (net ? 1 : 0) : (net ? 2 : 3);
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
    for (const auto& action : order) {
      const Object* d = nullptr;
      for (const Object* o : desired) {
        if (o->id == action.id) {
          d = o;
        }
      }
      auto rec = inventory_.find(action.id);
      ApplyRequest req{&action, action.type == ActionType::Delete ? nullptr : d,
                       rec == inventory_.end() ? nullptr : &rec->second};
      ApplyResponse resp;
      provider_.apply(req, resp);
      if (resp.diagnostics.hasErrors()) {
        return Status::error(std::string(actionTypeName(action.type)) + " " + action.id.str() +
                             " <- " + resp.diagnostics.format());
      }
      if (action.type == ActionType::Delete) {
        inventory_.erase(action.id);
        continue;
      }
      ManagedRecord r;
      r.id = action.id;
      r.provider = "net";
      r.spec = d->spec;
      r.specHash = sha256Hex(canonicalJson(d->spec));
      r.handles = resp.handles;
      r.fingerprint = resp.fingerprint;
      inventory_[action.id] = r;
    }
    return Status::ok();
  }

  // Applies `actions` as one batch (NetProvider::applyBatch), recording each success; returns
  // the responses in order.
  std::vector<ApplyResponse> applyBatch(const std::vector<const PlanAction*>& actions,
                                        const std::vector<const Object*>& desired) {
    EXPECT_TRUE(ns_->active());
    std::vector<ApplyRequest> reqs(actions.size());
    std::vector<const ApplyRequest*> ptrs;
    for (size_t i = 0; i < actions.size(); ++i) {
      const PlanAction& action = *actions[i];
      reqs[i].action = &action;
      for (const Object* o : desired) {
        if (o->id == action.id && action.type != ActionType::Delete) {
          reqs[i].desired = o;
        }
      }
      auto rec = inventory_.find(action.id);
      reqs[i].managed = rec == inventory_.end() ? nullptr : &rec->second;
      ptrs.push_back(&reqs[i]);
    }
    std::vector<ApplyResponse> resps;
    provider_.applyBatch(ptrs, resps);
    EXPECT_EQ(resps.size(), actions.size());
    for (size_t i = 0; i < actions.size() && i < resps.size(); ++i) {
      const PlanAction& action = *actions[i];
      if (resps[i].diagnostics.hasErrors()) {
        continue;
      }
      if (action.type == ActionType::Delete) {
        inventory_.erase(action.id);
        continue;
      }
      ManagedRecord r;
      r.id = action.id;
      r.provider = "net";
      r.spec = reqs[i].desired->spec;
      r.specHash = sha256Hex(canonicalJson(r.spec));
      r.handles = resps[i].handles;
      r.fingerprint = resps[i].fingerprint;
      inventory_[action.id] = r;
    }
    return resps;
  }

  // Plan and apply until nothing is left to do (one round must be enough).
  void converge(const std::vector<const Object*>& desired, bool prune = false) {
    Planned p = plan(desired, prune);
    ASSERT_FALSE(p.diagnostics.hasErrors()) << p.describe();
    Status s = apply(p, desired);
    ASSERT_TRUE(s.isOk()) << s.message();
    Planned after = plan(desired, prune);
    EXPECT_TRUE(after.actions.empty()) << "plan after apply is not empty:\n" << after.describe();
    EXPECT_FALSE(after.diagnostics.hasErrors()) << after.describe();
  }

  const LinkState* link(const std::string& name) {
    auto out = run({"ip", "-d", "-j", "addr", "show"});
    EXPECT_TRUE(out.isOk()) << out.status().message();
    auto table = parseLinkTable(out.isOk() ? *out : "[]");
    EXPECT_TRUE(table.isOk());
    links_ = table.isOk() ? *table : LinkTable{};
    return links_.find(name);
  }

  bool tableExists(const std::string& family, const std::string& table) {
    auto r = host::runCommand({"nft", "list", "table", family, table});
    return r.isOk() && r->exitCode == 0;
  }

  std::unique_ptr<test::EnteredNetns> ns_;
  NetProvider provider_;
  std::map<ObjectId, ManagedRecord> inventory_;
  LinkTable links_;
};

const char* kLab = R"({"cidr": "10.77.0.0/24", "mtu": 1400, "nat": true})";

TEST_F(NetProviderIntegrationTest, ApplyCreatesBridgeAndTableAndPlanIsThenEmpty) {
  Object lab = makeObject("Network", "lab", kLab);
  Planned p = plan({&lab});
  ASSERT_FALSE(p.diagnostics.hasErrors()) << p.describe();
  ASSERT_EQ(p.actions.size(), 1u);
  EXPECT_EQ(p.actions[0].type, ActionType::Create);
  ASSERT_TRUE(apply(p, {&lab}).isOk());

  const LinkState* br = link("hb-lab");
  ASSERT_NE(br, nullptr);
  EXPECT_EQ(br->kind, "bridge");
  EXPECT_EQ(br->mtu, 1400);
  EXPECT_TRUE(br->up);
  EXPECT_EQ(br->alias, "hyper:Network/lab");
  EXPECT_EQ(br->ipv4Strings(), std::vector<std::string>{"10.77.0.1/24"});
  EXPECT_EQ(inventory_[lab.id].handles,
            Json({{"bridge", "hb-lab"}, {"ports", Json::array()}, {"ipv6", false}}));
  // VMs on the bridge reach each other through the host (their taps are isolated ports).
  auto pvlan = run({"cat", "/proc/sys/net/ipv4/conf/hb-lab/proxy_arp_pvlan"});
  ASSERT_TRUE(pvlan.isOk()) << pvlan.status().message();
  EXPECT_EQ(*pvlan, "1\n");
  // IPv6 off: no link-local address, no route (the guard drops the guests' IPv6 anyway).
  auto ipv6 = run({"cat", "/proc/sys/net/ipv6/conf/hb-lab/disable_ipv6"});
  ASSERT_TRUE(ipv6.isOk()) << ipv6.status().message();
  EXPECT_EQ(*ipv6, "1\n");
  auto routes = run({"ip", "-6", "route", "show", "table", "all", "dev", "hb-lab"});
  ASSERT_TRUE(routes.isOk()) << routes.status().message();
  EXPECT_EQ(*routes, "");
  auto guard = run({"nft", "list", "chain", "bridge", "hyper", "guard-prerouting"});
  ASSERT_TRUE(guard.isOk()) << guard.status().message();
  EXPECT_NE(guard->find("iifname @guard-taps"), std::string::npos) << *guard;

  auto table = run({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(table.isOk()) << table.status().message();
  EXPECT_NE(table->find("ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade"),
            std::string::npos)
      << *table;
  // NAT needs forwarding, switched on in this namespace only.
  auto forward = run({"ip", "netns", "exec", ns_->name(), "cat", "/proc/sys/net/ipv4/ip_forward"});
  ASSERT_TRUE(forward.isOk()) << forward.status().message();
  EXPECT_EQ(*forward, "1\n");

  Planned again = plan({&lab});
  EXPECT_TRUE(again.actions.empty()) << again.describe();

  // Applying the same action twice equals applying it once.
  ASSERT_TRUE(apply(p, {&lab}).isOk());
  br = link("hb-lab");
  ASSERT_NE(br, nullptr);
  EXPECT_EQ(br->ipv4Strings(), std::vector<std::string>{"10.77.0.1/24"});
  EXPECT_TRUE(plan({&lab}).actions.empty());
}

TEST_F(NetProviderIntegrationTest, BridgeDeletedByHandIsDriftAndRepaired) {
  Object lab = makeObject("Network", "lab", kLab);
  converge({&lab});
  ASSERT_TRUE(run({"ip", "link", "del", "hb-lab"}).isOk());

  Planned p = plan({&lab});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_EQ(p.actions[0].type, ActionType::Create);
  EXPECT_TRUE(p.actions[0].drift);
  EXPECT_NE(p.actions[0].reason.find("bridge hb-lab deleted by hand"), std::string::npos)
      << p.actions[0].reason;
  ASSERT_TRUE(apply(p, {&lab}).isOk());
  ASSERT_NE(link("hb-lab"), nullptr);
  EXPECT_TRUE(plan({&lab}).actions.empty());
}

TEST_F(NetProviderIntegrationTest, MtuAndAddressChangedByHandAreDriftAndRepaired) {
  Object lab = makeObject("Network", "lab", kLab);
  converge({&lab});
  ASSERT_TRUE(run({"ip", "link", "set", "dev", "hb-lab", "mtu", "1300", "down"}).isOk());
  ASSERT_TRUE(run({"ip", "addr", "add", "10.77.0.99/24", "dev", "hb-lab"}).isOk());

  Planned p = plan({&lab});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  const PlanAction& a = p.actions[0];
  EXPECT_EQ(a.type, ActionType::Update);
  EXPECT_TRUE(a.drift);
  std::map<std::string, FieldChange> changes;
  for (const auto& c : a.changes) {
    changes[c.path] = c;
  }
  ASSERT_TRUE(changes.count("spec.mtu")) << a.reason;
  EXPECT_EQ(changes["spec.mtu"].before, 1300);
  EXPECT_EQ(changes["spec.mtu"].after, 1400);
  EXPECT_TRUE(changes.count("status.up"));
  EXPECT_TRUE(changes.count("status.addresses"));

  ASSERT_TRUE(apply(p, {&lab}).isOk());
  const LinkState* br = link("hb-lab");
  ASSERT_NE(br, nullptr);
  EXPECT_EQ(br->mtu, 1400);
  EXPECT_TRUE(br->up);
  EXPECT_EQ(br->ipv4Strings(), std::vector<std::string>{"10.77.0.1/24"});
  EXPECT_TRUE(plan({&lab}).actions.empty());
}

TEST_F(NetProviderIntegrationTest, Ipv6TurnedOnByHandIsDriftAndRepaired) {
  Object lab = makeObject("Network", "lab", kLab);
  converge({&lab});
  ASSERT_TRUE(run({"sysctl", "-q", "-w", "net.ipv6.conf.hb-lab.disable_ipv6=0"}).isOk());

  Planned p = plan({&lab});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_EQ(p.actions[0].type, ActionType::Update);
  EXPECT_TRUE(p.actions[0].drift);
  EXPECT_NE(p.actions[0].reason.find("IPv6 of bridge hb-lab turned on by hand"), std::string::npos)
      << p.actions[0].reason;
  ASSERT_TRUE(apply(p, {&lab}).isOk());
  EXPECT_EQ(*run({"cat", "/proc/sys/net/ipv6/conf/hb-lab/disable_ipv6"}), "1\n");
  EXPECT_TRUE(plan({&lab}).actions.empty());

  // A bridge an older hyper left with IPv6 on (its record does not say hyper turned it off) is
  // turned off as an update, not reported as a hand change.
  ASSERT_TRUE(run({"sysctl", "-q", "-w", "net.ipv6.conf.hb-lab.disable_ipv6=0"}).isOk());
  inventory_[lab.id].handles.erase("ipv6");
  p = plan({&lab});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_EQ(p.actions[0].type, ActionType::Update);
  EXPECT_FALSE(p.actions[0].drift) << p.actions[0].reason;
  ASSERT_TRUE(apply(p, {&lab}).isOk());
  EXPECT_EQ(*run({"cat", "/proc/sys/net/ipv6/conf/hb-lab/disable_ipv6"}), "1\n");
  EXPECT_EQ(inventory_[lab.id].handles["ipv6"], false);
  EXPECT_TRUE(plan({&lab}).actions.empty());
}

TEST_F(NetProviderIntegrationTest, SpecChangesUpdateInPlaceOrReplace) {
  Object lab = makeObject("Network", "lab", kLab);
  converge({&lab});

  // A new gateway replaces the address in place.
  Object moved = makeObject("Network", "lab",
                            R"({"cidr": "10.77.0.0/24", "mtu": 1400, "nat": true,
                                "gateway": "10.77.0.254"})");
  Planned p = plan({&moved});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_EQ(p.actions[0].type, ActionType::Update);
  EXPECT_FALSE(p.actions[0].drift);
  ASSERT_TRUE(apply(p, {&moved}).isOk());
  ASSERT_NE(link("hb-lab"), nullptr);
  EXPECT_EQ(link("hb-lab")->ipv4Strings(), std::vector<std::string>{"10.77.0.254/24"});
  EXPECT_TRUE(plan({&moved}).actions.empty());

  // A new bridge name replaces the bridge.
  Object renamed = makeObject("Network", "lab",
                              R"({"cidr": "10.77.0.0/24", "mtu": 1400, "nat": true,
                                  "gateway": "10.77.0.254", "bridge": "br-lab"})");
  p = plan({&renamed});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_EQ(p.actions[0].type, ActionType::Replace);
  ASSERT_TRUE(apply(p, {&renamed}).isOk());
  EXPECT_EQ(link("hb-lab"), nullptr);
  const LinkState* br = link("br-lab");
  ASSERT_NE(br, nullptr);
  EXPECT_EQ(br->ipv4Strings(), std::vector<std::string>{"10.77.0.254/24"});
  EXPECT_EQ(br->alias, "hyper:Network/lab");
  EXPECT_TRUE(plan({&renamed}).actions.empty());
}

TEST_F(NetProviderIntegrationTest, FlushedOrDeletedTableIsDriftAndRepaired) {
  Object lab = makeObject("Network", "lab", kLab);
  Object web = makeObject("NetworkPolicy", "web",
                          R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                               {"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443]}]}})");
  converge({&lab, &web});
  // The sets, maps and chains as nft lists them, in name order: the kernel lists them in the
  // order they were made, and a repair replaces the table whole where the first apply added to it.
  auto listed = [] {
    std::string text = *run({"nft", "list", "table", "inet", "hyper"});
    text = text.substr(0, text.rfind("\n}"));  // the blocks: after "table ... {\n", before "}"
    std::vector<std::string> blocks;
    for (size_t start = text.find('\n') + 1, end; start < text.size(); start = end + 2) {
      end = std::min(text.find("\n\n", start), text.size());
      blocks.push_back(text.substr(start, end - start));
    }
    std::sort(blocks.begin(), blocks.end());
    return blocks;
  };
  std::vector<std::string> before = listed();
  ASSERT_GT(before.size(), 8u);

  for (const char* how : {"flush", "delete"}) {
    ASSERT_TRUE(run({"nft", how, "table", "inet", "hyper"}).isOk());
    Planned p = plan({&lab, &web});
    ASSERT_FALSE(p.diagnostics.hasErrors()) << p.describe();
    const PlanAction* pol = p.find(web.id);
    ASSERT_NE(pol, nullptr) << how << "\n" << p.describe();
    EXPECT_EQ(pol->type, ActionType::Update);
    EXPECT_TRUE(pol->drift);
    std::string expected = std::string("nftables table inet hyper ") +
                           (std::string(how) == "flush" ? "flushed" : "deleted") + " by hand";
    EXPECT_NE(pol->reason.find(expected), std::string::npos) << pol->reason;
    const PlanAction* net = p.find(lab.id);
    ASSERT_NE(net, nullptr) << how;
    EXPECT_TRUE(net->drift);

    ASSERT_TRUE(apply(p, {&lab, &web}).isOk());
    EXPECT_EQ(listed(), before) << how;
    Planned after = plan({&lab, &web});
    EXPECT_TRUE(after.actions.empty()) << how << "\n" << after.describe();
  }
}

TEST_F(NetProviderIntegrationTest, RuleChangedByHandNamesTheChain) {
  Object lab = makeObject("Network", "lab", kLab);
  Object web = makeObject("NetworkPolicy", "web",
                          R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                               {"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443]}]}})");
  converge({&lab, &web});
  ASSERT_TRUE(run({"nft", "add", "rule", "inet", "hyper", "pol-web-egress", "accept"}).isOk());
  Planned p = plan({&lab, &web});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();  // the network's part is untouched
  EXPECT_EQ(p.actions[0].id, web.id);
  EXPECT_TRUE(p.actions[0].drift);
  EXPECT_NE(p.actions[0].reason.find("rules of nftables chain pol-web-egress changed by hand"),
            std::string::npos)
      << p.actions[0].reason;
  ASSERT_TRUE(apply(p, {&lab, &web}).isOk());
  EXPECT_TRUE(plan({&lab, &web}).actions.empty());
}

// The in-process rtnetlink dump reads what `ip -d -j addr show` prints: names, kinds, mtu, up,
// aliases, IPv4 addresses (a peer address's local side), bridge ports and their isolated flag.
TEST_F(NetProviderIntegrationTest, TheRtnetlinkDumpReadsWhatIpPrints) {
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"ip", "link", "add", "hb-dump", "type", "bridge"},
           {"ip", "link", "set", "dev", "hb-dump", "alias", "hyper:Network/dump", "mtu", "1400",
            "up"},
           {"ip", "addr", "add", "10.77.0.1/24", "dev", "hb-dump"},
           {"ip", "addr", "add", "10.78.0.1/16", "dev", "hb-dump"},
           {"ip", "link", "add", "hb-down", "type", "bridge"},
           {"ip", "link", "add", "hv-a", "type", "veth", "peer", "name", "hv-b"},
           {"ip", "link", "set", "dev", "hv-a", "master", "hb-dump"},
           {"ip", "link", "set", "dev", "hv-a", "type", "bridge_slave", "isolated", "on"},
           {"ip", "addr", "add", "10.9.9.1", "peer", "10.9.9.2/32", "dev", "hv-b"},
           {"ip", "tuntap", "add", "dev", "hv-tap", "mode", "tap"},
           {"ip", "link", "set", "dev", "hv-tap", "master", "hb-dump", "up"},
           {"sysctl", "-q", "-w", "net.ipv4.conf.hb-dump.proxy_arp_pvlan=1"},
           {"sysctl", "-q", "-w", "net.ipv6.conf.hb-down.disable_ipv6=1"}}) {
    ASSERT_TRUE(run(argv).isOk()) << argv[3];
  }
  auto printed = run({"ip", "-d", "-j", "addr", "show"});
  ASSERT_TRUE(printed.isOk()) << printed.status().message();
  auto expected = parseLinkTable(*printed);
  auto dumped = netmodel::dumpLinkTable();
  ASSERT_TRUE(expected.isOk() && dumped.isOk()) << dumped.status().message();
  auto describe = [](const LinkTable& t) {
    std::string out;
    for (const auto& l : t.links) {
      out += l.name + " kind=" + l.kind + " mtu=" + std::to_string(l.mtu) +
             " up=" + std::to_string(l.up) + " alias=" + l.alias + " master=" + l.master +
             " isolated=" + std::to_string(l.isolated);
      for (const auto& a : l.ipv4Strings()) {
        out += " " + a;
      }
      out += "\n";
    }
    return out;
  };
  EXPECT_EQ(describe(*dumped), describe(*expected));
  // And the cases are there, so the comparison means something.
  const LinkState* bridge = dumped->find("hb-dump");
  ASSERT_NE(bridge, nullptr);
  EXPECT_EQ(bridge->kind, "bridge");
  EXPECT_EQ(bridge->mtu, 1400);
  EXPECT_TRUE(bridge->up);
  EXPECT_EQ(bridge->alias, "hyper:Network/dump");
  EXPECT_EQ(bridge->ipv4Strings(), (std::vector<std::string>{"10.77.0.1/24", "10.78.0.1/16"}));
  ASSERT_NE(dumped->find("hv-a"), nullptr);
  EXPECT_EQ(dumped->find("hv-a")->master, "hb-dump");
  EXPECT_TRUE(dumped->find("hv-a")->isolated);
  EXPECT_FALSE(dumped->find("hv-tap")->isolated);
  EXPECT_EQ(dumped->find("hv-tap")->kind, "tun");
  EXPECT_EQ(dumped->find("hv-b")->ipv4Strings(), (std::vector<std::string>{"10.9.9.1/32"}));
  EXPECT_FALSE(dumped->find("hb-down")->up);
  // proxy_arp_pvlan from the links' IPv4 settings, as /proc shows it (ip -j does not print it).
  for (const char* name : {"hb-dump", "hb-down"}) {
    auto proc = run({"cat", std::string("/proc/sys/net/ipv4/conf/") + name + "/proxy_arp_pvlan"});
    ASSERT_TRUE(proc.isOk()) << proc.status().message();
    ASSERT_TRUE(dumped->find(name)->proxyArpPvlan.has_value()) << name;
    EXPECT_EQ(*dumped->find(name)->proxyArpPvlan, proc->front() == '1') << name << ": " << *proc;
  }
  EXPECT_TRUE(*bridge->proxyArpPvlan);
  EXPECT_FALSE(*dumped->find("hb-down")->proxyArpPvlan);
  // IPv6 on or off from the links' IPv6 settings, as /proc shows it.
  for (const char* name : {"hb-dump", "hb-down"}) {
    auto proc = run({"cat", std::string("/proc/sys/net/ipv6/conf/") + name + "/disable_ipv6"});
    ASSERT_TRUE(proc.isOk()) << proc.status().message();
    ASSERT_TRUE(dumped->find(name)->ipv6.has_value()) << name;
    EXPECT_EQ(*dumped->find(name)->ipv6, proc->front() == '0') << name << ": " << *proc;
  }
  EXPECT_TRUE(*bridge->ipv6);
  EXPECT_FALSE(*dumped->find("hb-down")->ipv6);

  // Only some links (what an apply reads): those named, and those holding an address in the
  // prefixes given, each as the whole dump has it but for its master.
  auto some = netmodel::dumpLinkTableFor(
      {"hb-down", "hv-tap", "nothing-here"},
      {*netmodel::Cidr::parse("10.9.0.0/16"), *netmodel::Cidr::parse("10.78.5.0/24")});
  ASSERT_TRUE(some.isOk()) << some.status().message();
  LinkTable wanted;
  for (const auto& l : dumped->links) {
    if (l.name == "hb-down" || l.name == "hv-tap" || l.name == "hb-dump" || l.name == "hv-b") {
      wanted.links.push_back(l);
      wanted.links.back().master.clear();
    }
  }
  ASSERT_EQ(wanted.links.size(), 4u);
  EXPECT_EQ(describe(*some), describe(wanted));
  EXPECT_EQ(some->find("hb-dump")->proxyArpPvlan, bridge->proxyArpPvlan);
  EXPECT_EQ(some->find("hb-down")->ipv6, std::optional<bool>(false));
  // Near misses: the prefixes right next to hb-dump's addresses hold none of them.
  auto none = netmodel::dumpLinkTableFor(
      {}, {*netmodel::Cidr::parse("10.76.255.0/24"), *netmodel::Cidr::parse("10.79.0.0/16"),
           *netmodel::Cidr::parse("10.9.9.2/32")});
  ASSERT_TRUE(none.isOk()) << none.status().message();
  EXPECT_EQ(describe(*none), "");

  // The same from an address cache (what the provider's scoped observes and applies use): the
  // cache finds the links, their addresses are as the kernel orders them.
  netmodel::AddressCache cache;
  auto cached = netmodel::dumpLinkTableFor(
      {"hb-down", "hv-tap", "nothing-here"},
      {*netmodel::Cidr::parse("10.9.0.0/16"), *netmodel::Cidr::parse("10.78.5.0/24")}, &cache);
  ASSERT_TRUE(cached.isOk()) << cached.status().message();
  EXPECT_EQ(describe(*cached), describe(wanted));
  auto cachedNone = netmodel::dumpLinkTableFor(
      {},
      {*netmodel::Cidr::parse("10.76.255.0/24"), *netmodel::Cidr::parse("10.79.0.0/16"),
       *netmodel::Cidr::parse("10.9.9.2/32")},
      &cache);
  ASSERT_TRUE(cachedNone.isOk()) << cachedNone.status().message();
  EXPECT_EQ(describe(*cachedNone), "");
  EXPECT_EQ(cache.dumps(), 1u);
}

// The address cache follows the kernel's notifications: after every change it says what a fresh
// dump says, without dumping again.
TEST_F(NetProviderIntegrationTest, TheAddressCacheSaysWhatAFreshDumpSays) {
  auto dumped = []() {
    std::set<std::string> out;
    auto table = netmodel::dumpLinkTable();
    if (!table.isOk()) {
      ADD_FAILURE() << table.status().message();
      return out;
    }
    for (const auto& l : table->links) {
      unsigned index = ::if_nametoindex(l.name.c_str());
      EXPECT_NE(index, 0u) << l.name;
      for (const auto& a : l.ipv4Strings()) {
        out.insert(std::to_string(index) + " " + a);
      }
    }
    return out;
  };
  netmodel::AddressCache cache;
  auto cached = [&]() {
    std::set<std::string> out;
    auto addresses = cache.addresses();
    if (!addresses.isOk()) {
      ADD_FAILURE() << addresses.status().message();
      return out;
    }
    for (const auto& [ifindex, address] : *addresses) {
      out.insert(std::to_string(ifindex) + " " + address.str());
    }
    return out;
  };
  ASSERT_TRUE(run({"ip", "link", "add", "hb-c1", "type", "bridge"}).isOk());
  ASSERT_TRUE(run({"ip", "addr", "add", "10.50.0.1/24", "dev", "hb-c1"}).isOk());
  EXPECT_EQ(cached(), dumped());
  EXPECT_EQ(cache.dumps(), 1u);
  const std::vector<std::vector<std::string>> changes = {
      {"ip", "addr", "add", "10.50.0.2/24", "dev", "hb-c1"},  // a secondary
      {"ip", "link", "add", "hb-c2", "type", "bridge"},
      {"ip", "addr", "add", "10.60.0.1/16", "dev", "hb-c2"},
      {"ip", "addr", "del", "10.50.0.1/24", "dev", "hb-c1"},  // the primary: the secondary goes
      {"ip", "addr", "add", "10.50.0.1/24", "dev", "hb-c1"},
      {"ip", "addr", "flush", "dev", "hb-c1"},
      {"ip", "link", "del", "hb-c2"}};  // its address with it
  for (const auto& argv : changes) {
    ASSERT_TRUE(run(argv).isOk()) << argv[3];
    EXPECT_EQ(cached(), dumped()) << "after " << argv[2] << " " << argv[3] << " " << argv[4];
  }
  EXPECT_EQ(cache.dumps(), 1u);
}

// The ruleset's generation moves with every nftables commit in the namespace (by nft, by
// libnftables, to any table) and only then; the provider lists its tables again only when it
// moved, so a hand change is seen at the next observe and a quiet observe lists nothing.
TEST_F(NetProviderIntegrationTest, TablesAreListedAgainOnlyWhenTheRulesetGenerationMoves) {
  auto g1 = host::nftGeneration();
  auto g2 = host::nftGeneration();
  ASSERT_TRUE(g1.isOk() && g2.isOk()) << g1.status().message();
  EXPECT_TRUE(*g1 == *g2);
  ASSERT_TRUE(run({"nft", "add", "table", "inet", "other"}).isOk());
  auto g3 = host::nftGeneration();
  ASSERT_TRUE(g3.isOk());
  EXPECT_FALSE(*g3 == *g2);
  ASSERT_TRUE(host::nftApply("add set inet other s { type ipv4_addr; }").isOk());
  auto g4 = host::nftGeneration();
  ASSERT_TRUE(g4.isOk());
  EXPECT_FALSE(*g4 == *g3);
  ASSERT_TRUE(run({"nft", "add", "element", "inet", "other", "s", "{ 192.0.2.1 }"}).isOk());
  auto g5 = host::nftGeneration();
  ASSERT_TRUE(g5.isOk());
  EXPECT_FALSE(*g5 == *g4);
  EXPECT_EQ(g5->netns, g1->netns);

  Object lab = makeObject("Network", "lab", kLab);
  Object web = makeObject("NetworkPolicy", "web",
                          R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                               {"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443]}]}})");
  converge({&lab, &web});
  size_t listings = provider_.nftListings();
  EXPECT_TRUE(plan({&lab, &web}).actions.empty());
  EXPECT_TRUE(plan({&lab, &web}).actions.empty());
  EXPECT_EQ(provider_.nftListings(), listings);  // nothing committed: the last listing holds
  // A commit to another table moves the generation too: listed again, nothing to do.
  ASSERT_TRUE(run({"nft", "delete", "table", "inet", "other"}).isOk());
  EXPECT_TRUE(plan({&lab, &web}).actions.empty());
  EXPECT_EQ(provider_.nftListings(), listings + 1);
  // A hand change to hyper's table: listed again and found.
  ASSERT_TRUE(run({"nft", "flush", "chain", "inet", "hyper", "pol-web-egress"}).isOk());
  Planned p = plan({&lab, &web});
  EXPECT_EQ(provider_.nftListings(), listings + 2);
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_EQ(p.actions[0].id, web.id);
  EXPECT_TRUE(p.actions[0].drift);
}

TEST_F(NetProviderIntegrationTest, AChangeWritesOnlyWhatItChangesAndListsOnlyThatBack) {
  Object lab = makeObject("Network", "lab", kLab);
  Object web = makeObject("NetworkPolicy", "web",
                          R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                               {"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443]}]}})");
  converge({&lab, &web});
  EXPECT_EQ(provider_.nftReplaces(), 1u);     // the Network: the tables made
  EXPECT_EQ(provider_.nftDeltaWrites(), 1u);  // the policy: its chains and its jumps added
  size_t listings = provider_.nftListings();
  size_t partial = provider_.nftPartialListings();
  EXPECT_EQ(partial, 1u);

  // An MTU is not in the tables: they are neither written nor listed.
  auto generation = host::nftGeneration();
  ASSERT_TRUE(generation.isOk());
  Object mtu =
      makeObject("Network", "lab", R"({"cidr": "10.77.0.0/24", "mtu": 1300, "nat": true})");
  Planned p = plan({&mtu, &web});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  ASSERT_TRUE(apply(p, {&mtu, &web}).isOk());
  auto after = host::nftGeneration();
  ASSERT_TRUE(after.isOk());
  EXPECT_TRUE(*after == *generation);
  EXPECT_EQ(provider_.nftReplaces(), 1u);
  EXPECT_EQ(provider_.nftDeltaWrites(), 1u);
  EXPECT_EQ(link("hb-lab")->mtu, 1300);
  EXPECT_TRUE(plan({&mtu, &web}).actions.empty());

  // A policy's rule: its chain rewritten, and only the parts the change touched listed back.
  Object web2 = makeObject("NetworkPolicy", "web",
                           R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                                {"cidr": "198.51.100.0/24", "protocol": "udp", "ports": [53]}]}})");
  p = plan({&mtu, &web2});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  ASSERT_TRUE(apply(p, {&mtu, &web2}).isOk());
  EXPECT_EQ(provider_.nftDeltaWrites(), 2u);
  EXPECT_EQ(provider_.nftReplaces(), 1u);
  EXPECT_EQ(provider_.nftPartialListings(), partial + 1);
  EXPECT_EQ(provider_.nftListings(), listings);
  EXPECT_NE(run({"nft", "list", "chain", "inet", "hyper", "pol-web-egress"})->find("udp dport 53"),
            std::string::npos);
  // The patched listing answers the plan; a whole listing (another table moved the generation)
  // finds the same fingerprints.
  EXPECT_TRUE(plan({&mtu, &web2}).actions.empty());
  ASSERT_TRUE(run({"nft", "add", "table", "inet", "other"}).isOk());
  Planned listed = plan({&mtu, &web2});
  EXPECT_EQ(provider_.nftListings(), listings + 1);
  EXPECT_TRUE(listed.actions.empty()) << listed.describe();

  // Someone else committed since hyper's last write: the next write replaces the tables whole.
  ASSERT_TRUE(run({"nft", "flush", "chain", "inet", "hyper", "pol-web-egress"}).isOk());
  p = plan({&mtu, &web2});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_TRUE(p.actions[0].drift);
  ASSERT_TRUE(apply(p, {&mtu, &web2}).isOk());
  EXPECT_EQ(provider_.nftReplaces(), 2u);
  EXPECT_EQ(provider_.nftDeltaWrites(), 2u);
  EXPECT_TRUE(plan({&mtu, &web2}).actions.empty());
}

// A provider that never wrote the tables (hyperd just started) writes a change as a difference
// once a full observe found every record's fingerprint in the tables: they hold what its model
// renders. Without that (a hand change, an action cut short) or after another commit, the write
// replaces the tables whole as before.
TEST_F(NetProviderIntegrationTest, ARestartedProviderWritesByDifferenceOnceTheTablesAreAsRecorded) {
  Object lab = makeObject("Network", "lab", kLab);
  Object dev = makeObject("Network", "dev", R"({"cidr": "10.78.0.0/24"})");
  Object web = makeObject("NetworkPolicy", "web",
                          R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                               {"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443]}]}})");
  converge({&lab, &dev, &web});
  const std::vector<const Object*> desired = {&lab, &dev, &web};
  Object web2 = makeObject("NetworkPolicy", "web",
                           R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                                {"cidr": "198.51.100.0/24", "protocol": "udp", "ports": [53]}]}})");
  Object web3 = makeObject("NetworkPolicy", "web",
                           R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                                {"cidr": "198.51.100.0/24", "protocol": "udp", "ports": [5353]}]}})");
  // `provider` observes in full, plans `policy` (one action), runs `between`, applies it and
  // records it.
  auto change = [&](
                    NetProvider& provider, const Object& policy,
                    const std::function<void()>& between = [] {}) {
    auto observed = observeRecords(provider, {&lab, &dev, &policy}, nullptr);
    PlanRequest preq{policy.id, &policy, &observed[policy.id], &inventory_[policy.id]};
    PlanResponse planned;
    provider.plan(preq, planned);
    ASSERT_TRUE(planned.action.has_value()) << planned.diagnostics.format();
    planned.action->id = policy.id;
    planned.action->provider = "net";
    planned.action->dependsOn = {lab.id};
    between();
    ApplyRequest req{&*planned.action, &policy, &inventory_[policy.id]};
    ApplyResponse resp;
    provider.apply(req, resp);
    ASSERT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
    ManagedRecord& r = inventory_[policy.id];
    r.spec = policy.spec;
    r.specHash = sha256Hex(canonicalJson(policy.spec));
    r.handles = resp.handles;
    r.fingerprint = resp.fingerprint;
  };

  {  // Restarted: the full observe finds the tables as recorded, the change is a difference.
    NetProvider restarted;
    observeRecords(restarted, desired, nullptr);
    EXPECT_EQ(restarted.nftAdoptions(), 1u);
    change(restarted, web2);
    EXPECT_EQ(restarted.nftReplaces(), 0u);
    EXPECT_EQ(restarted.nftDeltaWrites(), 1u);
    EXPECT_NE(
        run({"nft", "list", "chain", "inet", "hyper", "pol-web-egress"})->find("udp dport 53"),
        std::string::npos);
    // What it recorded is what a whole listing by another provider shows: nothing to do.
    NetProvider fresh;
    auto observed = observeRecords(fresh, {&lab, &dev, &web2}, nullptr);
    for (const Object* o : {&lab, &dev, &web2}) {
      EXPECT_EQ(observed[o->id].fingerprint, inventory_[o->id].fingerprint) << o->id.str();
    }
    EXPECT_EQ(fresh.nftAdoptions(), 1u);
  }
  {  // A hand change to hyper's table: not adopted; the repair replaces the tables whole.
    ASSERT_TRUE(run({"nft", "add", "rule", "inet", "hyper", "net-dev-egress", "drop"}).isOk());
    NetProvider restarted;
    observeRecords(restarted, {&lab, &dev, &web2}, nullptr);
    EXPECT_EQ(restarted.nftAdoptions(), 0u);
    change(restarted, web3);
    EXPECT_EQ(restarted.nftReplaces(), 1u);
    EXPECT_EQ(restarted.nftDeltaWrites(), 0u);
    EXPECT_EQ(run({"nft", "list", "chain", "inet", "hyper", "net-dev-egress"})->find("drop"),
              std::string::npos);
  }
  {  // Someone else commits between the observe and the write: the write replaces the tables.
    NetProvider restarted;
    change(restarted, web2, [] {
      ASSERT_TRUE(run({"nft", "add", "table", "inet", "other"}).isOk());
    });
    EXPECT_EQ(restarted.nftAdoptions(), 1u);
    EXPECT_EQ(restarted.nftReplaces(), 1u);
    EXPECT_EQ(restarted.nftDeltaWrites(), 0u);
    // A commit to another table before a full observe: the tables are still as recorded.
    ASSERT_TRUE(run({"nft", "delete", "table", "inet", "other"}).isOk());
    change(restarted, web3);
    EXPECT_EQ(restarted.nftAdoptions(), 2u);
    EXPECT_EQ(restarted.nftDeltaWrites(), 1u);
  }
  {  // An action cut short (its record unconfirmed): not adopted.
    inventory_[dev.id].fingerprint = Inventory::kUnconfirmed;
    NetProvider restarted;
    observeRecords(restarted, {&lab, &dev, &web2}, nullptr);
    EXPECT_EQ(restarted.nftAdoptions(), 0u);
  }
}

// A scoped observe (PartialObserve) answers for its objects alone, each as a whole observe does:
// the links it reads alone still show a collision in its CIDR and a hand change on its bridge,
// its context still comes from the whole revision, and an object that left the source is still
// observed as applied. What is outside the scope is not in its answer.
TEST_F(NetProviderIntegrationTest, AScopedObserveAnswersForItsObjectsAsAWholeOneDoes) {
  auto lab = std::make_shared<Object>(makeObject("Network", "lab", kLab));
  auto dev = std::make_shared<Object>(makeObject("Network", "dev", R"({"cidr": "10.78.0.0/24"})"));
  auto open = std::make_shared<Object>(
      makeObject("NetworkPolicy", "open", R"({"network": "dev", "egress": {"mode": "none"}})"));
  auto web = std::make_shared<Object>(
      makeObject("NetworkPolicy", "web",
                 R"({"network": "lab", "selector": {"matchLabels": {"role": "web"}},
                     "egress": {"mode": "none"}})"));
  converge({dev.get(), lab.get(), open.get(), web.get()});
  auto vm = std::make_shared<Object>(makeObject(
      "VM", "web0",
      R"({"kernel": {"path": "/vmlinuz"}, "network": {"name": "lab", "ip": "10.77.0.10"}})"));
  vm->labels = {{"role", "web"}};
  // Sorted by id, as a revision is.
  const std::vector<std::shared_ptr<const Object>> revision = {dev, lab, open, web, vm};
  ASSERT_TRUE(run({"ip", "link", "add", "x0", "type", "bridge"}).isOk());
  ASSERT_TRUE(run({"ip", "addr", "add", "10.78.0.200/24", "dev", "x0"}).isOk());
  ASSERT_TRUE(run({"ip", "link", "set", "hb-lab", "mtu", "1280"}).isOk());

  auto observe = [&](const std::vector<const Object*>& desired,
                     const std::vector<ObjectId>* scope) {
    return observeRecords(provider_, desired, &revision, scope);
  };
  const std::vector<const Object*> desired = {dev.get(), lab.get(), open.get(), web.get()};
  auto whole = observe(desired, nullptr);
  ASSERT_EQ(whole.size(), 4u);
  EXPECT_EQ(whole[dev->id].foreignOwner, "x0");
  EXPECT_EQ(whole[lab->id].fields["mtu"], 1280);
  EXPECT_EQ(whole[web->id].context, Json({{"selected", {"10.77.0.10"}}}));
  auto same = [](const ObservedState& a, const ObservedState& b) {
    return a.exists == b.exists && a.fields == b.fields && a.fingerprint == b.fingerprint &&
           a.foreignOwner == b.foreignOwner && a.note == b.note && a.context == b.context;
  };
  const std::vector<std::vector<ObjectId>> scopes = {
      {dev->id, web->id}, {lab->id}, {open->id}, {dev->id, lab->id, open->id, web->id}};
  for (const auto& scope : scopes) {
    auto part = observe(desired, &scope);
    std::vector<ObjectId> answered;
    for (const auto& [id, state] : part) {
      answered.push_back(id);
      EXPECT_TRUE(same(state, whole[id]))
          << id.str() << ": " << state.fields.dump() << " vs " << whole[id].fields.dump();
    }
    EXPECT_EQ(answered, scope);
  }
  // dev left the source: observed from its record, as a whole observe does then.
  const std::vector<const Object*> withoutDev = {lab.get(), open.get(), web.get()};
  auto wholeWithout = observe(withoutDev, nullptr);
  const std::vector<ObjectId> devOnly = {dev->id};
  auto part = observe(withoutDev, &devOnly);
  ASSERT_EQ(part.size(), 1u);
  EXPECT_TRUE(same(part[dev->id], wholeWithout[dev->id])) << part[dev->id].fields.dump();
  EXPECT_EQ(part[dev->id].foreignOwner, "x0");
}

// Observe keeps the tables' model from the records up to date in place, parsing only records
// whose spec tree changed: a record rewritten with another spec (as another hyper would) is a
// different model, which the tables were not written from, so the next write after a push's
// observe replaces them; one rewritten with an equal spec is the same model, and the next write
// is a delta. (A full observe takes the tables as the model's when it finds every record's
// fingerprint in them: ARestartedProviderWritesByDifferenceOnceTheTablesAreAsRecorded.)
TEST_F(NetProviderIntegrationTest, ARecordWithAnotherSpecIsAnotherModelAndAnEqualOneIsNot) {
  Object lab = makeObject("Network", "lab", kLab);
  const char* rule = R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                          {"cidr": "203.0.113.0/24", "protocol": "tcp", "ports": [443]}]}})";
  Object web = makeObject("NetworkPolicy", "web", rule);
  Object api =
      makeObject("NetworkPolicy", "api", R"({"network": "lab", "egress": {"mode": "none"}})");
  converge({&lab, &web, &api});
  size_t replaces = provider_.nftReplaces();
  size_t deltas = provider_.nftDeltaWrites();

  // web's record now holds an equal spec in a tree of its own: the same model.
  inventory_[web.id].spec = Json::parse(rule);
  Object api2 =
      makeObject("NetworkPolicy", "api", R"({"network": "lab", "egress": {"mode": "any"}})");
  converge({&lab, &web, &api2});
  EXPECT_EQ(provider_.nftReplaces(), replaces);
  EXPECT_EQ(provider_.nftDeltaWrites(), deltas + 1);

  // web's record now holds another rule than the tables: another model, so a replace.
  inventory_[web.id].spec = Json::parse(
      R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
           {"cidr": "198.51.100.0/24", "protocol": "udp", "ports": [53]}]}})");
  const std::vector<ObjectId> pushed = {api.id, web.id};
  Planned p = plan({&lab, &web, &api}, false, &pushed);
  ASSERT_NE(p.find(web.id), nullptr) << p.describe();
  ASSERT_NE(p.find(api.id), nullptr) << p.describe();
  ASSERT_TRUE(apply(p, {&lab, &web, &api}).isOk());
  EXPECT_EQ(provider_.nftReplaces(), replaces + 1);
  EXPECT_TRUE(plan({&lab, &web, &api}).actions.empty());
  EXPECT_NE(run({"nft", "list", "chain", "inet", "hyper", "pol-web-egress"})->find("tcp dport 443"),
            std::string::npos);
}

TEST_F(NetProviderIntegrationTest, ANetworksRepairWritesTheTablesThoughItsSpecIsTheSame) {
  // The one action is the Network's, whose spec the tables render the same as before: what
  // tells that they must be written is that someone else committed since hyper's last write.
  Object lab = makeObject("Network", "lab", kLab);
  converge({&lab});
  size_t replaces = provider_.nftReplaces();
  ASSERT_TRUE(run({"nft", "flush", "table", "inet", "hyper"}).isOk());
  Planned p = plan({&lab});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_TRUE(p.actions[0].drift);
  ASSERT_TRUE(apply(p, {&lab}).isOk());
  EXPECT_EQ(provider_.nftReplaces(), replaces + 1);
  EXPECT_NE(run({"nft", "list", "chain", "inet", "hyper", "nat-postrouting"})->find("masquerade"),
            std::string::npos);
  EXPECT_TRUE(plan({&lab}).actions.empty());
}

TEST_F(NetProviderIntegrationTest, GuardChangedByHandIsDriftOfTheNetwork) {
  Object lab = makeObject("Network", "lab", kLab);
  converge({&lab});
  std::string before = *run({"nft", "list", "table", "bridge", "hyper"});
  ASSERT_TRUE(run({"nft", "flush", "chain", "bridge", "hyper", "guard-prerouting"}).isOk());
  Planned p = plan({&lab});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_TRUE(p.actions[0].drift);
  EXPECT_NE(p.actions[0].reason.find("rules of nftables chain guard-prerouting changed by hand"),
            std::string::npos)
      << p.actions[0].reason;
  ASSERT_TRUE(apply(p, {&lab}).isOk());
  EXPECT_EQ(*run({"nft", "list", "table", "bridge", "hyper"}), before);
  EXPECT_TRUE(plan({&lab}).actions.empty());

  ASSERT_TRUE(run({"nft", "delete", "table", "bridge", "hyper"}).isOk());
  p = plan({&lab});
  ASSERT_EQ(p.actions.size(), 1u) << p.describe();
  EXPECT_NE(p.actions[0].reason.find("chain guard-prerouting deleted by hand"), std::string::npos)
      << p.actions[0].reason;
  ASSERT_TRUE(apply(p, {&lab}).isOk());
  EXPECT_EQ(*run({"nft", "list", "table", "bridge", "hyper"}), before);
}

// batchesDependents: the engine hands over new Networks with their policies in one batch (networks
// first). A policy whose network failed in it is not written, and says why.
// Networks m0..m2 and their policies q0..q2 in one batch, where `breakM1` makes Network/m1 fail:
// q1 must not be written, everything else must be, and then be in sync.
void NetProviderIntegrationTest::expectOnlyM1AndItsPolicyFail(const std::function<void()>& breakM1,
                                                              const std::string& m1Error) {
  ASSERT_TRUE(provider_.batchesDependents());
  std::vector<Object> objects;
  for (int i = 0; i < 3; ++i) {
    std::string name = "m" + std::to_string(i);
    objects.push_back(
        makeObject("Network", name, R"({"cidr": "10.92.)" + std::to_string(i) + R"(.0/24"})"));
  }
  for (int i = 0; i < 3; ++i) {
    objects.push_back(
        makeObject("NetworkPolicy", "q" + std::to_string(i),
                   R"({"network": "m)" + std::to_string(i) + R"(", "egress": {"mode": "none"}})"));
  }
  std::vector<const Object*> desired;
  for (const auto& o : objects) {
    desired.push_back(&o);
  }
  Planned p = plan(desired);
  ASSERT_FALSE(p.diagnostics.hasErrors()) << p.describe();
  ASSERT_EQ(p.actions.size(), 6u) << p.describe();
  breakM1();
  std::vector<const PlanAction*> batch;
  for (const char* kind : {"Network", "NetworkPolicy"}) {
    for (const auto& a : p.actions) {
      if (a.id.kind == kind) {
        batch.push_back(&a);
      }
    }
  }
  auto done = applyBatch(batch, desired);
  ASSERT_EQ(done.size(), 6u);
  auto table = run({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(table.isOk()) << table.status().message();
  for (size_t i = 0; i < batch.size(); ++i) {
    const ObjectId& id = batch[i]->id;
    if (id.name == "m1") {
      EXPECT_NE(done[i].diagnostics.format().find(m1Error), std::string::npos)
          << done[i].diagnostics.format();
    } else if (id.name == "q1") {
      EXPECT_NE(
          done[i].diagnostics.format().find("not applied: Network/m1 failed in the same batch"),
          std::string::npos)
          << done[i].diagnostics.format();
      EXPECT_EQ(table->find("chain pol-q1-egress"), std::string::npos) << *table;
      EXPECT_EQ(table->find("hb-m1"), std::string::npos) << *table;
    } else {
      EXPECT_FALSE(done[i].diagnostics.hasErrors()) << id.str() << done[i].diagnostics.format();
      EXPECT_FALSE(done[i].fingerprint.empty()) << id.str();
    }
  }
  EXPECT_NE(table->find("chain pol-q2-egress"), std::string::npos) << *table;
  std::vector<const Object*> rest;
  for (const Object* o : desired) {
    if (o->id.name != "m1" && o->id.name != "q1") {
      rest.push_back(o);
    }
  }
  Planned after = plan(rest);
  EXPECT_TRUE(after.actions.empty()) << after.describe();
}

// A name collision is found before any link is changed.
TEST_F(NetProviderIntegrationTest, APolicyInItsNetworksBatchIsNotWrittenWhenTheNetworkFails) {
  expectOnlyM1AndItsPolicyFail(
      [&] {
        ASSERT_TRUE(run({"ip", "link", "add", "hb-m1", "type", "bridge"}).isOk());
      },
      "bridge hb-m1 exists and is not managed by hyper");
}

// A failure only the kernel finds comes after the tables were written (they are written while
// the kernel makes the bridges): they are written again without the Network and its policy. Here
// hyper's alias is on a VXLAN device that cannot take the bridge's MTU (its lower device's is
// 1000); the error is the request's, in ip's words.
TEST_F(NetProviderIntegrationTest, ANetworkThatFailsInTheKernelIsTakenOutOfTheTablesAgain) {
  expectOnlyM1AndItsPolicyFail(
      [&] {
        ASSERT_TRUE(run({"ip", "link", "add", "low-m1", "mtu", "1000", "type", "bridge"}).isOk());
        ASSERT_TRUE(run({"ip", "link", "add", "hb-m1", "type", "vxlan", "id", "5", "dstport",
                         "4789", "dev", "low-m1"})
                        .isOk());
        ASSERT_TRUE(run({"ip", "link", "set", "dev", "hb-m1", "alias", "hyper:Network/m1"}).isOk());
      },
      "configure bridge hb-m1 <- link set dev hb-m1 mtu 1500 up <- RTNETLINK answers: Invalid "
      "argument");
}

// The engine hands the provider every Network (then every NetworkPolicy) ready at once: one round
// of rtnetlink requests and one nftables transaction for all of them, and still one action's
// failure is its own.
TEST_F(NetProviderIntegrationTest, ABatchMakesEveryBridgeAndPolicyAtOnceAndFailsOnlyItsOwn) {
  std::vector<Object> objects;
  const int n = 12;
  for (int i = 0; i < n; ++i) {
    std::string name = "n" + std::to_string(10 + i);
    objects.push_back(makeObject("Network", name,
                                 R"({"cidr": "10.91.)" + std::to_string(i) +
                                     R"(.0/24", "mtu": 1400, "nat": )" +
                                     (i % 2 ? "true" : "false") + "}"));
  }
  for (int i = 0; i < n; ++i) {
    std::string name = "n" + std::to_string(10 + i);
    objects.push_back(makeObject(
        "NetworkPolicy", "p" + std::to_string(10 + i),
        R"({"network": ")" + name +
            R"(", "egress": {"mode": "allowlist", "allow": [{"cidr": "203.0.113.0/24", "ports": [443], "protocol": "tcp"}]}})"));
  }
  std::vector<const Object*> desired;
  for (const auto& o : objects) {
    desired.push_back(&o);
  }
  Planned p = plan(desired);
  ASSERT_FALSE(p.diagnostics.hasErrors()) << p.describe();
  ASSERT_EQ(p.actions.size(), 2u * n) << p.describe();
  // Between plan and apply, someone makes a bridge under n15's name: its create must fail, alone.
  ASSERT_TRUE(run({"ip", "link", "add", "hb-n15", "type", "bridge"}).isOk());

  std::vector<const PlanAction*> networks;
  std::vector<const PlanAction*> policies;
  for (const auto& a : p.actions) {
    if (a.id.kind == "Network") {
      networks.push_back(&a);
    } else if (a.id.name != "p15") {  // the engine skips what depends on a failed action
      policies.push_back(&a);
    }
  }
  auto made = applyBatch(networks, desired);
  ASSERT_EQ(made.size(), networks.size());
  for (size_t i = 0; i < networks.size(); ++i) {
    if (networks[i]->id.name == "n15") {
      EXPECT_NE(made[i].diagnostics.format().find(
                    "bridge hb-n15 exists and is not managed by hyper (no alias, kind bridge)"),
                std::string::npos)
          << made[i].diagnostics.format();
      continue;
    }
    EXPECT_FALSE(made[i].diagnostics.hasErrors()) << made[i].diagnostics.format();
    EXPECT_FALSE(made[i].fingerprint.empty());
    const LinkState* br = link("hb-" + networks[i]->id.name);
    ASSERT_NE(br, nullptr) << networks[i]->id.name;
    EXPECT_EQ(br->alias, "hyper:Network/" + networks[i]->id.name);
    EXPECT_EQ(br->mtu, 1400);
    ASSERT_EQ(br->ipv4.size(), 1u);
  }
  EXPECT_EQ(link("hb-n15")->alias, "") << "the foreign bridge is left as it was";
  auto rules = applyBatch(policies, desired);
  for (size_t i = 0; i < policies.size(); ++i) {
    EXPECT_FALSE(rules[i].diagnostics.hasErrors()) << rules[i].diagnostics.format();
    EXPECT_FALSE(rules[i].fingerprint.empty());
  }
  auto table = run({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(table.isOk()) << table.status().message();
  for (int i = 0; i < n; ++i) {
    const std::string chain = "chain pol-p" + std::to_string(10 + i) + "-egress";
    EXPECT_EQ(table->find(chain) != std::string::npos, i != 5) << chain << "\n" << *table;
  }

  // Everything but n15 and p15 is in sync; the collision is still reported.
  std::vector<const Object*> rest;
  for (const Object* o : desired) {
    if (o->id.name != "n15" && o->id.name != "p15") {
      rest.push_back(o);
    }
  }
  Planned after = plan(rest);
  EXPECT_TRUE(after.actions.empty()) << after.describe();

  // A prune is batched too: every policy at once, then every network; the foreign bridge stays.
  Planned gone = plan({}, /*prune=*/true);
  std::vector<const PlanAction*> policyDeletes;
  std::vector<const PlanAction*> networkDeletes;
  for (const auto& a : gone.actions) {
    EXPECT_EQ(a.type, ActionType::Delete);
    (a.id.kind == "Network" ? networkDeletes : policyDeletes).push_back(&a);
  }
  EXPECT_EQ(policyDeletes.size() + networkDeletes.size(), 2u * n - 2) << gone.describe();
  for (const auto& r : applyBatch(policyDeletes, {})) {
    EXPECT_FALSE(r.diagnostics.hasErrors()) << r.diagnostics.format();
  }
  for (const auto& r : applyBatch(networkDeletes, {})) {
    EXPECT_FALSE(r.diagnostics.hasErrors()) << r.diagnostics.format();
  }
  EXPECT_TRUE(inventory_.empty());
  EXPECT_FALSE(tableExists("inet", "hyper"));
  EXPECT_EQ(link("hb-n10"), nullptr);
  EXPECT_NE(link("hb-n15"), nullptr);
}

TEST_F(NetProviderIntegrationTest, ForeignBridgeIsACollisionNeverTakenOver) {
  ASSERT_TRUE(run({"ip", "link", "add", "hb-lab", "type", "bridge"}).isOk());
  Object lab = makeObject("Network", "lab", kLab);
  Planned p = plan({&lab});
  EXPECT_TRUE(p.actions.empty()) << p.describe();
  bool collision = false;
  for (const auto& d : p.diagnostics.items()) {
    collision =
        collision || (d.severity == Severity::Error && d.fieldPath == "spec.bridge" &&
                      d.summary.find("bridge hb-lab exists and is not managed by hyper (no alias, "
                                     "kind bridge); hyper never takes over interfaces it did not "
                                     "create") != std::string::npos);
  }
  EXPECT_TRUE(collision) << p.describe();

  // Even an apply that skipped the plan refuses.
  PlanAction create;
  create.type = ActionType::Create;
  create.id = lab.id;
  p.actions = {create};
  Status s = apply(p, {&lab});
  EXPECT_FALSE(s.isOk());
  const LinkState* br = link("hb-lab");
  ASSERT_NE(br, nullptr);
  EXPECT_EQ(br->alias, "");
  EXPECT_TRUE(br->ipv4.empty());
  EXPECT_EQ(br->mtu, 1500);
}

TEST_F(NetProviderIntegrationTest, ForeignAddressInTheCidrIsACollision) {
  ASSERT_TRUE(run({"ip", "link", "add", "br-mine", "type", "bridge"}).isOk());
  ASSERT_TRUE(run({"ip", "addr", "add", "10.77.0.5/16", "dev", "br-mine"}).isOk());
  Object lab = makeObject("Network", "lab", kLab);
  Planned p = plan({&lab});
  EXPECT_TRUE(p.actions.empty()) << p.describe();
  bool collision = false;
  for (const auto& d : p.diagnostics.items()) {
    collision = collision || (d.fieldPath == "spec.cidr" &&
                              d.summary.find("address 10.77.0.5/16 on br-mine overlaps "
                                             "10.77.0.0/24") != std::string::npos);
  }
  EXPECT_TRUE(collision) << p.describe();
  EXPECT_EQ(link("hb-lab"), nullptr);
}

TEST_F(NetProviderIntegrationTest, DeleteRemovesOnlyWhatHyperOwns) {
  ASSERT_TRUE(run({"ip", "link", "add", "br-other", "type", "bridge"}).isOk());
  Object lab = makeObject("Network", "lab", kLab);
  Object dmz = makeObject("Network", "dmz", R"({"cidr": "10.78.0.0/24"})");
  converge({&lab, &dmz});
  ASSERT_NE(link("hb-dmz"), nullptr);

  // Someone replaces hyper's hb-dmz with a bridge of their own: pruning dmz must leave it.
  ASSERT_TRUE(run({"ip", "link", "del", "hb-dmz"}).isOk());
  ASSERT_TRUE(run({"ip", "link", "add", "hb-dmz", "type", "bridge"}).isOk());

  Planned p = plan({}, /*prune=*/true);
  ASSERT_EQ(p.actions.size(), 2u) << p.describe();
  for (const auto& a : p.actions) {
    EXPECT_EQ(a.type, ActionType::Delete);
  }
  ASSERT_TRUE(apply(p, {}).isOk());
  EXPECT_EQ(link("hb-lab"), nullptr);
  EXPECT_NE(link("br-other"), nullptr);
  ASSERT_NE(link("hb-dmz"), nullptr);
  EXPECT_EQ(link("hb-dmz")->alias, "");
  // Nothing managed is left, so neither are hyper's tables.
  EXPECT_FALSE(tableExists("inet", "hyper"));
  EXPECT_FALSE(tableExists("bridge", "hyper"));
  EXPECT_TRUE(inventory_.empty());
}

TEST_F(NetProviderIntegrationTest, OtherTablesSurviveTableReplacement) {
  const std::string other =
      "table inet other {\n"
      "\tchain input {\n"
      "\t\ttype filter hook input priority 5; policy accept;\n"
      "\t\ttcp dport 2222 drop\n"
      "\t}\n"
      "}\n";
  ASSERT_TRUE(host::runChecked({"nft", "-f", "-"}, other).isOk());
  std::string before = *run({"nft", "list", "table", "inet", "other"});

  Object lab = makeObject("Network", "lab", kLab);
  Object web =
      makeObject("NetworkPolicy", "web", R"({"network": "lab", "egress": {"mode": "none"}})");
  converge({&lab, &web});
  EXPECT_EQ(*run({"nft", "list", "table", "inet", "other"}), before);
  converge({}, /*prune=*/true);
  EXPECT_FALSE(tableExists("inet", "hyper"));
  EXPECT_EQ(*run({"nft", "list", "table", "inet", "other"}), before);
}

TEST_F(NetProviderIntegrationTest, PolicyLeftInInventoryStaysEnforcedUntilPruned) {
  Object lab = makeObject("Network", "lab", kLab);
  Object web =
      makeObject("NetworkPolicy", "web", R"({"network": "lab", "egress": {"mode": "none"}})");
  converge({&lab, &web});

  // The policy leaves the source but prune is off: a change to the network re-renders the table,
  // which must keep the policy's rules.
  Object bigger =
      makeObject("Network", "lab", R"({"cidr": "10.77.0.0/24", "mtu": 1450, "nat": true})");
  converge({&bigger});
  auto table = run({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(table.isOk());
  EXPECT_NE(table->find("chain pol-web-egress"), std::string::npos) << *table;

  converge({&bigger}, /*prune=*/true);
  table = run({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(table.isOk());
  EXPECT_EQ(table->find("pol-web"), std::string::npos) << *table;
}

// Plan is pure and apply needs only the action: what the revision's VMs mean for a Network (its
// taps) and a policy (the addresses it selects) goes from observe's context through plan into the
// action. A provider that never observed plans the same actions from the same requests, and a
// third one, which observed without the revision (so its model is loaded and nothing else),
// applies them to the same table: the provider that observed with the revision then finds
// nothing to do.
TEST_F(NetProviderIntegrationTest, PlanIsPureAndApplyTakesTapsAndSelectionFromTheAction) {
  auto lab = std::make_shared<Object>(makeObject("Network", "lab", kLab));
  auto web = std::make_shared<Object>(
      makeObject("NetworkPolicy", "web",
                 R"({"network": "lab", "selector": {"matchLabels": {"role": "web"}},
          "egress": {"mode": "none"}})"));
  auto vm = std::make_shared<Object>(makeObject(
      "VM", "web0",
      R"({"kernel": {"path": "/vmlinuz"}, "network": {"name": "lab", "ip": "10.77.0.10"}})"));
  vm->labels = {{"role", "web"}};
  const std::vector<std::shared_ptr<const Object>> revision = {lab, web, vm};
  const std::vector<const Object*> desired = {lab.get(), web.get()};

  auto observeWith = [&](NetProvider& provider, bool withRevision) {
    return observeRecords(provider, desired, withRevision ? &revision : nullptr);
  };

  auto observed = observeWith(provider_, true);
  const Json tap = {{"tap", "hv-web0"},
                    {"ip", "10.77.0.10"},
                    {"mac", netmodel::vmDefaultMac("web0")},
                    {"vm", "web0"}};
  EXPECT_EQ(observed[lab->id].context, Json({{"ports", Json::array({tap})}}));
  EXPECT_EQ(observed[web->id].context, Json({{"selected", {"10.77.0.10"}}}));

  NetProvider neverObserved;
  std::vector<PlanAction> actions;
  for (const Object* o : desired) {
    PlanRequest req{o->id, o, &observed[o->id], nullptr};
    PlanResponse mine, fresh;
    provider_.plan(req, mine);
    neverObserved.plan(req, fresh);
    ASSERT_TRUE(mine.action.has_value()) << mine.diagnostics.format();
    ASSERT_TRUE(fresh.action.has_value()) << fresh.diagnostics.format();
    Plan a, b;
    a.actions = {*mine.action};
    b.actions = {*fresh.action};
    EXPECT_EQ(a.toJson(), b.toJson()) << o->id.str();
    fresh.action->id = o->id;
    actions.push_back(*fresh.action);
  }
  EXPECT_EQ(actions[0].privateData, Json({{"ports", Json::array({tap})}}));
  EXPECT_EQ(actions[1].privateData, Json({{"selected", {"10.77.0.10"}}}));

  NetProvider applier;
  auto bare = observeWith(applier, false);
  EXPECT_TRUE(bare[lab->id].context.is_null()) << bare[lab->id].context.dump();
  for (size_t i = 0; i < actions.size(); ++i) {
    ApplyRequest req{&actions[i], desired[i], nullptr};
    ApplyResponse resp;
    applier.apply(req, resp);
    ASSERT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
    ManagedRecord r;
    r.id = desired[i]->id;
    r.provider = "net";
    r.spec = desired[i]->spec;
    r.handles = resp.handles;
    r.fingerprint = resp.fingerprint;
    inventory_[r.id] = r;
  }
  EXPECT_EQ(inventory_[lab->id].handles["ports"], Json::array({tap}));
  EXPECT_EQ(inventory_[web->id].handles["selected"], Json::array({"10.77.0.10"}));
  auto sel = run({"nft", "list", "set", "inet", "hyper", "pol-web-sel"});
  ASSERT_TRUE(sel.isOk()) << sel.status().message();
  EXPECT_NE(sel->find("10.77.0.10"), std::string::npos) << *sel;
  auto guard = run({"nft", "list", "table", "bridge", "hyper"});
  ASSERT_TRUE(guard.isOk()) << guard.status().message();
  EXPECT_NE(guard->find("hv-web0"), std::string::npos) << *guard;

  // The provider that observed with the revision finds the table as it would have made it.
  auto after = observeWith(provider_, true);
  for (const Object* o : desired) {
    PlanRequest req{o->id, o, &after[o->id], &inventory_[o->id]};
    PlanResponse resp;
    provider_.plan(req, resp);
    EXPECT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
    EXPECT_FALSE(resp.action.has_value()) << o->id.str() << ": " << resp.action->reason;
  }

  // The tap's MAC binding taken out of the shared guard set by hand is drift of lab (whose tap
  // it is), and of nothing else.
  ASSERT_TRUE(run({"nft", "delete", "element", "bridge", "hyper", "guard-macs",
                   "{ \"hv-web0\" . " + netmodel::vmDefaultMac("web0") + " }"})
                  .isOk());
  auto drifted = observeWith(provider_, true);
  for (const Object* o : desired) {
    PlanRequest req{o->id, o, &drifted[o->id], &inventory_[o->id]};
    PlanResponse resp;
    provider_.plan(req, resp);
    EXPECT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
    if (o->id != lab->id) {
      EXPECT_FALSE(resp.action.has_value()) << o->id.str() << ": " << resp.action->reason;
      continue;
    }
    ASSERT_TRUE(resp.action.has_value());
    EXPECT_TRUE(resp.action->drift);
    EXPECT_NE(resp.action->reason.find("the guard of its VMs' taps (nftables sets guard-taps, "
                                       "guard-macs, guard-addrs) changed by hand"),
              std::string::npos)
        << resp.action->reason;
  }
}

TEST_F(NetProviderIntegrationTest, ConcurrentAppliesKeepEveryObjectInTheTable) {
  std::vector<Object> objects = {
      makeObject("Network", "a", R"({"cidr": "10.80.0.0/24", "nat": true})"),
      makeObject("Network", "b", R"({"cidr": "10.81.0.0/24"})"),
      makeObject("Network", "c", R"({"cidr": "10.82.0.0/24"})"),
      makeObject("NetworkPolicy", "pa", R"({"network": "a", "egress": {"mode": "none"}})"),
      makeObject("NetworkPolicy", "pb", R"({"network": "b", "ingress": {"mode": "none"}})"),
      makeObject("NetworkPolicy", "pc", R"({"network": "c", "egress": {"mode": "none"}})")};
  std::vector<const Object*> desired;
  for (const auto& o : objects) {
    desired.push_back(&o);
  }
  Planned p = plan(desired);
  ASSERT_EQ(p.actions.size(), objects.size()) << p.describe();

  // Networks in parallel, then policies in parallel, as the executor would run them. Threads
  // started here inherit this thread's network namespace.
  for (const char* kind : {"Network", "NetworkPolicy"}) {
    std::vector<std::thread> workers;
    std::vector<ApplyResponse> responses(p.actions.size());
    std::vector<int> inTestNamespace(p.actions.size(), 0);
    for (size_t i = 0; i < p.actions.size(); ++i) {
      const PlanAction& a = p.actions[i];
      if (a.id.kind != kind) {
        continue;
      }
      const Object* d = desired[i];
      workers.emplace_back([&, i, d] {
        inTestNamespace[i] = ns_->active();
        if (!inTestNamespace[i]) {
          return;  // never touch the machine's own namespace
        }
        provider_.apply(ApplyRequest{&p.actions[i], d, nullptr}, responses[i]);
      });
    }
    for (auto& w : workers) {
      w.join();
    }
    for (size_t i = 0; i < p.actions.size(); ++i) {
      const PlanAction& a = p.actions[i];
      if (a.id.kind != kind) {
        continue;
      }
      ASSERT_TRUE(inTestNamespace[i]);
      ASSERT_FALSE(responses[i].diagnostics.hasErrors()) << responses[i].diagnostics.format();
      inventory_[a.id] = ManagedRecord{
          a.id, "net", {}, desired[i]->spec, "", responses[i].handles, responses[i].fingerprint};
    }
  }
  auto table = run({"nft", "list", "table", "inet", "hyper"});
  ASSERT_TRUE(table.isOk());
  for (const char* name : {"pol-pa-egress", "pol-pb-ingress", "pol-pc-egress", "net-a-egress",
                           "net-b-egress", "net-c-egress"}) {
    EXPECT_NE(table->find(name), std::string::npos) << name << "\n" << *table;
  }
  // The fingerprints recorded by concurrent applies are those of the final table.
  Planned after = plan(desired);
  EXPECT_TRUE(after.actions.empty()) << after.describe();
}

// A client namespace plugged into the bridge through a veth pair, with an address in the CIDR.
class Client {
 public:
  static Result<std::unique_ptr<Client>> attach(const std::string& bridge,
                                                const std::string& address) {
    HYPER_ASSIGN_OR_RETURN(auto ns, test::NamedNetns::create(test::uniqueNetnsName("cl")));
    auto c = std::unique_ptr<Client>(new Client(std::move(ns)));
    HYPER_RETURN_IF_ERROR(run({"ip", "link", "add", "hv-cl", "type", "veth", "peer", "name",
                               "cv-cl", "netns", c->ns_->name()})
                              .status());
    HYPER_RETURN_IF_ERROR(run({"ip", "link", "set", "hv-cl", "master", bridge, "up"}).status());
    HYPER_RETURN_IF_ERROR(c->ns_->run({"ip", "addr", "add", address, "dev", "cv-cl"}).status());
    HYPER_RETURN_IF_ERROR(c->ns_->run({"ip", "link", "set", "cv-cl", "up"}).status());
    return c;
  }

  // One echo request with a one-second wait.
  bool pingOnce(const std::string& target) {
    auto code = ns_->exitCode({"ping", "-n", "-q", "-c1", "-W1", target});
    return code.isOk() && *code == 0;
  }
  // Reachability that is expected: a fresh port or ARP entry may need a moment, so a few tries;
  // success is what is asserted, never a delay.
  bool reaches(const std::string& target) {
    for (int i = 0; i < 5; ++i) {
      if (pingOnce(target)) {
        return true;
      }
    }
    return false;
  }

 private:
  explicit Client(std::unique_ptr<test::NamedNetns> ns) : ns_(std::move(ns)) {}
  std::unique_ptr<test::NamedNetns> ns_;
};

TEST_F(NetProviderIntegrationTest, EgressNoneReallyBlocksTraffic) {
  auto ping = host::runCommand({"ping", "-V"});
  ASSERT_TRUE(ping.isOk()) << "ping is needed (apt-get install iputils-ping): "
                           << ping.status().message();

  Object lab = makeObject("Network", "lab", R"({"cidr": "10.77.0.0/24"})");
  converge({&lab});
  auto client = Client::attach("hb-lab", "10.77.0.2/24");
  ASSERT_TRUE(client.isOk()) << client.status().message();
  Client& c = **client;

  ASSERT_TRUE(c.reaches("10.77.0.1")) << "no connectivity before any policy";

  Object none =
      makeObject("NetworkPolicy", "lockdown", R"({"network": "lab", "egress": {"mode": "none"}})");
  converge({&lab, &none});
  EXPECT_FALSE(c.pingOnce("10.77.0.1")) << "egress none let a ping to the gateway through";

  // Union of allows: a second policy that allows ICMP to the gateway opens exactly that.
  Object icmp = makeObject("NetworkPolicy", "gw-icmp",
                           R"({"network": "lab", "egress": {"mode": "allowlist", "allow": [
                                {"cidr": "10.77.0.1", "protocol": "icmp"}]}})");
  converge({&lab, &none, &icmp});
  EXPECT_TRUE(c.reaches("10.77.0.1")) << "the allowlist of gw-icmp was not honoured";

  converge({&lab, &none}, /*prune=*/true);
  EXPECT_FALSE(c.pingOnce("10.77.0.1"));

  converge({&lab}, /*prune=*/true);
  EXPECT_TRUE(c.reaches("10.77.0.1")) << "traffic still blocked after the policy was deleted";
}

TEST_F(NetProviderIntegrationTest, IngressNoneBlocksTrafficToTheNetwork) {
  Object lab = makeObject("Network", "lab", R"({"cidr": "10.77.0.0/24"})");
  converge({&lab});
  auto client = Client::attach("hb-lab", "10.77.0.2/24");
  ASSERT_TRUE(client.isOk()) << client.status().message();
  auto hostPing = [] {
    auto r = host::runCommand({"ping", "-n", "-q", "-c1", "-W1", "10.77.0.2"});
    return r.isOk() && r->exitCode == 0;
  };
  bool reached = false;
  for (int i = 0; i < 5 && !reached; ++i) {
    reached = hostPing();
  }
  ASSERT_TRUE(reached) << "no connectivity before any policy";

  Object closed =
      makeObject("NetworkPolicy", "closed", R"({"network": "lab", "ingress": {"mode": "none"}})");
  converge({&lab, &closed});
  EXPECT_FALSE(hostPing()) << "ingress none let the host reach the network";
  // Egress is untouched: the client can still start traffic and get answers.
  EXPECT_TRUE((*client)->reaches("10.77.0.1"));
}

}  // namespace
}  // namespace hyper::providers::net
