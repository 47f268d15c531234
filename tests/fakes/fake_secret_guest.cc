#include "tests/fakes/fake_secret_guest.h"

#include <thread>

#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/sha256.h"

namespace hyper::test {

FakeSecretGuest::FakeSecretGuest(std::string socketPath, std::vector<std::string> grantedIds)
    : path_(std::move(socketPath)), ids_(std::move(grantedIds)) {}

FakeSecretGuest::~FakeSecretGuest() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
  if (listenFd_ >= 0) {
    ::close(listenFd_);
    ::unlink(path_.c_str());
  }
}

void FakeSecretGuest::start() {
  listenFd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
  ::unlink(path_.c_str());
  if (::bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listenFd_, 4) != 0) {
    ::close(listenFd_);
    listenFd_ = -1;
    return;
  }
  thread_ = std::thread([this] { serve(); });
}

std::map<std::string, std::string> FakeSecretGuest::stored() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stored_;
}

int FakeSecretGuest::valuesReceived() const {
  std::lock_guard<std::mutex> lk(mu_);
  return values_;
}

std::vector<std::string> FakeSecretGuest::controlLines() const {
  std::lock_guard<std::mutex> lk(mu_);
  return control_;
}

void FakeSecretGuest::serve() {
  while (!stop_) {
    pollfd p{listenFd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) {
      continue;
    }
    int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      handle(fd);
      ::close(fd);
    }
  }
}

void FakeSecretGuest::handle(int fd) {
  auto say = [fd](const std::string& line) {
    std::string out = line + "\n";
    (void)::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
  };
  std::string buffer;
  int hellos = 0;
  for (auto until = std::chrono::steady_clock::now() + readDelay;
       !stop_ && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  while (!stop_) {
    size_t nl = buffer.find('\n');
    if (nl == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) {
        continue;
      }
      char chunk[4096];
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) {
        return;  // the host went: wait for the next connection
      }
      buffer.append(chunk, static_cast<size_t>(n));
      continue;
    }
    std::string line = buffer.substr(0, nl);
    buffer.erase(0, nl + 1);
    // verb token id rest
    std::string words[3];
    size_t at = 0;
    for (auto& w : words) {
      size_t sp = at == std::string::npos ? std::string::npos : line.find(' ', at);
      w = at == std::string::npos ? "" : line.substr(at, sp == std::string::npos ? sp : sp - at);
      at = sp == std::string::npos ? std::string::npos : sp + 1;
    }
    const std::string& verb = words[0];
    const std::string& token = words[1];
    if (verb != "value") {
      std::lock_guard<std::mutex> lk(mu_);
      control_.push_back(line);
    }
    if (silent) {
      continue;
    }
    if (verb == "hello") {
      if (hellos++ < ignoreHellos) {
        continue;
      }
      if (endlessLine) {
        const std::string junk(4096, 'x');  // and never a newline
        for (int i = 0; i < 4 && !stop_; ++i) {
          (void)::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
        }
        continue;
      }
      if (!floodLine.empty()) {
        for (int i = 0; i < 10000 && !stop_; ++i) {
          say(floodLine);
        }
        continue;
      }
      for (const auto& id : ids_) {
        std::lock_guard<std::mutex> lk(mu_);
        if (stored_.count(id) == 0) {
          say("get " + token + " " + id);
        }
      }
      for (const auto& id : extraGets) {
        say("get " + token + " " + id);
      }
    } else if (verb == "value") {
      const std::string& id = words[2];
      std::string b64 = at == std::string::npos ? "" : line.substr(at);
      std::string value(b64.size(), '\0');
      size_t len = 0;
      if (sodium_base642bin(reinterpret_cast<unsigned char*>(value.data()), value.size(),
                            b64.data(), b64.size(), nullptr, &len, nullptr,
                            sodium_base64_VARIANT_ORIGINAL) != 0) {
        say("failed " + token + " " + id + " bad-base64");
        continue;
      }
      value.resize(len);
      {
        std::lock_guard<std::mutex> lk(mu_);
        ++values_;
      }
      if (!failReason.empty()) {
        say("failed " + token + " " + id + " " + failReason);
        continue;
      }
      {
        std::lock_guard<std::mutex> lk(mu_);
        stored_[id] = value;
      }
      if (!lateLine.empty()) {
        say(lateLine);  // as if left from an earlier session
      }
      say("stored " + token + " " + id + " " +
          (wrongHash ? sha256Hex(value + "x") : sha256Hex(value)));
    }
  }
}

}  // namespace hyper::test
