#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/status.h"
#include "reconciler/directory_archive.h"

namespace hyper {

// Where the loader reads file sources (KindRecord::fileSources) from: the directory or the git
// commit the manifests were read from, so that a file source is of the same revision as the
// manifest that names it. One per revision; read() is called from the loading thread only.
class SourceTree {
 public:
  virtual ~SourceTree() = default;

  // What read() found: the bytes, or why it refused (a refusal is a value, an I/O failure an
  // error).
  struct File {
    enum class Refusal {
      None,
      Missing,   // no such entry (`at`)
      Symlink,   // `at` is a symlink
      NotAFile,  // `at` is not a regular file (or, on the way, not a directory): `detail` says
      TooBig,    // over maxBytes: `size`; nothing was read
      TooMany,   // readDirectory: over maxEntries (`detail` "entries") or maxDepth ("levels")
    };
    Refusal refusal = Refusal::None;
    std::string at;      // for a refusal: the entry refused, relative to `dir` ("web")
    std::string detail;  // NotAFile: what it is ("a directory", "a FIFO", "not a directory")
    size_t size = 0;     // TooBig: the size found
    std::string bytes;
  };

  // The regular file `path` below `dir`. `dir` is a manifest's directory as SourceFile::path
  // names the manifest ("" for the top; it is where the manifest reader found the manifest, so
  // it is taken as it is). `path` is relative to it and checked (checkSourcePath: no "..", ".",
  // empty segment, not absolute). Below `dir`, no entry may be a symlink, every one but the last
  // must be a directory and the last a regular file of at most `maxBytes`, which is never read
  // past the limit.
  virtual Result<File> read(const std::string& dir, const std::string& path,
                            size_t maxBytes) const = 0;

  // The directory `path` below `dir`, whole, as a directory archive (directory_archive.h) in
  // File::bytes: every entry below it, none followed (a symlink is an entry with its target).
  // The way there is checked as read() checks it, and the last entry must be a directory
  // (NotAFile, detail "a file", otherwise). Refused at the entry where a limit is passed
  // (TooBig: maxBytes of contents; TooMany: maxEntries or maxDepth) or that is neither a file,
  // a directory nor a symlink (NotAFile: a FIFO, a device, a git submodule); `at` is then
  // relative to `dir` like read()'s.
  virtual Result<File> readDirectory(const std::string& dir, const std::string& path,
                                     const ArchiveLimits& limits) const = 0;
};

// A file source's place in its tree: `dir`/`path`, as diagnostics show it.
std::string joinSourcePath(const std::string& dir, const std::string& path);

// Files on disk, for `hyperctl -f` and the directory source. Each `dir` is taken below `base`
// ("" = as given: relative to the working directory, or absolute) and opened as it is; below it,
// every entry is opened with openat(O_NOFOLLOW) one at a time, and the last one is looked at
// (lstat) before it is opened, so a FIFO or a device is refused without being opened.
class DirectoryTree : public SourceTree {
 public:
  // `onRead`, when set, is called with joinSourcePath(dir, path) of every read, refused or not
  // (the directory source watches those files).
  explicit DirectoryTree(std::string base,
                         std::function<void(const std::string&)> onRead = nullptr);
  Result<File> read(const std::string& dir, const std::string& path,
                    size_t maxBytes) const override;
  Result<File> readDirectory(const std::string& dir, const std::string& path,
                             const ArchiveLimits& limits) const override;

 private:
  // Opens `path` below `dir` one entry at a time (a directory when `directory`, else a regular
  // file): an invalid Fd with the refusal in `out` when one is refused. `top` is set to the
  // directory `dir` was opened as, for messages.
  Result<Fd> walk(const std::string& dir, const std::string& path, bool directory, File& out,
                  std::string& top) const;

  std::string base_;
  std::function<void(const std::string&)> onRead_;
};

// Wraps a tree and keeps every outcome it gave, refusals included, by joinSourcePath(dir, path)
// (a directory's with a "/" after it):
// what `hyperctl diff` sends to hyperd with the manifests, since hyperd cannot read this
// machine's files.
class RecordingTree : public SourceTree {
 public:
  explicit RecordingTree(const SourceTree& inner) : inner_(inner) {}
  Result<File> read(const std::string& dir, const std::string& path,
                    size_t maxBytes) const override;
  Result<File> readDirectory(const std::string& dir, const std::string& path,
                             const ArchiveLimits& limits) const override;
  const std::map<std::string, File>& reads() const { return reads_; }

 private:
  const SourceTree& inner_;
  mutable std::map<std::string, File> reads_;
};

// What another tree read (a RecordingTree's reads, sent by hyperctl to hyperd), by
// joinSourcePath(dir, path); refusals are given back as they were, a file not there is missing.
// A directory's archive is checked (decodeDirectoryArchive, within the limits) before it is
// given back: it came from another process.
class MemoryTree : public SourceTree {
 public:
  explicit MemoryTree(std::map<std::string, File> files) : files_(std::move(files)) {}
  Result<File> read(const std::string& dir, const std::string& path,
                    size_t maxBytes) const override;
  Result<File> readDirectory(const std::string& dir, const std::string& path,
                             const ArchiveLimits& limits) const override;

 private:
  std::map<std::string, File> files_;
};

// One read outcome as JSON, for POST /v1/plan's "sources": {"path", "base64"} for bytes,
// {"path", "refusal": "missing"|"symlink"|"not-a-file"|"too-big"|"too-many", "at", "detail",
// "size"}
// otherwise. fromJson's error says what was expected.
nlohmann::json sourceReadToJson(const std::string& path, const SourceTree::File& file);
Result<std::pair<std::string, SourceTree::File>> sourceReadFromJson(const nlohmann::json& j);

}  // namespace hyper
