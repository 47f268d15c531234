#include "hyperd/http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

namespace hyper::controller {

namespace {

using SteadyClock = std::chrono::steady_clock;

// How long one write may wait for the client to take data (an SSE follower that stopped reading).
constexpr std::chrono::milliseconds kWriteTimeout{5000};

int msUntil(SteadyClock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 60 * 60 * 1000));
}

// 1: ready, 0: timed out, -1: error.
int pollFor(int fd, short events, int timeoutMs) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, timeoutMs);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return -1;
    }
    return n == 0 ? 0 : 1;
  }
}

void addressOf(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) {
    return;
  }
  char host[NI_MAXHOST];
  char serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(serv);
  }
}

// One accepted connection as cpp-httplib's Stream, with a deadline and a byte budget for the
// request being read. Reads past either fail, which makes process_request give up on the
// request; the connection is then closed.
class ConnectionStream : public httplib::Stream {
 public:
  ConnectionStream(int fd, const HttpLimits& limits, const std::atomic<socket_t>& listener)
      : fd_(fd), limits_(limits), listener_(listener) {}

  // Waits for the next request of a keep-alive connection: true when bytes (or end-of-stream)
  // are there, false after the idle limit or when the server stops.
  bool waitForRequest() const {
    return pos_ < len_ || waitReadable(SteadyClock::now() + limits_.keepAliveIdle) > 0;
  }

  void startRequest() {
    deadline_ = SteadyClock::now() + limits_.requestTimeout;
    consumed_ = 0;
    budget_ = limits_.headerBytes;
  }
  void allowBody(uint64_t bytes) { budget_ = consumed_ + bytes; }
  void closeAfterResponse() { close_ = true; }

  // The request ran out of time or bytes, or a handler asked: no further request is read.
  bool mustClose() const { return close_ || expired_ || overBudget_; }
  bool refused() const { return close_; }

  // Half-closes and drops what the client still sends for at most `limit`: a client that is
  // still sending a body we refused then reads our answer instead of a connection reset.
  void linger(std::chrono::milliseconds limit) {
    ::shutdown(fd_, SHUT_WR);
    auto deadline = SteadyClock::now() + limit;
    char scratch[4096];
    while (pollFor(fd_, POLLIN, msUntil(deadline)) > 0) {
      ssize_t n = ::recv(fd_, scratch, sizeof scratch, 0);
      if (n <= 0) {
        break;
      }
    }
  }

  bool is_readable() const override { return pos_ < len_ || waitReadable(deadline_) > 0; }

