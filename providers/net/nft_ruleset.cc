#include "providers/net/nft_ruleset.h"

#include <algorithm>
#include <set>

#include "base/names.h"
#include "base/sha256.h"
#include "netmodel/cidr.h"

namespace hyper::providers::net {

using netmodel::AllowRule;
using netmodel::NetworkSpec;
using netmodel::parseIpv4;
using netmodel::PolicySpec;
using netmodel::Protocol;
using netmodel::protocolName;
using netmodel::TrafficMode;
using netmodel::TrafficRule;

namespace {

constexpr std::string_view kEgressForward = "egress-forward";
constexpr std::string_view kEgressInput = "egress-input";
constexpr std::string_view kIngressForward = "ingress-forward";
constexpr std::string_view kIngressOutput = "ingress-output";
constexpr std::string_view kNatPostrouting = "nat-postrouting";

std::string comment(std::string_view kind, std::string_view name) {
  return " comment \"" + std::string(kind) + "/" + std::string(name) + "\"";
}

// The match that picks a policy's addresses in one direction, inside its network's chain (which
// only traffic crossing that network's bridge reaches). Without a selector that is everything
// crossing the bridge (every address of the network, and anything spoofed or IPv6, which a
// restricting policy must not let through either): no match at all.
std::string selection(const PolicySpec& p, Direction d) {
  if (!p.matchLabels) {
    return "";
  }
  return (d == Direction::Egress ? "ip saddr @" : "ip daddr @") + policySelectorSetName(p.name) +
         " ";
}

std::string allowRule(const AllowRule& a, Direction d) {
  std::string out = (d == Direction::Egress ? "ip daddr " : "ip saddr ") + a.cidr.str();
  switch (a.protocol) {
    case Protocol::Any:
      break;
    case Protocol::Icmp:
      out += " meta l4proto icmp";
      break;
    case Protocol::Tcp:
    case Protocol::Udp:
      if (a.ports.empty()) {
        out += std::string(" meta l4proto ") + protocolName(a.protocol);
      } else if (a.ports.size() == 1) {
        // Not `{ 443 }`: each anonymous set is a kernel set, named by a scan of the table's sets.
        out += std::string(" ") + protocolName(a.protocol) + " dport " + std::to_string(a.ports[0]);
      } else {
        out += std::string(" ") + protocolName(a.protocol) + " dport { ";
        for (size_t i = 0; i < a.ports.size(); ++i) {
          out += (i ? ", " : "") + std::to_string(a.ports[i]);
        }
        out += " }";
      }
      break;
  }
  return out + " accept";
}

const TrafficRule& traffic(const PolicySpec& p, Direction d) {
  return d == Direction::Egress ? p.egress : p.ingress;
}

void renderPolicyChain(const PolicySpec& p, Direction d, std::string& out) {
  out += "\tchain " + policyChainName(p.name, d) + " {\n";
  const TrafficRule& t = traffic(p, d);
  if (t.mode == TrafficMode::Any) {
    out += "\t\taccept\n";
  } else if (t.mode == TrafficMode::Allowlist) {
    for (const auto& a : t.allow) {
      out += "\t\t" + allowRule(a, d) + "\n";
    }
  }
  out += "\t}\n\n";
}

// A network's chain in one direction: for each of its policies a jump to the policy's chain for
// the addresses it selects, then for each restricting policy a drop for them, so that traffic is
// allowed when any policy allows it (union of allows). The chain exists with no policy too: what a
// Network owns in the table never depends on another object.
void renderNetworkChain(const std::string& network, const std::vector<const PolicySpec*>& policies,
                        Direction d, std::string& out) {
  out += "\tchain " + networkChainName(network, d) + " {\n";
  for (const PolicySpec* p : policies) {
    out += "\t\t" + selection(*p, d) + "jump " + policyChainName(p->name, d) +
           comment("NetworkPolicy", p->name) + "\n";
  }
  for (const PolicySpec* p : policies) {
    if (traffic(*p, d).restricts()) {
      out += "\t\t" + selection(*p, d) + "drop" + comment("NetworkPolicy", p->name) + "\n";
    }
  }
  out += "\t}\n\n";
}

// A verdict map from each network's bridge to its chain in one direction: one lookup per packet
// whatever the number of networks, and no set per network (each named set is found by a walk of
// the table's sets, and listed by a netlink dump of its own).
void renderNetworkMap(const NftModel& model, Direction d, std::string& out) {
  out += "\tmap " + std::string(networkMapName(d)) + " {\n\t\ttype ifname : verdict\n";
  std::string items;
  for (const auto& [name, n] : model.networks) {
    items += (items.empty() ? "\"" : ", \"") + n.bridge + "\" : jump " + networkChainName(name, d);
  }
  if (!items.empty()) {
    out += "\t\telements = { " + items + " }\n";
  }
  out += "\t}\n\n";
}

void renderBaseChain(std::string_view name, std::string_view hook, std::string_view priority,
                     Direction d, std::string& out) {
  out += "\tchain " + std::string(name) + " {\n";
  out += "\t\ttype filter hook " + std::string(hook) + " priority " + std::string(priority) +
         "; policy accept;\n";
  out += "\t\tct state established,related accept\n";
  out += std::string(d == Direction::Egress ? "\t\tiifname vmap @" : "\t\toifname vmap @") +
         std::string(networkMapName(d)) + "\n";
  out += "\t}\n\n";
}

// Set elements as nft source: `"hv-a" . 52:54:00:12:34:56, "hv-b" . ...`. Names and values are
// checked before (TapBinding::listFromJson, placement), so nothing here needs quoting.
std::string elements(const std::vector<TapBinding>& ports, std::string TapBinding::*value) {
  std::string out;
  for (const auto& p : ports) {
    out += (out.empty() ? "" : ", ") + ("\"" + p.tap + "\"") +
           (value == nullptr ? "" : " . " + p.*value);
  }
  return out;
}

void renderSet(const std::string& name, const std::string& type, const std::string& items,
               std::string& out) {
  out += "\tset " + name + " {\n\t\ttype " + type + "\n";
  if (!items.empty()) {
    out += "\t\telements = { " + items + " }\n";
  }
  out += "\t}\n\n";
}

bool validTapBinding(const TapBinding& b) {
  if (!checkInterfaceName(b.tap).empty() || b.tap.find('"') != std::string::npos ||
      !parseIpv4(b.ip).isOk() || b.mac.size() != 17) {
    return false;
  }
  for (size_t i = 0; i < b.mac.size(); ++i) {
    char c = b.mac[i];
    bool ok = i % 3 == 2 ? c == ':' : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!ok) {
      return false;
    }
  }
  return true;
}

NftTableDump::Digest shortDigest(std::string_view text) {
  NftTableDump::Digest d;
  std::string hex = sha256Hex(text);
  std::memcpy(d.hex, hex.data(), sizeof d.hex);
  return d;
}

// The digest of the JSON array of these items: canonicalJson of an array is its elements'
// canonical texts between brackets, comma-separated.
NftTableDump::Digest partDigest(const std::vector<const NftItem*>& items) {
  size_t size = 2;
  for (const NftItem* item : items) {
    size += item->json.size() + 1;
  }
  std::string text;
  text.reserve(size);
  text += '[';
  for (size_t i = 0; i < items.size(); ++i) {
    text += (i ? "," : "") + items[i]->json;
  }
  text += ']';
  return shortDigest(text);
}

std::string stringField(const Json& item, const char* key) {
  auto it = item.find(key);
  return it != item.end() && it->is_string() ? it->get<std::string>() : "";
}

// The chain object and its rules (those without a comment unless `commentedRules`), or "absent".
std::string chainDigest(const NftTableDump& dump, const std::string& chain, bool commentedRules) {
  auto it = dump.chainDigests.find(chain);
  if (it == dump.chainDigests.end()) {
    return "absent";
  }
  return (commentedRules ? it->second.all : it->second.uncommented).str();
}

std::string setDigest(const NftTableDump& dump, const std::string& set) {
  auto it = dump.setDigests.find(set);
  return it == dump.setDigests.end() ? "absent" : it->second.str();
}

// The guard sets' elements of these taps, or "absent" without the sets.
std::string guardDigest(const NftTableDump& dump, std::vector<std::string> taps) {
  if (!dump.guardSets) {
    return "absent";
  }
  std::sort(taps.begin(), taps.end());
  std::string text;
  for (const auto& tap : taps) {
    auto it = dump.guardElementsByTap.find(tap);
    text += tap + "\n";
    if (it != dump.guardElementsByTap.end()) {
      for (const auto& element : it->second) {
        text += element + "\n";
      }
    }
  }
  return sha256Hex(text).substr(0, 16);
}

// The tap an element of a guard set is about: the element itself (ifname) or the first of its
// concatenation; a {"elem": {"val": ...}} wrapper (an element with flags) is looked through.
std::string elementTap(const Json& element) {
  const Json* e = &element;
  if (e->is_object() && e->contains("elem") && (*e)["elem"].is_object() &&
      (*e)["elem"].contains("val")) {
    e = &(*e)["elem"]["val"];
  }
  if (e->is_string()) {
    return e->get<std::string>();
  }
  if (e->is_object() && e->contains("concat") && (*e)["concat"].is_array() &&
      !(*e)["concat"].empty() && (*e)["concat"][0].is_string()) {
    return (*e)["concat"][0].get<std::string>();
  }
  return "";
}

// The chain a verdict map's element jumps to: ["hb-lab", {"jump": {"target": "net-lab-egress"}}]
// (a {"elem": {"val": ...}} wrapper looked through); "" for anything else.
std::string elementTarget(const Json& element) {
  const Json* e = &element;
  if (e->is_object() && e->contains("elem") && (*e)["elem"].is_object() &&
      (*e)["elem"].contains("val")) {
    e = &(*e)["elem"]["val"];
  }
  if (!e->is_array() || e->size() != 2 || !(*e)[1].is_object()) {
    return "";
  }
  for (const char* verdict : {"jump", "goto"}) {
    auto it = (*e)[1].find(verdict);
    if (it != (*e)[1].end() && it->is_object() && it->contains("target") &&
        (*it)["target"].is_string()) {
      return (*it)["target"].get<std::string>();
    }
  }
  return "";
}

// The network maps' elements that jump to this network's chains, or "absent" without the maps.
// The text the maps digest of `network` hashes: each of its chains, then the elements (as
// indexElements gives them) that jump to it.
std::string mapsText(const std::string& network,
                     const std::unordered_map<std::string, std::vector<std::string>>& byTarget) {
  std::string text;
  for (Direction d : {Direction::Egress, Direction::Ingress}) {
    std::string chain = networkChainName(network, d);
    text += chain + "\n";
    if (auto it = byTarget.find(chain); it != byTarget.end()) {
      for (const auto& element : it->second) {
        text += element + "\n";
      }
    }
  }
  return text;
}

std::string mapsDigest(const NftTableDump& dump, const std::string& network) {
  if (!dump.networkMaps) {
    return "absent";
  }
  if (auto it = dump.mapsDigestByNetwork.find(network); it != dump.mapsDigestByNetwork.end()) {
    return it->second.str();
  }
  return sha256Hex(mapsText(network, {})).substr(0, 16);  // no element jumps to its chains
}

// The network whose chain `target` is (networkChainName), or "" for any other chain.
std::string networkOfChain(std::string_view target) {
  for (std::string_view suffix : {std::string_view("-egress"), std::string_view("-ingress")}) {
    if (target.size() > 4 + suffix.size() && target.starts_with("net-") &&
        target.ends_with(suffix)) {
      return std::string(target.substr(4, target.size() - 4 - suffix.size()));
    }
  }
  return "";
}

// The elements of the shared sets or maps `names`, each as "<name>:<canonical JSON>", grouped by
// keyOf(element) (the tap, the chain jumped to) and sorted; false when one of them is missing.
bool indexElements(const NftTableDump& dump, std::initializer_list<std::string_view> names,
                   std::string (*keyOf)(const Json&),
                   std::unordered_map<std::string, std::vector<std::string>>& out) {
  out.clear();
  bool all = true;
  for (std::string_view name : names) {
    auto first = std::find_if(dump.sets.begin(), dump.sets.end(),
                              [&](const NftItem& set) { return set.name == name; });
    if (first == dump.sets.end()) {
      all = false;
      continue;
    }
    Json set = Json::parse(first->json, nullptr, /*allow_exceptions=*/false);
    if (!set.is_object() || !set.contains("elem") || !set["elem"].is_array()) {
      continue;  // no elements
    }
    for (const auto& element : set["elem"]) {
      out[keyOf(element)].push_back(std::string(name) + ":" + canonicalJson(element));
    }
  }
  for (auto& [key, elements] : out) {
    std::sort(elements.begin(), elements.end());
  }
  return all;
}

std::string commentedRulesDigest(const NftTableDump& dump, const std::string& owner) {
  if (!dump.present && !dump.bridgePresent) {
    return "absent";
  }
  static const std::string kNone = partDigest({}).str();  // no rule of its own: "[]"
  auto it = dump.commentDigests.find(owner);
  return it == dump.commentDigests.end() ? kNone : it->second.str();
}

}  // namespace

