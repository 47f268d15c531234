#include "providers/net/net_provider.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <future>
#include <optional>
#include <set>

#include "base/crash_point.h"
#include "base/names.h"
#include "base/strings.h"
#include "host/nft.h"
#include "netmodel/link_dump.h"
#include "netmodel/link_state.h"
#include "netmodel/placement.h"
#include "reconciler/provider_kit.h"

namespace hyper::providers::net {

using netmodel::Cidr;
using netmodel::kBridgePrefix;
using netmodel::LinkIndex;
using netmodel::LinkState;
using netmodel::LinkTable;
using netmodel::NetworkSpec;
using netmodel::ownerAlias;
using netmodel::parseLinkTable;
using netmodel::parseNetworkSpec;
using netmodel::parsePolicySpec;
using netmodel::placeRevisionVms;
using netmodel::selectVms;
using netmodel::validateNetObjects;

namespace {

constexpr const char* kIpForwardPath = "/proc/sys/net/ipv4/ip_forward";
constexpr const char* kNeverTakeOver = "hyper never takes over interfaces it did not create";

Result<LinkTable> dumpLinks() { return netmodel::dumpLinkTable(); }

// The tables a model is written as: none without any object.
NftRender renderTables(const NftModel& model) {
  return model.empty() ? NftRender{} : renderNftBlocks(model);
}

// hyper's tables as they are (one listing for both); missing tables are an empty dump.
Result<NftTableDump> dumpNftTable() {
  HYPER_ASSIGN_OR_RETURN(std::string json, host::nftListRulesetJson());
  return parseNftTableDump(json);
}

// Per-interface switches under /proc/sys/net/ipv4 of the calling thread's namespace.
std::string proxyArpPvlanPath(const std::string& bridge) {
  return "/proc/sys/net/ipv4/conf/" + bridge + "/proxy_arp_pvlan";
}

std::optional<bool> readSwitch(const std::string& path) {
  std::ifstream in(path);
  std::string value;
  if (!in || !(in >> value)) {
    return std::nullopt;
  }
  return value != "0";
}

Status writeSwitch(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value << "\n";
  out.flush();
  if (!out) {
    return Status::error("write " + value + " to " + path + " <- cannot write");
  }
  return Status::ok();
}

// net.ipv6.conf.<bridge>.disable_ipv6; absent on a kernel without IPv6.
std::string disableIpv6Path(const std::string& bridge) {
  return "/proc/sys/net/ipv6/conf/" + bridge + "/disable_ipv6";
}

// IPv6 is off on hyper's bridges: a Network is IPv4 (its CIDR, its NAT) and the bridge guard
// drops every frame from a tap that is neither IPv4 nor ARP, so the bridge's IPv6 (a link-local
// address, its routes, router solicitations, MLD) serves nothing, and the kernel walks every
// IPv6 route of the namespace on each MTU change of any link (rt6_mtu_change): three routes per
// bridge of every Network, 4-5 ms per MTU change at 5,000 of them. On a kernel without IPv6
// there is nothing to turn off.
Status disableIpv6(const std::string& bridge) {
  if (std::string path = disableIpv6Path(bridge); ::access(path.c_str(), F_OK) == 0) {
    return writeSwitch(path, "1");
  }
  return Status::ok();
}

// VMs sit on isolated bridge ports (the VM provider's tap_device.h): the bridge answers every ARP
// request for an address of its subnet with its own MAC (private-VLAN proxy ARP, at once rather
// than after the default random delay of up to 0.8 s), and the host routes between them, so
// their traffic meets the inet table's conntrack-based policy whatever br_netfilter does. Its
// IPv6 stays off (disableIpv6).
Status enableRouting(const std::string& bridge) {
  HYPER_RETURN_IF_ERROR(writeSwitch(proxyArpPvlanPath(bridge), "1"));
  HYPER_RETURN_IF_ERROR(writeSwitch("/proc/sys/net/ipv4/neigh/" + bridge + "/proxy_delay", "0"));
  return disableIpv6(bridge);
}

Json portsJson(const std::vector<TapBinding>& ports) {
  Json out = Json::array();
  for (const auto& p : ports) {
    out.push_back(p.toJson());
  }
  return out;
}

// What observe worked out for an object from the revision travels in ObservedState::context, and
// what apply needs of it in PlanAction::privateData, both under the same keys: "ports" (the taps
// of the VMs on a Network) and "selected" (the addresses a NetworkPolicy's selector selects). A
// missing key is an empty list.
std::vector<TapBinding> portsIn(const Json& data) {
  if (!data.is_object() || !data.contains("ports")) {
    return {};
  }
  return TapBinding::listFromJson(data["ports"]);
}

std::vector<std::string> selectedIn(const Json& data) {
  std::vector<std::string> out;
  if (!data.is_object() || !data.contains("selected") || !data["selected"].is_array()) {
    return out;
  }
  for (const auto& a : data["selected"]) {
    if (a.is_string()) {
      out.push_back(a.get<std::string>());
    }
  }
  return out;
}

// The switch is per network namespace: /proc/sys/net resolves to the namespace of the thread that
// opens it, which is the one hyper manages.
Result<bool> readIpForward() {
  std::ifstream in(kIpForwardPath);
  std::string value;
  if (!in || !(in >> value)) {
    return Status::error(std::string("read ") + kIpForwardPath + " <- cannot read");
  }
  return value == "1";
}

Status enableIpForward();

// Never switched back off: other things in the namespace may rely on forwarding. Every network
// needs it: its VMs reach each other through the host.
Status enableIpForwardFor(const NftModel& model) {
  return model.networks.empty() ? Status::ok() : enableIpForward();
}

Status enableIpForward() {
  std::ofstream out(kIpForwardPath);
  out << "1\n";
  out.flush();
  if (!out) {
    return Status::error(std::string("write 1 to ") + kIpForwardPath + " <- cannot write");
  }
  return Status::ok();
}

// The bridge a managed Network made: the handle, else what its stored spec says.
std::string managedBridge(const ManagedRecord& record) {
  if (record.handles.is_object() && record.handles.contains("bridge") &&
      record.handles["bridge"].is_string()) {
    return record.handles["bridge"].get<std::string>();
  }
  auto spec = parseNetworkSpec(record.id.name, record.spec);
  return spec.isOk() ? spec->bridge : deriveInterfaceName(kBridgePrefix, record.id.name);
}

// Something hyper does not own that holds the bridge name, or an address in the CIDR. Returns
// null when there is none, else {"field", "link", "kind", "alias"} or {"field", "link",
// "address"}.
Json findForeign(const LinkIndex& links, const std::string& networkName, const std::string& bridge,
                 const Cidr* cidr) {
  std::string mine = ownerAlias(networkName);
  if (const LinkState* link = links.find(bridge)) {
    if (link->alias != mine) {
      return {{"field", "spec.bridge"},
              {"link", link->name},
              {"kind", link->kind},
              {"alias", link->alias}};
    }
  }
  if (cidr) {
    if (auto hit = links.firstOverlap(*cidr, mine)) {
      return {{"field", "spec.cidr"}, {"link", hit->link->name}, {"address", hit->address.str()}};
    }
  }
  return nullptr;
}

std::string foreignSummary(const Json& foreign, const std::string& bridge, const Cidr* cidr) {
  auto str = [&](const char* key) {
    return foreign.contains(key) && foreign[key].is_string() ? foreign[key].get<std::string>()
                                                             : std::string();
  };
  if (str("field") == "spec.bridge") {
    std::string alias = str("alias").empty() ? "no alias" : "alias \"" + str("alias") + "\"";
    std::string kind = str("kind").empty() ? "" : ", kind " + str("kind");
    return "bridge " + bridge + " exists and is not managed by hyper (" + alias + kind + "); " +
           kNeverTakeOver + "; rename the bridge in the manifest or remove it";
  }
  return "address " + str("address") + " on " + str("link") + " overlaps " +
         (cidr ? cidr->str() : std::string("the cidr")) + " and " + str("link") +
         " is not managed by this Network; " + kNeverTakeOver +
         "; change the cidr in the manifest or remove the address";
}

// `managed`: its inventory record, whose ports name the taps it owns in the guard sets.
ObservedState observeNetwork(const ObjectId& id, const std::string& bridge, const Cidr* cidr,
                             const LinkIndex& links, const NftTableDump& nft, bool ipForward,
                             const ManagedRecord* managed) {
  ObservedState s;
  s.fields = {{"bridge", bridge}};
  const LinkState* link = links.find(bridge);
  if (link && link->alias == ownerAlias(id.name)) {
    s.exists = true;
    s.fields["mtu"] = link->mtu;
    s.fields["up"] = link->up;
    s.fields["addresses"] = link->ipv4Strings();
    // From the link dump (its IPv4 settings); /proc only where the dump lacked them.
    if (auto pvlan =
            link->proxyArpPvlan ? link->proxyArpPvlan : readSwitch(proxyArpPvlanPath(bridge))) {
      s.fields["proxyArpPvlan"] = *pvlan;
    }
    if (link->ipv6) {
      s.fields["ipv6"] = *link->ipv6;
    } else if (auto disabled = readSwitch(disableIpv6Path(bridge))) {
      s.fields["ipv6"] = !*disabled;
    }
    if (!link->up) {
      s.note = "bridge " + bridge + " is down";
    }
  } else if (!link) {
    s.note = "bridge " + bridge + " does not exist";
  }
  Json foreign = findForeign(links, id.name, bridge, cidr);
  if (!foreign.is_null()) {
    s.foreignOwner = foreign["link"].get<std::string>();
    s.fields["foreign"] = foreign;
    s.note = foreignSummary(foreign, bridge, cidr);
  }
  s.fields["ipForward"] = ipForward;
  s.fields["nftables"] = !nft.present ? "missing" : nft.flushed() ? "flushed" : "present";
  std::vector<std::string> taps;
  if (managed && managed->handles.is_object() && managed->handles.contains("ports")) {
    for (const auto& port : TapBinding::listFromJson(managed->handles["ports"])) {
      taps.push_back(port.tap);
    }
  }
  s.fingerprint = formatFingerprint(fingerprintParts(nft, id, taps));
  return s;
}

ObservedState observePolicy(const ObjectId& id, const NftTableDump& nft) {
  ObservedState s;
  Json chains = Json::array();
  bool all = true;
  for (Direction d : {Direction::Egress, Direction::Ingress}) {
    std::string chain = policyChainName(id.name, d);
    if (nft.hasChain(chain)) {
      chains.push_back(chain);
    } else {
      all = false;
    }
  }
  s.exists = all;
  s.fields = {{"nftables", !nft.present    ? "missing"
                           : nft.flushed() ? "flushed"
                                           : "present"},
              {"chains", chains}};
  s.fingerprint = formatFingerprint(fingerprintParts(nft, id));
  return s;
}

std::string fieldString(const ObservedState* obs, const char* key) {
  if (!obs || !obs->fields.is_object() || !obs->fields.contains(key) ||
      !obs->fields[key].is_string()) {
    return "";
  }
  return obs->fields[key].get<std::string>();
}

// The layout (kNftLayout) the object's rules were last written in, when not the current one:
// an earlier hyper wrote them, so their digests cannot be compared with what this one would
// write. The change rewrites them; it is not drift.
std::optional<FieldChange> nftLayoutChange(const PlanRequest& req) {
  if (!req.managed || req.managed->fingerprint.empty()) {
    return std::nullopt;
  }
  // As parseFingerprint reads it (the last of a name counts), without making the map: every
  // object's plan asks.
  bool anyPart = false;
  std::optional<std::string_view> layout;
  std::string_view fingerprint = req.managed->fingerprint;
  for (size_t start = 0; start < fingerprint.size();) {
    size_t end = std::min(fingerprint.find(';', start), fingerprint.size());
    std::string_view item = fingerprint.substr(start, end - start);
    if (size_t eq = item.rfind('='); eq != std::string_view::npos) {
      anyPart = true;
      if (item.substr(0, eq) == kLayoutPart) {
        layout = item.substr(eq + 1);
      }
    }
    start = end + 1;
  }
  if (!anyPart) {
    return std::nullopt;  // not a fingerprint of parts (Inventory::kUnconfirmed)
  }
  std::string was = layout ? std::string(*layout) : "1";
  if (was == std::to_string(kNftLayout)) {
    return std::nullopt;
  }
  return FieldChange{"status.nftables.layout", std::stoi("0" + was.substr(0, 4)), kNftLayout};
}

std::string layoutReason(const FieldChange& change) {
  return "written by an earlier hyper in nftables layout " + change.before.dump() +
         ": its rules are written again in layout " + change.after.dump();
}

// Compares what the object owns in the table now with what apply left there. With
// `layoutChanged` (nftLayoutChange) only a table deleted or flushed as a whole is drift.
void nftDrift(const PlanRequest& req, bool layoutChanged, std::vector<FieldChange>& changes,
              std::vector<std::string>& why) {
  if (!req.managed || req.managed->fingerprint.empty()) {
    return;
  }
  // Nothing differs (nearly every object of a drift check): no part to compare.
  if (!layoutChanged && req.observed && req.observed->fingerprint == req.managed->fingerprint) {
    return;
  }
  FingerprintParts recorded = parseFingerprint(req.managed->fingerprint);
  FingerprintParts now =
      req.observed ? parseFingerprint(req.observed->fingerprint) : FingerprintParts{};
  // A table deleted or flushed as a whole is one change, not one per chain.
  auto wholeTable = [&] {
    std::string table = fieldString(req.observed, "nftables");
    if (table != "missing" && table != "flushed") {
      return false;
    }
    std::string tableName = "table " + std::string(kNftFamily) + " " + std::string(kNftTable);
    changes.push_back(
        {"status.nftables", table == "missing" ? Json(nullptr) : Json("flushed"), "present"});
    why.push_back("nftables " + tableName + (table == "missing" ? " deleted" : " flushed") +
                  " by hand");
    return true;
  };
  if (layoutChanged) {
    wholeTable();
    return;
  }
  std::vector<FieldChange> partChanges;
  std::vector<std::string> partReasons;
  for (const auto& [part, digest] : recorded) {
    if (part == kLayoutPart) {
      continue;  // what wrote the rules, not a part of them
    }
    auto it = now.find(part);
    std::string observed = it == now.end() ? "absent" : it->second;
    if (observed == digest) {
      continue;
    }
    partChanges.push_back({"status.nftables." + part,
                           observed == "absent" ? Json(nullptr) : Json(observed), Json(digest)});
    size_t colon = part.find(':');
    std::string what = part.substr(0, colon);
    std::string name = colon == std::string::npos ? part : part.substr(colon + 1);
    if (part == "guard") {
      partReasons.push_back("the guard of its VMs' taps (nftables sets " +
                            std::string(kGuardTapsSet) + ", " + std::string(kGuardMacsSet) + ", " +
                            std::string(kGuardAddrsSet) + ") changed by hand");
    } else if (what == "chain") {
      partReasons.push_back(observed == "absent"
                                ? "nftables chain " + name + " deleted by hand"
                                : "rules of nftables chain " + name + " changed by hand");
    } else if (what == "set") {
      partReasons.push_back(observed == "absent" ? "nftables set " + name + " deleted by hand"
                                                 : "nftables set " + name + " changed by hand");
    } else {
      partReasons.push_back("nftables rules of " + name + " changed by hand");
    }
  }
  if (partChanges.empty() || wholeTable()) {
    return;
  }
  changes.insert(changes.end(), partChanges.begin(), partChanges.end());
  why.push_back(join(partReasons, "; "));
}

// `ports`: the VMs' taps on this network now.
// Stays long: one Network's parts in apply order; split once the concurrent net/ rework lands.
void planNetwork(const PlanRequest& req, const std::vector<TapBinding>& ports, PlanResponse& resp) {
  const ObjectId& object = req.id;
  auto desired = parseNetworkSpec(*req.desired);
  if (!desired.isOk()) {
    resp.diagnostics.error(object, "spec", desired.status().message());
    return;
  }
  const ObservedState* obs = req.observed;
  if (obs && !obs->foreignOwner.empty()) {
    Json foreign = obs->fields.is_object() && obs->fields.contains("foreign")
                       ? obs->fields["foreign"]
                       : Json::object();
    std::string field = foreign.contains("field") && foreign["field"].is_string()
                            ? foreign["field"].get<std::string>()
                            : "spec.bridge";
    resp.diagnostics.error(object, field, foreignSummary(foreign, desired->bridge, &desired->cidr));
    return;
  }

  PlanAction action;
  if (!req.managed) {
    action.type = ActionType::Create;
    action.reason = obs && obs->exists ? "bridge " + desired->bridge +
                                             " exists (made by hyper) but is not in the inventory"
                                       : "not on the host";
    diffJson("spec", nullptr, desired->toJson(), action.changes);
    if (!ports.empty()) {
      action.changes.push_back({"status.ports", nullptr, portsJson(ports)});
    }
    resp.action = std::move(action);
    return;
  }

  std::vector<FieldChange> specChanges;
  // The same spec as recorded parses the same: no diff to work out, and the applied spec is the
  // desired one (a drift check plans every object, nearly all unchanged).
  std::optional<NetworkSpec> previous;
  if (req.managed->spec != req.desired->spec) {
    auto parsed = parseNetworkSpec(req.id.name, req.managed->spec);
    Json before = parsed.isOk() ? parsed->toJson() : req.managed->spec.get();
    diffJson("spec", before, desired->toJson(), specChanges);
    if (parsed.isOk()) {
      previous = std::move(*parsed);
    }
  }
  bool replace = false;
  for (auto& c : specChanges) {
    if (c.path == "spec.bridge") {
      c.forcesReplace = true;  // a bridge keeps its name: a new one is made and the old removed
      replace = true;
    }
  }
  if (replace) {
    action.type = ActionType::Replace;
    action.reason = "spec changed: bridge " + managedBridge(*req.managed) + " becomes " +
                    desired->bridge + ", which needs a new bridge";
    action.changes = std::move(specChanges);
    resp.action = std::move(action);
    return;
  }

  // Host drift is measured against what hyper last applied, not against the manifest: a spec
  // change is not drift, and where both moved the change shows the host value as "before".
  const NetworkSpec& applied = previous ? *previous : *desired;
  std::vector<FieldChange> drift;
  std::vector<std::string> why;
  bool bridgeGone = !obs || !obs->exists;
  if (bridgeGone) {
    drift.push_back({"status.bridge", nullptr, desired->bridge});
    why.push_back("bridge " + desired->bridge + " deleted by hand");
  } else {
    std::vector<std::string> what;
    static const Json kNoFields = Json::object();
    const Json& f = obs->fields.is_object() ? obs->fields : kNoFields;
    if (!f.contains("mtu") || f["mtu"] != applied.mtu) {
      drift.push_back({"spec.mtu", f.value("mtu", Json()), desired->mtu});
      what.push_back("mtu");
    }
    if (!f.contains("addresses") || f["addresses"] != Json::array({applied.gatewayCidr()})) {
      drift.push_back({"status.addresses", f.value("addresses", Json()),
                       Json::array({desired->gatewayCidr()})});
      what.push_back("address");
    }
    if (!f.contains("up") || f["up"] != true) {
      drift.push_back({"status.up", f.value("up", Json()), true});
      what.push_back("down");
    }
    if (!what.empty()) {
      why.push_back("bridge " + desired->bridge + " changed by hand (" + join(what, ", ") + ")");
    }
  }
  // Every network needs forwarding now (VMs reach each other through the host), not only NAT.
  if (obs && obs->fields.is_object() && obs->fields.contains("ipForward") &&
      obs->fields["ipForward"] == false) {
    drift.push_back({"status.ipForward", false, true});
    why.push_back("net.ipv4.ip_forward turned off by hand");
  }
  if (!bridgeGone && obs->fields.is_object() && obs->fields.contains("proxyArpPvlan") &&
      obs->fields["proxyArpPvlan"] == false) {
    drift.push_back({"status.proxyArpPvlan", false, true});
    why.push_back("proxy_arp_pvlan of bridge " + desired->bridge + " turned off by hand");
  }
  // IPv6 on: turned on by hand when hyper's last apply turned it off (its handle says so), else
  // a bridge made by a hyper that left it on, turned off once without a drift alert.
  std::optional<FieldChange> ipv6Left;
  if (!bridgeGone && obs->fields.is_object() && obs->fields.contains("ipv6") &&
      obs->fields["ipv6"] == true) {
    const Json& handles = req.managed->handles;
    if (handles.is_object() && handles.contains("ipv6") && handles["ipv6"] == false) {
      drift.push_back({"status.ipv6", true, false});
      why.push_back("IPv6 of bridge " + desired->bridge + " turned on by hand");
    } else {
      ipv6Left = FieldChange{"status.ipv6", true, false};
    }
  }
  std::optional<FieldChange> layout = nftLayoutChange(req);
  nftDrift(req, layout.has_value(), drift, why);

  bool specChanged = !specChanges.empty();
  Json appliedPorts = req.managed->handles.is_object() && req.managed->handles.contains("ports")
                          ? portsJson(TapBinding::listFromJson(req.managed->handles["ports"]))
                          : Json::array();
  bool portsChanged = appliedPorts != portsJson(ports);
  if (portsChanged) {
    specChanges.push_back({"status.ports", appliedPorts, portsJson(ports)});
  }
  if (layout) {
    why.push_back(layoutReason(*layout));
    specChanges.push_back(std::move(*layout));
  }
  if (ipv6Left) {
    why.push_back("IPv6 on bridge " + desired->bridge +
                  ", which hyper now turns off on its bridges (Networks are IPv4)");
    specChanges.push_back(std::move(*ipv6Left));
  }
  if (specChanges.empty() && drift.empty()) {
    return;
  }
  action.type = bridgeGone && specChanges.empty() ? ActionType::Create : ActionType::Update;
  if (portsChanged) {
    why.insert(why.begin(), "the VMs on it changed (their taps, addresses or MACs)");
  }
  if (specChanged) {
    why.insert(why.begin(), "spec changed");
  }
  action.reason = join(why, "; ");
  mergeDrift(action, std::move(specChanges), std::move(drift));
  resp.action = std::move(action);
}

// `selected`: the addresses the policy's selector selects now (empty without a selector).
void planPolicy(const PlanRequest& req, const std::vector<std::string>& selected,
                PlanResponse& resp) {
  auto desired = parsePolicySpec(*req.desired);
  if (!desired.isOk()) {
    resp.diagnostics.error(req.id, "spec", desired.status().message());
    return;
  }
  PlanAction action;
  if (!req.managed) {
    action.type = ActionType::Create;
    action.reason = "not on the host";
    diffJson("spec", nullptr, desired->toJson(), action.changes);
    if (desired->matchLabels) {
      action.changes.push_back({"status.selected", nullptr, selected});
    }
    resp.action = std::move(action);
    return;
  }
  std::vector<FieldChange> specChanges;
  if (req.managed->spec != req.desired->spec) {  // as in planNetwork
    auto previous = parsePolicySpec(req.id.name, req.managed->spec);
    Json before = previous.isOk() ? previous->toJson() : req.managed->spec.get();
    diffJson("spec", before, desired->toJson(), specChanges);
  }
  if (desired->matchLabels) {
    Json applied = req.managed->handles.is_object() && req.managed->handles.contains("selected")
                       ? req.managed->handles["selected"]
                       : Json::array();
    if (applied != Json(selected)) {
      specChanges.push_back({"status.selected", applied, selected});
    }
  }
  std::vector<FieldChange> drift;
  std::vector<std::string> why;
  std::optional<FieldChange> layout = nftLayoutChange(req);
  nftDrift(req, layout.has_value(), drift, why);
  if (!specChanges.empty()) {
    bool selectionOnly = specChanges.size() == 1 && specChanges[0].path == "status.selected";
    why.insert(why.begin(),
               selectionOnly ? "the VMs its selector selects changed" : "spec changed");
  }
  if (layout) {
    why.push_back(layoutReason(*layout));
    specChanges.push_back(std::move(*layout));
  }
  if (specChanges.empty() && drift.empty()) {
    return;
  }
  action.type = ActionType::Update;
  action.reason = join(why, "; ");
  mergeDrift(action, std::move(specChanges), std::move(drift));
  resp.action = std::move(action);
}

void fail(ApplyResponse& resp, const ObjectId& id, const Status& status) {
  resp.diagnostics.error(id, "", status.message());
}

}  // namespace

void NetProvider::validate(const ValidateRequest& req, ValidateResponse& resp) const {
  guarded(resp.diagnostics, {}, "validate", [&] {
    std::lock_guard<std::mutex> lock(validateMu_);
    validateNetObjects(req.objects, resp.diagnostics, &validateMemo_);
  });
}

std::vector<Reference> NetProvider::references(const Object& object) const {
  // Pure and total over a schema-valid or inventory spec: nothing here can throw.
  if (object.id.kind != "NetworkPolicy" || !object.spec->is_object()) {
    return {};
  }
  auto it = object.spec->find("network");
  if (it == object.spec->end() || !it->is_string()) {
    return {};
  }
  return {Reference{"spec.network", ObjectId{"Network", it->get<std::string>()}}};
}

void NetProvider::observe(const ObserveRequest& req, ObserveResponse& resp) {
  guarded(resp.diagnostics, {}, "observe", [&] { observeAll(req, resp); });
}

namespace {

// A partial listing lists each part alone, and nft fills its cache for it with the elements of
// every set of the table (one netlink dump per set): with many sets (a selector per policy) or
// many parts, one listing of everything costs less.
constexpr size_t kMaxRelistedParts = 64;
constexpr size_t kMaxSetsForRelisting = 64;
// Bridges read alone (one RTM_GETLINK each) rather than in one dump of every link: an apply's or
// a scoped observe's; beyond this many one dump costs less.
constexpr size_t kMaxLinksAlone = 64;

}  // namespace

Result<NftTableDump> listNftParts(const std::vector<NftPart>& parts) {
  NftTableDump listed;
  for (const NftPart& part : parts) {
    std::string command = "list " + std::string(NftBlock::keyword(part.kind)) + " " + part.family +
                          " " + std::string(kNftTable) + " " + part.name;
    HYPER_ASSIGN_OR_RETURN(std::string json, host::nftListJson(command));
    HYPER_RETURN_IF_ERROR(appendNftListing(json, listed));
  }
  return listed;
}

Result<std::shared_ptr<const NftTableDump>> NetProvider::nftTables(const DeltaWrite* written) {
  // The generation is read before the listing: a commit in between makes the next reading
  // differ, and the table is listed again then.
  auto generation = host::nftGeneration();
  std::lock_guard<std::mutex> lock(nftCacheMu_);
  if (generation.isOk() && nftCache_ && nftCacheGeneration_ == *generation) {
    return nftCache_;
  }
  if (written && generation.isOk() && *generation == written->to && nftCache_ &&
      nftCacheGeneration_ == written->from && written->delta.relist.size() <= kMaxRelistedParts &&
      nftCache_->setDigests.size() <= kMaxSetsForRelisting) {
    // A part that is not there (someone deleted it after all) fails the listing: list it all.
    if (auto listed = listNftParts(written->delta.relist); listed.isOk()) {
      ++nftPartialListings_;
      nftCache_ = std::make_shared<const NftTableDump>(
          nftCache_->patched(written->delta, std::move(*listed)));
      nftCacheGeneration_ = *generation;
      return nftCache_;
    }
  }
  HYPER_ASSIGN_OR_RETURN(NftTableDump dump, dumpNftTable());
  dump.dropItems();  // kept until the ruleset moves: its digests answer every fingerprint
  ++nftListings_;
  nftCache_ = std::make_shared<const NftTableDump>(std::move(dump));
  nftCacheGeneration_.reset();
  if (generation.isOk()) {
    nftCacheGeneration_ = *generation;
  }
  return nftCache_;
}

std::optional<std::vector<ObjectId>> NetProvider::alsoMovedBy(const RevisionChange& change) const {
  std::set<std::string> networks;
  for (const ObjectId& id : change.changed) {
    if (id.kind == "VM") {
      return std::nullopt;
    }
    if (id.kind == "Network") {
      networks.insert(id.name);
    }
  }
  // The VMs of either revision that name a changed Network (placeRevisionVms reads the same).
  for (const auto* objects : {change.before, change.after}) {
    for (const auto& o : objects ? *objects : std::vector<std::shared_ptr<const Object>>{}) {
      if (o->id.kind != "VM" || !o->spec->is_object()) {
        continue;
      }
      const Json& network = o->spec->value("network", Json());
      if (network.is_object() && network.contains("name") && network["name"].is_string() &&
          networks.count(network["name"].get<std::string>())) {
        return std::nullopt;
      }
    }
  }
  return std::vector<ObjectId>{};
}

namespace {

// Sets map[key] = value; true when that changed the map.
template <class Map, class Value>
bool setEntry(Map& map, const std::string& key, Value value) {
  auto [it, added] = map.try_emplace(key, value);
  if (added) {
    return true;
  }
  if (it->second == value) {
    return false;
  }
  it->second = std::move(value);
  return true;
}

// Erases the entries whose key is not in `keep` (sorted); true when any was.
template <class Map>
bool keepOnly(Map& map, const std::vector<std::string_view>& keep) {
  bool erased = false;
  auto k = keep.begin();
  for (auto it = map.begin(); it != map.end();) {
    while (k != keep.end() && *k < it->first) {
      ++k;
    }
    if (k != keep.end() && *k == it->first) {
      ++it;
    } else {
      it = map.erase(it);
      erased = true;
    }
  }
  return erased;
}

}  // namespace

bool NetProvider::loadModelLocked(const std::vector<const ManagedRecord*>& managed,
                                  Diagnostics& diagnostics) {
  bool changed = false;
  bool complete = true;
  std::vector<std::string_view> networks;
  std::vector<std::string_view> policies;
  std::vector<const ObjectId*> present;
  // The records come sorted by id, as modelSources_ is: each one's source is looked for next to
  // the last one found (one comparison) before the whole map is searched (fourteen at 10k).
  auto next = modelSources_.begin();
  size_t sourced = 0;  // records of the model with a source after the loop
  static const Json kNoHandle;
  for (const ManagedRecord* r : managed) {
    const bool isNetwork = r->id.kind == "Network";
    if (!isNetwork && r->id.kind != "NetworkPolicy") {
      continue;
    }
    // As applied: a policy's selection, a Network's taps (another object's apply re-renders the
    // tables and must not change them).
    const Json* handle = &kNoHandle;
    if (r->handles.is_object()) {
      if (auto h = r->handles.find(isNetwork ? "ports" : "selected");
          h != r->handles.end() && (isNetwork || h->is_array())) {
        handle = &*h;
      }
    }
    auto source =
        next != modelSources_.end() && next->first == r->id ? next : modelSources_.find(r->id);
    if (source != modelSources_.end()) {
      next = std::next(source);
    }
    if (source == modelSources_.end() || !source->second.spec.sharesWith(r->spec) ||
        source->second.handle != *handle) {
      Status unreadable = Status::ok();
      if (isNetwork) {
        if (auto spec = parseNetworkSpec(r->id.name, r->spec); spec.isOk()) {
          changed |= setEntry(model_.networks, r->id.name, std::move(*spec));
          if (handle->is_null()) {
            changed |= model_.ports.erase(r->id.name) > 0;
          } else {
            changed |= setEntry(model_.ports, r->id.name, TapBinding::listFromJson(*handle));
          }
        } else {
          unreadable = spec.status();
        }
      } else if (auto spec = parsePolicySpec(r->id.name, r->spec); spec.isOk()) {
        changed |= setEntry(model_.policies, r->id.name, std::move(*spec));
        if (handle->is_null()) {
          changed |= model_.selected.erase(r->id.name) > 0;
        } else {
          changed |= setEntry(model_.selected, r->id.name, handle->get<std::vector<std::string>>());
        }
      } else {
        unreadable = spec.status();
      }
      if (!unreadable.isOk()) {
        diagnostics.add({Severity::Warning,
                         {},
                         r->id,
                         "spec",
                         "inventory spec unreadable, left out of the nftables table <- " +
                             unreadable.message()});
        complete = false;
        continue;  // not present: its entries go below
      }
      next = std::next(modelSources_.insert_or_assign(r->id, ModelSource{r->spec, *handle}).first);
    }
    ++sourced;
    (isNetwork ? networks : policies).push_back(r->id.name);
    present.push_back(&r->id);
  }
  for (auto* names : {&networks, &policies}) {
    if (!std::is_sorted(names->begin(), names->end())) {
      std::sort(names->begin(), names->end());
    }
  }
  changed |= keepOnly(model_.networks, networks);
  changed |= keepOnly(model_.ports, networks);
  changed |= keepOnly(model_.policies, policies);
  changed |= keepOnly(model_.selected, policies);
  // Sources of records no longer there: none when every source is a record's (ids are unique).
  if (sourced != modelSources_.size()) {
    auto byId = [](const ObjectId* a, const ObjectId* b) { return *a < *b; };
    if (!std::is_sorted(present.begin(), present.end(), byId)) {
      std::sort(present.begin(), present.end(), byId);
    }
    auto p = present.begin();
    for (auto it = modelSources_.begin(); it != modelSources_.end();) {
      while (p != present.end() && **p < it->first) {
        ++p;
      }
      it = p != present.end() && **p == it->first ? std::next(it) : modelSources_.erase(it);
    }
  }
  if (changed) {
    modelWritten_ = false;
    ++modelEpoch_;
  }
  modelLoaded_ = true;
  return complete;
}

void NetProvider::adoptTablesLocked(const std::vector<const ManagedRecord*>& managed,
                                    const std::map<ObjectId, ObservedState>& observed,
                                    const std::optional<host::NftGeneration>& generation,
                                    uint64_t epoch) {
  if (!generation || epoch != modelEpoch_ || model_.empty() ||
      (modelWritten_ && written_ == generation)) {
    return;
  }
  for (const ManagedRecord* r : managed) {
    if (r->id.kind != "Network" && r->id.kind != "NetworkPolicy") {
      continue;
    }
    // kUnconfirmed (an action cut short) and any drift are never what the listing shows.
    auto o = observed.find(r->id);
    if (o == observed.end() || r->fingerprint.empty() || o->second.fingerprint != r->fingerprint) {
      return;
    }
  }
  written_ = *generation;
  modelWritten_ = true;
  ++nftAdoptions_;
}

void NetProvider::observeAll(const ObserveRequest& req, ObserveResponse& resp) {
  auto inScope = [&](const ObjectId& id) {
    return req.scope == nullptr || std::binary_search(req.scope->begin(), req.scope->end(), id);
  };
  // The objects to observe: the scoped ones, or all.
  std::vector<const Object*> desired;
  std::vector<const ManagedRecord*> managed;
  for (const Object* o : req.desired) {
    if (inScope(o->id)) {
      desired.push_back(o);
    }
  }
  for (const ManagedRecord* r : req.managed) {
    if (inScope(r->id)) {
      managed.push_back(r);
    }
  }
  std::map<ObjectId, const ManagedRecord*> managedById;
  for (const ManagedRecord* r : managed) {
    managedById.emplace(r->id, r);
  }
  // A desired object whose spec is its record's very tree (nothing changed since its apply)
  // parses as the record did: the model's parse is taken rather than parsing it again.
  auto sharesRecordSpec = [&](const Object& o) {
    auto record = managedById.find(o.id);
    return record != managedById.end() && o.spec.sharesWith(record->second->spec);
  };
  // The tables' model from every record (as applied), kept up to date in place: the model
  // the tables were last written from stays that (most observes), and an unchanged record
  // costs no parse.
  std::unique_lock<std::mutex> lock(mu_);
  const bool wholeModel = loadModelLocked(req.managed, resp.diagnostics);
  const uint64_t epoch = modelEpoch_;
  const NftModel& model = model_;
  // The bridge and CIDR each desired Network asks for (its spec unreadable: the derived bridge).
  struct WantedBridge {
    std::string bridge;
    std::optional<Cidr> cidr;
  };
  std::map<std::string, WantedBridge> wanted;
  for (const Object* o : desired) {
    if (o->id.kind != "Network") {
      continue;
    }
    if (auto known = model.networks.find(o->id.name);
        known != model.networks.end() && sharesRecordSpec(*o)) {
      wanted[o->id.name] = {known->second.bridge, known->second.cidr};
    } else if (auto spec = parseNetworkSpec(*o); spec.isOk()) {
      wanted[o->id.name] = {spec->bridge, spec->cidr};
    } else {
      wanted[o->id.name] = {deriveInterfaceName(kBridgePrefix, o->id.name), std::nullopt};
    }
  }
  // What each desired policy's selector selects now.
  std::map<std::string, std::vector<std::string>> selection;
  std::map<std::string, std::vector<TapBinding>> ports;
  if (req.revision != nullptr) {
    auto placements = placeRevisionVms(*req.revision, req.inventory);
    for (const auto& [vm, placed] : placements) {
      TapBinding b{placed.tap, placed.ipString(), placed.mac, vm};
      // A MAC the schema let through but nft could not take (upper case) binds nothing.
      if (!TapBinding::listFromJson(Json::array({b.toJson()})).empty()) {
        ports[placed.network].push_back(std::move(b));
      }
    }
    for (auto& [network, list] : ports) {
      std::sort(list.begin(), list.end(),
                [](const TapBinding& a, const TapBinding& b) { return a.tap < b.tap; });
    }
    for (const Object* o : desired) {
      if (o->id.kind != "NetworkPolicy") {
        continue;
      }
      std::optional<netmodel::PolicySpec> parsed;
      const netmodel::PolicySpec* policy = nullptr;
      if (auto known = model.policies.find(o->id.name);
          known != model.policies.end() && sharesRecordSpec(*o)) {
        policy = &known->second;
      } else if (auto r = parsePolicySpec(*o); r.isOk()) {
        parsed = std::move(*r);
        policy = &*parsed;
      }
      if (!policy || !policy->matchLabels) {
        continue;
      }
      // Addresses that the bridge guard binds to the selected VMs' taps: a guest cannot send
      // from another one (see renderNftBridgeTable).
      std::vector<std::string>& addresses = selection[o->id.name];
      for (const auto& vm : selectVms(*policy, *req.revision, placements)) {
        addresses.push_back(placements.at(vm).ipString());
      }
      std::sort(addresses.begin(), addresses.end());
    }
  }
  lock.unlock();

  // A scope reads only its Networks' links: their bridges, and whatever holds an address in
  // their CIDRs (a collision); none for policies alone.
  Result<LinkTable> links = LinkTable{};
  if (req.scope == nullptr) {
    links = dumpLinks();
  } else {
    std::vector<std::string> names;
    std::vector<Cidr> cidrs;
    for (const auto& [name, w] : wanted) {
      names.push_back(w.bridge);
      if (w.cidr) {
        cidrs.push_back(*w.cidr);
      }
    }
    for (const ManagedRecord* r : managed) {
      if (r->id.kind == "Network") {
        names.push_back(managedBridge(*r));
        if (auto spec = parseNetworkSpec(r->id.name, r->spec); spec.isOk()) {
          cidrs.push_back(spec->cidr);
        }
      }
    }
    if (names.size() > kMaxLinksAlone) {
      links = dumpLinks();
    } else if (!names.empty()) {
      links = netmodel::dumpLinkTableFor(names, cidrs, &addresses_);
    }
  }
  if (!links.isOk()) {
    resp.diagnostics.error({}, "", links.status().withContext("observe links").message());
    return;
  }
  auto tables = nftTables();
  if (!tables.isOk()) {
    resp.diagnostics.error({}, "", tables.status().withContext("observe nftables").message());
    return;
  }
  const NftTableDump* nft = tables->get();
  const LinkIndex index(*links);
  auto ipForward = readIpForward();
  if (!ipForward.isOk()) {
    resp.diagnostics.add({Severity::Warning, {}, {}, "", ipForward.status().message()});
  }

  // Desired objects are observed as the manifest wants them (the bridge name it asks for); ones
  // only in the inventory as they were applied.
  std::map<ObjectId, ObservedState>& out = resp.observed;
  for (const Object* o : desired) {
    if (o->id.kind == "Network") {
      const WantedBridge& w = wanted.at(o->id.name);
      auto record = managedById.find(o->id);
      out[o->id] = observeNetwork(o->id, w.bridge, w.cidr ? &*w.cidr : nullptr, index, *nft,
                                  ipForward.isOk() && *ipForward,
                                  record == managedById.end() ? nullptr : record->second);
    } else if (o->id.kind == "NetworkPolicy") {
      out[o->id] = observePolicy(o->id, *nft);
    }
  }
  for (const ManagedRecord* r : managed) {
    if (out.count(r->id)) {
      continue;
    }
    if (r->id.kind == "Network") {
      auto spec = parseNetworkSpec(r->id.name, r->spec);
      out[r->id] = observeNetwork(r->id, managedBridge(*r), spec.isOk() ? &spec->cidr : nullptr,
                                  index, *nft, ipForward.isOk() && *ipForward, r);
    } else if (r->id.kind == "NetworkPolicy") {
      out[r->id] = observePolicy(r->id, *nft);
    }
  }
  // Plan reads these from the observed state, never from the provider (it is pure).
  for (auto& [id, state] : out) {
    if (id.kind == "Network") {
      if (auto it = ports.find(id.name); it != ports.end()) {
        state.context["ports"] = portsJson(it->second);
      }
    } else if (id.kind == "NetworkPolicy") {
      if (auto it = selection.find(id.name); it != selection.end()) {
        state.context["selected"] = it->second;
      }
    }
  }
  if (req.scope == nullptr && wholeModel) {
    std::optional<host::NftGeneration> generation;
    {
      std::lock_guard<std::mutex> cacheLock(nftCacheMu_);
      if (nftCache_ == *tables) {
        generation = nftCacheGeneration_;
      }
    }
    std::lock_guard<std::mutex> relock(mu_);
    adoptTablesLocked(req.managed, out, generation, epoch);
  }
}

void NetProvider::plan(const PlanRequest& req, PlanResponse& resp) const {
  guarded(resp.diagnostics, req.id, "plan", [&] { planOne(req, resp); });
}

void NetProvider::planOne(const PlanRequest& req, PlanResponse& resp) const {
  if (planPrune(req, resp)) {
    return;
  }
  static const Json kNoContext;
  const Json& context = req.observed ? req.observed->context : kNoContext;
  // Apply renders the table from the action alone: what it needs of the revision goes along.
  if (req.id.kind == "Network") {
    std::vector<TapBinding> ports = portsIn(context);
    planNetwork(req, ports, resp);
    if (resp.action && !ports.empty()) {
      resp.action->privateData = {{"ports", portsJson(ports)}};
    }
  } else if (req.id.kind == "NetworkPolicy") {
    std::vector<std::string> selected = selectedIn(context);
    planPolicy(req, selected, resp);
    if (resp.action && !selected.empty()) {
      resp.action->privateData = {{"selected", selected}};
    }
  } else {
    resp.diagnostics.error(req.id, "kind", "the net provider does not handle this kind");
  }
}

void NetProvider::apply(const ApplyRequest& req, ApplyResponse& resp) {
  std::vector<ApplyResponse> resps;
  applyBatch({&req}, resps);
  resp = std::move(resps.front());
}

void NetProvider::applyBatch(const std::vector<const ApplyRequest*>& reqs,
                             std::vector<ApplyResponse>& resps) {
  resps.assign(reqs.size(), ApplyResponse{});
  try {
    applyMany(reqs, resps);
  } catch (const std::exception& e) {
    for (size_t i = 0; i < reqs.size(); ++i) {
      if (!resps[i].diagnostics.hasErrors()) {
        resps[i].diagnostics.error(reqs[i] && reqs[i]->action ? reqs[i]->action->id : ObjectId{},
                                   "", std::string("apply <- ") + e.what());
      }
    }
  }
}

// One action of a batch on its way: what it asks of the links and of the model.
namespace {
// Fails `step` when it is still going and depends on a step of the same batch that failed
// (`failedIds`; those come before it: Provider::batchesDependents), then adds it there if it
// failed. A template only because Step is NetProvider's own.
template <typename StepT>
void failIfDependencyFailed(StepT& step, std::set<ObjectId>& failedIds) {
  if (!step.failed()) {
    for (const ObjectId& dep : step.req->action->dependsOn) {
      if (failedIds.count(dep)) {
        fail(*step.resp, step.id,
             Status::error("not applied: " + dep.str() + " failed in the same batch"));
        break;
      }
    }
  }
  if (step.failed()) {
    failedIds.insert(step.id);
  }
}
}  // namespace

namespace {

// Runs `created` (the bridges deleted and made, in the steps' order), turns IPv6 off on each new
// one while it is still down, then runs `changes` (their alias, MTU, up and address; other
// bridges' changes): each owner's first failure, as LinkChanges::apply() gives it. Turned off
// once the bridges are up, every bridge's IPv6 routes would be walked again for each one (the
// kernel's rt6_sync_down_dev): 10 s more of a first apply at 5,000 Networks; off before they
// come up, there are none to walk.
Result<std::map<size_t, std::string>> makeLinks(
    const netmodel::LinkChanges& created,
    const std::vector<std::pair<size_t, std::string>>& createdNames,
    const netmodel::LinkChanges& changes) {
  std::map<size_t, std::string> failed;
  if (!created.empty()) {
    HYPER_ASSIGN_OR_RETURN(failed, created.apply());
    for (const auto& [owner, bridge] : createdNames) {
      if (failed.count(owner) != 0) {
        continue;
      }
      if (Status off = disableIpv6(bridge); !off.isOk()) {
        failed.emplace(owner, off.message());
      }
    }
  }
  if (!changes.empty()) {
    HYPER_ASSIGN_OR_RETURN(auto more, changes.apply());
    for (auto& [owner, why] : more) {
      failed.emplace(owner, std::move(why));  // an owner's first failure stays
    }
  }
  return failed;
}

// The links the Network steps' bridges and collisions are found among (prepareNetwork): their
// old and new bridges and whatever holds an address in their CIDRs, read alone; for a batch of
// more than kMaxLinksAlone bridges (a first apply) every link, in one dump. A template only
// because Step is NetProvider's own.
template <typename StepT>
Result<LinkTable> linksFor(const std::vector<StepT>& steps, netmodel::AddressCache& addresses) {
  std::vector<std::string> names;
  std::vector<Cidr> cidrs;
  for (const StepT& step : steps) {
    if (step.id.kind != "Network") {
      continue;
    }
    const ManagedRecord* managed = step.req->managed;
    if (managed) {
      names.push_back(managedBridge(*managed));
    } else if (step.isDelete) {
      names.push_back(deriveInterfaceName(kBridgePrefix, step.id.name));
    }
    if (!step.isDelete && step.req->desired) {
      if (auto spec = parseNetworkSpec(*step.req->desired); spec.isOk()) {
        names.push_back(spec->bridge);
        cidrs.push_back(spec->cidr);
      }
    }
  }
  if (names.size() > kMaxLinksAlone) {
    return dumpLinks();
  }
  return netmodel::dumpLinkTableFor(names, cidrs, &addresses);
}
}  // namespace

namespace {

// The entries of the model some objects' steps change, as they were before: put back without a
// copy of the whole model (10k entries at 5,000 + 5,000 took milliseconds of every apply).
class ModelUndo {
 public:
  // Keeps `id`'s entries as they are now; the first call for an id is the one kept.
  void save(const NftModel& model, const ObjectId& id) {
    if (id.kind == "Network") {
      keep(networks_, model.networks, id.name);
      keep(ports_, model.ports, id.name);
    } else {
      keep(policies_, model.policies, id.name);
      keep(selected_, model.selected, id.name);
    }
  }
  void restore(NftModel& model) const {
    putBack(networks_, model.networks);
    putBack(ports_, model.ports);
    putBack(policies_, model.policies);
    putBack(selected_, model.selected);
  }

