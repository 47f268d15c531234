#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "providers/net/net_spec.h"
#include "reconciler/object.h"
#include "reconciler/status.h"

namespace hyper::providers::vmm {

// A VM manifest's spec, typed and with its defaults (schemas/vm.schema.json checked the shape).
struct VmManifest {
  std::string name;
  int vcpus = 1;
  int memoryMiB = 256;
  std::string kernel;
  std::string initrd;   // "" = none
  std::string cmdline;  // as written; hyper appends the console and the address
  std::string network;  // "" = no network
  std::optional<uint32_t> ip;
  std::string mac;  // as written, or derived from the name (deriveMac)
  bool running = true;
  std::string readyLine = "hyper-ready";
  int readyTimeoutSeconds = 120;

  // What the VM is booted with: a change of any of these needs a new VM (stop, then start).
  Json bootJson() const;
};

Result<VmManifest> parseVmManifest(const std::string& name, const Json& spec);

// "52:54:00:xx:xx:xx" (QEMU's locally administered prefix) from a hash of the VM's name: the same
// on every host and after every restart.
std::string deriveMac(const std::string& vmName);

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

// Addresses for the VMs of a revision. An address written in the manifest is used as is; a VM
// that had an address (`previous`, from the inventory) keeps it while it is free and inside the
// cidr; the others get the lowest free host address, in name order. The network and broadcast
// addresses and the gateway are never given. Deterministic for the same input.
std::map<std::string, Placement> placeVms(const std::vector<VmManifest>& vms,
                                          const std::map<std::string, net::NetworkSpec>& networks,
                                          const std::map<std::string, uint32_t>& previous);

}  // namespace hyper::providers::vmm
