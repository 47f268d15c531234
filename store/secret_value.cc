#include "store/secret_value.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace hyper::store {

Result<SecretBytes> readHostSecretFile(const std::string& path) {
  // O_NOFOLLOW: a symlink is refused, never followed; the checks are made on what was opened.
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    return Status::error(path + ": " +
                         (err == ELOOP ? std::string("is a symlink (expected a regular file)")
                                       : std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::error(path + ": not a regular file (expected a file of root's, mode 0600)");
  }
  if (st.st_uid != 0 || (st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::error(path + ": owner uid " + std::to_string(st.st_uid) + ", mode " + mode +
                         ": expected a file owned by root that only its owner can read (mode "
                         "0600 or 0400)");
  }
  if (static_cast<size_t>(st.st_size) > kMaxSecretValueBytes) {
    ::close(fd);
    return Status::error(path + ": " + std::to_string(st.st_size) + " bytes: expected at most " +
                         std::to_string(kMaxSecretValueBytes));
  }
  auto out = SecretBytes::zeroed(kMaxSecretValueBytes + 1);
  if (!out.isOk()) {
    ::close(fd);
    return out.status();
  }
  size_t got = 0;
  while (got <= kMaxSecretValueBytes) {
    ssize_t n = ::read(fd, out->data() + got, kMaxSecretValueBytes + 1 - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got > kMaxSecretValueBytes) {
    return Status::error(path + ": grew past " + std::to_string(kMaxSecretValueBytes) +
                         " bytes while read");
  }
  return SecretBytes::copyOf(out->view().substr(0, got));
}

Result<SecretBytes> openSecretValue(const KeyRing& ring, const std::string& secretName,
                                    const nlohmann::json& spec, const std::string& key) {
  auto entry = [&](const char* section) -> const nlohmann::json* {
    if (!spec.is_object()) {
      return nullptr;
    }
    auto s = spec.find(section);
    if (s == spec.end() || !s->is_object()) {
      return nullptr;
    }
    auto v = s->find(key);
    return v != s->end() && v->is_string() ? &*v : nullptr;
  };
  const std::string where = "Secret/" + secretName + " spec.";
  if (const nlohmann::json* sealed = entry("sealed")) {
    auto opened = ring.open(sealed->get<std::string>(), {"Secret", secretName, key});
    if (!opened.isOk()) {
      return opened.status().withContext(where + "sealed." + key);
    }
    return opened;
  }
  if (const nlohmann::json* path = entry("fromFile")) {
    auto read = readHostSecretFile(path->get<std::string>());
    if (!read.isOk()) {
      return read.status().withContext(where + "fromFile." + key);
    }
    return read;
  }
  return Status::error("Secret/" + secretName + " has no value \"" + key +
                       "\": expected a key of its spec.sealed or spec.fromFile");
}

namespace {

// What tells a rotation apart: the active pointer's inode and modification time.
std::string activeStamp(const std::string& stateDir) {
  struct stat st {};
  const std::string active = stateDir + "/keys/seal/active";
  if (::stat(active.c_str(), &st) != 0) {
    return "";
  }
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

Result<const KeyRing*> KeyRingCache::get() {
  if (stateDir_.empty()) {
    return Status::error("no state directory: Secrets are opened with the host's key ring");
  }
  std::string stamp = activeStamp(stateDir_);
  if (!ring_ || stamp.empty() || stamp != stamp_) {
    auto loaded = KeyRing::loadOrCreate(stateDir_);
    if (!loaded.isOk()) {
      return loaded.status();
    }
    ring_ = std::make_unique<KeyRing>(std::move(*loaded));
    stamp_ = activeStamp(stateDir_);
  }
  return ring_.get();
}

}  // namespace hyper::store