 private:
  template <class V>
  using Saved = std::map<std::string, std::optional<V>>;
  template <class V>
  static void keep(Saved<V>& saved, const std::map<std::string, V>& from, const std::string& key) {
    if (saved.count(key) == 0) {
      auto it = from.find(key);
      saved[key] = it == from.end() ? std::nullopt : std::optional<V>(it->second);
    }
  }
  template <class V>
  static void putBack(const Saved<V>& saved, std::map<std::string, V>& to) {
    for (const auto& [key, value] : saved) {
      if (value) {
        to[key] = *value;
      } else {
        to.erase(key);
      }
    }
  }

  Saved<netmodel::NetworkSpec> networks_;
  Saved<std::vector<TapBinding>> ports_;
  Saved<netmodel::PolicySpec> policies_;
  Saved<std::vector<std::string>> selected_;
};

}  // namespace

struct NetProvider::Step {
  const ApplyRequest* req = nullptr;
  ApplyResponse* resp = nullptr;
  ObjectId id;
  bool isDelete = false;
  std::optional<NetworkSpec> network;          // a Network create/update/replace
  std::optional<netmodel::PolicySpec> policy;  // a NetworkPolicy create/update
  std::string deleted;                         // a bridge of ours this action deletes
  std::string configured;                      // the bridge this action makes or fixes
  bool create = false;                         // `configured` is made first
  std::vector<netmodel::Cidr> staleAddresses;  // on `configured`, removed
  bool linksChanged = false;                   // its link changes were asked of the kernel
  bool failed() const { return resp->diagnostics.hasErrors(); }
};

void NetProvider::applyMany(const std::vector<const ApplyRequest*>& reqs,
                            std::vector<ApplyResponse>& resps) {
  std::vector<Step> steps;
  steps.reserve(reqs.size());
  bool anyNetwork = false;
  for (size_t i = 0; i < reqs.size(); ++i) {
    Step step;
    step.req = reqs[i];
    step.resp = &resps[i];
    if (!step.req || !step.req->action) {
      resps[i].diagnostics.error({}, "", "apply without an action");
      continue;
    }
    step.id = step.req->action->id;
    step.isDelete = step.req->action->type == ActionType::Delete;
    anyNetwork = anyNetwork || step.id.kind == "Network";
    steps.push_back(std::move(step));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!modelLoaded_) {
      for (Step& step : steps) {
        fail(*step.resp, step.id,
             Status::error("apply before observe: the nftables table would lose the rules of "
                           "every other object"));
      }
      return;
    }
  }
  Result<LinkTable> links =
      anyNetwork ? linksFor(steps, addresses_) : Result<LinkTable>(LinkTable{});
  std::optional<LinkIndex> index;
  if (links.isOk()) {
    index.emplace(*links);
  }
  for (Step& step : steps) {
    if (!step.isDelete && !step.req->desired) {
      fail(*step.resp, step.id,
           Status::error("no desired object for a " +
                         std::string(actionTypeName(step.req->action->type))));
    } else if (step.id.kind == "Network") {
      if (!links.isOk()) {
        fail(*step.resp, step.id, links.status().withContext("read links"));
      } else {
        prepareNetwork(*index, step);
      }
    } else if (step.id.kind == "NetworkPolicy") {
      if (!step.isDelete) {
        auto spec = parsePolicySpec(*step.req->desired);
        if (!spec.isOk()) {
          fail(*step.resp, step.id, spec.status());
        } else {
          step.policy = std::move(*spec);
        }
      }
    } else {
      fail(*step.resp, step.id,
           Status::error("the net provider does not handle kind " + step.id.kind));
    }
  }

