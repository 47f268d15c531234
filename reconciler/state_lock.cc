#include "reconciler/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "reconciler/state_dir.h"

namespace hyper {

namespace {

std::string errnoText() { return std::strerror(errno); }

// "pid=123 purpose=hyperctl apply" -> "pid 123, hyperctl apply". The file is written by another
// process (possibly an older hyper), so anything unexpected degrades to "holder unknown".
std::string describeHolder(const std::string& content) {
  std::string line = content.substr(0, content.find('\n'));
  std::string pid;
  std::string purpose;
  if (line.rfind("pid=", 0) == 0) {
    size_t end = line.find(' ');
    pid = line.substr(4, end == std::string::npos ? std::string::npos : end - 4);
    size_t p = line.find("purpose=");
    if (p != std::string::npos) {
      purpose = line.substr(p + 8);
    }
  }
  if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) {
    return "holder unknown";
  }
  return purpose.empty() ? "pid " + pid : "pid " + pid + ", " + purpose;
}

std::string readAll(int fd) {
  std::string out;
  char buf[512];
  off_t offset = 0;
  while (out.size() < 4096) {
    ssize_t n = ::pread(fd, buf, sizeof buf, offset);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    offset += n;
  }
  return out;
}

Status writeAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Status::error("write: " + errnoText());
    }
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<StateLock>> StateLock::acquire(const std::string& stateDir,
                                                      const std::string& purpose) {
  const std::string context = "lock state directory " + stateDir;
  HYPER_RETURN_IF_ERROR(ensureStateDirectory(stateDir).withContext(context));
  const std::string path = stateDir + "/lock";
  // O_CLOEXEC: processes hyper starts (QEMU, builds) must not inherit the lock and keep holding
  // it after hyper exits.
  // O_NOFOLLOW: a symlink planted as the lock would have hyper truncate and write its target.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 && errno == ELOOP) {
    return Status::error(context + " <- " + path +
                         " is a symbolic link; refused (expected a regular file or none)");
  }
  if (fd < 0) {
    return Status::error(context + " <- open " + path + ": " + errnoText());
  }
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) {
      continue;
    }
    if (errno == EWOULDBLOCK) {
      std::string holder = describeHolder(readAll(fd));
      ::close(fd);
      return Status::error("state directory " + stateDir + " is locked by another writer (" +
                           holder + "); two writers are never interleaved — wait for it to finish");
    }
    Status s = Status::error(context + " <- flock " + path + ": " + errnoText());
    ::close(fd);
    return s;
  }
  std::unique_ptr<StateLock> lock(new StateLock(fd));
  // If the holder cannot be recorded the directory is unwritable (full disk, read-only mount), and
  // the inventory beside it would fail next: better to say so before anything runs.
  if (::ftruncate(fd, 0) != 0) {
    return Status::error(context + " <- truncate " + path + ": " + errnoText());
  }
  std::string oneLine = purpose;
  std::replace(oneLine.begin(), oneLine.end(), '\n', ' ');
  std::string info = "pid=" + std::to_string(::getpid()) + " purpose=" + oneLine + "\n";
  HYPER_RETURN_IF_ERROR(writeAll(fd, info).withContext(context + " <- record holder in " + path));
  return lock;
}

StateLock::~StateLock() {
  if (fd_ >= 0) {
    // Clear the holder while still holding the lock, so nobody reads a stale pid; the kernel
    // releases the flock when the descriptor closes.
    (void)::ftruncate(fd_, 0);
    ::close(fd_);
  }
}

}  // namespace hyper
