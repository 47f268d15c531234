#include "netmodel/link_dump.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "netmodel/netlink.h"

namespace hyper::netmodel {

namespace {

constexpr const char* kWhat = "rtnetlink dump of links and addresses";

using rtnl::attrString;
using rtnl::attrU32;
using rtnl::forEachAttr;

// One dump request and its whole multipart answer; `each` gets every message of it. An address
// dump with `ifindex` asks for that link's alone (which the kernel honours on a socket with
// NETLINK_GET_STRICT_CHK; the caller still checks each answer's link).
Status dumpRequest(const rtnl::Socket& socket, uint16_t type, uint32_t seq,
                   const std::function<void(const nlmsghdr*)>& each, int ifindex = 0) {
  const bool links = type == RTM_GETLINK;
  ifinfomsg link{};
  link.ifi_family = AF_UNSPEC;
  ifaddrmsg addr{};
  addr.ifa_family = AF_INET;
  addr.ifa_index = static_cast<uint32_t>(ifindex);
  rtnl::Request request(type, NLM_F_REQUEST | NLM_F_DUMP, links ? static_cast<void*>(&link) : &addr,
                        links ? sizeof link : sizeof addr);
  if (links) {
    // Without each link's counters (IFLA_STATS, IFLA_STATS64, the IPv6 ones): nothing here reads
    // them, and at 5,000 bridges filling them was most of the kernel's half of the dump.
    request.putU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  }
  request.setSeq(seq);
  HYPER_RETURN_IF_ERROR(socket.send(request.bytes(), kWhat));
  // The kernel fills a dump's datagrams up to the reader's buffer (at most 32 KiB by default);
  // a truncated one is an error rather than a silently shorter table.
  std::string buffer;
  size_t messages = 0;
  while (true) {
    HYPER_ASSIGN_OR_RETURN(size_t n, socket.receive(buffer, kWhat));
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buffer.data()); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq) {
        continue;  // not an answer to this request
      }
      if (h->nlmsg_type == NLMSG_DONE) {
        return Status::ok();
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        return Status::error(std::string(kWhat) + " <- " + std::strerror(rtnl::errorOf(h)));
      }
      if (++messages > kMaxDumpMessages) {
        return Status::error(std::string(kWhat) + " <- more than " +
                             std::to_string(kMaxDumpMessages) + " messages");
      }
      each(h);
    }
    if (n == 0) {
      return Status::error(std::string(kWhat) + " <- the answer ended without NLMSG_DONE");
    }
  }
}

// Slot `at` of `conf` when it is the array attribute `type` (IFLA_INET_CONF, IFLA_INET6_CONF:
// 32-bit values, u32 and s32) and long enough to hold it.
bool confSlot(const rtattr* conf, unsigned short type, size_t at, uint32_t& out) {
  if ((conf->rta_type & NLA_TYPE_MASK) != type || RTA_PAYLOAD(conf) < (at + 1) * sizeof(uint32_t)) {
    return false;
  }
  std::memcpy(&out, static_cast<const char*>(RTA_DATA(conf)) + at * sizeof(uint32_t), sizeof out);
  return true;
}

