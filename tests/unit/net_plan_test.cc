#include <gtest/gtest.h>

#include "providers/net/net_provider.h"

namespace hyper::providers::net {
namespace {

constexpr const char* kFp =
    "chain:egress-forward=1111111111111111;layout=4;maps=2222222222222222;"
    "rules:Network/lab=3333333333333333";
constexpr const char* kPolicyFp =
    "chain:pol-web-egress=4444444444444444;chain:pol-web-ingress=5555555555555555;layout=4;"
    "rules:NetworkPolicy/web=6666666666666666;set:pol-web-sel=absent";
// As recorded by a hyper before nftables layout 2 (no "layout" part), and what the same objects
// own in a table written since in layout 4: other digests, and no hand change.
constexpr const char* kFpLayout1 =
    "chain:egress-forward=1111111111111111;set:net-lab-bridge=2222222222222222;"
    "rules:Network/lab=7777777777777777";
constexpr const char* kPolicyFpLayout1 =
    "chain:pol-web-egress=8888888888888888;chain:pol-web-ingress=5555555555555555;"
    "rules:NetworkPolicy/web=6666666666666666;set:pol-web-sel=absent";

Json labSpec() { return {{"cidr", "10.77.0.0/24"}}; }
Json webSpec() { return Json::parse(R"({"network": "lab", "egress": {"mode": "none"}})"); }

// What observe() reports for hyper's bridge exactly as apply left it.
ObservedState syncedBridge() {
  ObservedState s;
  s.exists = true;
  s.fields = {{"bridge", "hb-lab"}, {"mtu", 1500},
              {"up", true},         {"addresses", {"10.77.0.1/24"}},
              {"ipForward", true},  {"proxyArpPvlan", true},
              {"ipv6", false},      {"nftables", "present"}};
  s.fingerprint = kFp;
  return s;
}

ObservedState syncedPolicy() {
  ObservedState s;
  s.exists = true;
  s.fields = {{"nftables", "present"}, {"chains", {"pol-web-egress", "pol-web-ingress"}}};
  s.fingerprint = kPolicyFp;
  return s;
}

struct ExpectedChange {
  std::string path;
  Json before;
  Json after;
  bool forcesReplace = false;
};

struct PlanCase {
  std::string name;
  std::string kind = "Network";
  Json desired;  // null: not in the source
  Json managed;  // null: no inventory record
  std::string managedFingerprint;
  Json managedPorts;  // the Network's handles.ports; null: none recorded
  Json managedIpv6;   // the Network's handles.ipv6; null: none recorded (an older hyper's record)
  ObservedState observed;
  // Expectations: no action when `action` is empty.
  std::optional<ActionType> action;
  bool drift = false;
  std::string reason;                   // substring
  std::vector<ExpectedChange> changes;  // each must be present
  std::string errorField;               // a diagnostic with this field path...
  std::string errorSummary;             // ...and this substring
};

class NetPlanTest : public ::testing::TestWithParam<PlanCase> {};

TEST_P(NetPlanTest, DecidesAction) {
  const auto& c = GetParam();
  std::string name = c.kind == "Network" ? "lab" : "web";
  ObjectId id{c.kind, name};
  Object desired;
  desired.id = id;
  desired.spec = c.desired;
  ManagedRecord record;
  record.id = id;
  record.provider = "net";
  record.spec = c.managed;
  record.fingerprint = c.managedFingerprint;
  if (c.kind == "Network" && !c.managed.is_null()) {
    record.handles = {{"bridge", c.managed.value("bridge", "hb-lab")}};
    if (!c.managedPorts.is_null()) {
      record.handles["ports"] = c.managedPorts;
    }
    if (!c.managedIpv6.is_null()) {
      record.handles["ipv6"] = c.managedIpv6;
    }
  }

  PlanRequest req;
  req.id = id;
  req.desired = c.desired.is_null() ? nullptr : &desired;
  req.managed = c.managed.is_null() ? nullptr : &record;
  req.observed = &c.observed;
  PlanResponse resp;
  NetProvider().plan(req, resp);

  if (!c.errorField.empty()) {
    EXPECT_FALSE(resp.action.has_value());
    bool matched = false;
    for (const auto& d : resp.diagnostics.items()) {
      matched = matched || (d.severity == Severity::Error && d.fieldPath == c.errorField &&
                            d.summary.find(c.errorSummary) != std::string::npos);
    }
    EXPECT_TRUE(matched) << resp.diagnostics.format();
    return;
  }
  EXPECT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
  if (!c.action) {
    EXPECT_FALSE(resp.action.has_value())
        << actionTypeName(resp.action->type) << ": " << resp.action->reason;
    return;
  }
  ASSERT_TRUE(resp.action.has_value());
  const PlanAction& a = *resp.action;
  EXPECT_EQ(actionTypeName(a.type), std::string(actionTypeName(*c.action)));
  EXPECT_EQ(a.drift, c.drift);
  EXPECT_NE(a.reason.find(c.reason), std::string::npos) << a.reason;
  for (const auto& want : c.changes) {
    bool found = false;
    for (const auto& got : a.changes) {
      if (got.path == want.path) {
        found = true;
        EXPECT_EQ(got.before, want.before) << want.path;
        EXPECT_EQ(got.after, want.after) << want.path;
        EXPECT_EQ(got.forcesReplace, want.forcesReplace) << want.path;
      }
    }
    EXPECT_TRUE(found) << "no change at " << want.path;
  }
}

ObservedState with(ObservedState s, const std::string& key, Json value) {
  s.fields[key] = std::move(value);
  return s;
}

ObservedState without(ObservedState s, const std::string& key) {
  s.fields.erase(key);
  return s;
}

ObservedState foreignBridge() {
  ObservedState s;
  s.foreignOwner = "hb-lab";
  s.fields = {
      {"bridge", "hb-lab"},
      {"foreign",
       {{"field", "spec.bridge"}, {"link", "hb-lab"}, {"kind", "bridge"}, {"alias", "mine"}}}};
  return s;
}

ObservedState foreignAddress() {
  ObservedState s;
  s.foreignOwner = "eth0";
  s.fields = {{"bridge", "hb-lab"},
              {"foreign", {{"field", "spec.cidr"}, {"link", "eth0"}, {"address", "10.77.0.9/16"}}}};
  return s;
}

ObservedState bridgeGone() {
  ObservedState s = syncedBridge();
  s.exists = false;
  s.fields = {{"bridge", "hb-lab"}, {"ipForward", true}, {"nftables", "present"}};
  return s;
}

ObservedState tableFlushed() {
  ObservedState s = syncedBridge();
  s.fields["nftables"] = "flushed";
  s.fingerprint =
      "chain:egress-forward=9999999999999999;maps=2222222222222222;"
      "rules:Network/lab=3333333333333333";
  return s;
}

ObservedState policyChainChanged() {
  ObservedState s = syncedPolicy();
  s.fingerprint =
      "chain:pol-web-egress=0000000000000000;chain:pol-web-ingress=5555555555555555;"
      "rules:NetworkPolicy/web=6666666666666666;set:pol-web-sel=absent";
  return s;
}

ObservedState policyTableMissing() {
  ObservedState s;
  s.fields = {{"nftables", "missing"}, {"chains", Json::array()}};
  s.fingerprint =
      "chain:pol-web-egress=absent;chain:pol-web-ingress=absent;"
      "rules:NetworkPolicy/web=absent;set:pol-web-sel=absent";
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Network, NetPlanTest,
    ::testing::Values(
        PlanCase{.name = "NewNetworkIsCreated",
                 .desired = labSpec(),
                 .observed = ObservedState{},
                 .action = ActionType::Create,
                 .reason = "not on the host",
                 .changes = {{"spec.bridge", nullptr, "hb-lab"},
                             {"spec.gateway", nullptr, "10.77.0.1"}}},
        PlanCase{
            .name = "ForeignBridgeIsACollision",
            .desired = labSpec(),
            .observed = foreignBridge(),
            .errorField = "spec.bridge",
            .errorSummary = "bridge hb-lab exists and is not managed by hyper (alias \"mine\", "
                            "kind bridge); hyper never takes over interfaces it did not "
                            "create; rename the bridge in the manifest or remove it"},
        PlanCase{.name = "ForeignBridgeOverManagedOneIsACollision",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = foreignBridge(),
                 .errorField = "spec.bridge",
                 .errorSummary = "is not managed by hyper"},
        PlanCase{.name = "ForeignAddressIsACollision",
                 .desired = labSpec(),
                 .observed = foreignAddress(),
                 .errorField = "spec.cidr",
                 .errorSummary = "address 10.77.0.9/16 on eth0 overlaps 10.77.0.0/24"},
        PlanCase{.name = "InSync",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = syncedBridge()},
        PlanCase{.name = "ExplicitDefaultsAreInSync",
                 .desired = Json::parse(R"({"cidr": "10.77.0.0/24", "gateway": "10.77.0.1",
                                            "bridge": "hb-lab", "mtu": 1500, "nat": false})"),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = syncedBridge()},
        PlanCase{.name = "RulesOfAnEarlierLayoutAreWrittenAgainNotAlerted",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFpLayout1,
                 .observed = syncedBridge(),
                 .action = ActionType::Update,
                 .drift = false,
                 .reason = "written by an earlier hyper in nftables layout 1: its rules are "
                           "written again in layout 4",
                 .changes = {{"status.nftables.layout", 1, 4}}},
        PlanCase{.name = "AFlushedTableIsDriftWhateverTheLayout",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFpLayout1,
                 .observed = tableFlushed(),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "nftables table inet hyper flushed by hand",
                 .changes = {{"status.nftables", "flushed", "present"},
                             {"status.nftables.layout", 1, 4}}},
        PlanCase{.name = "BridgeDeletedByHand",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = bridgeGone(),
                 .action = ActionType::Create,
                 .drift = true,
                 .reason = "bridge hb-lab deleted by hand",
                 .changes = {{"status.bridge", nullptr, "hb-lab"}}},
        PlanCase{.name = "MtuChangedByHand",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = with(syncedBridge(), "mtu", 9000),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "bridge hb-lab changed by hand (mtu)",
                 .changes = {{"spec.mtu", 9000, 1500}}},
        PlanCase{
            .name = "AddressChangedByHand",
            .desired = labSpec(),
            .managed = labSpec(),
            .managedFingerprint = kFp,
            .observed = with(syncedBridge(), "addresses", {"10.77.0.1/24", "10.77.0.7/24"}),
            .action = ActionType::Update,
            .drift = true,
            .reason = "(address)",
            .changes = {{"status.addresses", {"10.77.0.1/24", "10.77.0.7/24"}, {"10.77.0.1/24"}}}},
        PlanCase{.name = "AddressRemovedByHand",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = with(syncedBridge(), "addresses", Json::array()),
                 .action = ActionType::Update,
                 .drift = true,
                 .changes = {{"status.addresses", Json::array(), {"10.77.0.1/24"}}}},
        PlanCase{.name = "BridgeSetDownByHand",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = with(syncedBridge(), "up", false),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "(down)",
                 .changes = {{"status.up", false, true}}},
        PlanCase{.name = "IpForwardTurnedOffWithNat",
                 .desired = {{"cidr", "10.77.0.0/24"}, {"nat", true}},
                 .managed = {{"cidr", "10.77.0.0/24"}, {"nat", true}},
                 .managedFingerprint = kFp,
                 .observed = with(syncedBridge(), "ipForward", false),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "ip_forward turned off by hand",
                 .changes = {{"status.ipForward", false, true}}},
        // VMs of a network reach each other through the host: forwarding matters without NAT.
        PlanCase{.name = "IpForwardTurnedOffWithoutNat",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = with(syncedBridge(), "ipForward", false),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "ip_forward turned off by hand",
                 .changes = {{"status.ipForward", false, true}}},
        PlanCase{.name = "ProxyArpPvlanTurnedOff",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = with(syncedBridge(), "proxyArpPvlan", false),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "proxy_arp_pvlan of bridge hb-lab turned off by hand",
                 .changes = {{"status.proxyArpPvlan", false, true}}},
        PlanCase{.name = "Ipv6TurnedOnByHand",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .managedIpv6 = false,
                 .observed = with(syncedBridge(), "ipv6", true),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "IPv6 of bridge hb-lab turned on by hand",
                 .changes = {{"status.ipv6", true, false}}},
        // A bridge an older hyper made (it left IPv6 on, and its record says nothing of it) is
        // brought to what hyper does now without a drift alert.
        PlanCase{.name = "Ipv6LeftOnByAnOlderHyper",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = with(syncedBridge(), "ipv6", true),
                 .action = ActionType::Update,
                 .reason = "IPv6 on bridge hb-lab, which hyper now turns off on its bridges",
                 .changes = {{"status.ipv6", true, false}}},
        // A kernel without IPv6 has no switch to read: nothing to do.
        PlanCase{.name = "NoIpv6OnTheHost",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .managedIpv6 = false,
                 .observed = without(syncedBridge(), "ipv6")},
        // The VM left the revision: its tap binding goes (this provider observed no VMs).
        PlanCase{.name = "VmLeftTheNetwork",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .managedPorts = Json::parse(R"([{"tap": "hv-web-1", "ip": "10.77.0.10",
                                                  "mac": "52:54:00:00:00:0a", "vm": "web-1"}])"),
                 .observed = syncedBridge(),
                 .action = ActionType::Update,
                 .reason = "the VMs on it changed",
                 .changes = {{"status.ports", Json::parse(R"([{"tap": "hv-web-1",
                                "ip": "10.77.0.10", "mac": "52:54:00:00:00:0a", "vm": "web-1"}])"),
                              Json::array()}}},
        PlanCase{.name = "NoVmsBeforeOrNow",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .managedPorts = Json::array(),
                 .observed = syncedBridge()},
        PlanCase{.name = "TableFlushedByHand",
                 .desired = labSpec(),
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = tableFlushed(),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "nftables table inet hyper flushed by hand",
                 .changes = {{"status.nftables", "flushed", "present"}}},
        PlanCase{.name = "SpecMtuChanged",
                 .desired = {{"cidr", "10.77.0.0/24"}, {"mtu", 9000}},
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = syncedBridge(),
                 .action = ActionType::Update,
                 .reason = "spec changed",
                 .changes = {{"spec.mtu", 1500, 9000}}},
        PlanCase{.name = "SpecAndHostMtuChanged",
                 .desired = {{"cidr", "10.77.0.0/24"}, {"mtu", 9000}},
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = with(syncedBridge(), "mtu", 1400),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "spec changed; bridge hb-lab changed by hand (mtu)",
                 .changes = {{"spec.mtu", 1400, 9000}}},
        PlanCase{.name = "SpecGatewayChanged",
                 .desired = {{"cidr", "10.77.0.0/24"}, {"gateway", "10.77.0.254"}},
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = syncedBridge(),
                 .action = ActionType::Update,
                 .changes = {{"spec.gateway", "10.77.0.1", "10.77.0.254"}}},
        PlanCase{.name = "BridgeRenamedIsAReplace",
                 .desired = {{"cidr", "10.77.0.0/24"}, {"bridge", "br-lab"}},
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = bridgeGone(),
                 .action = ActionType::Replace,
                 .reason = "bridge hb-lab becomes br-lab",
                 .changes = {{"spec.bridge", "hb-lab", "br-lab", true}}},
        PlanCase{.name = "PrunedNetworkIsDeleted",
                 .managed = labSpec(),
                 .managedFingerprint = kFp,
                 .observed = syncedBridge(),
                 .action = ActionType::Delete,
                 .reason = "not in the source"},
        PlanCase{.name = "PruneIgnoresForeignBridge",
                 .managed = labSpec(),
                 .observed = foreignBridge(),
                 .action = ActionType::Delete}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(
    Policy, NetPlanTest,
    ::testing::Values(
        PlanCase{.name = "NewPolicyIsCreated",
                 .kind = "NetworkPolicy",
                 .desired = webSpec(),
                 .observed = policyTableMissing(),
                 .action = ActionType::Create,
                 .changes = {{"spec.egress.mode", nullptr, "none"},
                             {"spec.ingress.mode", nullptr, "any"}}},
        PlanCase{.name = "PolicyInSync",
                 .kind = "NetworkPolicy",
                 .desired = webSpec(),
                 .managed = webSpec(),
                 .managedFingerprint = kPolicyFp,
                 .observed = syncedPolicy()},
        PlanCase{.name = "PolicySpecChanged",
                 .kind = "NetworkPolicy",
                 .desired = Json::parse(R"({"network": "lab", "egress": {"mode": "allowlist",
                                            "allow": [{"cidr": "10.0.0.0/8"}]}})"),
                 .managed = webSpec(),
                 .managedFingerprint = kPolicyFp,
                 .observed = syncedPolicy(),
                 .action = ActionType::Update,
                 .reason = "spec changed",
                 .changes = {{"spec.egress.mode", "none", "allowlist"},
                             {"spec.egress.allow", nullptr,
                              Json::parse(R"([{"cidr": "10.0.0.0/8", "protocol": "any"}])")}}},
        PlanCase{.name = "PolicyChainChangedByHand",
                 .kind = "NetworkPolicy",
                 .desired = webSpec(),
                 .managed = webSpec(),
                 .managedFingerprint = kPolicyFp,
                 .observed = policyChainChanged(),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "rules of nftables chain pol-web-egress changed by hand",
                 .changes = {{"status.nftables.chain:pol-web-egress", "0000000000000000",
                              "4444444444444444"}}},
        PlanCase{.name = "PolicyRulesOfAnEarlierLayoutAreWrittenAgainNotAlerted",
                 .kind = "NetworkPolicy",
                 .desired = webSpec(),
                 .managed = webSpec(),
                 .managedFingerprint = kPolicyFpLayout1,
                 .observed = syncedPolicy(),
                 .action = ActionType::Update,
                 .drift = false,
                 .reason = "earlier hyper in nftables layout 1",
                 .changes = {{"status.nftables.layout", 1, 4}}},
        PlanCase{.name = "PolicyTableDeletedByHand",
                 .kind = "NetworkPolicy",
                 .desired = webSpec(),
                 .managed = webSpec(),
                 .managedFingerprint = kPolicyFp,
                 .observed = policyTableMissing(),
                 .action = ActionType::Update,
                 .drift = true,
                 .reason = "nftables table inet hyper deleted by hand",
                 .changes = {{"status.nftables", nullptr, "present"}}},
        PlanCase{.name = "PrunedPolicyIsDeleted",
                 .kind = "NetworkPolicy",
                 .managed = webSpec(),
                 .observed = syncedPolicy(),
                 .action = ActionType::Delete}),
    [](const auto& info) { return info.param.name; });

