#include "netmodel/link_change.h"

// <net/if.h> (if_nametoindex, struct ifreq) before the kernel's headers: linux/libc-compat.h
// then leaves out their second definitions of the same.
#include <net/if.h>
// clang-format off
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
// clang-format on
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "netmodel/netlink.h"

namespace hyper::netmodel {

namespace {

constexpr const char* kWhat = "rtnetlink";

// Messages per datagram. Each ack takes a buffer of its own in the socket's receive queue (some
// 1 KiB with its overhead) until it is read, and the kernel drops acks past the queue's limit
// (208 KiB by default): 128 stay well inside it.
constexpr size_t kPerDatagram = 128;

// Index lookups by name, once per name for one apply().
class Indexes {
 public:
  unsigned find(const std::string& name) {
    auto [it, added] = cache_.try_emplace(name, 0);
    if (added) {
      it->second = ::if_nametoindex(name.c_str());
    }
    return it->second;
  }

 private:
  std::map<std::string, unsigned> cache_;
};

ifinfomsg linkBody(unsigned flags = 0) {
  ifinfomsg body{};
  body.ifi_family = AF_UNSPEC;
  body.ifi_flags = flags;
  body.ifi_change = flags;
  return body;
}

std::string cannotFind(const std::string& dev) { return "Cannot find device \"" + dev + "\""; }

// The request for `change`, or what ip says when a device it names is not there.
Result<rtnl::Request> build(const LinkChanges::Change& change, Indexes& indexes) {
  constexpr uint16_t kAck = NLM_F_REQUEST | NLM_F_ACK;
  using Op = LinkChanges::Op;
  switch (change.op) {
    case Op::AddBridge: {
      ifinfomsg body = linkBody();
      rtnl::Request r(RTM_NEWLINK, kAck | NLM_F_CREATE | NLM_F_EXCL, &body, sizeof body);
      r.putString(IFLA_IFNAME, change.dev);
      size_t info = r.beginNest(IFLA_LINKINFO);
      r.putBytes(IFLA_INFO_KIND, "bridge");
      r.endNest(info);
      return r;
    }
    case Op::DeleteLink: {
      ifinfomsg body = linkBody();
      rtnl::Request r(RTM_DELLINK, kAck, &body, sizeof body);
      r.putString(IFLA_IFNAME, change.dev);
      return r;
    }
    case Op::SetAlias: {
      ifinfomsg body = linkBody();
      rtnl::Request r(RTM_NEWLINK, kAck, &body, sizeof body);
      r.putString(IFLA_IFNAME, change.dev);
      r.putBytes(IFLA_IFALIAS, change.text);
      return r;
    }
    case Op::SetMtuUp: {
      ifinfomsg body = linkBody(IFF_UP);
      rtnl::Request r(RTM_NEWLINK, kAck, &body, sizeof body);
      r.putString(IFLA_IFNAME, change.dev);
      r.putU32(IFLA_MTU, static_cast<uint32_t>(change.mtu));
      return r;
    }
    case Op::SetMasterUp: {
      unsigned master = indexes.find(change.text);
      if (master == 0) {
        return Status::error("Error: argument \"" + change.text +
                             "\" is wrong: Device does not exist");
      }
      ifinfomsg body = linkBody(IFF_UP);
      rtnl::Request r(RTM_NEWLINK, kAck, &body, sizeof body);
      r.putString(IFLA_IFNAME, change.dev);
      r.putU32(IFLA_MASTER, master);
      return r;
    }
    case Op::SetIsolated: {
      ifinfomsg body = linkBody();
      rtnl::Request r(RTM_NEWLINK, kAck, &body, sizeof body);
      r.putString(IFLA_IFNAME, change.dev);
      size_t info = r.beginNest(IFLA_LINKINFO);
      r.putBytes(IFLA_INFO_SLAVE_KIND, "bridge");
      size_t data = r.beginNest(IFLA_INFO_SLAVE_DATA);
      r.putU8(IFLA_BRPORT_ISOLATED, 1);
      r.endNest(data);
      r.endNest(info);
      return r;
    }
    case Op::DeleteAddr:
    case Op::ReplaceAddr: {
      unsigned index = indexes.find(change.dev);
      if (index == 0) {
        return Status::error(cannotFind(change.dev));
      }
      ifaddrmsg body{};
      body.ifa_family = AF_INET;
      body.ifa_prefixlen = static_cast<unsigned char>(change.address.prefix);
      body.ifa_index = index;
      bool replace = change.op == Op::ReplaceAddr;
      rtnl::Request r(replace ? RTM_NEWADDR : RTM_DELADDR,
                      replace ? kAck | NLM_F_CREATE | NLM_F_REPLACE : kAck, &body, sizeof body);
      uint32_t address = htonl(change.address.address);
      r.putU32(IFA_LOCAL, address);
      r.putU32(IFA_ADDRESS, address);
      return r;
    }
  }
  return Status::error("unknown link change");
}

// Sends requests in datagrams and matches every ack to its request by sequence number.
class Sender {
 public:
  Sender(const rtnl::Socket& socket, std::map<size_t, std::string>& failed)
      : socket_(socket), failed_(failed) {}