// One RTM_NEWLINK message into `link` (and its master's ifindex); returns the link's ifindex, or
// -1 for anything else.
int readLink(const nlmsghdr* h, LinkState& link, uint32_t& master) {
  if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) {
    return -1;
  }
  const auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
  link.up = (info->ifi_flags & IFF_UP) != 0;
  forEachAttr(IFLA_RTA(info), static_cast<int>(IFLA_PAYLOAD(h)), [&](const rtattr* a) {
    switch (a->rta_type) {
      case IFLA_IFNAME:
        link.name = attrString(a);
        break;
      case IFLA_IFALIAS:
        link.alias = attrString(a);
        break;
      case IFLA_MTU: {
        uint32_t mtu = 0;
        if (attrU32(a, mtu)) {
          link.mtu = static_cast<int>(mtu);
        }
        break;
      }
      case IFLA_MASTER:
        attrU32(a, master);
        break;
      case IFLA_LINKINFO: {
        std::string portKind;
        const rtattr* portData = nullptr;
        forEachAttr(RTA_DATA(a), static_cast<int>(RTA_PAYLOAD(a)), [&](const rtattr* i) {
          if (i->rta_type == IFLA_INFO_KIND) {
            link.kind = attrString(i);
          } else if (i->rta_type == IFLA_INFO_SLAVE_KIND) {
            portKind = attrString(i);
          } else if ((i->rta_type & NLA_TYPE_MASK) == IFLA_INFO_SLAVE_DATA) {
            portData = i;
          }
        });
        if (portKind == "bridge" && portData != nullptr) {
          forEachAttr(
              RTA_DATA(portData), static_cast<int>(RTA_PAYLOAD(portData)), [&](const rtattr* p) {
                if ((p->rta_type & NLA_TYPE_MASK) == IFLA_BRPORT_ISOLATED && RTA_PAYLOAD(p) >= 1) {
                  link.isolated = *static_cast<const uint8_t*>(RTA_DATA(p)) != 0;
                }
              });
        }
        break;
      }
      case IFLA_AF_SPEC:
        // The IPv4 settings: IFLA_INET_CONF is an array of u32, setting N at index N - 1. The
        // IPv6 ones: IFLA_INET6_CONF is an array of s32, setting N (DEVCONF_*) at index N.
        forEachAttr(RTA_DATA(a), static_cast<int>(RTA_PAYLOAD(a)), [&](const rtattr* family) {
          const auto af = family->rta_type & NLA_TYPE_MASK;
          if (af != AF_INET && af != AF_INET6) {
            return;
          }
          forEachAttr(
              RTA_DATA(family), static_cast<int>(RTA_PAYLOAD(family)), [&](const rtattr* c) {
                uint32_t value = 0;
                if (af == AF_INET6 && confSlot(c, IFLA_INET6_CONF, DEVCONF_DISABLE_IPV6, value)) {
                  link.ipv6 = value == 0;
                } else if (af == AF_INET &&
                           confSlot(c, IFLA_INET_CONF, IPV4_DEVCONF_PROXY_ARP_PVLAN - 1, value)) {
                  link.proxyArpPvlan = value != 0;
                }
              });
        });
        break;
      default:
        break;
    }
  });
  return info->ifi_index;
}

// One RTM_NEWADDR (or RTM_DELADDR: the same body) message: its link's ifindex and its IPv4 prefix
// (ip's "local": IFA_LOCAL, or IFA_ADDRESS when there is none); false for anything else.
bool readAddress(const nlmsghdr* h, int& ifindex, Cidr& out) {
  if ((h->nlmsg_type != RTM_NEWADDR && h->nlmsg_type != RTM_DELADDR) ||
      h->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg))) {
    return false;
  }
  const auto* addr = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
  if (addr->ifa_family != AF_INET || addr->ifa_prefixlen > 32) {
    return false;
  }
  uint32_t local = 0;
  uint32_t address = 0;
  bool hasLocal = false;
  bool hasAddress = false;
  forEachAttr(IFA_RTA(addr), static_cast<int>(IFA_PAYLOAD(h)), [&](const rtattr* a) {
    if (a->rta_type == IFA_LOCAL) {
      hasLocal = attrU32(a, local);
    } else if (a->rta_type == IFA_ADDRESS) {
      hasAddress = attrU32(a, address);
    }
  });
  if (!hasLocal && !hasAddress) {
    return false;  // as parseLinkTable: an address without `local` is skipped
  }
  ifindex = static_cast<int>(addr->ifa_index);
  out = Cidr{ntohl(hasLocal ? local : address), static_cast<int>(addr->ifa_prefixlen)};
  return true;
}

}  // namespace

