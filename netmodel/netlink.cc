#include "netmodel/netlink.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hyper::netmodel::rtnl {

namespace {
constexpr size_t kReceiveBuffer = 64 * 1024;
}  // namespace

Socket::Socket() : fd_(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) {
  if (fd_ < 0) {
    return;
  }
  timeval timeout{5, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  int on = 1;
  ::setsockopt(fd_, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof on);
  ::setsockopt(fd_, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof on);
}

Socket::~Socket() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Status Socket::opened(const std::string& what) const {
  if (fd_ < 0) {
    return Status::error(what + " <- socket: " + std::strerror(errno));
  }
  return Status::ok();
}

Status Socket::send(const std::string& bytes, const std::string& what) const {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  while (::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
                  sizeof kernel) < 0) {
    if (errno != EINTR) {
      return Status::error(what + " <- send: " + std::strerror(errno));
    }
  }
  return Status::ok();
}

Result<size_t> Socket::receive(std::string& buffer, const std::string& what) const {
  buffer.resize(kReceiveBuffer);
  while (true) {
    iovec io{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_iov = &io;
    msg.msg_iovlen = 1;
    ssize_t n = ::recvmsg(fd_, &msg, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Status::error(what + " <- receive: " +
                           (errno == EAGAIN ? "no answer within 5 s" : std::strerror(errno)));
    }
    if (msg.msg_flags & MSG_TRUNC) {
      return Status::error(what + " <- a message larger than 64 KiB");
    }
    return static_cast<size_t>(n);
  }
}

Request::Request(uint16_t type, uint16_t flags, const void* body, size_t bodySize) {
  nlmsghdr header{};
  header.nlmsg_type = type;
  header.nlmsg_flags = flags;
  bytes_.assign(reinterpret_cast<const char*>(&header), sizeof header);
  bytes_.append(static_cast<const char*>(body), bodySize);
  bytes_.resize(NLMSG_ALIGN(bytes_.size()), '\0');
  reinterpret_cast<nlmsghdr*>(bytes_.data())->nlmsg_len = static_cast<uint32_t>(bytes_.size());
}

void Request::put(uint16_t type, const void* data, size_t size) {
  rtattr attr{};
  attr.rta_type = type;
  attr.rta_len = static_cast<unsigned short>(RTA_LENGTH(size));
  bytes_.append(reinterpret_cast<const char*>(&attr), sizeof attr);
  if (size > 0) {
    bytes_.append(static_cast<const char*>(data), size);
  }
  bytes_.resize(NLMSG_ALIGN(bytes_.size()), '\0');
  reinterpret_cast<nlmsghdr*>(bytes_.data())->nlmsg_len = static_cast<uint32_t>(bytes_.size());
}

void Request::putString(uint16_t type, std::string_view text) {
  std::string withNul(text);
  put(type, withNul.c_str(), withNul.size() + 1);
}

size_t Request::beginNest(uint16_t type) {
  size_t at = bytes_.size();
  put(type, nullptr, 0);
  return at;
}

void Request::endNest(size_t at) {
  auto* attr = reinterpret_cast<rtattr*>(bytes_.data() + at);
  attr->rta_len = static_cast<unsigned short>(bytes_.size() - at);
}

void Request::setSeq(uint32_t seq) { reinterpret_cast<nlmsghdr*>(bytes_.data())->nlmsg_seq = seq; }

std::string attrString(const rtattr* a) {
  const char* data = static_cast<const char*>(RTA_DATA(a));
  size_t size = RTA_PAYLOAD(a);
  return std::string(data, ::strnlen(data, size));
}

bool attrU32(const rtattr* a, uint32_t& out) {
  if (RTA_PAYLOAD(a) < sizeof out) {
    return false;
  }
  std::memcpy(&out, RTA_DATA(a), sizeof out);
  return true;
}

void forEachAttr(const void* data, int size, const std::function<void(const rtattr*)>& each) {
  int left = size;
  for (auto* a = static_cast<const rtattr*>(data); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    each(a);
  }
}

int errorOf(const nlmsghdr* h) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
    return EPROTO;
  }
  return -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
}

std::string ipStyleError(const nlmsghdr* h) {
  int error = errorOf(h);
  // The kernel's reason comes after the error and the request it answers (only that request's
  // header when the ack is capped) as attributes, NLMSGERR_ATTR_MSG among them.
  if ((h->nlmsg_flags & NLM_F_ACK_TLVS) && h->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr))) {
    const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
    size_t offset = sizeof(nlmsgerr);
    if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
      offset += err->msg.nlmsg_len >= NLMSG_HDRLEN ? err->msg.nlmsg_len - NLMSG_HDRLEN : 0;
    }
    size_t payload = h->nlmsg_len - NLMSG_HDRLEN;
    if (offset < payload) {
      std::string message;
      forEachAttr(static_cast<const char*>(NLMSG_DATA(h)) + offset,
                  static_cast<int>(payload - offset), [&](const rtattr* a) {
                    if (a->rta_type == NLMSGERR_ATTR_MSG) {
                      message = attrString(a);
                    }
                  });
      if (!message.empty()) {
        return "Error: " + message + (message.back() == '.' ? "" : ".");
      }
    }
  }
  return std::string("RTNETLINK answers: ") + std::strerror(error);
}

}  // namespace hyper::netmodel::rtnl
