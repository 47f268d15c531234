#include "base/secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace hyper {

namespace {

constexpr size_t kMaxSecretBytes = 64 * 1024;

std::string octalMode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

Result<SecretValue> readSecretFile(const std::string& path) {
  const std::string op = "read secret file " + path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return Status::error(op + " <- " + std::strerror(errno));
  }
  // Checked on the open file, not the path, so a swap between check and read changes nothing.
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::error(op + " <- " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::error(op + " <- not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return Status::error(op + " <- it has mode " + octalMode(st.st_mode) +
                         ", readable or writable by group or others (expected 0600 or 0400: chmod "
                         "600 " +
                         path + ")");
  }
  if (static_cast<size_t>(st.st_size) > kMaxSecretBytes) {
    ::close(fd);
    return Status::error(op + " <- larger than 64 KiB (expected a short secret)");
  }
  std::string value;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::error(op + " <- " + std::strerror(err));
    }
    if (n == 0) {
      break;
    }
    value.append(buf, static_cast<size_t>(n));
    if (value.size() > kMaxSecretBytes) {
      ::close(fd);
      return Status::error(op + " <- larger than 64 KiB (expected a short secret)");
    }
  }
  ::close(fd);
  if (!value.empty() && value.back() == '\n') {
    value.pop_back();
    if (!value.empty() && value.back() == '\r') {
      value.pop_back();
    }
  }
  if (value.empty()) {
    return Status::error(op + " <- it is empty (expected the secret)");
  }
  return SecretValue(std::move(value));
}

}  // namespace hyper
