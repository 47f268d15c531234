#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netmodel/net_spec.h"
#include "reconciler/managed_record.h"
#include "reconciler/object.h"
#include "reconciler/record_list.h"

namespace hyper::netmodel {

// The tap of a VM: "hv-<name>" when that fits in IFNAMSIZ (15 bytes), else "hv-<head>-<hash>"
// with a stable hash of the whole name (base/names.h), so a 63-character VM name works and
// the name is the same on every host and after every restart.
std::string vmTapName(std::string_view vmName);

// "52:54:00:xx:xx:xx" (QEMU's locally administered prefix) from a hash of the VM's name: the same
// on every host and after every restart.
std::string vmDefaultMac(std::string_view vmName);

// Where a VM sits on its network. The tap, address and MAC are what the VM is booted with, and
// the only ones its tap carries (the net provider's bridge guard drops everything else).
struct Placement {
  std::string network;
  uint32_t ip = 0;
  int prefix = 0;
  uint32_t gateway = 0;
  std::string bridge;
  std::string tap;  // vmTapName
  std::string mac;  // spec.network.mac, else vmDefaultMac

  std::string ipString() const;
  // hyper's part of the kernel command line: "hyper.ip=10.77.0.10/24 hyper.gw=10.77.0.1".
  std::string cmdlineArgs() const;

  // {"network", "ip": "10.77.0.10", "prefix", "gateway": "10.77.0.1", "bridge", "tap", "mac"}:
  // how a placement travels from observe to plan to apply (ObservedState::context,
  // PlanAction::privateData). fromJson takes back exactly what toJson wrote, and refuses anything
  // else (a missing field, an address that does not parse, a prefix outside 0-32).
  Json toJson() const;
  static Result<Placement> fromJson(const Json& json);
  bool operator==(const Placement&) const = default;
};

// What placement needs of one VM.
struct VmAddressRequest {
  std::string name;
  std::string network;         // "" = none
  std::optional<uint32_t> ip;  // written in the manifest
  std::string mac;             // written in the manifest; "" = vmDefaultMac(name)
};

// Addresses for the VMs of a revision. An address written in the manifest is used as is; a VM
// that had an address (`previous`, from the inventory) keeps it while it is free and inside the
// cidr; the others get the lowest free host address, in name order. The network and broadcast
// addresses and the gateway are never given. Deterministic for the same input: the VM provider
// (which boots the VMs) and the net provider (which renders policies for their addresses) compute
// the same placements.
std::map<std::string, Placement> placeVms(const std::vector<VmAddressRequest>& vms,
                                          const std::map<std::string, NetworkSpec>& networks,
                                          const std::map<std::string, uint32_t>& previous);

// The same from a revision's objects (every Network and VM in it) and the inventory (the VMs'
// handles.ip), as both providers see them in observe.
std::map<std::string, Placement> placeRevisionVms(
    const std::vector<std::shared_ptr<const Object>>& revision, const RecordList* inventory);

// The VMs of a revision that a policy with a selector selects: placed on the policy's network,
// with every label of matchLabels (same key, same value). Sorted by name; none without a
// selector. Pure.
std::vector<std::string> selectVms(const PolicySpec& policy,
                                   const std::vector<std::shared_ptr<const Object>>& revision,
                                   const std::map<std::string, Placement>& placements);

}  // namespace hyper::netmodel