TEST(NetProviderTest, PolicyReferencesItsNetwork) {
  Object o;
  o.id = {"NetworkPolicy", "web"};
  o.spec = webSpec();
  auto refs = NetProvider().references(o);
  ASSERT_EQ(refs.size(), 1u);
  EXPECT_EQ(refs[0].fieldPath, "spec.network");
  EXPECT_EQ(refs[0].target, (ObjectId{"Network", "lab"}));
  o.id = {"Network", "lab"};
  o.spec = labSpec();
  EXPECT_TRUE(NetProvider().references(o).empty());
}

// What observe works out from other objects is the VMs' placement: Networks and policies alone
// move only themselves; a VM, or a Network a VM of either revision names, moves everything.
TEST(NetProviderTest, AChangeMovesEverythingOnlyThroughTheVms) {
  auto object = [](const std::string& kind, const std::string& name, Json spec) {
    auto o = std::make_shared<Object>();
    o->id = {kind, name};
    o->spec = std::move(spec);
    return std::shared_ptr<const Object>(o);
  };
  auto lab = object("Network", "lab", labSpec());
  auto dev = object("Network", "dev", Json{{"cidr", "10.78.0.0/24"}});
  auto web = object("NetworkPolicy", "web", webSpec());
  auto vm = object("VM", "web0", Json::parse(R"({"network": {"name": "lab"}})"));
  auto secret = object("Secret", "s", Json::object());
  const std::vector<std::shared_ptr<const Object>> withVm = {dev, lab, web, vm};
  const std::vector<std::shared_ptr<const Object>> without = {dev, lab, web};
  NetProvider provider;
  auto moved = [&](std::vector<ObjectId> changed, const auto& before, const auto& after) {
    RevisionChange change;
    change.before = &before;
    change.after = &after;
    change.changed = std::move(changed);
    return provider.alsoMovedBy(change);
  };
  const ObjectId devId{"Network", "dev"}, labId{"Network", "lab"}, webId{"NetworkPolicy", "web"};
  EXPECT_EQ(moved({devId}, withVm, withVm), std::vector<ObjectId>{});
  EXPECT_EQ(moved({webId}, withVm, withVm), std::vector<ObjectId>{});
  EXPECT_EQ(moved({labId}, without, without), std::vector<ObjectId>{});
  EXPECT_EQ(moved({{"Secret", "s"}}, withVm, withVm), std::vector<ObjectId>{});
  EXPECT_EQ(moved({labId}, withVm, withVm), std::nullopt);
  EXPECT_EQ(moved({labId}, withVm, without), std::nullopt) << "the VM was on lab before";
  EXPECT_EQ(moved({labId}, without, withVm), std::nullopt) << "the VM is on lab after";
  EXPECT_EQ(moved({{"VM", "web0"}}, without, withVm), std::nullopt);
  (void)secret;
}

