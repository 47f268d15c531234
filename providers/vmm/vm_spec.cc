#include "providers/vmm/vm_spec.h"

#include <set>

#include "providers/net/cidr.h"
#include "reconciler/sha256.h"

namespace hyper::providers::vmm {

Json VmManifest::bootJson() const {
  Json j = {{"vcpus", vcpus},     {"memoryMiB", memoryMiB}, {"kernel", kernel}, {"initrd", initrd},
            {"cmdline", cmdline}, {"network", network},     {"mac", mac}};
  j["ip"] = ip ? Json(net::formatIpv4(*ip)) : Json("auto");
  return j;
}

Result<VmManifest> parseVmManifest(const std::string& name, const Json& spec) {
  VmManifest m;
  m.name = name;
  if (!spec.is_object()) {
    return Status::error("spec: expected a mapping");
  }
  m.vcpus = spec.value("vcpus", m.vcpus);
  m.memoryMiB = spec.value("memoryMiB", m.memoryMiB);
  if (spec.contains("kernel")) {
    m.kernel = spec["kernel"].value("path", "");
  }
  if (spec.contains("initrd")) {
    m.initrd = spec["initrd"].value("path", "");
  }
  m.cmdline = spec.value("cmdline", "");
  if (spec.contains("network")) {
    const Json& n = spec["network"];
    m.network = n.value("name", "");
    if (n.contains("ip")) {
      auto ip = net::parseIpv4(n["ip"].get<std::string>());
      if (!ip.isOk()) {
        return Status::error("spec.network.ip: " + ip.status().message());
      }
      m.ip = *ip;
    }
    m.mac = n.value("mac", "");
  }
  if (m.mac.empty()) {
    m.mac = deriveMac(name);
  }
  m.running = spec.value("running", m.running);
  if (spec.contains("readiness")) {
    m.readyLine = spec["readiness"].value("consoleLine", m.readyLine);
    m.readyTimeoutSeconds = spec["readiness"].value("timeoutSeconds", m.readyTimeoutSeconds);
  }
  return m;
}

std::string deriveMac(const std::string& vmName) {
  std::string h = sha256Hex("hyper-vm-mac:" + vmName);
  return "52:54:00:" + h.substr(0, 2) + ":" + h.substr(2, 2) + ":" + h.substr(4, 2);
}

std::string Placement::ipString() const { return net::formatIpv4(ip); }

std::string Placement::cmdlineArgs() const {
  return "hyper.ip=" + net::formatIpv4(ip) + "/" + std::to_string(prefix) +
         " hyper.gw=" + net::formatIpv4(gateway);
}

std::map<std::string, Placement> placeVms(const std::vector<VmManifest>& vms,
                                          const std::map<std::string, net::NetworkSpec>& networks,
                                          const std::map<std::string, uint32_t>& previous) {
  std::map<std::string, Placement> out;
  std::map<std::string, std::set<uint32_t>> taken;  // per network
  auto base = [&](const VmManifest& vm) -> std::optional<Placement> {
    auto n = networks.find(vm.network);
    if (vm.network.empty() || n == networks.end()) {
      return std::nullopt;
    }
    Placement p;
    p.network = vm.network;
    p.prefix = n->second.cidr.prefix;
    p.gateway = n->second.gateway;
    p.bridge = n->second.bridge;
    return p;
  };
  auto usable = [&](const net::NetworkSpec& n, uint32_t a) {
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
    const net::NetworkSpec& n = networks.at(vm.network);
    if (usable(n, prev->second) && taken[vm.network].insert(prev->second).second) {
      p->ip = prev->second;
      out[vm.name] = *p;
    }
  }
  // 3. The lowest free address for the rest, in name order (vms is sorted by name).
  for (const auto& vm : vms) {
    auto p = base(vm);
    if (!p || out.count(vm.name) > 0) {
      continue;
    }
    const net::NetworkSpec& n = networks.at(vm.network);
    for (uint32_t a = n.cidr.network() + 1; a < n.cidr.broadcast(); ++a) {
      if (usable(n, a) && taken[vm.network].insert(a).second) {
        p->ip = a;
        out[vm.name] = *p;
        break;
      }
    }
    // A full network leaves the VM without a placement: plan reports it.
  }
  return out;
}

}  // namespace hyper::providers::vmm
