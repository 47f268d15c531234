#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "reconciler/status.h"

namespace hyper {

// Creates the state directory and any missing parents, each mode 0700: the state holds the
// inventory and the lock, which only the controller's user may read. An existing directory is
// left as the operator made it.
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
  return Status::ok();
}

}  // namespace hyper