TEST(NetProviderTest, ApplyBeforeObserveIsRefused) {
  NetProvider provider;
  Object o;
  o.id = {"Network", "lab"};
  o.spec = labSpec();
  PlanAction action;
  action.id = o.id;
  ApplyRequest req{&action, &o, nullptr};
  ApplyResponse resp;
  provider.apply(req, resp);
  ASSERT_TRUE(resp.diagnostics.hasErrors());
  EXPECT_NE(resp.diagnostics.items()[0].summary.find("apply before observe"), std::string::npos);
}

// Plan is pure: the VMs' taps on a Network and the addresses a policy selects come from the
// observed state's context (what observe worked out from the revision), never from what an
// earlier observe left in the provider, and the action carries them to apply (privateData).
// None of the providers below has observed anything.

Json webTap() {
  return {{"tap", "hv-web0"}, {"ip", "10.77.0.10"}, {"mac", "52:54:00:12:34:56"}, {"vm", "web0"}};
}

Json selectorSpec() {
  return Json::parse(
      R"({"network": "lab", "selector": {"matchLabels": {"role": "web"}}, "egress": {"mode": "none"}})");
}

// One action from two providers that never observed, for the same request: the two agree.
PlanAction planTwice(const PlanRequest& req) {
  PlanResponse first, second;
  NetProvider().plan(req, first);
  NetProvider().plan(req, second);
  EXPECT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  EXPECT_TRUE(first.action.has_value() && second.action.has_value());
  if (!first.action || !second.action) {
    return {};
  }
  Plan a, b;
  a.actions = {*first.action};
  b.actions = {*second.action};
  EXPECT_EQ(a.toJson(), b.toJson());
  return *first.action;
}

