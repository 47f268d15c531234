#include "providers/net/nft_ruleset.h"

#include "reconciler/sha256.h"

namespace hyper::providers::net {

namespace {

constexpr std::string_view kEgressForward = "egress-forward";
constexpr std::string_view kEgressInput = "egress-input";
constexpr std::string_view kIngressForward = "ingress-forward";
constexpr std::string_view kIngressOutput = "ingress-output";
constexpr std::string_view kNatPostrouting = "nat-postrouting";

std::string comment(std::string_view kind, std::string_view name) {
  return " comment \"" + std::string(kind) + "/" + std::string(name) + "\"";
}

// The match that picks a policy's addresses on its network in one direction. Without a selector
// that is everything crossing the bridge (every address of the network, and anything spoofed or
// IPv6, which a restricting policy must not let through either).
std::string selection(const PolicySpec& p, Direction d) {
  std::string out =
      (d == Direction::Egress ? "iifname @" : "oifname @") + networkBridgeSetName(p.network);
  if (p.matchLabels) {
    out += (d == Direction::Egress ? " ip saddr @" : " ip daddr @") + policySelectorSetName(p.name);
  }
  return out;
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

void renderBaseChain(const NftModel& model, std::string_view name, std::string_view hook,
                     std::string_view priority, Direction d, std::string& out) {
  out += "\tchain " + std::string(name) + " {\n";
  out += "\t\ttype filter hook " + std::string(hook) + " priority " + std::string(priority) +
         "; policy accept;\n";
  out += "\t\tct state established,related accept\n";
  // A policy whose network hyper does not manage (yet) selects nothing: its set would not exist.
  std::vector<const PolicySpec*> active;
  for (const auto& [name, p] : model.policies) {
    if (model.networks.count(p.network)) {
      active.push_back(&p);
    }
  }
  for (const PolicySpec* p : active) {
    out += "\t\t" + selection(*p, d) + " jump " + policyChainName(p->name, d) +
           comment("NetworkPolicy", p->name) + "\n";
  }
  for (const PolicySpec* p : active) {
    if (traffic(*p, d).restricts()) {
      out += "\t\t" + selection(*p, d) + " drop" + comment("NetworkPolicy", p->name) + "\n";
    }
  }
  out += "\t}\n\n";
}

std::string partDigest(const Json& part) { return sha256Hex(canonicalJson(part)).substr(0, 16); }

std::string stringField(const Json& item, const char* key) {
  auto it = item.find(key);
  return it != item.end() && it->is_string() ? it->get<std::string>() : "";
}

// The chain object and its rules, or "absent".
std::string chainDigest(const NftTableDump& dump, const std::string& chain, bool commentedRules) {
  Json part = Json::array();
  bool found = false;
  for (const auto& c : dump.chains) {
    if (stringField(c, "name") == chain) {
      part.push_back(c);
      found = true;
    }
  }
  if (!found) {
    return "absent";
  }
  for (const auto& r : dump.rules) {
    if (stringField(r, "chain") == chain && (commentedRules || !r.contains("comment"))) {
      part.push_back(r);
    }
  }
  return partDigest(part);
}

std::string setDigest(const NftTableDump& dump, const std::string& set) {
  for (const auto& s : dump.sets) {
    if (stringField(s, "name") == set) {
      return partDigest(s);
    }
  }
  return "absent";
}

std::string commentedRulesDigest(const NftTableDump& dump, const std::string& owner) {
  if (!dump.present) {
    return "absent";
  }
  Json part = Json::array();
  for (const auto& r : dump.rules) {
    if (stringField(r, "comment") == owner) {
      part.push_back(r);
    }
  }
  return partDigest(part);
}

}  // namespace

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

std::string networkBridgeSetName(std::string_view network) {
  return "net-" + std::string(network) + "-bridge";
}

const std::vector<std::string>& nftBaseChains() {
  static const std::vector<std::string> kChains = {
      std::string(kEgressForward), std::string(kEgressInput), std::string(kIngressForward),
      std::string(kIngressOutput), std::string(kNatPostrouting)};
  return kChains;
}

std::string renderNftTable(const NftModel& model) {
  std::string out = "table " + std::string(kNftFamily) + " " + std::string(kNftTable) + " {\n";
  for (const auto& [name, n] : model.networks) {
    out += "\tset " + networkBridgeSetName(name) + " {\n\t\ttype ifname\n\t\telements = { \"" +
           n.bridge + "\" }\n\t}\n\n";
  }
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
  for (const auto& [name, p] : model.policies) {
    renderPolicyChain(p, Direction::Egress, out);
    renderPolicyChain(p, Direction::Ingress, out);
  }
  // Ingress-forward runs after egress-forward on the same hook, so a packet between two networks
  // must pass both the sender's egress and the receiver's ingress.
  renderBaseChain(model, kEgressForward, "forward", "filter", Direction::Egress, out);
  renderBaseChain(model, kEgressInput, "input", "filter", Direction::Egress, out);
  renderBaseChain(model, kIngressForward, "forward", "filter + 10", Direction::Ingress, out);
  renderBaseChain(model, kIngressOutput, "output", "filter", Direction::Ingress, out);

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

std::string renderNftReplace(const NftModel& model) {
  std::string table = std::string(kNftFamily) + " " + std::string(kNftTable);
  // "table X {}" makes the delete valid when the table does not exist yet; the whole input is one
  // transaction, so nobody ever sees the table missing or half written.
  std::string out = "table " + table + " {}\ndelete table " + table + "\n";
  if (!model.empty()) {
    out += renderNftTable(model);
  }
  return out;
}

bool NftTableDump::hasChain(std::string_view name) const {
  for (const auto& c : chains) {
    if (stringField(c, "name") == name) {
      return true;
    }
  }
  return false;
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
    // Only hyper's own table counts, whatever else the output holds.
    if (stringField(value, "family") != kNftFamily ||
        stringField(value, key == "table" ? "name" : "table") != kNftTable) {
      continue;
    }
    Json v = value;
    v.erase("handle");
    if (key == "table") {
      dump.present = true;
    } else if (key == "set") {
      dump.sets.push_back(std::move(v));
    } else if (key == "chain") {
      dump.chains.push_back(std::move(v));
    } else if (key == "rule") {
      dump.rules.push_back(std::move(v));
    }
  }
  return dump;
}

FingerprintParts fingerprintParts(const NftTableDump& dump, const ObjectId& id) {
  FingerprintParts parts;
  if (id.kind == "Network") {
    for (const auto& chain : nftBaseChains()) {
      parts["chain:" + chain] = chainDigest(dump, chain, /*commentedRules=*/false);
    }
    std::string set = networkBridgeSetName(id.name);
    parts["set:" + set] = setDigest(dump, set);
  } else if (id.kind == "NetworkPolicy") {
    for (Direction d : {Direction::Egress, Direction::Ingress}) {
      std::string chain = policyChainName(id.name, d);
      parts["chain:" + chain] = chainDigest(dump, chain, /*commentedRules=*/true);
    }
    std::string set = policySelectorSetName(id.name);
    parts["set:" + set] = setDigest(dump, set);
  }
  parts["rules:" + id.str()] = commentedRulesDigest(dump, id.str());
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
