#include "providers/net/nft_ruleset.h"

#include <algorithm>
#include <set>

#include "base/names.h"
#include "base/sha256.h"
#include "base/strings.h"
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

NftBlock renderPolicyChain(const PolicySpec& p, Direction d) {
  NftBlock block{NftBlock::Kind::Chain, policyChainName(p.name, d), "", {}};
  const TrafficRule& t = traffic(p, d);
  if (t.mode == TrafficMode::Any) {
    block.items.push_back("accept");
  } else if (t.mode == TrafficMode::Allowlist) {
    for (const auto& a : t.allow) {
      block.items.push_back(allowRule(a, d));
    }
  }
  return block;
}

// A network's chain in one direction: for each of its policies a jump to the policy's chain for
// the addresses it selects, then for each restricting policy a drop for them, so that traffic is
// allowed when any policy allows it (union of allows). The chain exists with no policy too: what a
// Network owns in the table never depends on another object.
NftBlock renderNetworkChain(const std::string& network,
                            const std::vector<const PolicySpec*>& policies, Direction d) {
  NftBlock block{NftBlock::Kind::Chain, networkChainName(network, d), "", {}};
  for (const PolicySpec* p : policies) {
    block.items.push_back(selection(*p, d) + "jump " + policyChainName(p->name, d) +
                          comment("NetworkPolicy", p->name));
  }
  for (const PolicySpec* p : policies) {
    if (traffic(*p, d).restricts()) {
      block.items.push_back(selection(*p, d) + "drop" + comment("NetworkPolicy", p->name));
    }
  }
  return block;
}

// A verdict map from each network's bridge to its chain in one direction: one lookup per packet
// whatever the number of networks, and no set per network (each named set is found by a walk of
// the table's sets, and listed by a netlink dump of its own).
NftBlock renderNetworkMap(const NftModel& model, Direction d) {
  NftBlock block{
      NftBlock::Kind::Map, std::string(networkMapName(d)), "\t\ttype ifname : verdict\n", {}};
  for (const auto& [name, n] : model.networks) {
    block.items.push_back("\"" + n.bridge + "\" : jump " + networkChainName(name, d));
  }
  return block;
}

NftBlock renderBaseChain(std::string_view name, std::string_view hook, std::string_view priority,
                         Direction d) {
  return {NftBlock::Kind::Chain,
          std::string(name),
          "\t\ttype filter hook " + std::string(hook) + " priority " + std::string(priority) +
              "; policy accept;\n",
          {"ct state established,related accept",
           std::string(d == Direction::Egress ? "iifname vmap @" : "oifname vmap @") +
               std::string(networkMapName(d))}};
}