  // The tables name bridges only by name (iifname, oifname), never by index, so they are written
  // and read back while the kernel makes the bridges on another thread: it does the two under
  // different locks (rtnl, the nf_tables commit mutex), and at 1,000 networks each took about
  // 0.3 s of the first apply.
  netmodel::LinkChanges created;
  std::vector<std::pair<size_t, std::string>> createdNames;
  netmodel::LinkChanges changes = linkChanges(steps, created, createdNames);
  std::future<Result<std::map<size_t, std::string>>> linked;
  if (!changes.empty() || !created.empty()) {
    linked = std::async(std::launch::async, [&changes, &created, &createdNames] {
      return makeLinks(created, createdNames, changes);
    });
  }
  std::set<ObjectId> failedIds;
  for (Step& step : steps) {
    failIfDependencyFailed(step, failedIds);
  }
  std::lock_guard<std::mutex> lock(mu_);
  ModelUndo before;  // what the steps change in the model, when their links may fail after
  if (linked.valid()) {
    for (const Step& step : steps) {
      before.save(model_, step.id);
    }
  }
  std::vector<bool> written(steps.size());
  writeTablesLocked(steps);
  for (size_t i = 0; i < steps.size(); ++i) {
    written[i] = !steps[i].failed();
  }
  auto anyLeft = [&] {
    return std::any_of(steps.begin(), steps.end(), [](const Step& s) { return !s.failed(); });
  };
  Result<std::shared_ptr<const NftTableDump>> dump = Status::error("not read");
  if (anyLeft()) {
    dump = nftTables(lastDelta_ ? &*lastDelta_ : nullptr);
  }
  if (linked.valid()) {
    attributeLinkChanges(steps, linked.get());
    configureBridges(steps);
    // A step that failed in the kernel (or configuring its bridge) was already in the tables, with
    // the policies that came in its batch: write them again without those, as if they had failed
    // first.
    failedIds.clear();
    bool rewrite = false;
    for (size_t i = 0; i < steps.size(); ++i) {
      failIfDependencyFailed(steps[i], failedIds);
      rewrite = rewrite || (written[i] && steps[i].failed());
    }
    if (rewrite) {
      before.restore(model_);
      modelWritten_ = false;
      writeTablesLocked(steps);
      if (anyLeft()) {
        dump = nftTables(lastDelta_ ? &*lastDelta_ : nullptr);
      }
    }
  }
  lastDelta_.reset();  // read back (or never to be): what it changed is not needed any more
  if (!anyLeft()) {
    return;
  }
  // One read-back for the batch: each object's fingerprint is what it owns in the table, which no
  // other object's change moves.
  std::string table = "table " + std::string(kNftFamily) + " " + std::string(kNftTable);
  for (Step& step : steps) {
    if (step.failed()) {
      continue;
    }
    if (!dump.isOk()) {
      fail(*step.resp, step.id, dump.status().withContext("read back nftables " + table));
      continue;
    }
    if (step.isDelete) {
      continue;
    }
    std::vector<std::string> taps;
    if (step.id.kind == "Network") {
      for (const auto& port : model_.ports[step.id.name]) {
        taps.push_back(port.tap);
      }
    }
    std::string fingerprint = formatFingerprint(fingerprintParts(**dump, step.id, taps));
    if (step.id.kind == "Network") {
      step.resp->handles = {{"bridge", step.configured},
                            {"ports", portsJson(model_.ports[step.id.name])},
                            {"ipv6", false}};
    } else {
      step.resp->handles = {{"chains",
                             {policyChainName(step.id.name, Direction::Egress),
                              policyChainName(step.id.name, Direction::Ingress)}}};
      if (model_.policies[step.id.name].matchLabels) {
        step.resp->handles["selected"] = model_.selected[step.id.name];
      }
    }
    step.resp->fingerprint = std::move(fingerprint);
  }
}

