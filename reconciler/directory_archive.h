#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace hyper {

// A directory of the manifests' tree, whole, as one byte string: what a directory source
// (KindRecord::directorySources, like a script Build's `source: {path: app}`) is read into, so
// that it travels and is digested like a file source (Object::files, POST /v1/plan's "sources")
// and the same content gives the same bytes whether it came from a directory or a git commit.
//
// The format: the line "hyper-directory-archive 1\n", then one record per entry in increasing
// byte order of its path, each "<type> <path bytes> <content bytes>\n<path><content>" with type
// d (a directory: no content), f (a file), x (an executable file) or l (a symlink: its target).
// Paths are relative to the directory (checkSourcePath: no "..", ".", empty segment, NUL); every
// entry's parent is a directory entry before it. Owners, modes beyond x and times are not kept.
struct ArchiveEntry {
  enum class Type { Directory, File, Executable, Symlink };
  std::string path;
  Type type = Type::File;
  std::string content;  // a file's bytes, a symlink's target; empty for a directory
};

// What decodeDirectoryArchive accepts: the archive comes from a tree hyper read, or from a
// local caller over the API (hostile), and is checked whole before anything is made from it.
struct ArchiveLimits {
  size_t maxEntries = 10000;
  size_t maxBytes = size_t{64} << 20;  // the contents, all together
  size_t maxDepth = 64;                // levels of directories below the top ("a/b" is 2)
};

// The archive of `entries`, sorted by path (the caller gives each once, parents included).
std::string encodeDirectoryArchive(std::vector<ArchiveEntry> entries);

// The entries of an archive, checked: the header, every record's syntax and type, its path, its
// order, its parent, a symlink's target (1 to 4095 bytes, no NUL) and the limits. The error
// says which record (by number and, once its path is read, by path) and what was expected.
Result<std::vector<ArchiveEntry>> decodeDirectoryArchive(std::string_view bytes,
                                                         const ArchiveLimits& limits = {});

// Writes decoded entries below the existing, empty directory `root`: directories 0755, files
// 0644, executables 0755, symlinks as they are (never followed: every entry is created with
// O_EXCL / mkdirat / symlinkat relative to its parent's descriptor).
Status writeDirectoryArchive(const std::vector<ArchiveEntry>& entries, const std::string& root);

// The number of files (f and x) and their bytes, for a build's log.
struct ArchiveSummary {
  size_t files = 0;
  size_t bytes = 0;
};
ArchiveSummary summarizeDirectoryArchive(const std::vector<ArchiveEntry>& entries);

}  // namespace hyper