// Set elements as nft source: `"hv-a" . 52:54:00:12:34:56`, one per port. Names and values are
// checked before (TapBinding::listFromJson, placement), so nothing here needs quoting.
std::vector<std::string> elements(const std::vector<TapBinding>& ports,
                                  std::string TapBinding::*value) {
  std::vector<std::string> out;
  out.reserve(ports.size());
  for (const auto& p : ports) {
    out.push_back(("\"" + p.tap + "\"") + (value == nullptr ? "" : " . " + p.*value));
  }
  return out;
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

std::string_view NftBlock::keyword(Kind kind) {
  static constexpr std::string_view kKeyword[] = {"set", "map", "chain"};
  return kKeyword[static_cast<int>(kind)];
}

std::string NftBlock::text() const {
  std::string out = "\t" + std::string(keyword(kind)) + " " + name + " {\n";
  out += head;
  if (kind == Kind::Chain) {
    for (const auto& rule : items) {
      out += "\t\t" + rule + "\n";
    }
  } else if (!items.empty()) {
    out += "\t\telements = { " + join(items, ", ") + " }\n";
  }
  return out + "\t}\n";
}

std::string_view NftBlock::ruleComment(std::string_view rule) {
  static constexpr std::string_view kComment = " comment \"";
  size_t at = rule.rfind(kComment);
  if (at == std::string_view::npos || !rule.ends_with('"')) {
    return {};
  }
  at += kComment.size();
  return rule.substr(at, rule.size() - 1 - at);
}

std::string printNftTable(std::string_view family, const std::vector<NftBlock>& blocks) {
  std::string out = "table " + std::string(family) + " " + std::string(kNftTable) + " {\n";
  for (size_t i = 0; i < blocks.size(); ++i) {
    out += (i ? "\n" : "") + blocks[i].text();
  }
  return out + "}\n";
}

// The whole table, or with `scope` only its parts.
std::vector<NftBlock> renderNftTableBlocks(const NftModel& model, const NftScope* scope) {
  auto policyIn = [&](const std::string& name) {
    return !scope || scope->policies.count(name) > 0;
  };
  std::vector<NftBlock> out;
  for (const auto& [name, p] : model.policies) {
    if (p.matchLabels && policyIn(name)) {
      // The VMs the selector selects; none selected is an empty set (the policy matches nothing).
      NftBlock set{NftBlock::Kind::Set,
                   policySelectorSetName(name),
                   "\t\ttype ipv4_addr\n\t\tflags interval\n",
                   {}};
      if (auto sel = model.selected.find(name); sel != model.selected.end()) {
        set.items = sel->second;
      }
      out.push_back(std::move(set));
    }
  }
  // Chains before what jumps to them: policies', then networks', then the maps and base chains.
  for (const auto& [name, p] : model.policies) {
    if (policyIn(name)) {
      out.push_back(renderPolicyChain(p, Direction::Egress));
      out.push_back(renderPolicyChain(p, Direction::Ingress));
    }
  }
  // A policy whose network hyper does not manage (yet) selects nothing: it has no chain to be in.
  std::map<std::string, std::vector<const PolicySpec*>> byNetwork;
  for (const auto& [name, p] : model.policies) {
    if (model.networks.count(p.network) && (!scope || scope->networkChains.count(p.network))) {
      byNetwork[p.network].push_back(&p);
    }
  }
  static const std::vector<const PolicySpec*> kNone;
  for (const auto& [name, n] : model.networks) {
    if (scope && !scope->networkChains.count(name)) {
      continue;
    }
    auto it = byNetwork.find(name);
    const auto& policies = it == byNetwork.end() ? kNone : it->second;
    out.push_back(renderNetworkChain(name, policies, Direction::Egress));
    out.push_back(renderNetworkChain(name, policies, Direction::Ingress));
  }
  if (!scope || scope->shared) {
    out.push_back(renderNetworkMap(model, Direction::Egress));
    out.push_back(renderNetworkMap(model, Direction::Ingress));
  }
  if (!scope) {
    // Ingress-forward runs after egress-forward on the same hook, so a packet between two
    // networks must pass both the sender's egress and the receiver's ingress.
    out.push_back(renderBaseChain(kEgressForward, "forward", "filter", Direction::Egress));
    out.push_back(renderBaseChain(kEgressInput, "input", "filter", Direction::Egress));
    out.push_back(renderBaseChain(kIngressForward, "forward", "filter + 10", Direction::Ingress));
    out.push_back(renderBaseChain(kIngressOutput, "output", "filter", Direction::Ingress));
  }
  if (!scope || scope->shared) {
    NftBlock nat{NftBlock::Kind::Chain,
                 std::string(kNatPostrouting),
                 "\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
                 {}};
    for (const auto& [name, n] : model.networks) {
      if (n.nat) {
        std::string cidr = n.cidr.str();
        nat.items.push_back("ip saddr " + cidr + " ip daddr != " + cidr + " masquerade" +
                            comment("Network", name));
      }
    }
    out.push_back(std::move(nat));
  }
  return out;
}

std::vector<NftBlock> renderNftBridgeTableBlocks(const NftModel& model, const NftScope* scope) {
  if (scope && !scope->shared) {
    return {};
  }
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
  std::vector<NftBlock> out;
  out.push_back({NftBlock::Kind::Set, taps, "\t\ttype ifname\n", elements(ports, nullptr)});
  out.push_back({NftBlock::Kind::Set, macs, "\t\ttype ifname . ether_addr\n",
                 elements(ports, &TapBinding::mac)});
  out.push_back({NftBlock::Kind::Set, addrs, "\t\ttype ifname . ipv4_addr\n",
                 elements(ports, &TapBinding::ip)});
  if (scope) {
    return out;
  }
  const std::string from = "iifname @" + taps + " ";
  out.push_back({NftBlock::Kind::Chain,
                 std::string(kGuardChain),
                 "\t\ttype filter hook prerouting priority filter; policy accept;\n",
                 {from + "iifname . ether saddr != @" + macs + " drop",
                  from + "iifname . arp saddr ether != @" + macs + " drop",
                  from + "iifname . arp saddr ip != @" + addrs + " drop",
                  from + "iifname . ip saddr != @" + addrs + " drop",
                  // Two comparisons, not `!= { ip, arp }`: an anonymous set is a kernel set, named
                  // by a scan of the table's sets.
                  from + "ether type != ip ether type != arp drop"}});
  return out;
}

NftRender renderNftBlocks(const NftModel& model) {
  return {renderNftTableBlocks(model, nullptr), renderNftBridgeTableBlocks(model, nullptr)};
}

NftRender renderNftBlocks(const NftModel& model, const NftScope& scope) {
  return {renderNftTableBlocks(model, &scope), renderNftBridgeTableBlocks(model, &scope)};
}

void NftScope::addNetwork(const std::string& name) {
  networkChains.insert(name);
  shared = true;
}

void NftScope::addPolicy(const std::string& name, const NftModel& model,
                         const std::string* network) {
  policies.insert(name);
  if (auto it = model.policies.find(name); it != model.policies.end()) {
    networkChains.insert(it->second.network);
  }
  if (network) {
    networkChains.insert(*network);
  }
}

std::string renderNftTable(const NftModel& model) {
  return printNftTable(kNftFamily, renderNftTableBlocks(model, nullptr));
}

std::string renderNftBridgeTable(const NftModel& model) {
  return printNftTable(kNftBridgeFamily, renderNftBridgeTableBlocks(model, nullptr));
}

std::string renderNftReplace(const NftRender& render, bool empty) {
  // "table X {}" makes the delete valid when the table does not exist yet; the whole input is one
  // transaction, so nobody ever sees a table missing or half written.
  std::string out;
  for (std::string_view family : {kNftFamily, kNftBridgeFamily}) {
    std::string table = std::string(family) + " " + std::string(kNftTable);
    out += "table " + table + " {}\ndelete table " + table + "\n";
  }
  if (!empty) {
    out += printNftTable(kNftFamily, render.inet);
    out += printNftTable(kNftBridgeFamily, render.bridge);
  }
  return out;
}

std::string renderNftReplace(const NftModel& model) {
  return renderNftReplace(model.empty() ? NftRender{} : renderNftBlocks(model), model.empty());
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

Status appendNftListing(std::string_view json, NftTableDump& dump) {
  Json doc = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("nftables") ||
      !doc["nftables"].is_array()) {
    return Status::error("parse nft -j output <- expected {\"nftables\": [...]}");
  }
  for (auto& item : doc["nftables"]) {
    if (!item.is_object() || item.size() != 1) {
      continue;
    }
    auto only = item.begin();
    const std::string& key = only.key();
    Json& value = only.value();
    if (!value.is_object()) {
      continue;
    }
    // Only hyper's own tables count, whatever else the output holds.
    std::string family = stringField(value, "family");
    if ((family != kNftFamily && family != kNftBridgeFamily) ||
        stringField(value, key == "table" ? "name" : "table") != kNftTable) {
      continue;
    }
    uint64_t handle = 0;
    if (auto it = value.find("handle"); it != value.end()) {
      handle = it->is_number_unsigned() ? it->get<uint64_t>() : 0;
      value.erase(it);
    }
    if (key == "table") {
      (family == kNftFamily ? dump.present : dump.bridgePresent) = true;
    } else if (key == "set" || key == "map") {
      dump.sets.push_back(nftItem(value));
    } else if (key == "chain") {
      dump.chains.push_back(nftItem(value));
      dump.chains.back().handle = handle;
    } else if (key == "rule") {
      dump.rules.push_back(nftItem(value));
    }
  }
  return Status::ok();
}

Result<NftTableDump> parseNftTableDump(std::string_view json) {
  NftTableDump dump;
  HYPER_RETURN_IF_ERROR(appendNftListing(json, dump));
  dump.reindex();
  return dump;
}

namespace {

std::string blockKey(const NftBlock& block) {
  // Sets and maps share one namespace in a table, chains have their own.
  return (block.kind == NftBlock::Kind::Chain ? "c:" : "s:") + block.name;
}

// A map element's key ("\"hb-lab\"" of "\"hb-lab\" : jump net-lab-egress"); a set's element is
// its own key.
std::string_view elementKey(const NftBlock& block, std::string_view element) {
  if (block.kind != NftBlock::Kind::Map) {
    return element;
  }
  size_t colon = element.find(" : ");
  return colon == std::string_view::npos ? element : element.substr(0, colon);
}

// The delta of one table; false when it needs a replace.
struct TableDelta {
  // New blocks go in one table statement, in render order, before anything names them: a
  // statement per block re-adds the table each time, which the kernel took 8 s for at 2,000
  // networks and policies added to 5,000.
  std::string elementsOut, made, adds, flushGone, deleteChains, deleteSets;
};

bool tableDelta(std::string_view family, const std::vector<NftBlock>& before,
                const std::vector<NftBlock>& after, bool tablesStay, TableDelta& out,
                NftDelta& delta) {
  if (!tablesStay && before.empty() != after.empty()) {
    return false;
  }
  const std::string table = std::string(family) + " " + std::string(kNftTable);
  std::unordered_map<std::string, const NftBlock*> old;
  for (const NftBlock& block : before) {
    old.emplace(blockKey(block), &block);
  }
  std::set<std::string> touched;  // chains rewritten, made or deleted
  for (const NftBlock& block : after) {
    NftPart part{std::string(family), block.kind, block.name};
    auto it = old.find(blockKey(block));
    if (it == old.end()) {
      out.made += block.text();
    } else if (*it->second == block) {
      old.erase(it);
      continue;
    } else if (it->second->kind != block.kind || it->second->head != block.head) {
      return false;
    } else if (block.kind == NftBlock::Kind::Chain) {
      std::string prefix = "add rule " + table + " " + block.name + " ";
      out.adds += "flush chain " + table + " " + block.name + "\n";
      for (const auto& rule : block.items) {
        out.adds += prefix + rule + "\n";
      }
    } else {
      std::set<std::string_view> was(it->second->items.begin(), it->second->items.end());
      std::set<std::string_view> is(block.items.begin(), block.items.end());
      std::vector<std::string> removed, added;
      for (std::string_view element : was) {
        if (!is.count(element)) {
          removed.emplace_back(elementKey(block, element));
        }
      }
      for (std::string_view element : is) {
        if (!was.count(element)) {
          added.emplace_back(element);
        }
      }
      if (!removed.empty()) {
        out.elementsOut +=
            "delete element " + table + " " + block.name + " { " + join(removed, ", ") + " }\n";
      }
      if (!added.empty()) {
        out.adds += "add element " + table + " " + block.name + " { " + join(added, ", ") + " }\n";
      }
    }
    if (it != old.end()) {
      old.erase(it);
    }
    if (block.kind == NftBlock::Kind::Chain) {
      touched.insert(block.name);
    }
    delta.relist.push_back(std::move(part));
  }
  // What is left of `old` is no longer rendered: emptied, then deleted, after everything else.
  for (const NftBlock& block : before) {
    if (!old.count(blockKey(block))) {
      continue;
    }
    if (block.kind == NftBlock::Kind::Chain) {
      out.flushGone += "flush chain " + table + " " + block.name + "\n";
      out.deleteChains += "delete chain " + table + " " + block.name + "\n";
      touched.insert(block.name);
    } else {
      out.deleteSets += "delete " + std::string(NftBlock::keyword(block.kind)) + " " + table + " " +
                        block.name + "\n";
    }
    delta.gone.push_back({std::string(family), block.kind, block.name});
  }
  // A comment's digest is over all its rules in every chain: the chains holding rules of a
  // comment in a touched chain are listed again too.
  std::set<std::string> comments;
  auto commentsOf = [&](const std::vector<NftBlock>& blocks) {
    for (const NftBlock& block : blocks) {
      if (block.kind == NftBlock::Kind::Chain && touched.count(block.name)) {
        for (const auto& rule : block.items) {
          if (auto c = NftBlock::ruleComment(rule); !c.empty()) {
            comments.emplace(c);
          }
        }
      }
    }
  };
  commentsOf(before);
  commentsOf(after);
  if (!comments.empty()) {
    for (const NftBlock& block : after) {
      if (block.kind != NftBlock::Kind::Chain || touched.count(block.name)) {
        continue;
      }
      for (const auto& rule : block.items) {
        if (comments.count(std::string(NftBlock::ruleComment(rule)))) {
          delta.relist.push_back({std::string(family), block.kind, block.name});
          break;
        }
      }
    }
  }
  delta.comments.insert(delta.comments.end(), comments.begin(), comments.end());
  // The maps' digests (by network) and the guard's (by tap) span the sets of their group.
  for (const auto& group :
       {std::vector<std::string_view>{kEgressMap, kIngressMap},
        std::vector<std::string_view>{kGuardTapsSet, kGuardMacsSet, kGuardAddrsSet}}) {
    auto listed = [&](std::string_view name) {
      return std::any_of(delta.relist.begin(), delta.relist.end(), [&](const NftPart& p) {
        return p.family == family && p.kind != NftBlock::Kind::Chain && p.name == name;
      });
    };
    if (std::none_of(group.begin(), group.end(), listed)) {
      continue;
    }
    for (const NftBlock& block : after) {
      if (block.kind != NftBlock::Kind::Chain &&
          std::find(group.begin(), group.end(), block.name) != group.end() && !listed(block.name)) {
        delta.relist.push_back({std::string(family), block.kind, block.name});
      }
    }
  }
  return true;
}

}  // namespace

std::optional<NftDelta> nftDelta(const NftRender& before, const NftRender& after, bool tablesStay) {
  NftDelta delta;
  TableDelta inet, bridge;
  if (!tableDelta(kNftFamily, before.inet, after.inet, tablesStay, inet, delta) ||
      !tableDelta(kNftBridgeFamily, before.bridge, after.bridge, tablesStay, bridge, delta)) {
    return std::nullopt;
  }
  auto made = [](std::string_view family, const TableDelta& d) {
    return d.made.empty() ? std::string()
                          : "table " + std::string(family) + " " + std::string(kNftTable) + " {\n" +
                                d.made + "}\n";
  };
  delta.commands = inet.elementsOut + bridge.elementsOut + made(kNftFamily, inet) +
                   made(kNftBridgeFamily, bridge) + inet.adds + bridge.adds + inet.flushGone +
                   bridge.flushGone + inet.deleteChains + bridge.deleteChains + inet.deleteSets +
                   bridge.deleteSets;
  return delta;
}

NftTableDump NftTableDump::patched(const NftDelta& delta, NftTableDump listed) const {
  // A full listing gives each chain's rules in the kernel's order of the chains (their handles).
  std::stable_sort(listed.chains.begin(), listed.chains.end(),
                   [](const NftItem& a, const NftItem& b) { return a.handle < b.handle; });
  std::unordered_map<std::string, size_t> order;
  for (size_t i = 0; i < listed.chains.size(); ++i) {
    order.emplace(listed.chains[i].name, i);
  }
  auto rank = [&](const NftItem& rule) {
    auto it = order.find(rule.chain);
    return it == order.end() ? order.size() : it->second;
  };
  std::stable_sort(listed.rules.begin(), listed.rules.end(),
                   [&](const NftItem& a, const NftItem& b) { return rank(a) < rank(b); });
  listed.reindex();

  NftTableDump out;
  out.present = present;
  out.bridgePresent = bridgePresent;
  out.chainDigests = chainDigests;
  out.setDigests = setDigests;
  out.commentDigests = commentDigests;
  out.anyInetRule = anyInetRule || listed.anyInetRule;
  out.guardElementsByTap = guardElementsByTap;
  out.guardSets = guardSets;
  out.mapsDigestByNetwork = mapsDigestByNetwork;
  out.networkMaps = networkMaps;
  auto replace = [](auto& into, const auto& from, const std::string& key) {
    into.erase(key);
    if (auto it = from.find(key); it != from.end()) {
      into.emplace(key, it->second);
    }
  };
  for (const NftPart& part : delta.gone) {
    (part.kind == NftBlock::Kind::Chain ? out.chainDigests.erase(part.name)
                                        : out.setDigests.erase(part.name));
  }
  bool maps = false, guard = false;
  for (const NftPart& part : delta.relist) {
    if (part.kind == NftBlock::Kind::Chain) {
      replace(out.chainDigests, listed.chainDigests, part.name);
    } else {
      replace(out.setDigests, listed.setDigests, part.name);
      maps = maps || part.name == kEgressMap || part.name == kIngressMap;
      guard = guard || part.name == kGuardTapsSet || part.name == kGuardMacsSet ||
              part.name == kGuardAddrsSet;
    }
  }
  for (const std::string& comment : delta.comments) {
    replace(out.commentDigests, listed.commentDigests, comment);
  }
  if (maps) {
    out.networkMaps = listed.networkMaps;
    out.mapsDigestByNetwork = std::move(listed.mapsDigestByNetwork);
  }
  if (guard) {
    out.guardSets = listed.guardSets;
    out.guardElementsByTap = std::move(listed.guardElementsByTap);
  }
  return out;
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