void NetProvider::prepareNetwork(const LinkIndex& links, Step& step) const {
  const ObjectId& id = step.id;
  const std::string mine = ownerAlias(id.name);
  // Deletes only what carries our mark: a same-named link someone else made stays.
  auto removeOwned = [&](const std::string& bridge) {
    const LinkState* link = links.find(bridge);
    if (!link) {
      return;
    }
    if (link->alias != mine) {
      step.resp->diagnostics.add(
          {Severity::Warning,
           {},
           id,
           "",
           "bridge " + bridge + " is not hyper's (alias \"" + link->alias + "\"); left alone"});
      return;
    }
    step.deleted = bridge;
  };

  if (step.isDelete) {
    removeOwned(step.req->managed ? managedBridge(*step.req->managed)
                                  : deriveInterfaceName(kBridgePrefix, id.name));
    return;
  }
  auto spec = parseNetworkSpec(*step.req->desired);
  if (!spec.isOk()) {
    fail(*step.resp, id, spec.status());
    return;
  }
  if (step.req->managed) {
    std::string old = managedBridge(*step.req->managed);
    if (old != spec->bridge) {
      removeOwned(old);
    }
  }
  Json foreign = findForeign(links, id.name, spec->bridge, &spec->cidr);
  if (!foreign.is_null()) {
    fail(*step.resp, id,
         Status::error(foreignSummary(foreign, spec->bridge, &spec->cidr))
             .withContext("configure bridge " + spec->bridge));
    step.deleted.clear();
    return;
  }

  const LinkState* link = links.find(spec->bridge);
  const std::string& dev = spec->bridge;
  step.create = !link || step.deleted == dev;
  std::string gateway = spec->gatewayCidr();
  if (!step.create) {
    for (const auto& a : link->ipv4) {
      if (a.str() != gateway) {
        step.staleAddresses.push_back(a);
      }
    }
  }
  step.configured = dev;
  step.network = std::move(*spec);
}

