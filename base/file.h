#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace hyper {

// Whole-file helpers shared by every room. Errors name the path and the cause
// ("read /x <- No such file or directory").

// How readFile treats a symbolic link at `path`.
enum class Symlinks {
  Follow,  // open what it points to
  Refuse,  // O_NOFOLLOW: an error that says a link was planted where a regular file was expected
};

// Reads `path` whole. More than `maxBytes` is an error (the file is not read past the limit).
Result<std::string> readFile(const std::string& path, size_t maxBytes = SIZE_MAX,
                             Symlinks symlinks = Symlinks::Follow);

// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never a part:
// writes `<path>.tmp.<pid>` with `mode`, fsyncs it, renames it over `path`. Temporary files that
// an earlier process left (killed between write and rename) are removed first. `beforeRename`,
// when set, runs between fsync and rename (a crash point).
Status writeFileAtomically(const std::string& path, std::string_view bytes, mode_t mode = 0644,
                           const std::function<void()>& beforeRename = {});

// Removes a directory tree (a scratch directory) when it goes out of scope; nothing when `path`
// is empty. Errors are ignored: what is left is a leftover for gc, never a failure.
class RemoveTreeOnExit {
 public:
  explicit RemoveTreeOnExit(std::string path = "") : path_(std::move(path)) {}
  ~RemoveTreeOnExit();
  RemoveTreeOnExit(const RemoveTreeOnExit&) = delete;
  RemoveTreeOnExit& operator=(const RemoveTreeOnExit&) = delete;
  void reset(std::string path) { path_ = std::move(path); }

 private:
  std::string path_;
};

// `name` in the directory of the running program (/proc/self/exe), where hyper's programs are
// built and installed side by side; "" when there is no such file.
std::string siblingOfSelf(const std::string& name);

}  // namespace hyper
