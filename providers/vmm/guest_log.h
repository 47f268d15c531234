#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace hyper::providers::vmm {

// What a guest writes (serial console, virtio-serial channels) lands in files in its run dir,
// written by the VMM itself. A guest can write without end, so hyper bounds what it keeps and
// what it buffers:
// - rotateLog() keeps a log under a cap: past it, the newest `maxBytes` are copied to PATH.1
//   (the one old file kept) and PATH is truncated. The VMM opened PATH with O_APPEND
//   (append=on), so it goes on writing at the new end. Observe calls it for every running VM;
//   between two calls a log can outgrow the cap by what the guest writes meanwhile.
// - LineSplitter hands out whole lines and keeps at most kMaxPartialLineBytes of a line that has
//   not ended yet (its tail: readiness is matched at a line's end).

constexpr uint64_t kDefaultLogMaxBytes = 8ull * 1024 * 1024;
constexpr size_t kMaxPartialLineBytes = 64 * 1024;

// Rotates `path` when it is larger than `maxBytes` (copy-truncate, see above). Returns true when
// it rotated. A missing file is not an error.
Result<bool> rotateLog(const std::string& path, uint64_t maxBytes);

class LineSplitter {
 public:
  explicit LineSplitter(size_t maxPartial = kMaxPartialLineBytes) : maxPartial_(maxPartial) {}
  // Calls `onLine` for every line completed by `data` (without its '\n'); stops early and returns
  // true when `onLine` returns true.
  bool feed(std::string_view data, const std::function<bool(std::string_view)>& onLine);
  size_t partialSize() const { return partial_.size(); }
  void reset() { partial_.clear(); }

 private:
  size_t maxPartial_;
  std::string partial_;
};

// True when the log at `path`, or the rotated PATH.1 before it, has `line` as a whole line (a
// trailing '\r' ignored). Reads in chunks: memory stays bounded whatever the guest wrote.
bool logHasLine(const std::string& path, const std::string& line);

}  // namespace hyper::providers::vmm