// The link changes of every step still going, each step's in order: the old bridge of a replace
// deleted and the bridge made (in `created`: run first, makeLinks); then, in the value, the
// bridge marked with hyper's alias (the kernel ignores an alias given at creation), its MTU set
// and up, its other addresses removed before the gateway is put (deleting a primary address also
// deletes the secondaries of its subnet, which could take the new gateway with it).
netmodel::LinkChanges NetProvider::linkChanges(
    std::vector<Step>& steps, netmodel::LinkChanges& created,
    std::vector<std::pair<size_t, std::string>>& names) const {
  netmodel::LinkChanges changes;
  for (size_t i = 0; i < steps.size(); ++i) {
    Step& step = steps[i];
    if (step.failed() || (step.deleted.empty() && step.configured.empty())) {
      continue;
    }
    step.linksChanged = true;
    if (!step.deleted.empty()) {
      created.deleteLink(i, step.deleted);
    }
    if (step.configured.empty()) {
      continue;
    }
    const std::string& dev = step.configured;
    if (step.create) {
      created.addBridge(i, dev);
      names.emplace_back(i, dev);
    }
    changes.setAlias(i, dev, ownerAlias(step.id.name));
    changes.setMtuUp(i, dev, step.network->mtu);
    for (const auto& a : step.staleAddresses) {
      changes.deleteAddress(i, dev, a);
    }
    changes.replaceAddress(i, dev,
                           netmodel::Cidr{step.network->gateway, step.network->cidr.prefix});
  }
  return changes;
}