  bool is_writable() const override {
    if (pollFor(fd_, POLLOUT, static_cast<int>(kWriteTimeout.count())) <= 0) {
      return false;
    }
    // Writable, but has the client gone? A readable socket with nothing to peek is closed.
    if (pollFor(fd_, POLLIN, 0) == 0) {
      return true;
    }
    char byte;
    return ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (consumed_ >= budget_) {
      overBudget_ = true;
      return -1;
    }
    size = static_cast<size_t>(std::min<uint64_t>(size, budget_ - consumed_));
    if (pos_ == len_) {
      int ready = waitReadable(deadline_);
      if (ready == 0) {
        expired_ = true;
        return -1;
      }
      if (ready < 0) {
        return -1;
      }
      ssize_t n = ::recv(fd_, buffer_, sizeof buffer_, 0);
      if (n <= 0) {
        return n < 0 ? -1 : 0;
      }
      pos_ = 0;
      len_ = static_cast<size_t>(n);
    }
    size_t n = std::min(size, len_ - pos_);
    std::memcpy(ptr, buffer_ + pos_, n);
    pos_ += n;
    consumed_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (pollFor(fd_, POLLOUT, static_cast<int>(kWriteTimeout.count())) <= 0) {
      return -1;
    }
    ssize_t n;
    do {
      n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    addressOf(fd_, /*peer=*/true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    addressOf(fd_, /*peer=*/false, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  // Like pollFor(POLLIN) until `deadline`, but gives up (0) as soon as the server stops, so
  // that a half-sent request does not hold up the shutdown.
  int waitReadable(SteadyClock::time_point deadline) const {
    while (listener_ != INVALID_SOCKET) {
      int left = msUntil(deadline);
      int n = pollFor(fd_, POLLIN, std::min(left, 100));
      if (n != 0 || left == 0) {
        return n;
      }
    }
    return 0;
  }

  int fd_;
  const HttpLimits& limits_;
  const std::atomic<socket_t>& listener_;
  SteadyClock::time_point deadline_ = SteadyClock::now();
  uint64_t consumed_ = 0;
  uint64_t budget_ = 0;
  bool expired_ = false;
  bool overBudget_ = false;
  bool close_ = false;
  // Bytes received and not yet handed to the parser (cpp-httplib reads headers a byte at a time).
  char buffer_[4096];
  size_t pos_ = 0;
  size_t len_ = 0;
};

// The connection this thread serves: handlers (admitBody, closeAfterResponse) run on the thread
// that reads the request.
thread_local ConnectionStream* tlsConnection = nullptr;

void refuse(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_header("Connection", "close");
  res.set_content(nlohmann::json{{"error", message}}.dump(2) + "\n", "application/json");
  if (tlsConnection != nullptr) {
    tlsConnection->closeAfterResponse();
  }
}

bool methodCarriesBody(const std::string& method) {
  // The methods whose body cpp-httplib reads (detail::expect_content).
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE" ||
         method == "PRI";
}

// Content-Length as the one decimal number HTTP allows; nullopt for anything else.
std::optional<uint64_t> parseContentLength(const std::string& v) {
  if (v.empty() || v.size() > 18 ||
      !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::stoull(v);
}

std::string trimmed(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) {
    return "";
  }
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

}  // namespace

HttpServer::HttpServer(HttpLimits limits)
    : limits_(limits), longHeld_(std::make_shared<std::atomic<size_t>>(0)) {
  limits_.keepAliveRequests = std::max<size_t>(limits_.keepAliveRequests, 1);
  const size_t threads = limits_.longRequests + std::max<size_t>(limits_.reserveThreads, 1);
  new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // What cpp-httplib announces in its Keep-Alive header; our own loop enforces both.
  set_keep_alive_max_count(limits_.keepAliveRequests);
  set_keep_alive_timeout(std::max<time_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(limits_.keepAliveIdle).count()));
  // The listening socket: cpp-httplib's defaults (SO_REUSEADDR), and close-on-exec. cpp-httplib
  // creates it with plain socket(); a child spawned in between is covered by host::runCommand
  // closing every descriptor it was not given.
  set_socket_options([](socket_t sock) {
    httplib::default_socket_options(sock);
    ::fcntl(sock, F_SETFD, FD_CLOEXEC);
  });
}

HttpServer::~HttpServer() = default;

bool HttpServer::admitBody(const httplib::Request& req, httplib::Response& res, size_t cap) const {
  const std::string what = req.method + " " + req.path;
  const size_t lengths = req.get_header_value_count("Content-Length");
  if (!methodCarriesBody(req.method)) {
    // cpp-httplib does not read a GET's body: it would be parsed as the next request.
    std::string length = req.get_header_value("Content-Length");
    if (req.has_header("Transfer-Encoding") || lengths > 1 || (!length.empty() && length != "0")) {
      refuse(res, 400, what + ": this request takes no body");
      return false;
    }
    return true;
  }
  if (req.has_header("Transfer-Encoding")) {
    refuse(res, 411,
           what + ": send the body with a Content-Length (Transfer-Encoding \"" +
               req.get_header_value("Transfer-Encoding") + "\" is not accepted)");
    return false;
  }
  if (lengths == 0) {
    refuse(res, 411, what + ": a Content-Length header is required");
    return false;
  }
  if (lengths > 1) {
    refuse(res, 400, what + ": more than one Content-Length header");
    return false;
  }
  auto length = parseContentLength(req.get_header_value("Content-Length"));
  if (!length) {
    refuse(res, 400, what + ": Content-Length must be a decimal number of bytes");
    return false;
  }
  for (size_t i = 0; i < req.get_header_value_count("Content-Encoding"); ++i) {
    std::string encoding = trimmed(req.get_header_value("Content-Encoding", i));
    if (!encoding.empty() && strcasecmp(encoding.c_str(), "identity") != 0) {
      refuse(res, 415,
             what + ": Content-Encoding \"" + encoding +
                 "\" is not accepted; send the body uncompressed");
      return false;
    }
  }
  if (*length > cap) {
    refuse(res, 413,
           what + ": a body of " + std::to_string(*length) + " bytes is over the limit of " +
               std::to_string(cap) + " bytes");
    return false;
  }
  if (tlsConnection != nullptr) {
    tlsConnection->allowBody(*length);
  }
  return true;
}

void HttpServer::closeAfterResponse() {
  if (tlsConnection != nullptr) {
    tlsConnection->closeAfterResponse();
  }
}

std::shared_ptr<void> HttpServer::holdLongRequest() {
  auto held = longHeld_;
  size_t now = held->load();
  do {
    if (now >= limits_.longRequests) {
      return nullptr;
    }
  } while (!held->compare_exchange_weak(now, now + 1));
  // Not null (callers test it), and deletes nothing: the deleter only gives the slot back.
  return std::shared_ptr<void>(held.get(), [held](void*) { held->fetch_sub(1); });
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  // cpp-httplib accepts without SOCK_CLOEXEC: from here no child inherits the connection (one
  // spawned in the instant before is covered by host::runCommand closing what it was not given).
  ::fcntl(sock, F_SETFD, FD_CLOEXEC);
  ConnectionStream connection(sock, limits_, svr_sock_);
  tlsConnection = &connection;
  bool ok = false;
  for (size_t served = 0; served < limits_.keepAliveRequests; ++served) {
    if (!connection.waitForRequest()) {
      break;
    }
    connection.startRequest();
    bool closed = false;
    ok = process_request(connection, served + 1 == limits_.keepAliveRequests, closed, nullptr);
    if (!ok || closed || connection.mustClose()) {
      break;
    }
  }
  if (connection.refused()) {
    connection.linger(limits_.lingerAfterRefusal);
  }
  tlsConnection = nullptr;
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace hyper::controller
