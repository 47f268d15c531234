#include "netmodel/placement.h"

#include <algorithm>
#include <set>

#include "base/names.h"
#include "base/sha256.h"
#include "netmodel/cidr.h"

namespace hyper::netmodel {

std::string vmTapName(std::string_view vmName) { return deriveInterfaceName("hv-", vmName); }

std::string vmDefaultMac(std::string_view vmName) {
  std::string h = sha256Hex("hyper-vm-mac:" + std::string(vmName));
  return "52:54:00:" + h.substr(0, 2) + ":" + h.substr(2, 2) + ":" + h.substr(4, 2);
}

std::string Placement::ipString() const { return formatIpv4(ip); }

std::string Placement::cmdlineArgs() const {
  return "hyper.ip=" + formatIpv4(ip) + "/" + std::to_string(prefix) +
         " hyper.gw=" + formatIpv4(gateway);
}

Json Placement::toJson() const {
  return {{"network", network}, {"ip", formatIpv4(ip)},
          {"prefix", prefix},   {"gateway", formatIpv4(gateway)},
          {"bridge", bridge},   {"tap", tap},
          {"mac", mac}};
}

Result<Placement> Placement::fromJson(const Json& json) {
  auto text = [&](const char* key) -> Result<std::string> {
    if (!json.is_object() || !json.contains(key) || !json[key].is_string()) {
      return Status::error(std::string("placement: expected a string at ") + key);
    }
    return json[key].get<std::string>();
  };
  Placement p;
  HYPER_ASSIGN_OR_RETURN(p.network, text("network"));
  HYPER_ASSIGN_OR_RETURN(std::string ip, text("ip"));
  HYPER_ASSIGN_OR_RETURN(p.ip, parseIpv4(ip));
  HYPER_ASSIGN_OR_RETURN(std::string gateway, text("gateway"));
  HYPER_ASSIGN_OR_RETURN(p.gateway, parseIpv4(gateway));
  HYPER_ASSIGN_OR_RETURN(p.bridge, text("bridge"));
  HYPER_ASSIGN_OR_RETURN(p.tap, text("tap"));
  HYPER_ASSIGN_OR_RETURN(p.mac, text("mac"));
  if (!json.contains("prefix") || !json["prefix"].is_number_integer() ||
      json["prefix"].get<int64_t>() < 0 || json["prefix"].get<int64_t>() > 32) {
    return Status::error("placement: expected a prefix length of 0-32");
  }
  p.prefix = static_cast<int>(json["prefix"].get<int64_t>());
  return p;
}

std::map<std::string, Placement> placeVms(const std::vector<VmAddressRequest>& vms,
                                          const std::map<std::string, NetworkSpec>& networks,
                                          const std::map<std::string, uint32_t>& previous) {
  std::map<std::string, Placement> out;
  std::map<std::string, std::set<uint32_t>> taken;  // per network
  auto base = [&](const VmAddressRequest& vm) -> std::optional<Placement> {
    auto n = networks.find(vm.network);
    if (vm.network.empty() || n == networks.end()) {
      return std::nullopt;
    }
    Placement p;
    p.network = vm.network;
    p.tap = vmTapName(vm.name);
    p.mac = vm.mac.empty() ? vmDefaultMac(vm.name) : vm.mac;
    p.prefix = n->second.cidr.prefix;
    p.gateway = n->second.gateway;
    p.bridge = n->second.bridge;
    return p;
  };
  auto usable = [&](const NetworkSpec& n, uint32_t a) {
    return n.cidr.contains(a) && a != n.cidr.network() && a != n.cidr.broadcast() && a != n.gateway;
  };
  // 1. Written addresses.
  for (const auto& vm : vms) {
    auto p = base(vm);
    if (p && vm.ip) {
      p->ip = *vm.ip;
      taken[vm.network].insert(*vm.ip);
      out[vm.name] = *p;
    }
  }
  // 2. Addresses the VMs already have.
  for (const auto& vm : vms) {
    auto p = base(vm);
    auto prev = previous.find(vm.name);
    if (!p || vm.ip || prev == previous.end()) {
      continue;
    }
    const NetworkSpec& n = networks.at(vm.network);
    if (usable(n, prev->second) && taken[vm.network].insert(prev->second).second) {
      p->ip = prev->second;
      out[vm.name] = *p;
    }
  }
  // 3. The lowest free address for the rest, in name order.
  for (const auto& vm : vms) {
    auto p = base(vm);
    if (!p || out.count(vm.name) > 0) {
      continue;
    }
    const NetworkSpec& n = networks.at(vm.network);
    for (uint32_t a = n.cidr.network() + 1; a < n.cidr.broadcast(); ++a) {
      if (usable(n, a) && taken[vm.network].insert(a).second) {
        p->ip = a;
        out[vm.name] = *p;
        break;
      }
    }
    // A full network leaves the VM without a placement: the VM provider reports it.
  }
  return out;
}

std::map<std::string, Placement> placeRevisionVms(
    const std::vector<std::shared_ptr<const Object>>& revision, const RecordList* inventory) {
  // The VMs first, then only the Networks they name: a revision sorted by id (as a loaded one
  // is) is searched by kind, so one of 5,000 Networks and no VM parses none of them.
  const bool sorted = std::is_sorted(revision.begin(), revision.end(),
                                     [](const auto& a, const auto& b) { return a->id < b->id; });
  auto ofKind = [&](const std::string& kind) {
    if (!sorted) {
      return std::make_pair(revision.begin(), revision.end());
    }
    auto first =
        std::lower_bound(revision.begin(), revision.end(), kind,
                         [](const auto& o, const std::string& k) { return o->id.kind < k; });
    auto last =
        std::upper_bound(first, revision.end(), kind,
                         [](const std::string& k, const auto& o) { return k < o->id.kind; });
    return std::make_pair(first, last);
  };
  std::vector<VmAddressRequest> vms;
  std::set<std::string> named;
  auto [vmFirst, vmLast] = ofKind("VM");
  for (auto it = vmFirst; it != vmLast; ++it) {
    const Object& o = **it;
    if (o.id.kind == "VM" && o.spec->is_object() && o.spec->contains("network") &&
        o.spec["network"].is_object()) {
      const Json& n = o.spec["network"];
      VmAddressRequest r;
      r.name = o.id.name;
      r.network = n.value("name", "");
      if (n.contains("mac") && n["mac"].is_string()) {
        r.mac = n["mac"].get<std::string>();
      }
      if (n.contains("ip") && n["ip"].is_string()) {
        if (auto ip = parseIpv4(n["ip"].get<std::string>()); ip.isOk()) {
          r.ip = *ip;
        }
      }
      named.insert(r.network);
      vms.push_back(std::move(r));
    }
  }
  if (vms.empty()) {
    return {};
  }
  std::map<std::string, NetworkSpec> networks;
  auto [netFirst, netLast] = ofKind("Network");
  for (auto it = netFirst; it != netLast; ++it) {
    const Object& o = **it;
    if (o.id.kind == "Network" && named.count(o.id.name)) {
      if (auto n = parseNetworkSpec(o); n.isOk()) {
        networks[o.id.name] = *n;
      }
    }
  }
  std::map<std::string, uint32_t> previous;
  if (inventory != nullptr) {
    for (const auto& r : *inventory) {
      if (r.id.kind == "VM" && r.handles.is_object() && r.handles.contains("ip") &&
          r.handles["ip"].is_string()) {
        if (auto ip = parseIpv4(r.handles["ip"].get<std::string>()); ip.isOk()) {
          previous[r.id.name] = *ip;
        }
      }
    }
  }
  return placeVms(vms, networks, previous);
}

std::vector<std::string> selectVms(const PolicySpec& policy,
                                   const std::vector<std::shared_ptr<const Object>>& revision,
                                   const std::map<std::string, Placement>& placements) {
  std::vector<std::string> out;
  if (!policy.matchLabels) {
    return out;
  }
  for (const auto& vm : revision) {
    if (vm->id.kind != "VM") {
      continue;
    }
    auto placed = placements.find(vm->id.name);
    if (placed == placements.end() || placed->second.network != policy.network) {
      continue;
    }
    bool matches = true;
    for (const auto& [k, v] : *policy.matchLabels) {
      auto l = vm->labels.find(k);
      matches = matches && l != vm->labels.end() && l->second == v;
    }
    if (matches) {
      out.push_back(vm->id.name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace hyper::netmodel
