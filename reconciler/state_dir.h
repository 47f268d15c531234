#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/status.h"

namespace hyper {

// Refuses a directory that holds hyper's state or runtime files (state dir, VM run root, broker
// dirs) when another user owns it or when group or others may write it: whoever can write there
// can swap the inventory, the lock, the token or a VM's sockets. `what` names it in the message,
// which says what was found and what is expected.
inline Status checkPrivateDirectory(const std::string& dir, const std::string& what) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return Status::error(what + " " + dir + " <- stat: " + std::strerror(errno));
  }
  const uid_t me = ::geteuid();
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if (st.st_uid != me) {
    return Status::error(what + " " + dir + " is owned by uid " + std::to_string(st.st_uid) +
                         " (mode " + mode + "); expected owned by uid " + std::to_string(me) +
                         ", the user running hyper, and not writable by group or others");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return Status::error(what + " " + dir + " has mode " + mode +
                         ", writable by group or others; expected no group or other write "
                         "(chmod go-w " +
                         dir + ", or 0700)");
  }
  return Status::ok();
}

// Creates the state directory and any missing parents, each mode 0700: the state holds the
// inventory and the lock, which only the controller's user may read. An existing directory is
// left as the operator made it, but refused when it is not private (checkPrivateDirectory).
inline Status ensureStateDirectory(const std::string& dir) {
  if (dir.empty()) {
    return Status::error("state directory is empty");
  }
  for (size_t pos = 1;; ++pos) {
    pos = dir.find('/', pos);
    std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::error("create state directory " + dir + " <- mkdir " + prefix + ": " +
                           std::strerror(errno));
    }
    if (pos == std::string::npos) {
      break;
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return Status::error("create state directory " + dir + " <- stat: " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::error("create state directory " + dir + " <- exists and is not a directory");
  }
  return checkPrivateDirectory(dir, "state directory");
}

}  // namespace hyper
