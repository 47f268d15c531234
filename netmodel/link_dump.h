#pragma once

#include <string>
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

// Only some links, as dumpLinkTable() reads them: those named in `names` (one RTM_GETLINK each;
// a name no link has is left out) and those holding an IPv4 address that overlaps one of
// `overlapping`, each with all its addresses (one RTM_GETADDR dump), in ifindex order. A link's
// `master` is left empty. What an apply needs to find its bridges and collisions: at 5,000
// bridges the full dump took some 40 ms, the kernel filling every link's attributes.
Result<LinkTable> dumpLinkTableFor(const std::vector<std::string>& names,
                                   const std::vector<Cidr>& overlapping);

inline constexpr size_t kMaxDumpMessages = 1 << 20;

}  // namespace hyper::netmodel
