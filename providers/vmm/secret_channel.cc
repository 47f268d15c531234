#include "providers/vmm/secret_channel.h"

#include <sodium.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "base/fd.h"
#include "base/line_channel.h"
#include "base/sha256.h"
#include "base/text_escape.h"

namespace hyper::providers::vmm {

namespace {

using Clock = LineChannel::Clock;

// What the guest said, for an error: escaped and cut short (it is not trusted).
std::string quoted(std::string_view text) { return quotedExcerpt(text, 80); }

std::string millis(Clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// "value <token> <id> <base64 of value>\n", built in locked memory: the only copy of the value
// besides the caller's.
Result<store::SecretBytes> valueLine(const std::string& token, const SecretGrant& grant) {
  const std::string head = "value " + token + " " + grant.id + " ";
  const size_t b64 =
      sodium_base64_ENCODED_LEN(grant.value.size(), sodium_base64_VARIANT_ORIGINAL);  // with NUL
  auto line = store::SecretBytes::zeroed(head.size() + b64);
  if (!line.isOk()) {
    return line.status();
  }
  std::memcpy(line->data(), head.data(), head.size());
  sodium_bin2base64(line->data() + head.size(), b64,
                    reinterpret_cast<const unsigned char*>(grant.value.view().data()),
                    grant.value.size(), sodium_base64_VARIANT_ORIGINAL);
  line->data()[line->size() - 1] = '\n';  // in place of the NUL
  return line;
}

}  // namespace

Result<Fd> connectChannelSocket(const std::string& path, Clock::time_point deadline,
                                const std::atomic<bool>* cancel) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return Status::error(path + " is too long for a Unix socket path");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  while (true) {
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) {
      return Status::error(std::string("socket <- ") + std::strerror(errno));
    }
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return fd;
    }
    int err = errno;
    if ((err != ENOENT && err != ECONNREFUSED && err != EAGAIN) || Clock::now() >= deadline ||
        (cancel != nullptr && cancel->load())) {
      return Status::error("connect " + path + " <- " + std::strerror(err));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Status deliverSecrets(const std::string& socketPath, const std::vector<SecretGrant>& grants,
                      DeliveryMode mode, std::chrono::milliseconds timeout,
                      const std::atomic<bool>* cancel, std::vector<std::string>* stored) {
  if (grants.empty()) {
    return Status::ok();
  }
  const auto deadline = Clock::now() + timeout;
  HYPER_ASSIGN_OR_RETURN(Fd fd, connectChannelSocket(socketPath, deadline, cancel));
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return deliverSecretsOn(fd.release(), grants, mode, std::max(left, std::chrono::milliseconds(0)),
                          cancel, stored);
}

Status deliverSecretsOn(int rawFd, const std::vector<SecretGrant>& grants, DeliveryMode mode,
                        std::chrono::milliseconds timeout, const std::atomic<bool>* cancel,
                        std::vector<std::string>* stored, std::string token) {
  Fd fd(rawFd);
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  std::map<std::string, const SecretGrant*> granted;
  for (const auto& g : grants) {
    granted[g.id] = &g;
  }
  std::map<std::string, bool> pending;  // id -> its value was sent
  for (const auto& g : grants) {
    pending[g.id] = false;
  }
  if (pending.empty()) {
    return Status::ok();
  }
  LineChannel session(std::move(fd), deadline, cancel, kMaxGuestLine,
                      "stopped delivering: hyperd is stopping");
  if (token.empty()) {
    unsigned char random[8];
    randombytes_buf(random, sizeof random);
    char hex[2 * sizeof random + 1];
    token = sodium_bin2hex(hex, sizeof hex, random, sizeof random);
  }

  auto sendValue = [&](const SecretGrant& g) -> Status {
    HYPER_ASSIGN_OR_RETURN(store::SecretBytes line, valueLine(token, g));
    HYPER_RETURN_IF_ERROR(session.send(line.view()).withContext("send " + g.id));
    pending[g.id] = true;
    return Status::ok();
  };
  if (mode == DeliveryMode::Push) {
    for (const auto& g : grants) {
      HYPER_RETURN_IF_ERROR(sendValue(g));
    }
  }

  // A guest that floods the channel is cut off: it has no reason to say more than a few lines per
  // value (a get, a stored, late lines of an earlier session), plus a get per value for each
  // hello sent (a guest slow to read its open port answers every queued hello at once).
  const size_t maxLines = 16 + 8 * grants.size();
  size_t hellos = 0;
  size_t lines = 0;
  bool heard = mode == DeliveryMode::Push;
  auto nextHello = Clock::now();
  while (!pending.empty()) {
    if (!heard && Clock::now() >= nextHello) {
      HYPER_RETURN_IF_ERROR(session.send("hello " + token + "\n"));
      nextHello = Clock::now() + kHelloEvery;
      ++hellos;
    }
    auto line = session.readLine(heard ? deadline : nextHello);
    if (!line.isOk()) {
      return line.status();
    }
    if (!*line) {
      if (Clock::now() < deadline) {
        continue;
      }
      std::string missing;
      for (const auto& [id, sent] : pending) {
        missing += (missing.empty() ? "" : ", ") + id + (sent ? " (sent, not confirmed)" : "");
      }
      return Status::error(
          (heard
               ? std::string("the guest did not store ")
               : std::string("the guest never answered on its secrets channel; not delivered: ")) +
          missing + " within " + millis(Clock::now() - start));
    }
    if (++lines > maxLines + hellos * grants.size()) {
      return Status::error("the guest sent more than " +
                           std::to_string(maxLines + hellos * grants.size()) +
                           " lines on its secrets channel");
    }
    const std::string& text = **line;
    // verb, token, id, and the rest (a hash, a reason).
    std::string parts[3];
    size_t at = 0;
    for (auto& part : parts) {
      size_t sp = at == std::string::npos ? std::string::npos : text.find(' ', at);
      part = at == std::string::npos ? "" : text.substr(at, sp == std::string::npos ? sp : sp - at);
      at = sp == std::string::npos ? std::string::npos : sp + 1;
    }
    const std::string& verb = parts[0];
    const std::string& id = parts[2];
    const std::string arg = at == std::string::npos ? "" : text.substr(at);
    if (parts[1] != token) {
      continue;  // late: written while no host was connected, or to an earlier session
    }
    heard = true;
    auto g = granted.find(id);
    if (verb == "get") {
      if (g == granted.end()) {
        HYPER_RETURN_IF_ERROR(
            session.send("denied " + token + " " + (id.empty() ? "-" : id) + "\n"));
        continue;
      }
      if (pending.count(id) != 0 && !pending[id]) {  // once a session: asked again, still sent
        HYPER_RETURN_IF_ERROR(sendValue(*g->second));
      }
    } else if (verb == "stored") {
      if (g == granted.end() || pending.count(id) == 0 || !pending[id]) {
        continue;  // not sent, or confirmed already
      }
      if (arg != sha256Hex(g->second->value.view())) {
        return Status::error("the guest stored " + id +
                             " with another content than sent (its SHA-256 differs)");
      }
      pending.erase(id);
      if (stored != nullptr) {
        stored->push_back(id);
      }
    } else if (verb == "failed") {
      return Status::error("the guest could not store " + quoted(id) + ": " + quoted(arg));
    } else {
      return Status::error("unexpected line on the secrets channel: " + quoted(text) +
                           " (expected get, stored or failed)");
    }
  }
  return Status::ok();
}

}  // namespace hyper::providers::vmm