// The kernel ran every step's link changes, going on past a failed one: a failure is the step's
// whose change it was, not the batch's. When the kernel could not be asked or did not answer,
// every step that asked is in doubt.
void NetProvider::attributeLinkChanges(std::vector<Step>& steps,
                                       const Result<std::map<size_t, std::string>>& ran) const {
  auto what = [](const Step& step) {
    return step.configured.empty() ? "delete bridge " + step.deleted
                                   : "configure bridge " + step.configured;
  };
  if (!ran.isOk()) {
    for (Step& step : steps) {
      if (step.linksChanged && !step.failed()) {
        fail(*step.resp, step.id, ran.status().withContext(what(step)));
      }
    }
    return;
  }
  for (const auto& [owner, why] : *ran) {
    Step& step = steps[owner];
    if (!step.failed()) {
      fail(*step.resp, step.id, Status::error(why).withContext(what(step)));
    }
  }
}

// The bridges made or fixed are routers for their VMs (proxy_arp_pvlan, proxy_delay).
void NetProvider::configureBridges(std::vector<Step>& steps) const {
  for (Step& step : steps) {
    if (step.failed()) {
      continue;
    }
    if (!step.deleted.empty()) {
      crashPoint("bridge-deleted " + step.id.str());
    }
    if (!step.configured.empty()) {
      if (Status routed = enableRouting(step.configured); !routed.isOk()) {
        fail(*step.resp, step.id, routed.withContext("configure bridge " + step.configured));
        continue;
      }
      crashPoint("bridge-configured " + step.id.str());
    }
  }
}