  // Queues the request for `change`, or fails its owner when it cannot be made (a device it
  // names is not there).
  void add(const LinkChanges::Change& change, Indexes& indexes) {
    auto request = build(change, indexes);
    if (!request.isOk()) {
      fail(change, request.status().message());
      return;
    }
    request->setSeq(nextSeq_++);
    bytes_ += request->bytes();
    pending_.push_back(&change);
  }
  size_t pending() const { return pending_.size(); }

  Status flush() {
    if (pending_.empty()) {
      return Status::ok();
    }
    const uint32_t first = nextSeq_ - static_cast<uint32_t>(pending_.size());
    HYPER_RETURN_IF_ERROR(socket_.send(bytes_, kWhat));
    std::vector<bool> answered(pending_.size());
    size_t left = pending_.size();
    std::string buffer;
    while (left > 0) {
      HYPER_ASSIGN_OR_RETURN(size_t n, socket_.receive(buffer, kWhat));
      if (n == 0) {
        return Status::error(std::string(kWhat) + " <- the kernel closed the socket");
      }
      int size = static_cast<int>(n);
      for (auto* h = reinterpret_cast<const nlmsghdr*>(buffer.data()); NLMSG_OK(h, size);
           h = NLMSG_NEXT(h, size)) {
        if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq < first ||
            h->nlmsg_seq - first >= pending_.size() || answered[h->nlmsg_seq - first]) {
          continue;
        }
        size_t at = h->nlmsg_seq - first;
        answered[at] = true;
        --left;
        if (rtnl::errorOf(h) != 0) {
          fail(*pending_[at], explain(*pending_[at], h));
        }
      }
    }
    bytes_.clear();
    pending_.clear();
    return Status::ok();
  }

  void fail(const LinkChanges::Change& change, const std::string& why) {
    failed_.try_emplace(change.owner, change.ipCommand() + " <- " + why);
  }

 private:
  // ip looks a device up by name before it sends and says so when there is none; the kernel,
  // asked by name, answers ENODEV.
  static std::string explain(const LinkChanges::Change& change, const nlmsghdr* h) {
    std::string text = rtnl::ipStyleError(h);
    if (rtnl::errorOf(h) == ENODEV && change.op != LinkChanges::Op::AddBridge &&
        text.rfind("RTNETLINK", 0) == 0) {
      return cannotFind(change.dev);
    }
    return text;
  }

  const rtnl::Socket& socket_;
  std::map<size_t, std::string>& failed_;
  std::string bytes_;
  std::vector<const LinkChanges::Change*> pending_;
  uint32_t nextSeq_ = 1;
};

}  // namespace

void LinkChanges::addBridge(size_t owner, const std::string& name) {
  requests_.push_back({owner, Op::AddBridge, name, "", 0, {}});
}

void LinkChanges::deleteLink(size_t owner, const std::string& name) {
  requests_.push_back({owner, Op::DeleteLink, name, "", 0, {}});
}

void LinkChanges::setAlias(size_t owner, const std::string& name, const std::string& alias) {
  requests_.push_back({owner, Op::SetAlias, name, alias, 0, {}});
}

void LinkChanges::setMtuUp(size_t owner, const std::string& name, int mtu) {
  requests_.push_back({owner, Op::SetMtuUp, name, "", mtu, {}});
}

void LinkChanges::setMasterUp(size_t owner, const std::string& name, const std::string& master) {
  requests_.push_back({owner, Op::SetMasterUp, name, master, 0, {}});
}

void LinkChanges::setIsolatedPort(size_t owner, const std::string& name) {
  requests_.push_back({owner, Op::SetIsolated, name, "", 0, {}});
}

void LinkChanges::deleteAddress(size_t owner, const std::string& name, const Cidr& address) {
  requests_.push_back({owner, Op::DeleteAddr, name, "", 0, address});
}

void LinkChanges::replaceAddress(size_t owner, const std::string& name, const Cidr& address) {
  requests_.push_back({owner, Op::ReplaceAddr, name, "", 0, address});
}

