#include "host/nft.h"

#include <arpa/inet.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

namespace hyper::host {

namespace {

std::mutex& nftMutex() {
  static std::mutex mu;
  return mu;
}

struct ContextDeleter {
  void operator()(nft_ctx* ctx) const { nft_ctx_free(ctx); }
};
using Context = std::unique_ptr<nft_ctx, ContextDeleter>;

// The first non-empty line of nft's error buffer, or `fallback`.
std::string firstLine(const char* text, const std::string& fallback) {
  std::string all = text ? text : "";
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\n', start);
    if (end == std::string::npos) {
      end = all.size();
    }
    if (end > start) {
      return all.substr(start, end - start);
    }
    start = end + 1;
  }
  return fallback;
}

// Runs `commands` in a fresh context; `out` gets the output buffer when not null.
Status run(const std::string& what, const std::string& commands, bool json, std::string* out) {
  std::lock_guard<std::mutex> lock(nftMutex());
  Context ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx) {
    return Status::error(what + " <- libnftables could not make a context");
  }
  if (json) {
    nft_ctx_output_set_flags(ctx.get(), NFT_CTX_OUTPUT_JSON);
  }
  if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0) {
    return Status::error(what + " <- libnftables could not buffer its output");
  }
  int rc = nft_run_cmd_from_buffer(ctx.get(), commands.c_str());
  if (rc != 0) {
    return Status::error(what + " <- " +
                         firstLine(nft_ctx_get_error_buffer(ctx.get()),
                                   "failed (status " + std::to_string(rc) + ")"));
  }
  if (out) {
    const char* text = nft_ctx_get_output_buffer(ctx.get());
    *out = text ? text : "";
  }
  return Status::ok();
}

}  // namespace

Status nftApply(const std::string& commands) {
  return run("nft -f -", commands, /*json=*/false, nullptr);
}

Result<NftGeneration> nftGeneration() {
  const std::string what = "nftables generation (NFT_MSG_GETGEN)";
  struct stat ns {};
  if (::stat("/proc/thread-self/ns/net", &ns) != 0) {
    return Status::error(what + " <- /proc/thread-self/ns/net: " + std::strerror(errno));
  }
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) {
    return Status::error(what + " <- netlink socket: " + std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval timeout{2, 0};  // the kernel answers at once; never hang a reconcile on it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  struct {
    nlmsghdr header;
    nfgenmsg body;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.header.nlmsg_seq = 1;
  request.body.nfgen_family = AF_UNSPEC;
  request.body.version = NFNETLINK_V0;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &request, sizeof request, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    return Status::error(what + " <- send: " + std::strerror(errno));
  }
  alignas(nlmsghdr) char buffer[8192];
  ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
  if (n < 0) {
    return Status::error(what + " <- receive: " + std::strerror(errno));
  }
  // The answer is bounded by the buffer and walked with the netlink macros' own bounds checks.
  int left = static_cast<int>(n);
  for (auto* h = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
        break;
      }
      int error = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
      return Status::error(what + " <- " + std::strerror(error));
    }
    if (h->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN) ||
        h->nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg))) {
      continue;
    }
    const char* at = static_cast<const char*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(nfgenmsg));
    const char* end = reinterpret_cast<const char*>(h) + h->nlmsg_len;
    while (end - at >= static_cast<ptrdiff_t>(sizeof(nlattr))) {
      const auto* a = reinterpret_cast<const nlattr*>(at);
      if (a->nla_len < sizeof(nlattr) || a->nla_len > end - at) {
        break;
      }
      if ((a->nla_type & NLA_TYPE_MASK) == NFTA_GEN_ID && a->nla_len >= NLA_HDRLEN + 4) {
        uint32_t id;
        std::memcpy(&id, at + NLA_HDRLEN, sizeof id);
        return NftGeneration{static_cast<uint64_t>(ns.st_ino), ntohl(id)};
      }
      at += NLA_ALIGN(a->nla_len);
    }
  }
  return Status::error(what + " <- no generation in the kernel's answer");
}

Result<std::string> nftListRulesetJson() { return nftListJson("list ruleset"); }

Result<std::string> nftListJson(const std::string& command) {
  std::string out;
  HYPER_RETURN_IF_ERROR(run("nft -j " + command, command, /*json=*/true, &out));
  return out;
}

}  // namespace hyper::host
