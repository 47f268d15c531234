#include "netmodel/net_spec.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <string_view>
#include <unordered_map>

#include "base/names.h"

namespace hyper::netmodel {

namespace {

// Collects findings about one spec with their field paths. parse*() turns the first one into an
// error; validate() reports them all.
class SpecReader {
 public:
  explicit SpecReader(ObjectId object) : object_(std::move(object)) {}

  void error(const std::string& fieldPath, std::string summary) {
    diagnostics_.error(object_, fieldPath, std::move(summary));
  }
  void warning(const std::string& fieldPath, std::string summary) {
    diagnostics_.add({Severity::Warning, {}, object_, fieldPath, std::move(summary)});
  }
  const Diagnostics& diagnostics() const { return diagnostics_; }

  Status firstError() const {
    for (const auto& d : diagnostics_.items()) {
      if (d.severity == Severity::Error) {
        return Status::error(object_.str() + ": " + d.fieldPath + ": " + d.summary);
      }
    }
    return Status::ok();
  }

 private:
  ObjectId object_;
  Diagnostics diagnostics_;
};

const Json* field(const Json& spec, const char* key) {
  if (!spec.is_object()) {
    return nullptr;
  }
  auto it = spec.find(key);
  return it == spec.end() || it->is_null() ? nullptr : &*it;
}

std::string inQuotes(const std::string& s) { return "\"" + s + "\""; }

// A value as the user wrote it, for messages; never throws on invalid UTF-8.
std::string show(const Json& v) { return v.dump(-1, ' ', false, Json::error_handler_t::replace); }

// A network or rule CIDR: syntactically valid and written as a network address.
std::optional<Cidr> readCidr(SpecReader& r, const std::string& path, const Json& value,
                             bool allowBareAddress) {
  if (!value.is_string()) {
    r.error(path, "found " + show(value) + " (expected an IPv4 network like 10.77.0.0/24)");
    return std::nullopt;
  }
  auto cidr = Cidr::parse(value.get<std::string>(), allowBareAddress);
  if (!cidr.isOk()) {
    r.error(path, "invalid CIDR: " + cidr.status().message());
    return std::nullopt;
  }
  if (!cidr->isNetworkAddress()) {
    r.error(path, inQuotes(cidr->str()) +
                      " has host bits set (expected a network address; did you mean " +
                      cidr->canonical().str() + "?)");
    return std::nullopt;
  }
  return *cidr;
}

// Ranges a bridge network must not use: the kernel or the protocol gives them another meaning.
const char* reservedRange(const Cidr& c) {
  struct Reserved {
    const char* cidr;
    const char* what;
  };
  static const Reserved kReserved[] = {{"0.0.0.0/8", "0.0.0.0/8 (\"this network\")"},
                                       {"127.0.0.0/8", "127.0.0.0/8 (loopback)"},
                                       {"169.254.0.0/16", "169.254.0.0/16 (link-local)"},
                                       {"224.0.0.0/3", "224.0.0.0/3 (multicast and reserved)"}};
  for (const auto& r : kReserved) {
    auto reserved = Cidr::parse(r.cidr);
    if (reserved.isOk() && reserved->overlaps(c)) {
      return r.what;
    }
  }
  return nullptr;
}

void readNetwork(SpecReader& r, const std::string& name, const Json& spec, NetworkSpec& out) {
  out.name = name;
  if (!spec.is_object()) {
    r.error("spec", "found " + show(spec) + " (expected a mapping with cidr)");
    return;
  }
  bool cidrOk = false;
  if (const Json* v = field(spec, "cidr")) {
    if (auto c = readCidr(r, "spec.cidr", *v, false)) {
      if (c->prefix < kMinNetworkPrefix || c->prefix > kMaxNetworkPrefix) {
        r.error("spec.cidr", inQuotes(c->str()) + " has prefix /" + std::to_string(c->prefix) +
                                 " (expected a prefix from /" + std::to_string(kMinNetworkPrefix) +
                                 " to /" + std::to_string(kMaxNetworkPrefix) +
                                 ", with room for a gateway and VMs)");
      } else if (const char* why = reservedRange(*c)) {
        r.error("spec.cidr", inQuotes(c->str()) + " is inside " + why +
                                 " (expected a private or routable unicast range such as "
                                 "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)");
      } else {
        out.cidr = *c;
        cidrOk = true;
      }
    }
  } else {
    r.error("spec.cidr", "missing required field \"cidr\" (expected an IPv4 network)");
  }

  if (cidrOk) {
    out.gateway = out.cidr.network() + 1;
  }
  if (const Json* v = field(spec, "gateway")) {
    auto gw = v->is_string() ? parseIpv4(v->get<std::string>())
                             : Result<uint32_t>(Status::error("found " + show(*v)));
    if (!gw.isOk()) {
      r.error("spec.gateway",
              "invalid gateway: " + gw.status().message() + " (expected an IPv4 address)");
    } else if (cidrOk) {
      std::string text = formatIpv4(*gw);
      if (!out.cidr.contains(*gw)) {
        r.error("spec.gateway", "gateway " + text + " is outside " + out.cidr.str() +
                                    " (expected an address inside the cidr, e.g. " +
                                    formatIpv4(out.cidr.network() + 1) + ")");
      } else if (*gw == out.cidr.network() || *gw == out.cidr.broadcast()) {
        r.error("spec.gateway", "gateway " + text + " is the " +
                                    (*gw == out.cidr.network() ? "network" : "broadcast") +
                                    " address of " + out.cidr.str() +
                                    " (expected a host address, e.g. " +
                                    formatIpv4(out.cidr.network() + 1) + ")");
      } else {
        out.gateway = *gw;
      }
    }
  }

  out.bridge = deriveInterfaceName(kBridgePrefix, name);
  if (const Json* v = field(spec, "bridge")) {
    std::string problem = v->is_string() ? checkInterfaceName(v->get<std::string>())
                                         : "found " + show(*v) + ", expected a string";
    if (!problem.empty()) {
      r.error("spec.bridge", "bridge name " + problem + " (expected a Linux interface name)");
    } else {
      out.bridge = v->get<std::string>();
    }
  }

  if (const Json* v = field(spec, "nat")) {
    if (!v->is_boolean()) {
      r.error("spec.nat", "found " + show(*v) + " (expected true or false)");
    } else {
      out.nat = v->get<bool>();
    }
  }
  if (const Json* v = field(spec, "mtu")) {
    if (!v->is_number_integer() || v->get<int64_t>() < 68 || v->get<int64_t>() > 65535) {
      r.error("spec.mtu", "found " + show(*v) + " (expected an integer from 68 to 65535)");
    } else {
      out.mtu = v->get<int>();
    }
  }
}

std::optional<Protocol> protocolFromName(const std::string& s) {
  if (s == "any") {
    return Protocol::Any;
  }
  if (s == "tcp") {
    return Protocol::Tcp;
  }
  if (s == "udp") {
    return Protocol::Udp;
  }
  if (s == "icmp") {
    return Protocol::Icmp;
  }
  return std::nullopt;
}

void readTraffic(SpecReader& r, const std::string& path, const Json* spec, TrafficRule& out) {
  out = TrafficRule{};
  if (!spec) {
    return;  // absent: any
  }
  if (!spec->is_object()) {
    r.error(path, "found " + show(*spec) + " (expected a mapping with mode)");
    return;
  }
  const Json* mode = field(*spec, "mode");
  std::string modeName = mode && mode->is_string() ? mode->get<std::string>() : "";
  if (modeName == "none") {
    out.mode = TrafficMode::None;
  } else if (modeName == "allowlist") {
    out.mode = TrafficMode::Allowlist;
  } else if (modeName == "any") {
    out.mode = TrafficMode::Any;
  } else {
    r.error(appendKey(path, "mode"), "found " + (mode ? show(*mode) : "nothing") +
                                         " (expected one of none, allowlist, any)");
    return;
  }

  const Json* allow = field(*spec, "allow");
  std::string allowPath = appendKey(path, "allow");
  if (allow && out.mode != TrafficMode::Allowlist) {
    r.error(allowPath, "allow is given but mode is " + modeName +
                           " (expected allow only with mode allowlist)");
    return;
  }
  if (out.mode != TrafficMode::Allowlist) {
    return;
  }
  if (!allow || (allow->is_array() && allow->empty())) {
    r.warning(allowPath, "mode allowlist with no allow rules allows nothing (same as mode none)");
    return;
  }
  if (!allow->is_array()) {
    r.error(allowPath, "found " + show(*allow) + " (expected a list of {cidr, ports, protocol})");
    return;
  }
  for (size_t i = 0; i < allow->size(); ++i) {
    const Json& item = (*allow)[i];
    std::string itemPath = appendIndex(allowPath, i);
    AllowRule rule;
    const Json* cidr = field(item, "cidr");
    if (!cidr) {
      r.error(itemPath, "missing required field \"cidr\" (expected an IPv4 address or network)");
      continue;
    }
    auto c = readCidr(r, appendKey(itemPath, "cidr"), *cidr, true);
    if (!c) {
      continue;
    }
    rule.cidr = *c;
    std::string protoName = "any";
    if (const Json* p = field(item, "protocol")) {
      auto proto = p->is_string() ? protocolFromName(p->get<std::string>()) : std::nullopt;
      if (!proto) {
        r.error(appendKey(itemPath, "protocol"),
                "found " + show(*p) + " (expected one of tcp, udp, icmp, any)");
        continue;
      }
      rule.protocol = *proto;
      protoName = p->get<std::string>();
    }
    if (const Json* ports = field(item, "ports")) {
      std::string portsPath = appendKey(itemPath, "ports");
      if (rule.protocol != Protocol::Tcp && rule.protocol != Protocol::Udp) {
        r.error(portsPath, "ports " + show(*ports) + " are given with protocol " + protoName +
                               " (expected ports only with protocol tcp or udp)");
        continue;
      }
      bool ok = ports->is_array();
      for (const auto& p : ok ? *ports : Json::array()) {
        if (!p.is_number_integer() || p.get<int64_t>() < 1 || p.get<int64_t>() > 65535) {
          ok = false;
          break;
        }
        rule.ports.push_back(p.get<int>());
      }
      if (!ok) {
        r.error(portsPath, "found " + show(*ports) + " (expected a list of ports from 1 to 65535)");
        continue;
      }
      std::sort(rule.ports.begin(), rule.ports.end());
      rule.ports.erase(std::unique(rule.ports.begin(), rule.ports.end()), rule.ports.end());
    }
    out.allow.push_back(std::move(rule));
  }
}

void readPolicy(SpecReader& r, const std::string& name, const Json& spec, PolicySpec& out) {
  out.name = name;
  if (!spec.is_object()) {
    r.error("spec", "found " + show(spec) + " (expected a mapping with network)");
    return;
  }
  const Json* network = field(spec, "network");
  if (!network || !network->is_string()) {
    r.error("spec.network", "found " + (network ? show(*network) : std::string("nothing")) +
                                " (expected the name of a Network)");
  } else {
    out.network = network->get<std::string>();
    std::string problem = checkDnsLabel(out.network);
    if (!problem.empty()) {
      r.error("spec.network", "network name " + inQuotes(out.network) + " " + problem);
    }
  }
  if (const Json* selector = field(spec, "selector")) {
    std::map<std::string, std::string> labels;
    const Json* match = field(*selector, "matchLabels");
    bool ok = selector->is_object() && (!match || match->is_object());
    if (ok && match) {
      for (const auto& [k, v] : match->items()) {
        if (!v.is_string()) {
          ok = false;
          break;
        }
        labels[k] = v.get<std::string>();
      }
    }
    if (!ok) {
      r.error("spec.selector", "found " + show(*selector) +
                                   " (expected {matchLabels: {key: value}} with string values)");
    }
    out.matchLabels = std::move(labels);
  }
  readTraffic(r, "spec.egress", field(spec, "egress"), out.egress);
  readTraffic(r, "spec.ingress", field(spec, "ingress"), out.ingress);
}

Json trafficJson(const TrafficRule& t) {
  Json out = {{"mode", trafficModeName(t.mode)}};
  if (t.mode == TrafficMode::Allowlist) {
    Json allow = Json::array();
    for (const auto& a : t.allow) {
      Json rule = {{"cidr", a.cidr.str()}, {"protocol", protocolName(a.protocol)}};
      if (!a.ports.empty()) {
        rule["ports"] = a.ports;
      }
      allow.push_back(std::move(rule));
    }
    out["allow"] = std::move(allow);
  }
  return out;
}

}  // namespace

std::string NetworkSpec::gatewayCidr() const {
  return formatIpv4(gateway) + "/" + std::to_string(cidr.prefix);
}

Json NetworkSpec::toJson() const {
  return {{"cidr", cidr.str()},
          {"gateway", formatIpv4(gateway)},
          {"bridge", bridge},
          {"nat", nat},
          {"mtu", mtu}};
}

const char* trafficModeName(TrafficMode m) {
  switch (m) {
    case TrafficMode::None:
      return "none";
    case TrafficMode::Allowlist:
      return "allowlist";
    case TrafficMode::Any:
      return "any";
  }
  return "any";
}

const char* protocolName(Protocol p) {
  switch (p) {
    case Protocol::Any:
      return "any";
    case Protocol::Tcp:
      return "tcp";
    case Protocol::Udp:
      return "udp";
    case Protocol::Icmp:
      return "icmp";
  }
  return "any";
}

Json PolicySpec::toJson() const {
  Json out = {
      {"network", network}, {"egress", trafficJson(egress)}, {"ingress", trafficJson(ingress)}};
  if (matchLabels) {
    out["selector"] = {{"matchLabels", Json(*matchLabels)}};
  }
  return out;
}

Result<NetworkSpec> parseNetworkSpec(const std::string& name, const Json& spec) {
  SpecReader r(ObjectId{"Network", name});
  NetworkSpec out;
  readNetwork(r, name, spec, out);
  HYPER_RETURN_IF_ERROR(r.firstError());
  return out;
}

Result<NetworkSpec> parseNetworkSpec(const Object& object) {
  return parseNetworkSpec(object.id.name, object.spec);
}

Result<PolicySpec> parsePolicySpec(const std::string& name, const Json& spec) {
  SpecReader r(ObjectId{"NetworkPolicy", name});
  PolicySpec out;
  readPolicy(r, name, spec, out);
  HYPER_RETURN_IF_ERROR(r.firstError());
  return out;
}

Result<PolicySpec> parsePolicySpec(const Object& object) {
  return parsePolicySpec(object.id.name, object.spec);
}

void validateNetObjects(const std::vector<const Object*>& objects, Diagnostics& diagnostics,
                        NetSpecMemo* memo) {
  struct Parsed {
    const Object* object;
    const NetworkSpec* spec;
    bool cidrOk;
  };
  std::vector<Parsed> networks;
  networks.reserve(objects.size());
  NetSpecMemo local;
  NetSpecMemo& read = memo ? *memo : local;
  // The memo keeps this call's objects only. Objects come in id order (a revision's): one walk
  // along the memo finds each entry and drops those of objects gone; in another order, a lookup
  // each and a sweep after.
  auto byId = [](const Object* a, const Object* b) { return a->id < b->id; };
  const bool sorted = std::is_sorted(objects.begin(), objects.end(), byId);
  // The cross-object checks' input is the last call's while no Network comes, goes or reads
  // another name, CIDR or bridge (below).
  bool crossSame = memo != nullptr && sorted && read.crossValid;
  auto drop = [&](std::map<ObjectId, NetSpecMemo::Entry>::iterator it) {
    crossSame = crossSame && !it->second.network;
    return read.entries.erase(it);
  };
  auto walk = read.entries.begin();
  std::vector<const ObjectId*> seen;
  for (const Object* o : objects) {
    if (o->id.kind != "Network" && o->id.kind != "NetworkPolicy") {
      continue;
    }
    std::map<ObjectId, NetSpecMemo::Entry>::iterator at;
    if (sorted) {
      while (walk != read.entries.end() && walk->first < o->id) {
        walk = drop(walk);
      }
      if (walk == read.entries.end() || walk->first != o->id) {
        walk = read.entries.emplace_hint(walk, o->id, NetSpecMemo::Entry{});
      }
      at = walk++;
    } else {
      at = read.entries.try_emplace(o->id).first;
      seen.push_back(&o->id);
    }
    NetSpecMemo::Entry& entry = at->second;
    if (!entry.spec.sharesWith(o->spec)) {
      SpecReader r(o->id);
      NetSpecMemo::Entry before = std::move(entry);
      entry = NetSpecMemo::Entry{o->spec, std::nullopt, false, {}, false};
      if (o->id.kind == "Network") {
        NetworkSpec spec;
        readNetwork(r, o->id.name, o->spec, spec);
        entry.cidrOk = true;
        for (const auto& d : r.diagnostics().items()) {
          entry.cidrOk = entry.cidrOk && d.fieldPath != "spec.cidr";
        }
        entry.explicitBridge = field(o->spec, "bridge") != nullptr;
        entry.network = std::move(spec);
      } else {
        PolicySpec spec;
        readPolicy(r, o->id.name, o->spec, spec);
      }
      entry.diagnostics = r.diagnostics();
      // What the cross-object checks read of it: its bridge, whether named, and its CIDR when
      // readable (an unreadable one is read as unreadable whatever it holds).
      auto crossReading = [](const NetSpecMemo::Entry& e) {
        return std::make_tuple(e.network.has_value(), e.network ? e.network->bridge : "",
                               e.explicitBridge, e.cidrOk,
                               e.network && e.cidrOk ? e.network->cidr : Cidr{});
      };
      crossSame = crossSame && crossReading(before) == crossReading(entry);
    }
    if (entry.network) {
      networks.push_back({o, &*entry.network, entry.cidrOk});
    }
    diagnostics.append(entry.diagnostics);
  }
  if (sorted) {
    while (walk != read.entries.end()) {
      walk = drop(walk);
    }
  } else {
    auto byIdPtr = [](const ObjectId* a, const ObjectId* b) { return *a < *b; };
    std::sort(seen.begin(), seen.end(), byIdPtr);
    auto next = seen.begin();
    for (auto it = read.entries.begin(); it != read.entries.end();) {
      while (next != seen.end() && **next < it->first) {
        ++next;
      }
      it = next != seen.end() && **next == it->first ? std::next(it) : read.entries.erase(it);
    }
  }

  if (crossSame) {
    diagnostics.append(memo->crossDiagnostics);
    return;
  }
  Diagnostics cross;
  // Cross-object checks: report each clash once, on the later object, naming the earlier one
  // (each earlier one, in order, a CIDR overlap before a shared bridge). Found through indexes of
  // the earlier Networks rather than by comparing every pair: 5,000 Networks were 12.5 million
  // pairs, a third of `hyperctl validate`'s time and of every load of such a revision.
  std::unordered_map<std::string_view, std::vector<size_t>> byBridge;
  std::unordered_map<uint64_t, std::vector<size_t>> byPrefix;  // (prefix, network address)
  std::multimap<uint32_t, size_t> byNetwork;                   // network address
  auto prefixKey = [](int prefix, uint32_t network) {
    return (static_cast<uint64_t>(prefix) << 32) | network;
  };
  for (size_t j = 0; j < networks.size(); ++j) {
    const Parsed& b = networks[j];
    std::vector<size_t> overlapping;
    if (b.cidrOk) {
      const Cidr& cidr = b.spec->cidr;
      // Earlier prefixes that contain this one: as long or shorter, on its address.
      for (int q = 0; q <= cidr.prefix; ++q) {
        if (auto it = byPrefix.find(prefixKey(q, Cidr{cidr.address, q}.network()));
            it != byPrefix.end()) {
          overlapping.insert(overlapping.end(), it->second.begin(), it->second.end());
        }
      }
      // Earlier prefixes this one contains: longer, inside its range.
      for (auto it = byNetwork.lower_bound(cidr.network());
           it != byNetwork.end() && it->first <= cidr.broadcast(); ++it) {
        if (networks[it->second].spec->cidr.prefix > cidr.prefix) {
          overlapping.push_back(it->second);
        }
      }
      std::sort(overlapping.begin(), overlapping.end());
    }
    std::vector<size_t>& sameBridge = byBridge[b.spec->bridge];
    std::vector<size_t> clashes;
    std::set_union(overlapping.begin(), overlapping.end(), sameBridge.begin(), sameBridge.end(),
                   std::back_inserter(clashes));
    for (size_t i : clashes) {
      const Parsed& a = networks[i];
      if (std::binary_search(overlapping.begin(), overlapping.end(), i)) {
        cross.error(b.object->id, "spec.cidr",
                    b.spec->cidr.str() + " overlaps " + a.spec->cidr.str() + " of " +
                        a.object->id.str() +
                        " (expected the CIDRs of different Networks not to overlap)");
      }
      if (a.spec->bridge == b.spec->bridge) {
        bool explicitName = field(b.object->spec, "bridge") != nullptr;
        cross.error(b.object->id, "spec.bridge",
                    "bridge name " + b.spec->bridge +
                        (explicitName ? "" : " (derived from the name)") +
                        " is also the bridge of " + a.object->id.str() +
                        " (expected each Network to have its own bridge)");
      }
    }
    sameBridge.push_back(j);
    if (b.cidrOk) {
      byPrefix[prefixKey(b.spec->cidr.prefix, b.spec->cidr.network())].push_back(j);
      byNetwork.emplace(b.spec->cidr.network(), j);
    }
  }
  diagnostics.append(cross);
  if (memo) {
    memo->crossValid = sorted;
    memo->crossDiagnostics = std::move(cross);
  }
}

}  // namespace hyper::netmodel