std::string LinkChanges::Change::ipCommand() const {
  switch (op) {
    case Op::AddBridge:
      return "link add " + dev + " type bridge";
    case Op::DeleteLink:
      return "link del dev " + dev;
    case Op::SetAlias:
      return "link set dev " + dev + " alias " + text;
    case Op::SetMtuUp:
      return "link set dev " + dev + " mtu " + std::to_string(mtu) + " up";
    case Op::SetMasterUp:
      return "link set dev " + dev + " master " + text + " up";
    case Op::SetIsolated:
      return "link set dev " + dev + " type bridge_slave isolated on";
    case Op::DeleteAddr:
      return "addr del " + address.str() + " dev " + dev;
    case Op::ReplaceAddr:
      return "addr replace " + address.str() + " dev " + dev;
  }
  return "?";
}

std::string LinkChanges::describe() const {
  std::string out;
  for (const Change& c : requests_) {
    out += c.ipCommand() + "\n";
  }
  return out;
}

Result<std::map<size_t, std::string>> LinkChanges::apply() const {
  std::map<size_t, std::string> failed;
  if (requests_.empty()) {
    return failed;
  }
  rtnl::Socket socket;
  HYPER_RETURN_IF_ERROR(socket.opened(kWhat));
  Indexes indexes;
  Sender sender(socket, failed);
  // Links, in order; a datagram ends only between two owners.
  for (size_t i = 0; i < requests_.size(); ++i) {
    const Change& change = requests_[i];
    if (change.isAddress()) {
      continue;
    }
    bool between = i > 0 && requests_[i - 1].owner != change.owner;
    if (sender.pending() >= (between ? kPerDatagram : 2 * kPerDatagram)) {
      HYPER_RETURN_IF_ERROR(sender.flush());
    }
    sender.add(change, indexes);
  }
  HYPER_RETURN_IF_ERROR(sender.flush());
  // Addresses, found by the index their link has now, for owners whose links are as asked.
  Indexes now;
  for (const Change& change : requests_) {
    if (!change.isAddress() || failed.count(change.owner)) {
      continue;
    }
    if (sender.pending() >= kPerDatagram) {
      HYPER_RETURN_IF_ERROR(sender.flush());
    }
    sender.add(change, now);
  }
  HYPER_RETURN_IF_ERROR(sender.flush());
  return failed;
}

Status LinkChanges::applyAll() const {
  HYPER_ASSIGN_OR_RETURN(auto failed, apply());
  if (!failed.empty()) {
    return Status::error(failed.begin()->second);
  }
  return Status::ok();
}

Result<std::optional<std::string>> linkAlias(const std::string& name) {
  const std::string what = "read link " + name;
  rtnl::Socket socket;
  HYPER_RETURN_IF_ERROR(socket.opened(what));
  ifinfomsg body = linkBody();
  rtnl::Request request(RTM_GETLINK, NLM_F_REQUEST, &body, sizeof body);
  request.putString(IFLA_IFNAME, name);
  request.setSeq(1);
  HYPER_RETURN_IF_ERROR(socket.send(request.bytes(), what));
  std::string buffer;
  while (true) {
    HYPER_ASSIGN_OR_RETURN(size_t n, socket.receive(buffer, what));
    if (n == 0) {
      return Status::error(what + " <- the kernel closed the socket");
    }
    int size = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buffer.data()); NLMSG_OK(h, size);
         h = NLMSG_NEXT(h, size)) {
      if (h->nlmsg_seq != 1) {
        continue;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        int error = rtnl::errorOf(h);
        if (error == ENODEV) {
          return std::optional<std::string>();
        }
        return Status::error(what + " <- " + rtnl::ipStyleError(h));
      }
      if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) {
        continue;
      }
      const auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
      std::string alias;
      rtnl::forEachAttr(IFLA_RTA(info), static_cast<int>(IFLA_PAYLOAD(h)), [&](const rtattr* a) {
        if (a->rta_type == IFLA_IFALIAS) {
          alias = rtnl::attrString(a);
        }
      });
      return std::optional<std::string>(std::move(alias));
    }
  }
}

Status makeTap(const std::string& name, const std::string& alias) {
  const std::string what = "tuntap add dev " + name + " mode tap";
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Status::error(what + " <- not a valid interface name");
  }
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return Status::error(what + " <- open /dev/net/tun: " + std::strerror(errno));
  }
  // Closing the file before TUNSETPERSIST takes the tap away again.
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  ifreq request{};
  std::memcpy(request.ifr_name, name.data(), name.size());
  // IFF_TUN_EXCL: a tap of that name already there is an error, not one to attach to and mark.
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL;
  if (::ioctl(fd, TUNSETIFF, &request) < 0) {
    return Status::error(what + " <- ioctl(TUNSETIFF): " + std::strerror(errno));
  }
  LinkChanges mark;
  mark.setAlias(0, name, alias);
  HYPER_RETURN_IF_ERROR(mark.applyAll().withContext(what));
  if (::ioctl(fd, TUNSETPERSIST, 1) < 0) {
    return Status::error(what + " <- ioctl(TUNSETPERSIST): " + std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace hyper::netmodel