TEST(NetPlanPurityTest, TheTapsOfANetworkComeFromTheContextAndGoToTheAction) {
  Object lab;
  lab.id = {"Network", "lab"};
  lab.spec = labSpec();
  ManagedRecord record;
  record.id = lab.id;
  record.provider = "net";
  record.spec = labSpec();
  record.fingerprint = kFp;
  record.handles = {{"bridge", "hb-lab"}, {"ports", Json::array()}};
  ObservedState observed = syncedBridge();
  PlanRequest req{lab.id, &lab, &observed, &record};

  PlanResponse inSync;
  NetProvider().plan(req, inSync);
  EXPECT_FALSE(inSync.action.has_value()) << "no VM in the context, none applied: in sync";

  observed.context = {{"ports", Json::array({webTap()})}};
  PlanAction action = planTwice(req);
  EXPECT_EQ(action.type, ActionType::Update);
  EXPECT_NE(action.reason.find("the VMs on it changed"), std::string::npos) << action.reason;
  ASSERT_EQ(action.changes.size(), 1u);
  EXPECT_EQ(action.changes[0].path, "status.ports");
  EXPECT_EQ(action.changes[0].after, Json::array({webTap()}));
  EXPECT_EQ(action.privateData, Json({{"ports", Json::array({webTap()})}}));

  // A create carries them too; a network without VMs carries nothing.
  req.managed = nullptr;
  EXPECT_EQ(planTwice(req).privateData, Json({{"ports", Json::array({webTap()})}}));
  observed.context = nullptr;
  EXPECT_TRUE(planTwice(req).privateData.is_null());
}

