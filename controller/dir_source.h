#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "controller/source.h"

namespace hyper::controller {

// Manifests in a local directory, watched with inotify.
//
// fetch() reads every manifest under <location>/<path> (readManifestFiles: *.yaml, *.yml, *.json,
// hidden entries skipped, sorted); SourceFile.path is relative to <location>, so a diagnostic
// reads "envs/host1/net.yaml:3:5". The revision is "dir:" + the first 16 hex digits of sha256
// over the sorted (path, sha256(content)) pairs — the same formula as ManifestLoader, so the two
// agree on the revision of the same files.
//
// The watch covers <location>/<path> and every non-hidden directory below it; directories created
// or moved in later are added as their events arrive. Events on hidden names (".x", ".#x",
// ".x.swp") and editor backups ("x~", "x.swp") are drained but not relevant; neither are files
// that are not manifests. When inotify cannot be used (no instance or watch left) the source
// degrades to polling: wakeFd() is -1 and changed() is always true.
class DirSource : public Source {
 public:
  static Result<std::unique_ptr<DirSource>> open(const SourceSpec& spec);
  ~DirSource() override;
  DirSource(const DirSource&) = delete;
  DirSource& operator=(const DirSource&) = delete;

  std::string describe() const override;
  // True on the first call, and until a fetch() succeeds after a relevant event. Drains pending
  // events itself (without waiting), so a caller that only polls needs no drainWake().
  Result<bool> changed() override;
  Result<Snapshot> fetch() override;
  int wakeFd() const override { return inotifyFd_; }
  // Reads every queued event without blocking; true if one was relevant. Adds watches for new
  // directories.
  bool drainWake() override;

 private:
  DirSource(std::string location, std::string path);

  // Re-walks the tree and makes the watch set exactly its non-hidden directories (after a
  // directory move, a queue overflow, or a lost root watch).
  void rescanWatches();
  // Watches `dir` (relative to root_, "" = root) and its non-hidden subdirectories.
  void watchTree(const std::string& dir, std::map<int, std::string>& into);

  std::string location_;  // as given, for describe()
  std::string base_;      // normalised location: SourceFile paths are relative to it
  std::string root_;      // base_/path: what is read and watched
  std::string path_;
  int inotifyFd_ = -1;
  std::map<int, std::string> watches_;  // watch descriptor -> directory relative to root_
  bool dirty_ = true;                   // a relevant change since the last successful fetch
  bool rescan_ = false;
};

// The debounce for a directory source's wake fd: drains events until no relevant one has come
// for `quiet`, or `max` has passed since the call, and returns whether any relevant event was
// seen (including ones already pending when called). Returns false at once when the source has
// no wake fd.
bool waitQuiet(Source& source, std::chrono::milliseconds quiet, std::chrono::milliseconds max);

}  // namespace hyper::controller
