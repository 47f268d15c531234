#include "providers/vmm/guest_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"

namespace hyper::providers::vmm {

Result<bool> rotateLog(const std::string& path, uint64_t maxBytes) {
  const std::string what = "rotate " + path;
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (in.get() < 0) {
    if (errno == ENOENT) {
      return false;
    }
    return Status::error(what + " <- open: " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) {
    return Status::error(what + " <- fstat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) <= maxBytes) {
    return false;
  }
  const std::string old = path + ".1";
  const std::string tmp = old + ".tmp";
  ::unlink(tmp.c_str());
  Fd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (out.get() < 0) {
    return Status::error(what + " <- create " + tmp + ": " + std::strerror(errno));
  }
  // The newest maxBytes only: the old file is bounded by the cap too.
  off_t from = st.st_size - static_cast<off_t>(maxBytes);
  char buf[64 * 1024];
  for (off_t left = static_cast<off_t>(maxBytes); left > 0;) {
    ssize_t n = ::pread(in.get(), buf, std::min<off_t>(left, sizeof buf), from);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      ::unlink(tmp.c_str());
      return Status::error(what + " <- read: " + std::strerror(errno));
    }
    if (n == 0) {
      break;
    }
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out.get(), buf + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w < 0) {
        ::unlink(tmp.c_str());
        return Status::error(what + " <- write " + tmp + ": " + std::strerror(errno));
      }
      done += w;
    }
    from += n;
    left -= n;
  }
  if (::rename(tmp.c_str(), old.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Status::error(what + " <- rename to " + old + ": " + std::strerror(errno));
  }
  if (::truncate(path.c_str(), 0) != 0) {
    return Status::error(what + " <- truncate: " + std::strerror(errno));
  }
  return true;
}

bool LineSplitter::feed(std::string_view data,
                        const std::function<bool(std::string_view)>& onLine) {
  while (!data.empty()) {
    size_t nl = data.find('\n');
    if (nl == std::string_view::npos) {
      partial_.append(data);
      if (partial_.size() > maxPartial_) {
        partial_.erase(0, partial_.size() - maxPartial_);
      }
      return false;
    }
    bool done = false;
    if (partial_.empty()) {
      done = onLine(data.substr(0, nl));
    } else {
      partial_.append(data.substr(0, nl));
      if (partial_.size() > maxPartial_) {
        partial_.erase(0, partial_.size() - maxPartial_);
      }
      done = onLine(partial_);
      partial_.clear();
    }
    if (done) {
      return true;
    }
    data.remove_prefix(nl + 1);
  }
  return false;
}

namespace {

bool fileHasLine(const std::string& path, const std::string& line) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) {
    return false;
  }
  LineSplitter lines;
  auto match = [&](std::string_view l) {
    if (!l.empty() && l.back() == '\r') {
      l.remove_suffix(1);
    }
    return l == line;
  };
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    if (lines.feed(std::string_view(buf, static_cast<size_t>(n)), match)) {
      return true;
    }
  }
}

}  // namespace

bool logHasLine(const std::string& path, const std::string& line) {
  return fileHasLine(path, line) || fileHasLine(path + ".1", line);
}

}  // namespace hyper::providers::vmm
