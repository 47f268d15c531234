#include "hyperd/host_events.h"

#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace hyper::controller {

namespace {

Result<int> subscribe(int protocol, uint32_t groups, const char* what) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
  if (fd < 0) {
    return Status::error(std::string("netlink ") + what + ": socket: " + strerror(errno));
  }
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = groups;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    close(fd);
    return Status::error(std::string("netlink ") + what + ": bind: " + strerror(e));
  }
  return fd;
}

}  // namespace

Result<std::unique_ptr<HostEvents>> HostEvents::open() {
  auto route = subscribe(NETLINK_ROUTE, RTMGRP_LINK | RTMGRP_IPV4_IFADDR, "route");
  if (!route.isOk()) {
    return route.status();
  }
  // nftables events need the nfnetlink module; without it, the periodic drift check still
  // finds a flushed table.
  auto netfilter = subscribe(NETLINK_NETFILTER, 1u << (NFNLGRP_NFTABLES - 1), "netfilter");
  return std::unique_ptr<HostEvents>(new HostEvents(*route, netfilter.isOk() ? *netfilter : -1));
}

HostEvents::~HostEvents() {
  close(route_);
  if (netfilter_ >= 0) {
    close(netfilter_);
  }
}

bool HostEvents::drain(int fd) {
  bool any = false;
  char buf[16384];
  while (true) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      any = true;
      continue;
    }
    if (n < 0 && errno == ENOBUFS) {
      any = true;  // the kernel dropped messages: something certainly changed
      continue;
    }
    return any;
  }
}

}  // namespace hyper::controller