Json TapBinding::toJson() const { return {{"tap", tap}, {"ip", ip}, {"mac", mac}, {"vm", vm}}; }

std::vector<TapBinding> TapBinding::listFromJson(const Json& ports) {
  std::vector<TapBinding> out;
  if (!ports.is_array()) {
    return out;
  }
  for (const auto& p : ports) {
    if (!p.is_object()) {
      continue;
    }
    auto str = [&](const char* key) {
      auto it = p.find(key);
      return it != p.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    TapBinding b{str("tap"), str("ip"), str("mac"), str("vm")};
    if (validTapBinding(b)) {
      out.push_back(std::move(b));
    }
  }
  return out;
}

bool NftModel::anyNat() const {
  for (const auto& [name, n] : networks) {
    if (n.nat) {
      return true;
    }
  }
  return false;
}

std::string policyChainName(std::string_view policy, Direction d) {
  return "pol-" + std::string(policy) + (d == Direction::Egress ? "-egress" : "-ingress");
}

std::string policySelectorSetName(std::string_view policy) {
  return "pol-" + std::string(policy) + "-sel";
}

std::string networkChainName(std::string_view network, Direction d) {
  return "net-" + std::string(network) + (d == Direction::Egress ? "-egress" : "-ingress");
}

std::string_view networkMapName(Direction d) {
  return d == Direction::Egress ? kEgressMap : kIngressMap;
}

const std::vector<std::string>& nftBaseChains() {
  static const std::vector<std::string> kChains = {
      std::string(kEgressForward), std::string(kEgressInput),    std::string(kIngressForward),
      std::string(kIngressOutput), std::string(kNatPostrouting), std::string(kGuardChain)};
  return kChains;
}

std::string renderNftTable(const NftModel& model) {
  std::string out = "table " + std::string(kNftFamily) + " " + std::string(kNftTable) + " {\n";
  for (const auto& [name, p] : model.policies) {
    if (p.matchLabels) {
      // The VMs the selector selects; none selected is an empty set (the policy matches nothing).
      out +=
          "\tset " + policySelectorSetName(name) + " {\n\t\ttype ipv4_addr\n\t\tflags interval\n";
      auto sel = model.selected.find(name);
      if (sel != model.selected.end() && !sel->second.empty()) {
        out += "\t\telements = { ";
        for (size_t i = 0; i < sel->second.size(); ++i) {
          out += (i > 0 ? ", " : "") + sel->second[i];
        }
        out += " }\n";
      }
      out += "\t}\n\n";
    }
  }
  // Chains before what jumps to them: policies', then networks', then the maps and base chains.
  for (const auto& [name, p] : model.policies) {
    renderPolicyChain(p, Direction::Egress, out);
    renderPolicyChain(p, Direction::Ingress, out);
  }
  // A policy whose network hyper does not manage (yet) selects nothing: it has no chain to be in.
  std::map<std::string, std::vector<const PolicySpec*>> byNetwork;
  for (const auto& [name, p] : model.policies) {
    if (model.networks.count(p.network)) {
      byNetwork[p.network].push_back(&p);
    }
  }
  static const std::vector<const PolicySpec*> kNone;
  for (const auto& [name, n] : model.networks) {
    auto it = byNetwork.find(name);
    const auto& policies = it == byNetwork.end() ? kNone : it->second;
    renderNetworkChain(name, policies, Direction::Egress, out);
    renderNetworkChain(name, policies, Direction::Ingress, out);
  }
  renderNetworkMap(model, Direction::Egress, out);
  renderNetworkMap(model, Direction::Ingress, out);
  // Ingress-forward runs after egress-forward on the same hook, so a packet between two networks
  // must pass both the sender's egress and the receiver's ingress.
  renderBaseChain(kEgressForward, "forward", "filter", Direction::Egress, out);
  renderBaseChain(kEgressInput, "input", "filter", Direction::Egress, out);
  renderBaseChain(kIngressForward, "forward", "filter + 10", Direction::Ingress, out);
  renderBaseChain(kIngressOutput, "output", "filter", Direction::Ingress, out);

  out += "\tchain " + std::string(kNatPostrouting) + " {\n";
  out += "\t\ttype nat hook postrouting priority srcnat; policy accept;\n";
  for (const auto& [name, n] : model.networks) {
    if (n.nat) {
      std::string cidr = n.cidr.str();
      out += "\t\tip saddr " + cidr + " ip daddr != " + cidr + " masquerade" +
             comment("Network", name) + "\n";
    }
  }
  out += "\t}\n}\n";
  return out;
}

std::string renderNftBridgeTable(const NftModel& model) {
  std::string out =
      "table " + std::string(kNftBridgeFamily) + " " + std::string(kNftTable) + " {\n";
  // Every managed network's taps, in network order; a tap named twice (which placement never
  // does) is guarded once, as its first network binds it.
  std::vector<TapBinding> ports;
  std::set<std::string> seen;
  for (const auto& [name, n] : model.networks) {
    auto it = model.ports.find(name);
    if (it == model.ports.end()) {
      continue;
    }
    for (const auto& p : it->second) {
      if (seen.insert(p.tap).second) {
        ports.push_back(p);
      }
    }
  }
  const std::string taps(kGuardTapsSet), macs(kGuardMacsSet), addrs(kGuardAddrsSet);
  renderSet(taps, "ifname", elements(ports, nullptr), out);
  renderSet(macs, "ifname . ether_addr", elements(ports, &TapBinding::mac), out);
  renderSet(addrs, "ifname . ipv4_addr", elements(ports, &TapBinding::ip), out);
  out += "\tchain " + std::string(kGuardChain) + " {\n";
  out += "\t\ttype filter hook prerouting priority filter; policy accept;\n";
  const std::string from = "\t\tiifname @" + taps + " ";
  out += from + "iifname . ether saddr != @" + macs + " drop\n";
  out += from + "iifname . arp saddr ether != @" + macs + " drop\n";
  out += from + "iifname . arp saddr ip != @" + addrs + " drop\n";
  out += from + "iifname . ip saddr != @" + addrs + " drop\n";
  // Two comparisons, not `!= { ip, arp }`: an anonymous set is a kernel set, named by a scan of
  // the table's sets.
  out += from + "ether type != ip ether type != arp drop\n";
  out += "\t}\n}\n";
  return out;
}

std::string renderNftReplace(const NftModel& model) {
  // "table X {}" makes the delete valid when the table does not exist yet; the whole input is one
  // transaction, so nobody ever sees a table missing or half written.
  std::string out;
  for (std::string_view family : {kNftFamily, kNftBridgeFamily}) {
    std::string table = std::string(family) + " " + std::string(kNftTable);
    out += "table " + table + " {}\ndelete table " + table + "\n";
  }
  if (!model.empty()) {
    out += renderNftTable(model);
    out += renderNftBridgeTable(model);
  }
  return out;
}

NftItem nftItem(const Json& object) {
  NftItem item;
  item.json = canonicalJson(object);
  item.name = stringField(object, "name");
  item.chain = stringField(object, "chain");
  item.family = stringField(object, "family");
  item.comment = stringField(object, "comment");
  item.hasComment = object.is_object() && object.contains("comment");
  return item;
}

void NftTableDump::reindex() {
  chainDigests.clear();
  setDigests.clear();
  commentDigests.clear();
  anyInetRule = false;
  for (const NftItem& set : sets) {
    setDigests.emplace(set.name, shortDigest(set.json));
  }
  // Each chain's objects (several of one name are all hashed) followed by its rules in listing
  // order (all of them, and those without a comment), and the rules of each comment.
  struct ChainParts {
    std::vector<const NftItem*> all;
    std::vector<const NftItem*> uncommented;
  };
  std::unordered_map<std::string, ChainParts> byChain;
  std::unordered_map<std::string, std::vector<const NftItem*>> byComment;
  for (const NftItem& chain : chains) {
    ChainParts& parts = byChain[chain.name];
    parts.all.push_back(&chain);
    parts.uncommented.push_back(&chain);
  }
  for (const NftItem& rule : rules) {
    if (!rule.comment.empty()) {
      byComment[rule.comment].push_back(&rule);
    }
    anyInetRule = anyInetRule || rule.family == kNftFamily;
    if (auto it = byChain.find(rule.chain); it != byChain.end()) {
      it->second.all.push_back(&rule);
      if (!rule.hasComment) {
        it->second.uncommented.push_back(&rule);
      }
    }
  }
  for (const auto& [name, parts] : byChain) {
    chainDigests.emplace(name, ChainDigests{partDigest(parts.uncommented), partDigest(parts.all)});
  }
  for (const auto& [comment, owned] : byComment) {
    commentDigests.emplace(comment, partDigest(owned));
  }
  guardSets = indexElements(*this, {kGuardTapsSet, kGuardMacsSet, kGuardAddrsSet}, elementTap,
                            guardElementsByTap);
  std::unordered_map<std::string, std::vector<std::string>> byTarget;
  networkMaps = indexElements(*this, {kEgressMap, kIngressMap}, elementTarget, byTarget);
  mapsDigestByNetwork.clear();
  for (const auto& entry : byTarget) {
    std::string network = networkOfChain(entry.first);
    if (!network.empty() && !mapsDigestByNetwork.count(network)) {
      Digest digest = shortDigest(mapsText(network, byTarget));
      mapsDigestByNetwork.emplace(std::move(network), digest);
    }
  }
}

void NftTableDump::dropItems() {
  std::vector<NftItem>().swap(sets);
  std::vector<NftItem>().swap(chains);
  std::vector<NftItem>().swap(rules);
}

bool NftTableDump::flushed() const { return present && !anyInetRule; }

bool NftTableDump::hasChain(std::string_view name) const {
  return chainDigests.count(std::string(name)) > 0;
}

Result<NftTableDump> parseNftTableDump(std::string_view json) {
  Json doc = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("nftables") ||
      !doc["nftables"].is_array()) {
    return Status::error("parse nft -j output <- expected {\"nftables\": [...]}");
  }
  NftTableDump dump;
  for (const auto& item : doc["nftables"]) {
    if (!item.is_object() || item.size() != 1) {
      continue;
    }
    auto only = item.begin();
    const std::string& key = only.key();
    const Json& value = only.value();
    if (!value.is_object()) {
      continue;
    }
    // Only hyper's own tables count, whatever else the output holds.
    std::string family = stringField(value, "family");
    if ((family != kNftFamily && family != kNftBridgeFamily) ||
        stringField(value, key == "table" ? "name" : "table") != kNftTable) {
      continue;
    }
    Json v = value;
    v.erase("handle");
    if (key == "table") {
      (family == kNftFamily ? dump.present : dump.bridgePresent) = true;
    } else if (key == "set" || key == "map") {
      dump.sets.push_back(nftItem(v));
    } else if (key == "chain") {
      dump.chains.push_back(nftItem(v));
    } else if (key == "rule") {
      dump.rules.push_back(nftItem(v));
    }
  }
  dump.reindex();
  return dump;
}

