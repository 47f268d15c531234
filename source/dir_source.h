#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "source/source.h"

namespace hyper::controller {

// Manifests in a local directory, watched with inotify.
//
// fetch() reads every manifest under <location>/<path> (readManifestFiles: *.yaml, *.yml, *.json,
// hidden entries skipped, sorted); SourceFile.path is relative to <location>, so a diagnostic
// reads "envs/host1/net.yaml:3:5". The revision is "dir:" + the first 16 hex digits of sha256
// over the sorted (path, sha256(content)) pairs — the same formula as ManifestLoader, so the two
// agree on the revision of the same files.
//
// The snapshot's tree reads file sources below each manifest's directory (DirectoryTree over
// <location>), and the loader names the revision (Snapshot::revisionFromLoader): the manifests'
// hash above, with the file sources' digests added when there are any.
//
// The watch covers <location>/<path> and every non-hidden directory below it; directories created
// or moved in later are added as their events arrive. Events on hidden names (".x", ".#x",
// ".x.swp") and editor backups ("x~", "x.swp") are drained but not relevant; neither are files
// that are not manifests, unless a load of one of the last two fetches read them as file sources
// (or tried to: a missing one appearing is a change); those are relevant, whatever their name,
// and waited for while written like manifests. A hidden directory on the path of such a file
// source (".config/app.conf") is watched too. When inotify cannot be used (no instance or watch
// left) the source degrades to polling: wakeFd() is -1 and changed() is always true.
//
// What fetch() refuses (a source error: the loop keeps the last good revision in force):
//  - a root that is missing, not a directory or unreadable, and a root with no manifest file at
//    all (an unmounted volume or a wrong path is not "delete everything"; a manifest file that
//    holds no document is a revision with no objects, which hyperd holds for approval);
//  - a symlink that leads out of the root (readManifestFiles); links inside it are followed;
//  - a manifest file being written: one modified (IN_MODIFY) or newly created (IN_CREATE) whose
//    IN_CLOSE_WRITE has not come yet is waited for up to `settle` (SourceSpec), then reported as
//    "being written"; a write that starts while the tree is read makes it read again, once.
//    Files moved into place (IN_MOVED_TO) are complete. Without inotify, a manifest whose size
//    is not what was read, or a manifest or file source (of the last load) whose mtime is within
//    `settle`, is waited for and read again.
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

  // Waits up to settle_ for the files in writing_ to be closed; the first one still open, or "".
  std::string waitForWriters();
  // After reading `files`: the path of one that may have been written meanwhile (a new IN_MODIFY;
  // without inotify, a size or mtime that moved within settle_), or "" when all are settled.
  std::string settledOrSuspect(const std::vector<SourceFile>& files);

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
  std::set<std::string> writing_;  // manifests (relative to root_) modified and not yet closed
  // The files that loads through the trees of the last two fetches read as file sources
  // (relative to base_, as SourceFile::path). Filled by the loader's thread through the tree.
  struct SourceReads {
    std::mutex mu;
    std::set<std::string> paths;
  };
  bool isReadSource(const std::string& rel) const;  // `rel` relative to root_
  // `rel` (relative to root_) is a read file source or a directory on the path to one.
  bool isOnReadPath(const std::string& rel) const;
  // The read file sources (relative to root_) of the last two loads.
  std::vector<std::string> readSources() const;
  // Watches the hidden directories on the paths of the read file sources (watchTree skips hidden
  // names), when the reads changed since the last call or `force`.
  void watchReadDirs(bool force = false);
  size_t readsWatched_ = 0;
  const SourceReads* readsWatchedOf_ = nullptr;
  std::shared_ptr<SourceReads> reads_ = std::make_shared<SourceReads>();
  std::shared_ptr<SourceReads> previousReads_ = std::make_shared<SourceReads>();
  std::chrono::milliseconds settle_{2000};
};

// The debounce for a directory source's wake fd: drains events until no relevant one has come
// for `quiet`, or `max` has passed since the call, and returns whether any relevant event was
// seen (including ones already pending when called). Returns false at once when the source has
// no wake fd.
bool waitQuiet(Source& source, std::chrono::milliseconds quiet, std::chrono::milliseconds max);

}  // namespace hyper::controller
