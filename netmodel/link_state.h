#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "netmodel/cidr.h"

namespace hyper::netmodel {

// The ifalias hyper writes on every link it creates: the mark of ownership. A link without it is
// never changed or deleted by hyper, whatever its name.
std::string ownerAlias(std::string_view networkName);  // "hyper:Network/lab"

// One network interface as `ip -d -j addr show` reports it.
struct LinkState {
  std::string name;
  std::string kind;  // linkinfo.info_kind ("bridge", "veth"); empty for plain devices like lo
  int mtu = 0;
  bool up = false;         // administratively up (IFF_UP), not the carrier
  std::string alias;       // ifalias; empty when unset
  std::vector<Cidr> ipv4;  // IPv4 addresses with their prefix length, in listing order
  std::string master;      // the bridge this link is a port of; empty when none
  bool isolated = false;   // a bridge port with the isolated flag (info_slave_data.isolated)

  // "10.77.0.1/24" for each IPv4 address.
  std::vector<std::string> ipv4Strings() const;
};

// Every link of the network namespace, from one dump.
struct LinkTable {
  std::vector<LinkState> links;

  const LinkState* find(std::string_view name) const;
};

// Parses the JSON printed by `ip -d -j addr show`. Pure; fields it does not need are ignored,
// and a link without a name or an address without `local` is skipped rather than fatal.
Result<LinkTable> parseLinkTable(std::string_view ipJson);

}  // namespace hyper::netmodel
