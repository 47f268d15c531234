#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/status.h"
#include "netmodel/cidr.h"
#include "netmodel/link_state.h"

namespace hyper::netmodel {

// Every link of the calling thread's network namespace with its IPv4 addresses, read in-process
// over rtnetlink (one RTM_GETLINK and one RTM_GETADDR dump on a NETLINK_ROUTE socket): what
// `ip -d -j addr show` prints and parseLinkTable() reads, without a process and without JSON.
// At 1,000 bridges the command and its JSON cost some 40 ms of every observe. Links come in
// ifindex order and addresses in the kernel's order, as ip lists them. Bounded: a link or
// address message the buffer cannot hold, more than kMaxDumpMessages messages, or no answer
// within 5 s is an error; an attribute that does not fit its message is skipped.
Result<LinkTable> dumpLinkTable();

// Every IPv4 address of a network namespace with its link's ifindex, kept from one RTM_GETADDR
// dump and the kernel's address notifications since (RTNLGRP_IPV4_IFADDR, on a socket of its
// own), so that finding what holds an address in a CIDR costs no dump of every address (some
// 4 ms at 5,000 bridges, twice in a push that changes one Network: its observe and its apply).
// Each answer first reads the notifications queued on that socket: the kernel queues one as it
// makes each change, so the answer is what a dump made then would say. It dumps again when it
// has no table yet, when the calling thread is in another namespace than the table's, and when
// the kernel dropped notifications (its socket's queue full: ENOBUFS). Thread-safe.
class AddressCache {
 public:
  AddressCache() = default;
  ~AddressCache();
  AddressCache(const AddressCache&) = delete;
  AddressCache& operator=(const AddressCache&) = delete;

  // (ifindex, address with its prefix) of every IPv4 address, sorted by ifindex.
  Result<std::vector<std::pair<int, Cidr>>> addresses();
  size_t dumps() const;  // how many times it dumped: for tests and benches

 private:
  Status resyncLocked();
  // Applies the queued notifications; false when some were lost (a dump is needed).
  Result<bool> drainLocked();

  mutable std::mutex mu_;
  int fd_ = -1;         // subscribed to RTNLGRP_IPV4_IFADDR; -1: no table
  uint64_t netns_ = 0;  // the inode of the namespace the table is of
  std::set<std::tuple<int, uint32_t, int>> table_;  // (ifindex, address, prefix)
  size_t dumps_ = 0;
};

// Only some links, as dumpLinkTable() reads them: those named in `names` (one RTM_GETLINK each;
// a name no link has is left out) and those holding an IPv4 address that overlaps one of
// `overlapping`, each with all its addresses (one RTM_GETADDR dump, or `cache` when given), in
// ifindex order. A link's `master` is left empty. What an apply needs to find its bridges and
// collisions: at 5,000 bridges the full dump took some 40 ms, the kernel filling every link's
// attributes.
Result<LinkTable> dumpLinkTableFor(const std::vector<std::string>& names,
                                   const std::vector<Cidr>& overlapping,
                                   AddressCache* cache = nullptr);

inline constexpr size_t kMaxDumpMessages = 1 << 20;

}  // namespace hyper::netmodel
