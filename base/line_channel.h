#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/status.h"

namespace hyper {

// Lines over a connected stream socket to a peer that is not trusted (a guest's virtio-serial
// channel): every read bounded in time (the session's deadline, and `until` per call) and in size
// (`maxLine`), and a cancel flag looked at every 100 ms at most. The secrets channel and the
// builder channel speak through it.
class LineChannel {
 public:
  using Clock = std::chrono::steady_clock;

  LineChannel(Fd fd, Clock::time_point deadline, const std::atomic<bool>* cancel, size_t maxLine,
              std::string cancelMessage)
      : fd_(std::move(fd)),
        deadline_(deadline),
        cancel_(cancel),
        maxLine_(maxLine),
        cancelMessage_(std::move(cancelMessage)) {}

  // All of `bytes`, waiting for room until the deadline.
  Status send(std::string_view bytes);
  // The next line (without "\n" or "\r\n"), or nullopt when none is complete by `until` (never
  // past the deadline). An error when the peer closed, a line is longer than maxLine (quoting a
  // short excerpt of it), or the cancel flag is set (cancelMessage).
  Result<std::optional<std::string>> readLine(Clock::time_point until);

  bool cancelled() const { return cancel_ != nullptr && cancel_->load(); }
  Clock::time_point deadline() const { return deadline_; }

 private:
  // True when ready, false at `until`, an error on cancel.
  Result<bool> waitFor(short events, Clock::time_point until);

  Fd fd_;
  Clock::time_point deadline_;
  const std::atomic<bool>* cancel_;
  size_t maxLine_;
  std::string cancelMessage_;
  std::string buffer_;
};

}  // namespace hyper
