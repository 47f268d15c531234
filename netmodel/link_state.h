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

  // "10.77.0.1/24" for each IPv4 address.
  std::vector<std::string> ipv4Strings() const;
};

// An IPv4 address of some link that overlaps a prefix (LinkTable::firstOverlap).
struct LinkAddress {
  const LinkState* link = nullptr;
  Cidr address;
};

// Every link of the network namespace, from one dump.
struct LinkTable {
  std::vector<LinkState> links;

  // By name. Indexed once reindex() ran over the current links (the dumps and the parser call
  // it), a scan otherwise.
  const LinkState* find(std::string_view name) const;
  // The first address, in listing order (link, then address), that overlaps `cidr` on a link
  // whose alias is not `exceptAlias` (a Network's own bridge). Indexed like find(): a network's
  // check costs the few addresses near its prefix rather than every link's (at 2,000 networks
  // the scans were 4 million comparisons per observe).
  std::optional<LinkAddress> firstOverlap(const Cidr& cidr, std::string_view exceptAlias) const;
  // Builds the indexes; call after changing `links`.
  void reindex();

 private:
  struct Interval {
    uint32_t start;  // the address's network
    int prefix;
    size_t link;  // position in links
    size_t addr;  // position in the link's ipv4
  };
  std::unordered_map<std::string, size_t> byName_;
  std::vector<Interval> intervals_;           // every address, sorted by (start, link, addr)
  size_t indexed_ = static_cast<size_t>(-1);  // links.size() when reindex() ran
  const LinkState* indexedData_ = nullptr;    // links.data() then
  bool indexed() const { return indexed_ == links.size() && indexedData_ == links.data(); }
};

// Parses the JSON printed by `ip -d -j addr show`. Pure; fields it does not need are ignored,
// and a link without a name or an address without `local` is skipped rather than fatal.
Result<LinkTable> parseLinkTable(std::string_view ipJson);

}  // namespace hyper::netmodel
