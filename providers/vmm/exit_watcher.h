#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.h"

namespace hyper::providers::vmm {

// Tells when processes exit, without polling: one pidfd per process (pidfd_open works for
// processes that are not our children, such as a daemonized QEMU adopted after a restart) in an
// epoll set, watched by one thread. The callback runs on that thread, once per watched process,
// with the key it was added under; it must be quick (mark the host dirty, signal a waiter).
class ExitWatcher {
 public:
  using Callback = std::function<void(const std::string& key, pid_t pid)>;

  static Result<std::unique_ptr<ExitWatcher>> create(Callback callback);
  ~ExitWatcher();  // stops the thread; no callback runs after it returns
  ExitWatcher(const ExitWatcher&) = delete;
  ExitWatcher& operator=(const ExitWatcher&) = delete;

  // Watches `pid` under `key` (a VM name), replacing an earlier watch of the key. A process that
  // has already exited is reported at once. Error when the pid does not exist.
  Status watch(const std::string& key, pid_t pid);
  // Stops watching the key (no callback for it afterwards); unknown keys are ignored.
  void unwatch(const std::string& key);

 private:
  ExitWatcher(int epollFd, int wakeFd, Callback callback);
  void run();

  int epollFd_ = -1;
  int wakeFd_ = -1;  // eventfd: wakes the thread to stop
  Callback callback_;
  std::mutex mu_;
  struct Watch {
    int pidfd = -1;
    pid_t pid = 0;
  };
  std::map<std::string, Watch> watches_;  // guarded by mu_
  std::thread thread_;
};

// A pidfd for `pid` (close-on-exec), or an error naming the pid.
Result<int> openPidfd(pid_t pid);

}  // namespace hyper::providers::vmm
