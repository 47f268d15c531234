#pragma once

#include <memory>
#include <string>

#include "base/status.h"

namespace hyper {

// An exclusive, non-blocking lock on a state directory (flock on <stateDir>/lock), so two writers
// (two `hyperctl apply`, or hyperctl and hyperd) are refused with a clear message instead of
// interleaving. The lock file records the holder's pid and purpose for that message. Released by
// the destructor, and by the kernel if the process dies.
class StateLock {
 public:
  static Result<std::unique_ptr<StateLock>> acquire(const std::string& stateDir,
                                                    const std::string& purpose);
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace hyper