// Puts every step that is still going into the model and writes the tables once (one nftables
// transaction). If that fails, the steps are written one at a time from the model as it was, so
// that the failure is the step's that caused it, as when they are applied alone. Call with mu_
// held.
void NetProvider::writeTablesLocked(std::vector<Step>& steps) {
  ++modelEpoch_;
  auto put = [&](const Step& step) {
    modelSources_.erase(step.id);
    if (step.id.kind == "Network") {
      if (step.isDelete) {
        model_.networks.erase(step.id.name);
        model_.ports.erase(step.id.name);
      } else {
        model_.networks[step.id.name] = *step.network;
        model_.ports[step.id.name] = portsIn(step.req->action->privateData);
      }
    } else if (step.isDelete) {
      model_.policies.erase(step.id.name);
      model_.selected.erase(step.id.name);
    } else {
      if (step.policy->matchLabels) {
        model_.selected[step.id.name] = selectedIn(step.req->action->privateData);
      }
      model_.policies[step.id.name] = *step.policy;
    }
  };
  size_t going = 0;
  for (const Step& step : steps) {
    going += step.failed() ? 0 : 1;
  }
  if (going == 0) {
    return;
  }
  ModelUndo before;
  if (going > 1) {
    for (const Step& step : steps) {
      if (!step.failed()) {
        before.save(model_, step.id);
      }
    }
  }
  // Only bridges changed (an MTU, a gateway): the tables render the same, and need not be
  // rendered at all while they hold what they were last written from.
  bool sameTables =
      modelWritten_ && std::all_of(steps.begin(), steps.end(), [&](const Step& step) {
        if (step.failed()) {
          return true;
        }
        if (step.id.kind != "Network" || step.isDelete) {
          return false;
        }
        auto old = model_.networks.find(step.id.name);
        if (old == model_.networks.end() || old->second.bridge != step.network->bridge ||
            !(old->second.cidr == step.network->cidr) || old->second.nat != step.network->nat) {
          return false;
        }
        auto ports = model_.ports.find(step.id.name);
        return (ports == model_.ports.end() ? std::vector<TapBinding>{} : ports->second) ==
               portsIn(step.req->action->privateData);
      });
  // The parts of the tables these steps can change, as the tables hold them when they were last
  // written from the model as it is (writeTableLocked checks that nothing else committed since).
  NftScope scope;
  for (const Step& step : steps) {
    if (step.failed()) {
      continue;
    }
    if (step.id.kind == "Network") {
      scope.addNetwork(step.id.name);
    } else {
      scope.addPolicy(step.id.name, model_, step.policy ? &step.policy->network : nullptr);
    }
  }
  std::optional<NftRender> rendered;
  if (written_ && modelWritten_ && !sameTables && !model_.empty()) {
    rendered = renderNftBlocks(model_, scope);
  }
  for (const Step& step : steps) {
    if (!step.failed()) {
      put(step);
    }
  }
  Status written = writeTableLocked(rendered ? &*rendered : nullptr, &scope, sameTables);
  if (written.isOk()) {
    return;
  }
  if (going == 1) {
    for (Step& step : steps) {
      if (!step.failed()) {
        fail(*step.resp, step.id, written);
      }
    }
    return;
  }
  before.restore(model_);
  modelWritten_ = false;
  std::set<ObjectId> failedIds;
  for (Step& step : steps) {
    failIfDependencyFailed(step, failedIds);  // a policy whose Network failed alone just now
    if (step.failed()) {
      continue;
    }
    ModelUndo kept;  // the failing write changed nothing: neither may the model
    kept.save(model_, step.id);
    put(step);
    if (Status alone = writeTableLocked(nullptr, nullptr, false); !alone.isOk()) {
      kept.restore(model_);
      modelWritten_ = false;
      fail(*step.resp, step.id, alone);
      failedIds.insert(step.id);
    }
  }
}

