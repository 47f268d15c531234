#include "providers/vmm/qmp_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hyper::providers::vmm {

namespace {

using Clock = std::chrono::steady_clock;

int millisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

Result<std::unique_ptr<QmpClient>> QmpClient::connect(const std::string& socketPath,
                                                      Millis timeout) {
  const std::string what = "connect QMP " + socketPath;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socketPath.size() >= sizeof addr.sun_path) {
    return Status::error(what + " <- path longer than " + std::to_string(sizeof addr.sun_path - 1) +
                         " bytes");
  }
  std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return Status::error(what + " <- " + errnoText("socket"));
  }
  // A Unix stream connect completes or fails at once (EAGAIN when the backlog is full).
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Status s = Status::error(what + " <- " + errnoText("connect"));
    ::close(fd);
    return s;
  }
  std::unique_ptr<QmpClient> client(new QmpClient(fd, socketPath));
  auto deadline = Clock::now() + timeout;
  auto greeting = client->readMessage(deadline);
  if (!greeting.isOk()) {
    return greeting.status().withContext(what + " <- read greeting");
  }
  if (!greeting->contains("QMP")) {
    return Status::error(what + " <- not a QMP greeting: " + greeting->dump());
  }
  client->greeting_ = std::move(*greeting);
  auto caps = client->execute("qmp_capabilities", Json(), timeout);
  if (!caps.isOk()) {
    return caps.status().withContext(what);
  }
  return client;
}

QmpClient::~QmpClient() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Status QmpClient::writeAll(const std::string& data, Clock::time_point deadline) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w < 0 && errno != EAGAIN) {
      return Status::error(errnoText("send"));
    }
    pollfd p{fd_, POLLOUT, 0};
    int rc = ::poll(&p, 1, millisLeft(deadline));
    if (rc == 0) {
      return Status::error("send: timed out");
    }
    if (rc < 0 && errno != EINTR) {
      return Status::error(errnoText("poll"));
    }
  }
  return Status::ok();
}

Result<QmpClient::Json> QmpClient::readMessage(Clock::time_point deadline) {
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        continue;
      }
      Json msg = Json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (msg.is_discarded() || !msg.is_object()) {
        return Status::error("bad QMP message: " + line.substr(0, 200));
      }
      return msg;
    }
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, millisLeft(deadline));
    if (rc == 0) {
      return Status::error("timed out waiting for QEMU");
    }
    if (rc < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Status::error(errnoText("poll"));
    }
    char buf[8192];
    ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
    if (r == 0) {
      return Status::error("QEMU closed the QMP connection");
    }
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      return Status::error(errnoText("recv"));
    }
    buffer_.append(buf, static_cast<size_t>(r));
  }
}

Result<QmpClient::Json> QmpClient::execute(const std::string& command, const Json& arguments,
                                           Millis timeout) {
  const std::string what = "QMP " + command;
  auto deadline = Clock::now() + timeout;
  long id = nextId_++;
  Json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) {
    request["arguments"] = arguments;
  }
  HYPER_RETURN_IF_ERROR(writeAll(request.dump() + "\n", deadline).withContext(what));
  for (;;) {
    auto msg = readMessage(deadline);
    if (!msg.isOk()) {
      return msg.status().withContext(what);
    }
    if (msg->contains("event")) {
      events_.push_back(std::move(*msg));
      continue;
    }
    auto idIt = msg->find("id");
    if (idIt == msg->end() || *idIt != id) {
      continue;  // a reply to an earlier command that timed out
    }
    if (auto err = msg->find("error"); err != msg->end()) {
      std::string cls = err->is_object() ? err->value("class", "") : "";
      std::string desc = err->is_object() ? err->value("desc", "") : err->dump();
      return Status::error(what + " <- " + cls + ": " + desc);
    }
    if (auto ret = msg->find("return"); ret != msg->end()) {
      return *ret;
    }
    return Status::error(what + " <- reply without return or error: " + msg->dump());
  }
}

Result<QmpClient::Json> QmpClient::waitEvent(const std::string& name, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    while (eventsConsumed_ < events_.size()) {
      const Json& e = events_[eventsConsumed_++];
      if (e.value("event", "") == name) {
        return e;
      }
    }
    auto msg = readMessage(deadline);
    if (!msg.isOk()) {
      return msg.status().withContext("wait for QMP event " + name);
    }
    if (msg->contains("event")) {
      events_.push_back(std::move(*msg));
    }
  }
}

}  // namespace hyper::providers::vmm