TEST(NetPlanPurityTest, TheSelectionOfAPolicyComesFromTheContextAndGoesToTheAction) {
  Object web;
  web.id = {"NetworkPolicy", "web"};
  web.spec = selectorSpec();
  ManagedRecord record;
  record.id = web.id;
  record.provider = "net";
  record.spec = selectorSpec();
  record.fingerprint = kPolicyFp;
  record.handles = {{"chains", {"pol-web-egress", "pol-web-ingress"}}, {"selected", Json::array()}};
  ObservedState observed = syncedPolicy();
  observed.context = {{"selected", {"10.77.0.10"}}};
  PlanRequest req{web.id, &web, &observed, &record};

  PlanAction action = planTwice(req);
  EXPECT_EQ(action.type, ActionType::Update);
  EXPECT_NE(action.reason.find("the VMs its selector selects changed"), std::string::npos)
      << action.reason;
  ASSERT_EQ(action.changes.size(), 1u);
  EXPECT_EQ(action.changes[0].path, "status.selected");
  EXPECT_EQ(action.changes[0].after, Json::array({"10.77.0.10"}));
  EXPECT_EQ(action.privateData, Json({{"selected", {"10.77.0.10"}}}));

  // The applied selection equals the context's: nothing to do.
  record.handles["selected"] = {"10.77.0.10"};
  PlanResponse inSync;
  NetProvider().plan(req, inSync);
  EXPECT_FALSE(inSync.action.has_value()) << inSync.action->reason;
}

}  // namespace
}  // namespace hyper::providers::net