FingerprintParts fingerprintParts(const NftTableDump& dump, const ObjectId& id,
                                  const std::vector<std::string>& taps) {
  FingerprintParts parts;
  if (id.kind == "Network") {
    for (const auto& chain : nftBaseChains()) {
      parts["chain:" + chain] = chainDigest(dump, chain, /*commentedRules=*/false);
    }
    for (Direction d : {Direction::Egress, Direction::Ingress}) {
      std::string chain = networkChainName(id.name, d);
      parts["chain:" + chain] = chainDigest(dump, chain, /*commentedRules=*/false);
    }
    parts["maps"] = mapsDigest(dump, id.name);
    parts["guard"] = guardDigest(dump, taps);
  } else if (id.kind == "NetworkPolicy") {
    for (Direction d : {Direction::Egress, Direction::Ingress}) {
      std::string chain = policyChainName(id.name, d);
      parts["chain:" + chain] = chainDigest(dump, chain, /*commentedRules=*/true);
    }
    std::string set = policySelectorSetName(id.name);
    parts["set:" + set] = setDigest(dump, set);
  }
  parts["rules:" + id.str()] = commentedRulesDigest(dump, id.str());
  parts[std::string(kLayoutPart)] = std::to_string(kNftLayout);
  return parts;
}

std::string formatFingerprint(const FingerprintParts& parts) {
  std::string out;
  for (const auto& [name, digest] : parts) {
    if (!out.empty()) {
      out += ';';
    }
    out += name + "=" + digest;
  }
  return out;
}

FingerprintParts parseFingerprint(std::string_view fingerprint) {
  FingerprintParts parts;
  size_t start = 0;
  while (start < fingerprint.size()) {
    size_t end = fingerprint.find(';', start);
    if (end == std::string_view::npos) {
      end = fingerprint.size();
    }
    std::string_view item = fingerprint.substr(start, end - start);
    size_t eq = item.rfind('=');
    if (eq != std::string_view::npos) {
      parts[std::string(item.substr(0, eq))] = std::string(item.substr(eq + 1));
    }
    start = end + 1;
  }
  return parts;
}

}  // namespace hyper::providers::net
