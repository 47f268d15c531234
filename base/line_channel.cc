#include "base/line_channel.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/text_escape.h"

namespace hyper {

Status LineChannel::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      HYPER_ASSIGN_OR_RETURN(bool writable, waitFor(POLLOUT, deadline_));
      if (!writable) {
        return Status::error("the peer takes nothing more on the channel (timed out)");
      }
      continue;
    }
    return Status::error(std::string("write to the channel <- ") + std::strerror(errno));
  }
  return Status::ok();
}

Result<std::optional<std::string>> LineChannel::readLine(Clock::time_point until) {
  until = std::min(until, deadline_);
  while (true) {
    if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      return std::optional<std::string>(std::move(line));
    }
    if (buffer_.size() > maxLine_) {
      return Status::error("the guest sent a line longer than " + std::to_string(maxLine_) +
                           " bytes: " + quotedExcerpt(buffer_));
    }
    HYPER_ASSIGN_OR_RETURN(bool readable, waitFor(POLLIN, until));
    if (!readable) {
      return std::optional<std::string>();  // the caller says what was missing
    }
    char chunk[4096];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n == 0) {
      return Status::error("the channel was closed (the VM exited?)");
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
        continue;
      }
      return Status::error(std::string("read the channel <- ") + std::strerror(errno));
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<bool> LineChannel::waitFor(short events, Clock::time_point until) {
  while (true) {
    if (cancelled()) {
      return Status::error(cancelMessage_);
    }
    auto now = Clock::now();
    if (now >= until) {
      return false;
    }
    auto slice = std::min<Clock::duration>(until - now, std::chrono::milliseconds(100));
    pollfd p{fd_.get(), events, 0};
    int r = ::poll(
        &p, 1,
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(slice).count() + 1));
    if (r > 0) {
      return true;  // readable, writable, or hung up: the read or write says which
    }
    if (r < 0 && errno != EINTR) {
      return Status::error(std::string("poll the channel <- ") + std::strerror(errno));
    }
  }
}

}  // namespace hyper
