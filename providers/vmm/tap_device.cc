#include "providers/vmm/tap_device.h"

#include <net/if.h>

#include <fstream>

#include "base/names.h"
#include "host/command.h"
#include "netmodel/placement.h"

namespace hyper::providers::vmm {

namespace {

// /sys/class/net is the view of the namespace sysfs was mounted in, not the calling thread's:
// ask iproute2, which uses the thread's netlink socket.
Result<std::string> aliasOf(const std::string& tap) {
  HYPER_ASSIGN_OR_RETURN(host::CommandResult r,
                         host::runCommand({"ip", "-o", "link", "show", "dev", tap}));
  if (r.exitCode != 0) {
    return Status::error("no such interface " + tap);
  }
  size_t at = r.out.find(" alias ");
  if (at == std::string::npos) {
    return std::string();
  }
  size_t start = at + 7;
  size_t end = r.out.find_first_of(" \\\n", start);
  return r.out.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

}  // namespace

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
  auto current = aliasOf(tap);
  if (current.isOk()) {
    if (*current != alias) {
      return Status::error(what + " <- " + tap + " exists and is not hyper's (alias '" + *current +
                           "')");
    }
  } else {
    // One `ip` process makes the tap and marks it ours: its whole input is written before we
    // wait, so a hyper killed in between cannot leave an unmarked tap that it would then refuse
    // to touch as someone else's.
    HYPER_RETURN_IF_ERROR(host::runChecked({"ip", "-batch", "-"},
                                           "tuntap add dev " + tap + " mode tap\nlink set dev " +
                                               tap + " alias " + alias + "\n")
                              .status()
                              .withContext(what));
  }
  HYPER_RETURN_IF_ERROR(host::runChecked({"ip", "link", "set", "dev", tap, "master", bridge, "up"})
                            .status()
                            .withContext(what));
  // An isolated port reaches the bridge (the gateway) and nothing else: traffic between two VMs
  // of a network is routed by the host, where the NetworkPolicy's stateful rules see it whether
  // or not br_netfilter passes bridged frames through the IP hooks.
  HYPER_RETURN_IF_ERROR(
      host::runChecked({"ip", "link", "set", "dev", tap, "type", "bridge_slave", "isolated", "on"})
          .status()
          .withContext(what));
  return Status::ok();
}

Status deleteTap(const std::string& tap, std::string_view vmName) {
  auto current = aliasOf(tap);
  if (!current.isOk()) {
    return Status::ok();  // already gone
  }
  if (*current != tapOwnerAlias(vmName)) {
    return Status::error("delete tap " + tap + " <- not hyper's tap of VM " + std::string(vmName) +
                         " (alias '" + *current + "')");
  }
  return host::runChecked({"ip", "link", "del", "dev", tap})
      .status()
      .withContext("delete tap " + tap);
}

}  // namespace hyper::providers::vmm
