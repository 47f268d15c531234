#include "broker/client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "broker/runner.h"

namespace hyper::broker {

using Json = nlohmann::json;

Result<int> connectBroker(const std::string& socketPath) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (socketPath.size() >= sizeof addr.sun_path) {
    return Status::error("broker socket path " + socketPath + " is too long");
  }
  std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Status::error(std::string("socket: ") + std::strerror(errno));
  }
  if (::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    switch (err) {
      case ENOENT:
        return Status::error("broker socket not found at " + socketPath +
                             " (is hyper-broker running? see --socket and HYPER_BROKER_SOCKET)");
      case ECONNREFUSED:
        return Status::error("cannot connect to the broker at " + socketPath +
                             ": connection refused (is hyper-broker running?)");
      case EACCES:
        return Status::error("cannot connect to the broker at " + socketPath +
                             ": permission denied (is your user in the socket's group?)");
      default:
        return Status::error("cannot connect to the broker at " + socketPath + ": " +
                             std::strerror(err));
    }
  }
  return fd;
}

bool readFrameLine(int fd, std::string& buffer, std::string& line) {
  line.clear();
  while (true) {
    size_t nl = buffer.find('\n');
    if (nl != std::string::npos) {
      line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return true;
    }
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    buffer.append(buf, static_cast<size_t>(n));
  }
}

Result<Json> adminRequest(const std::string& socketPath, const std::string& action) {
  HYPER_ASSIGN_OR_RETURN(int fd, connectBroker(socketPath));
  std::string request = Json{{"admin", action}}.dump() + "\n";
  if (!sendAll(fd, request)) {
    ::close(fd);
    return Status::error("send to the broker at " + socketPath + ": " + std::strerror(errno));
  }
  std::string buffer, line;
  Result<Json> result = Status::error("invalid response from the broker: no rules report");
  while (readFrameLine(fd, buffer, line)) {
    Json frame = Json::parse(line, nullptr, false);
    if (frame.is_discarded() || !frame.is_object()) {
      result = Status::error("invalid response from the broker: not JSON");
      break;
    }
    if (frame.value("type", "") == "error") {
      result = Status::error("broker: " + frame.value("message", std::string("(no message)")));
      break;
    }
    if (frame.value("type", "") == "rules") {
      result = frame;
      break;
    }
  }
  ::close(fd);
  return result;
}

}  // namespace hyper::broker