Result<LinkTable> dumpLinkTable() {
  rtnl::Socket socket;
  HYPER_RETURN_IF_ERROR(socket.opened(kWhat));

  LinkTable table;
  std::map<int, size_t> byIndex;                // ifindex -> position in table.links
  std::vector<std::pair<size_t, int>> masters;  // (link, master's ifindex)
  HYPER_RETURN_IF_ERROR(dumpRequest(socket, RTM_GETLINK, 1, [&](const nlmsghdr* h) {
    LinkState link;
    uint32_t master = 0;
    int ifindex = readLink(h, link, master);
    if (ifindex < 0 || link.name.empty()) {
      return;  // as parseLinkTable: a link without a name is skipped
    }
    byIndex[ifindex] = table.links.size();
    if (master != 0) {
      masters.emplace_back(table.links.size(), static_cast<int>(master));
    }
    table.links.push_back(std::move(link));
  }));
  for (const auto& [at, master] : masters) {
    if (auto it = byIndex.find(master); it != byIndex.end()) {
      table.links[at].master = table.links[it->second].name;
    }
  }

  HYPER_RETURN_IF_ERROR(dumpRequest(socket, RTM_GETADDR, 2, [&](const nlmsghdr* h) {
    int ifindex = 0;
    Cidr address;
    if (readAddress(h, ifindex, address)) {
      if (auto it = byIndex.find(ifindex); it != byIndex.end()) {
        table.links[it->second].ipv4.push_back(address);
      }
    }
  }));
  return table;
}

namespace {

// One link by name or by ifindex (RTM_GETLINK without NLM_F_DUMP): its ifindex, or -1 when
// there is none.
Result<int> getLink(const rtnl::Socket& socket, uint32_t seq, const std::string& name, int ifindex,
                    LinkState& link) {
  ifinfomsg body{};
  body.ifi_family = AF_UNSPEC;
  body.ifi_index = ifindex;
  rtnl::Request request(RTM_GETLINK, NLM_F_REQUEST, &body, sizeof body);
  if (!name.empty()) {
    request.putString(IFLA_IFNAME, name);
  }
  request.putU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  request.setSeq(seq);
  HYPER_RETURN_IF_ERROR(socket.send(request.bytes(), kWhat));
  std::string buffer;
  while (true) {
    HYPER_ASSIGN_OR_RETURN(size_t n, socket.receive(buffer, kWhat));
    if (n == 0) {
      return Status::error(std::string(kWhat) + " <- no answer for link " +
                           (name.empty() ? std::to_string(ifindex) : name));
    }
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buffer.data()); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq) {
        continue;  // not an answer to this request
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        int error = rtnl::errorOf(h);
        if (error == ENODEV) {
          return -1;
        }
        return Status::error(std::string(kWhat) + " <- " + std::strerror(error));
      }
      uint32_t master = 0;
      int index = readLink(h, link, master);
      return index >= 0 && !link.name.empty() ? index : -1;
    }
  }
}

}  // namespace

AddressCache::~AddressCache() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

size_t AddressCache::dumps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dumps_;
}

Result<std::vector<std::pair<int, Cidr>>> AddressCache::addresses() {
  std::lock_guard<std::mutex> lock(mu_);
  struct stat ns {};
  if (::stat("/proc/thread-self/ns/net", &ns) != 0) {
    return Status::error(std::string(kWhat) +
                         " <- /proc/thread-self/ns/net: " + std::strerror(errno));
  }
  bool fresh = fd_ >= 0 && netns_ == static_cast<uint64_t>(ns.st_ino);
  if (fresh) {
    HYPER_ASSIGN_OR_RETURN(fresh, drainLocked());
  }
  if (!fresh) {
    netns_ = static_cast<uint64_t>(ns.st_ino);
    HYPER_RETURN_IF_ERROR(resyncLocked());
  }
  std::vector<std::pair<int, Cidr>> out;
  out.reserve(table_.size());
  for (const auto& [ifindex, address, prefix] : table_) {
    out.emplace_back(ifindex, Cidr{address, prefix});
  }
  return out;
}

Status AddressCache::resyncLocked() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  table_.clear();
  // Subscribed before the dump: a change the dump misses is queued, and applied after it.
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) {
    return Status::error(std::string(kWhat) + " <- socket: " + std::strerror(errno));
  }
  // Room for the notifications of a first apply of thousands of bridges between two reads (one
  // per address, some 80 bytes each); a full queue only costs a dump.
  int bytes = 8 << 20;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = RTMGRP_IPV4_IFADDR;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    Status failed = Status::error(std::string(kWhat) +
                                  " <- subscribe to address changes: " + std::strerror(errno));
    ::close(fd);
    return failed;
  }
  fd_ = fd;
  rtnl::Socket socket;
  HYPER_RETURN_IF_ERROR(socket.opened(kWhat));
  ++dumps_;
  Status dumped = dumpRequest(socket, RTM_GETADDR, 1, [&](const nlmsghdr* h) {
    int ifindex = 0;
    Cidr address;
    if (readAddress(h, ifindex, address)) {
      table_.emplace(ifindex, address.address, address.prefix);
    }
  });
  if (dumped.isOk()) {
    auto drained = drainLocked();
    if (drained.isOk() && *drained) {
      return Status::ok();
    }
    dumped = drained.isOk() ? Status::error(std::string(kWhat) +
                                            " <- address changes lost "
                                            "while dumping")
                            : drained.status();
  }
  ::close(fd_);
  fd_ = -1;
  table_.clear();
  return dumped;
}

