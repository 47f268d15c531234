#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace hyper::providers::vmm {

// The tap of a VM (netmodel::vmTapName, which the net provider uses for the bridge guard):
// "hv-<name>", or "hv-<head>-<hash>" when longer than IFNAMSIZ.
std::string tapNameFor(std::string_view vmName);

// The ifalias written on every tap hyper creates, the mark of ownership: "hyper:VM/web-1".
std::string tapOwnerAlias(std::string_view vmName);

// Creates the tap in the calling thread's network namespace, in-process (/dev/net/tun and
// rtnetlink: netmodel::makeTap, netmodel::LinkChanges), enslaves it to `bridge` as an isolated port
// (it talks to the bridge, never directly to another isolated port: the net provider routes between
// VMs) and sets it up. Idempotent: an existing tap that carries this VM's alias is reused (and
// re-attached); one that does not is an error, never taken over.
Status createTap(const std::string& tap, const std::string& bridge, std::string_view vmName);

// Deletes the tap if it exists and carries this VM's alias. Idempotent: a missing tap is ok.
Status deleteTap(const std::string& tap, std::string_view vmName);

// True when a network interface of that name exists in the calling thread's namespace.
bool interfaceExists(const std::string& name);

}  // namespace hyper::providers::vmm
