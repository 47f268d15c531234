#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/fd.h"

namespace hyper {

Result<std::string> readFile(const std::string& path, size_t maxBytes, Symlinks symlinks) {
  int flags = O_RDONLY | O_CLOEXEC | (symlinks == Symlinks::Refuse ? O_NOFOLLOW : 0);
  Fd fd(::open(path.c_str(), flags));
  if (!fd.valid() && errno == ELOOP && symlinks == Symlinks::Refuse) {
    return Status::error("read " + path +
                         ": is a symbolic link; refused (expected a regular file)");
  }
  if (!fd.valid()) {
    return Status::error("read " + path + " <- " + std::strerror(errno));
  }
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Status::error("read " + path + " <- " + std::strerror(errno));
    }
    if (n == 0) {
      return out;
    }
    if (static_cast<size_t>(n) > maxBytes - out.size()) {
      return Status::error("read " + path + ": larger than " + std::to_string(maxBytes) + " bytes");
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

Status writeFileAtomically(const std::string& path, std::string_view bytes, mode_t mode,
                           const std::function<void()>& beforeRename) {
  std::filesystem::path target(path);
  std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string stalePrefix = target.filename().string() + ".tmp.";
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind(stalePrefix, 0) == 0) {
      std::error_code ignored;
      std::filesystem::remove(it->path(), ignored);
    }
  }
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd.valid()) {
    return Status::error("open " + tmp + " <- " + std::strerror(errno));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return Status::error("write " + tmp + " <- " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), mode) != 0 || ::fsync(fd.get()) != 0 || ::close(fd.release()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::error("fsync " + tmp + " <- " + std::strerror(err));
  }
  if (beforeRename) {
    beforeRename();
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::error("rename " + tmp + " to " + path + " <- " + std::strerror(err));
  }
  return Status::ok();
}

RemoveTreeOnExit::~RemoveTreeOnExit() {
  if (!path_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
}

std::string siblingOfSelf(const std::string& name) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) {
    return "";
  }
  const std::filesystem::path sibling = self.parent_path() / name;
  return std::filesystem::is_regular_file(sibling, ec) ? sibling.string() : "";
}

}  // namespace hyper