Status NetProvider::writeTableLocked(const NftRender* before, const NftScope* scope,
                                     bool sameTables) {
  std::string table = "table " + std::string(kNftFamily) + " " + std::string(kNftTable);
  lastDelta_.reset();
  auto from = host::nftGeneration();
  const bool untouched = written_ && from.isOk() && *from == *written_;
  if (sameTables && untouched) {
    return enableIpForwardFor(model_);
  }
  modelWritten_ = false;
  std::optional<NftDelta> delta;
  if (before && scope && untouched && !model_.empty()) {
    delta = nftDelta(*before, renderNftBlocks(model_, *scope), /*tablesStay=*/true);
  }
  if (!delta || !delta->commands.empty()) {
    written_.reset();
    // A delta the kernel refuses (a part someone deleted in between) is not the step's error:
    // the replace's is, and the replace writes what the delta would have.
    bool wroteDelta = delta && host::nftApply(delta->commands).isOk();
    if (!wroteDelta) {
      HYPER_RETURN_IF_ERROR(host::nftApply(renderNftReplace(renderTables(model_), model_.empty()))
                                .withContext("replace nftables " + table));
    }
    ++(wroteDelta ? nftDeltaWrites_ : nftReplaces_);
    auto to = host::nftGeneration();
    if (from.isOk() && to.isOk() && to->netns == from->netns && to->id == from->id + 1) {
      written_ = *to;
      if (wroteDelta) {
        std::string().swap(delta->commands);
        lastDelta_ = DeltaWrite{*from, *to, std::move(*delta)};
      }
    }
  }
  modelWritten_ = written_.has_value();
  return enableIpForwardFor(model_);
}

}  // namespace hyper::providers::net
