#pragma once

#include <memory>

#include "base/status.h"

namespace hyper::controller {

// Netlink subscriptions that tell hyperd the host changed without polling: link and address
// changes (NETLINK_ROUTE) and nftables ruleset changes (NETLINK_NETFILTER, NFNLGRP_NFTABLES) in
// the network namespace hyperd runs in. Only "something changed" is reported; the loop then
// observes in one batch as usual, so no message is parsed beyond its header.
class HostEvents {
 public:
  static Result<std::unique_ptr<HostEvents>> open();
  ~HostEvents();
  HostEvents(const HostEvents&) = delete;
  HostEvents& operator=(const HostEvents&) = delete;

  int routeFd() const { return route_; }
  int netfilterFd() const { return netfilter_; }  // -1 when nfnetlink is unavailable
  // Reads everything pending on `fd` without blocking; true if a message arrived. An overrun
  // (ENOBUFS) counts as a change.
  static bool drain(int fd);

 private:
  HostEvents(int route, int netfilter) : route_(route), netfilter_(netfilter) {}
  int route_;
  int netfilter_;
};

}  // namespace hyper::controller
