// A directory archive as hyperd reads one from POST /v1/plan's "sources" (a local caller's
// bytes: reconciler/directory_archive.h, MemoryTree::readDirectory). Invariants: no crash, no
// hang; what decodes keeps the limits, has checked paths in increasing order, each entry's
// parent a directory before it, and encodes back to the very bytes it was decoded from.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "reconciler/directory_archive.h"
#include "reconciler/file_sources.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  hyper::ArchiveLimits limits;
  limits.maxEntries = 64;
  limits.maxBytes = 4096;
  limits.maxDepth = 8;
  auto entries = hyper::decodeDirectoryArchive(bytes, limits);
  if (!entries.isOk()) {
    FUZZ_CHECK(!entries.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(entries->size() <= limits.maxEntries);
  std::set<std::string> directories;
  size_t total = 0;
  for (size_t i = 0; i < entries->size(); ++i) {
    const hyper::ArchiveEntry& e = (*entries)[i];
    FUZZ_CHECK(hyper::checkSourcePath(e.path).empty());
    FUZZ_CHECK(i == 0 || (*entries)[i - 1].path < e.path);
    const size_t slash = e.path.rfind('/');
    FUZZ_CHECK(slash == std::string::npos || directories.count(e.path.substr(0, slash)) == 1);
    if (e.type == hyper::ArchiveEntry::Type::Directory) {
      FUZZ_CHECK(e.content.empty());
      directories.insert(e.path);
    }
    if (e.type == hyper::ArchiveEntry::Type::Symlink) {
      FUZZ_CHECK(!e.content.empty() && e.content.find('\0') == std::string::npos);
    }
    total += e.content.size();
  }
  FUZZ_CHECK(total <= limits.maxBytes);
  FUZZ_CHECK(hyper::encodeDirectoryArchive(*entries) == bytes);
  return 0;
}