Result<bool> AddressCache::drainLocked() {
  alignas(nlmsghdr) char buffer[64 << 10];
  while (true) {
    iovec io{buffer, sizeof buffer};
    sockaddr_nl from{};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &io;
    msg.msg_iovlen = 1;
    ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return true;
      }
      if (errno == ENOBUFS) {
        return false;  // the kernel dropped notifications: only a dump knows the table now
      }
      return Status::error(std::string(kWhat) +
                           " <- read address changes: " + std::strerror(errno));
    }
    if ((msg.msg_flags & MSG_TRUNC) != 0) {
      return false;
    }
    if (from.nl_pid != 0) {
      continue;  // only the kernel's
    }
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buffer); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      int ifindex = 0;
      Cidr address;
      if (!readAddress(h, ifindex, address)) {
        continue;
      }
      auto key = std::make_tuple(ifindex, address.address, address.prefix);
      if (h->nlmsg_type == RTM_NEWADDR) {
        table_.insert(key);
      } else {
        table_.erase(key);
      }
    }
  }
}

Result<LinkTable> dumpLinkTableFor(const std::vector<std::string>& names,
                                   const std::vector<Cidr>& overlapping, AddressCache* cache) {
  rtnl::Socket socket;
  HYPER_RETURN_IF_ERROR(socket.opened(kWhat));
  // Every IPv4 address with its link's ifindex: from the cache only to find the links wanted,
  // whose own addresses are then dumped alone, in the kernel's order.
  std::vector<std::pair<int, Cidr>> addresses;
  uint32_t seq = 1;
  if (cache != nullptr) {
    HYPER_ASSIGN_OR_RETURN(addresses, cache->addresses());
    int on = 1;
    ::setsockopt(socket.fd(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &on, sizeof on);
  } else {
    HYPER_RETURN_IF_ERROR(dumpRequest(socket, RTM_GETADDR, seq++, [&](const nlmsghdr* h) {
      int ifindex = 0;
      Cidr address;
      if (readAddress(h, ifindex, address)) {
        addresses.emplace_back(ifindex, address);
      }
    }));
  }
  std::map<int, LinkState> links;  // by ifindex: the order a dump gives them in
  for (const std::string& name : names) {
    LinkState link;
    HYPER_ASSIGN_OR_RETURN(int index, getLink(socket, seq++, name, 0, link));
    if (index >= 0) {
      links.emplace(index, std::move(link));
    }
  }
  for (const auto& [index, address] : addresses) {
    bool wanted = std::any_of(overlapping.begin(), overlapping.end(),
                              [&](const Cidr& c) { return c.overlaps(address); });
    if (wanted && !links.count(index)) {
      LinkState link;
      HYPER_ASSIGN_OR_RETURN(int found, getLink(socket, seq++, "", index, link));
      if (found >= 0) {
        links.emplace(found, std::move(link));
      }
    }
  }
  LinkTable table;
  for (auto& [index, link] : links) {
    if (cache != nullptr) {
      const int at = index;
      std::vector<Cidr>& ipv4 = link.ipv4;
      HYPER_RETURN_IF_ERROR(dumpRequest(
          socket, RTM_GETADDR, seq++,
          [&](const nlmsghdr* h) {
            int ifindex = 0;
            Cidr address;
            if (readAddress(h, ifindex, address) && ifindex == at) {
              ipv4.push_back(address);
            }
          },
          at));
    } else {
      for (const auto& [at, address] : addresses) {
        if (at == index) {
          link.ipv4.push_back(address);
        }
      }
    }
    table.links.push_back(std::move(link));
  }
  return table;
}

}  // namespace hyper::netmodel
