#include "providers/vmm/tap_device.h"

#include <net/if.h>

#include "base/names.h"
#include "netmodel/link_change.h"
#include "netmodel/placement.h"

namespace hyper::providers::vmm {

std::string tapNameFor(std::string_view vmName) { return netmodel::vmTapName(vmName); }

std::string tapOwnerAlias(std::string_view vmName) { return "hyper:VM/" + std::string(vmName); }

bool interfaceExists(const std::string& name) {
  // One ioctl in the caller's network namespace, not an `ip` process: observe asks this for
  // every running VM on every reconcile.
  return ::if_nametoindex(name.c_str()) != 0;
}

Status createTap(const std::string& tap, const std::string& bridge, std::string_view vmName) {
  const std::string what = "create tap " + tap + " for VM " + std::string(vmName);
  const std::string alias = tapOwnerAlias(vmName);
  auto current = netmodel::linkAlias(tap);
  if (!current.isOk()) {
    return current.status().withContext(what);
  }
  if (*current && **current != alias) {
    return Status::error(what + " <- " + tap + " exists and is not hyper's (alias '" + **current +
                         "')");
  }
  if (!*current) {
    // Made and marked ours before it outlives this call (netmodel::makeTap): a hyper killed in
    // between cannot leave an unmarked tap that it would then refuse to touch as someone else's.
    HYPER_RETURN_IF_ERROR(netmodel::makeTap(tap, alias).withContext(what));
  }
  // An isolated port reaches the bridge (the gateway) and nothing else: traffic between two VMs
  // of a network is routed by the host, where the NetworkPolicy's stateful rules see it whether
  // or not br_netfilter passes bridged frames through the IP hooks. The port's setting needs the
  // port on the bridge first: two requests, in order, in one datagram.
  netmodel::LinkChanges attach;
  attach.setMasterUp(0, tap, bridge);
  attach.setIsolatedPort(0, tap);
  return attach.applyAll().withContext(what);
}

Status deleteTap(const std::string& tap, std::string_view vmName) {
  const std::string what = "delete tap " + tap;
  auto current = netmodel::linkAlias(tap);
  if (!current.isOk()) {
    return current.status().withContext(what);
  }
  if (!*current) {
    return Status::ok();  // already gone
  }
  if (**current != tapOwnerAlias(vmName)) {
    return Status::error(what + " <- not hyper's tap of VM " + std::string(vmName) + " (alias '" +
                         **current + "')");
  }
  netmodel::LinkChanges remove;
  remove.deleteLink(0, tap);
  return remove.applyAll().withContext(what);
}

}  // namespace hyper::providers::vmm
