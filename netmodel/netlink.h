#pragma once

// What link_dump and link_change share to talk rtnetlink in-process: a NETLINK_ROUTE socket,
// request building and attribute reading. Internal to netmodel/.

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace hyper::netmodel::rtnl {

// A NETLINK_ROUTE socket of the calling thread's network namespace, with a 5 s receive timeout,
// extended acks (the kernel's own words for an error) and acks capped to the header of the
// request they answer.
class Socket {
 public:
  Socket();
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Not ok when the socket could not be made; `what` names the caller's work.
  Status opened(const std::string& what) const;
  int fd() const { return fd_; }
  // Sends `bytes` (one or more whole messages) in one datagram: the kernel runs every message of
  // it in this one system call, in order, going on past a failed one.
  Status send(const std::string& bytes, const std::string& what) const;
  // Receives one datagram into `buffer` (64 KiB); returns its size. A truncated datagram or no
  // answer within the timeout is an error.
  Result<size_t> receive(std::string& buffer, const std::string& what) const;

 private:
  int fd_;
};

// One request being built: a netlink header, the fixed body of its type, then attributes
// (nestable). bytes() is the whole message, its length set.
class Request {
 public:
  Request(uint16_t type, uint16_t flags, const void* body, size_t bodySize);

  void put(uint16_t type, const void* data, size_t size);
  void putString(uint16_t type, std::string_view text);  // with a NUL (a name)
  void putBytes(uint16_t type, std::string_view text) { put(type, text.data(), text.size()); }
  void putU32(uint16_t type, uint32_t value) { put(type, &value, sizeof value); }
  void putU8(uint16_t type, uint8_t value) { put(type, &value, sizeof value); }
  // A nest: attributes put until endNest(at) are inside it.
  size_t beginNest(uint16_t type);
  void endNest(size_t at);

  void setSeq(uint32_t seq);
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// An attribute's payload as text, up to its first NUL and never past its end.
std::string attrString(const rtattr* a);
bool attrU32(const rtattr* a, uint32_t& out);
// Calls `each` for every attribute of the block [data, data + size).
void forEachAttr(const void* data, int size, const std::function<void(const rtattr*)>& each);

// The error code of an NLMSG_ERROR message (0 for an ack), EPROTO when it is too short.
int errorOf(const nlmsghdr* h);
// What iproute2 prints for a failed request's answer: "Error: <the kernel's message>." when the
// kernel said why (an extended ack), else "RTNETLINK answers: <strerror>".
std::string ipStyleError(const nlmsghdr* h);

}  // namespace hyper::netmodel::rtnl
