#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "providers/net/net_spec.h"
#include "reconciler/managed_record.h"
#include "reconciler/object.h"

namespace hyper::providers::net {

// Where a VM sits on its network.
struct Placement {
  std::string network;
  uint32_t ip = 0;
  int prefix = 0;
  uint32_t gateway = 0;
  std::string bridge;

  std::string ipString() const;
  // hyper's part of the kernel command line: "hyper.ip=10.77.0.10/24 hyper.gw=10.77.0.1".
  std::string cmdlineArgs() const;
};

// What placement needs of one VM.
struct VmAddressRequest {
  std::string name;
  std::string network;         // "" = none
  std::optional<uint32_t> ip;  // written in the manifest
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
    const std::vector<std::shared_ptr<const Object>>& revision,
    const std::vector<ManagedRecord>* inventory);

}  // namespace hyper::providers::net
