#include "providers/vmm/exit_watcher.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace hyper::providers::vmm {

Result<int> openPidfd(pid_t pid) {
  // glibc 2.36 has pidfd_open(), but the raw syscall keeps older toolchains building.
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) {
    return Status::error("pidfd_open " + std::to_string(pid) + ": " + std::strerror(errno));
  }
  // pidfds are close-on-exec by the kernel's definition.
  return static_cast<int>(fd);
}

Result<std::unique_ptr<ExitWatcher>> ExitWatcher::create(Callback callback) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    return Status::error(std::string("epoll_create1: ") + std::strerror(errno));
  }
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    Status s = Status::error(std::string("eventfd: ") + std::strerror(errno));
    ::close(ep);
    return s;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) != 0) {
    Status s = Status::error(std::string("epoll_ctl: ") + std::strerror(errno));
    ::close(wake);
    ::close(ep);
    return s;
  }
  return std::unique_ptr<ExitWatcher>(new ExitWatcher(ep, wake, std::move(callback)));
}

ExitWatcher::ExitWatcher(int epollFd, int wakeFd, Callback callback)
    : epollFd_(epollFd), wakeFd_(wakeFd), callback_(std::move(callback)) {
  thread_ = std::thread([this] { run(); });
}

ExitWatcher::~ExitWatcher() {
  uint64_t one = 1;
  (void)!::write(wakeFd_, &one, sizeof one);
  thread_.join();
  for (auto& [key, w] : watches_) {
    ::close(w.pidfd);
  }
  ::close(wakeFd_);
  ::close(epollFd_);
}

Status ExitWatcher::watch(const std::string& key, pid_t pid) {
  HYPER_ASSIGN_OR_RETURN(int pidfd, openPidfd(pid));
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = watches_.find(key); it != watches_.end()) {
    ::epoll_ctl(epollFd_, EPOLL_CTL_DEL, it->second.pidfd, nullptr);
    ::close(it->second.pidfd);
    watches_.erase(it);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;  // a pidfd becomes readable when the process exits
  ev.data.fd = pidfd;
  if (::epoll_ctl(epollFd_, EPOLL_CTL_ADD, pidfd, &ev) != 0) {
    Status s = Status::error("watch " + key + " <- epoll_ctl: " + std::strerror(errno));
    ::close(pidfd);
    return s;
  }
  watches_[key] = Watch{pidfd, pid};
  return Status::ok();
}

void ExitWatcher::unwatch(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watches_.find(key);
  if (it == watches_.end()) {
    return;
  }
  ::epoll_ctl(epollFd_, EPOLL_CTL_DEL, it->second.pidfd, nullptr);
  ::close(it->second.pidfd);
  watches_.erase(it);
}

void ExitWatcher::run() {
  std::vector<epoll_event> events(16);
  for (;;) {
    int n = ::epoll_wait(epollFd_, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;  // only EBADF/EINVAL: our own fd is broken; nothing better to do than stop
    }
    std::vector<std::pair<std::string, pid_t>> exited;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.fd == wakeFd_) {
          return;
        }
        for (auto it = watches_.begin(); it != watches_.end(); ++it) {
          if (it->second.pidfd == events[i].data.fd) {
            exited.emplace_back(it->first, it->second.pid);
            ::epoll_ctl(epollFd_, EPOLL_CTL_DEL, it->second.pidfd, nullptr);
            ::close(it->second.pidfd);
            watches_.erase(it);
            break;
          }
        }
      }
    }
    // Outside the lock, so a callback may call watch() again (a restarted VM).
    for (const auto& [key, pid] : exited) {
      callback_(key, pid);
    }
  }
}

}  // namespace hyper::providers::vmm
