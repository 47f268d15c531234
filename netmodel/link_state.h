#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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
  // net.ipv4.conf.<name>.proxy_arp_pvlan, from the link's IPv4 settings in the rtnetlink dump
  // (IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF); nullopt where the dump did not carry them (`ip`'s
  // JSON does not print them): read /proc then.
  std::optional<bool> proxyArpPvlan;
  // IPv6 on the link: net.ipv6.conf.<name>.disable_ipv6 is 0, from its IPv6 settings in the same
  // dump (IFLA_AF_SPEC / AF_INET6 / IFLA_INET6_CONF); nullopt where the dump did not carry them
  // (a kernel without IPv6, `ip`'s JSON): read /proc then.
  std::optional<bool> ipv6;

  // "10.77.0.1/24" for each IPv4 address.
  std::vector<std::string> ipv4Strings() const;
};

// Every link of the network namespace, from one dump.
struct LinkTable {
  std::vector<LinkState> links;

  const LinkState* find(std::string_view name) const;  // a scan: see LinkIndex
};

// An IPv4 address of some link that overlaps a prefix (LinkIndex::firstOverlap).
struct LinkAddress {
  const LinkState* link = nullptr;
  Cidr address;
};

// Lookups over one LinkTable that answer what a scan would, without scanning: a full observe asks
// every Network's bridge by name and its cidr against every address (at 2,000 networks the scans
// were 4 million comparisons, 17% of the observe). Built from a table that must outlive it and
// stay unchanged while it is used: a snapshot taken once, never updated, so it cannot go stale.
class LinkIndex {
 public:
  explicit LinkIndex(const LinkTable& table);
  LinkIndex(LinkTable&&) = delete;  // an index over a temporary would dangle

  const LinkTable& table() const { return table_; }
  // The first link of that name, as LinkTable::find.
  const LinkState* find(std::string_view name) const;
  // The first address, in listing order (link, then address), that overlaps `cidr` on a link
  // whose alias is not `exceptAlias` (a Network's own bridge).
  std::optional<LinkAddress> firstOverlap(const Cidr& cidr, std::string_view exceptAlias) const;

 private:
  struct Interval {
    uint32_t start;  // the address's network
    int prefix;
    size_t link;  // position in the table's links
    size_t addr;  // position in that link's ipv4
  };
  const LinkTable& table_;
  std::unordered_map<std::string_view, size_t> byName_;  // views of the table's names
  std::vector<Interval> intervals_;  // every address, sorted by (start, link, addr)
};

// Parses the JSON printed by `ip -d -j addr show`. Pure; fields it does not need are ignored,
// and a link without a name or an address without `local` is skipped rather than fatal.
Result<LinkTable> parseLinkTable(std::string_view ipJson);

}  // namespace hyper::netmodel
