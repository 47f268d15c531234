#include "source/dir_source.h"

#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>

#include "base/sha256.h"

namespace hyper::controller {
namespace fs = std::filesystem;

namespace {

// IN_MODIFY only tells that a file is being written (writing_); its IN_CLOSE_WRITE is the change.
constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_MODIFY;

bool endsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Hidden entries are skipped by readManifestFiles; editors write "x~" backups and vim "x.swp"
// swap files (usually ".x.swp", hidden anyway) next to what is being edited.
bool isIgnoredName(const std::string& name) {
  return name.empty() || name[0] == '.' || endsWith(name, "~") || endsWith(name, ".swp") ||
         endsWith(name, ".swx");
}

bool isManifestName(const std::string& name) {
  return endsWith(name, ".yaml") || endsWith(name, ".yml") || endsWith(name, ".json");
}

std::string joinPath(const std::string& a, const std::string& b) {
  if (a.empty()) {
    return b;
  }
  if (b.empty()) {
    return a;
  }
  return a + "/" + b;
}

// A file that may still be written: its size is not what was read, or it was modified within
// `settle` (the check when inotify is not there to tell close-write).
bool maybeBeingWritten(const SourceFile& f, std::chrono::milliseconds settle) {
  struct stat st {};
  if (::stat(f.path.c_str(), &st) != 0) {
    return true;
  }
  auto mtime = std::chrono::system_clock::time_point(std::chrono::seconds(st.st_mtim.tv_sec) +
                                                     std::chrono::nanoseconds(st.st_mtim.tv_nsec));
  return static_cast<size_t>(st.st_size) != std::max(f.content.size(), f.unreadBytes) ||
         std::chrono::system_clock::now() - mtime < settle;
}

}  // namespace

DirSource::DirSource(std::string location, std::string path)
    : location_(std::move(location)), path_(std::move(path)) {
  while (!path_.empty() && path_.front() == '/') {
    path_.erase(path_.begin());
  }
  while (!path_.empty() && path_.back() == '/') {
    path_.pop_back();
  }
  fs::path base = fs::path(location_).lexically_normal();
  std::string b = base.string();
  while (b.size() > 1 && b.back() == '/') {
    b.pop_back();
  }
  base_ = b.empty() ? "." : b;
  root_ = path_.empty() ? base_ : (fs::path(base_) / path_).lexically_normal().string();
  while (root_.size() > 1 && root_.back() == '/') {
    root_.pop_back();
  }
}

Result<std::unique_ptr<DirSource>> DirSource::open(const SourceSpec& spec) {
  if (spec.location.empty()) {
    return Status::error("open directory source <- no location given");
  }
  std::unique_ptr<DirSource> source(new DirSource(spec.location, spec.path));
  source->settle_ = spec.settle;
  for (const auto& part : fs::path(source->path_)) {
    if (part == "..") {
      return Status::error("open " + source->describe() + " <- path " + source->path_ +
                           " leaves the directory");
    }
  }
  std::error_code ec;
  if (!fs::is_directory(source->base_, ec)) {
    return Status::error("open " + source->describe() + " <- " + source->base_ +
                         " is not a directory");
  }
  if (spec.poll) {
    return source;
  }
  source->inotifyFd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (source->inotifyFd_ < 0) {
    spdlog::warn("{}: inotify unavailable ({}); polling instead", source->describe(),
                 std::strerror(errno));
    return source;
  }
  // A missing sub-path is not fatal here: fetch() reports it, and changed() stays true until the
  // directory appears and can be watched.
  source->rescanWatches();
  return source;
}

DirSource::~DirSource() {
  if (inotifyFd_ >= 0) {
    ::close(inotifyFd_);
  }
}

std::string DirSource::describe() const {
  return "dir " + location_ + (path_.empty() ? "" : " path " + path_);
}

void DirSource::watchTree(const std::string& dir, std::map<int, std::string>& into) {
  if (inotifyFd_ < 0) {
    return;
  }
  std::string full = joinPath(root_, dir);
  int wd = ::inotify_add_watch(inotifyFd_, full.c_str(), kWatchMask);
  if (wd < 0) {
    int err = errno;
    if (err == ENOSPC || err == ENOMEM) {
      // Out of watches: a partial watch would miss changes silently, so poll instead.
      spdlog::warn("{}: cannot watch {} ({}); polling instead", describe(), full,
                   std::strerror(err));
      ::close(inotifyFd_);
      inotifyFd_ = -1;
      watches_.clear();
      into.clear();
    } else if (err != ENOENT && err != ENOTDIR) {
      spdlog::warn("{}: cannot watch {}: {}", describe(), full, std::strerror(err));
    }
    return;
  }
  // The same descriptor again means the same inode: a directory symlink loop.
  if (!into.emplace(wd, dir).second) {
    return;
  }
  std::error_code ec;
  if (!fs::is_directory(full, ec)) {
    return;
  }
  fs::directory_iterator it(full, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::error_code dirEc;
    if (!name.empty() && name[0] != '.' && it->is_directory(dirEc)) {
      watchTree(joinPath(dir, name), into);
      if (inotifyFd_ < 0) {
        return;
      }
    }
  }
}

void DirSource::rescanWatches() {
  rescan_ = false;
  if (inotifyFd_ < 0) {
    return;
  }
  std::map<int, std::string> next;
  watchTree("", next);
  if (inotifyFd_ < 0) {
    return;
  }
  for (const auto& [wd, dir] : watches_) {
    if (next.find(wd) == next.end()) {
      ::inotify_rm_watch(inotifyFd_, wd);
    }
  }
  watches_ = std::move(next);
  watchReadDirs(/*force=*/true);
}

std::vector<std::string> DirSource::readSources() const {
  std::vector<std::string> out;
  const std::string prefix = path_.empty() ? "" : path_ + "/";
  for (const auto& reads : {reads_, previousReads_}) {
    std::lock_guard<std::mutex> lk(reads->mu);
    for (const auto& p : reads->paths) {
      if (p.compare(0, prefix.size(), prefix) == 0) {
        out.push_back(p.substr(prefix.size()));
      }
    }
  }
  return out;
}

bool DirSource::isOnReadPath(const std::string& rel) const {
  for (const std::string& p : readSources()) {
    if (p == rel ||
        (p.size() > rel.size() && p.compare(0, rel.size(), rel) == 0 && p[rel.size()] == '/')) {
      return true;
    }
  }
  return false;
}

void DirSource::watchReadDirs(bool force) {
  if (inotifyFd_ < 0) {
    return;
  }
  {
    std::lock_guard<std::mutex> lk(reads_->mu);
    if (!force && readsWatchedOf_ == reads_.get() && readsWatched_ == reads_->paths.size()) {
      return;
    }
    readsWatchedOf_ = reads_.get();
    readsWatched_ = reads_->paths.size();
  }
  std::set<std::string> watched;
  for (const auto& [wd, dir] : watches_) {
    watched.insert(dir);
  }
  for (const std::string& rel : readSources()) {
    for (size_t slash = rel.find('/'); slash != std::string::npos;
         slash = rel.find('/', slash + 1)) {
      const std::string dir = rel.substr(0, slash);
      const size_t start = dir.rfind('/') == std::string::npos ? 0 : dir.rfind('/') + 1;
      // A hidden directory: watchTree then watches the non-hidden ones below it.
      std::error_code ec;
      if (dir[start] == '.' && watched.insert(dir).second &&
          fs::is_directory(joinPath(root_, dir), ec)) {
        watchTree(dir, watches_);
        if (inotifyFd_ < 0) {
          return;
        }
      }
    }
  }
}

bool DirSource::drainWake() {
  if (inotifyFd_ < 0) {
    return false;
  }
  watchReadDirs();
  bool relevant = false;
  alignas(struct inotify_event) char buf[16384];
  for (;;) {
    ssize_t n = ::read(inotifyFd_, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno != EAGAIN) {
        spdlog::warn("{}: read inotify: {}", describe(), std::strerror(errno));
        relevant = true;
      }
      break;
    }
    if (n == 0) {
      break;
    }
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const struct inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {
        relevant = true;
        rescan_ = true;
        writing_.clear();  // unknown now; a half-written file is still caught by its mtime
        continue;
      }
      auto watched = watches_.find(ev->wd);
      if (ev->mask & IN_IGNORED) {
        if (watched != watches_.end()) {
          if (watched->second.empty()) {
            rescan_ = true;  // the root itself went away
          }
          watches_.erase(watched);
        }
        continue;
      }
      if (watched == watches_.end()) {
        continue;  // a watch removed by a rescan, with events still queued
      }
      std::string name = ev->len > 0 ? std::string(ev->name) : std::string();
      if (name.empty()) {
        // The watched directory (or the root file) itself was deleted or moved.
        relevant = true;
        if (watched->second.empty()) {
          rescan_ = true;
        }
        continue;
      }
      std::string rel = joinPath(watched->second, name);
      // Hidden names and editor backups are noise, unless a file source is (or lies below) one.
      if (isIgnoredName(name) && !isOnReadPath(rel)) {
        continue;
      }
      bool isDir = (ev->mask & IN_ISDIR) != 0;
      if (!isDir && (ev->mask & (IN_CREATE | IN_MOVED_TO)) && !isManifestName(name)) {
        // A symlink to a directory is read through by readManifestFiles.
        std::error_code ec;
        isDir = fs::is_directory(joinPath(root_, rel), ec);
      }
      if (!isDir && (ev->mask & (IN_DELETE | IN_MOVED_FROM)) && !isManifestName(name)) {
        isDir = std::any_of(watches_.begin(), watches_.end(),
                            [&](const auto& w) { return w.second == rel; });
      }
      if (isDir) {
        relevant = true;
        if (ev->mask & (IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE)) {
          rescan_ = true;  // descriptors below it now carry stale paths
        } else if (ev->mask & IN_CREATE) {
          watchTree(rel, watches_);
          if (inotifyFd_ < 0) {
            return true;
          }
        }
        continue;
      }
      if (isManifestName(name) || isReadSource(rel)) {
        if (ev->mask & IN_MODIFY) {
          writing_.insert(rel);
          continue;  // not a change yet: its close is
        }
        if ((ev->mask & IN_CREATE) && !(ev->mask & IN_ISDIR)) {
          // A new file opened for writing (a link or a symlink is complete when it appears).
          struct stat st {};
          if (::lstat(joinPath(root_, rel).c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
              st.st_nlink == 1 && st.st_size == 0) {
            writing_.insert(rel);
          }
        } else {
          writing_.erase(rel);  // closed, moved, deleted
        }
        relevant = true;
      }
    }
  }
  if (rescan_) {
    rescanWatches();
  }
  if (relevant) {
    dirty_ = true;
  }
  return relevant;
}

Result<bool> DirSource::changed() {
  if (inotifyFd_ < 0) {
    return true;
  }
  drainWake();
  // With the root not watched (missing, or replaced) no event would ever come: poll.
  bool rootWatched =
      std::any_of(watches_.begin(), watches_.end(), [](const auto& w) { return w.second.empty(); });
  return dirty_ || !rootWatched;
}

Result<Snapshot> DirSource::fetch() {
  if (inotifyFd_ >= 0) {
    drainWake();
    bool rootWatched = std::any_of(watches_.begin(), watches_.end(),
                                   [](const auto& w) { return w.second.empty(); });
    if (!rootWatched) {
      rescanWatches();
    }
  }
  std::string open = waitForWriters();
  if (!open.empty()) {
    dirty_ = true;
    return Status::error("fetch " + describe() + " <- " + joinPath(root_, open) +
                         " is being written (not closed after " + std::to_string(settle_.count()) +
                         " ms); not read half-way");
  }
  std::error_code ec;
  auto rootStatus = fs::status(root_, ec);
  if (ec || !fs::exists(rootStatus)) {
    dirty_ = true;
    return Status::error("fetch " + describe() + " <- " + root_ + ": no such directory");
  }
  if (!fs::is_directory(rootStatus)) {
    dirty_ = true;
    return Status::error("fetch " + describe() + " <- " + root_ + " is not a directory");
  }
  // Cleared before reading: a change made while reading shows up as a new event and another
  // fetch, never as a lost update.
  dirty_ = false;
  auto files = readManifestFiles({root_});
  if (!files.isOk()) {
    dirty_ = true;
    return files.status().withContext("fetch " + describe());
  }
  // A write that began while the tree was read: wait for it and read again, once.
  std::string suspect = settledOrSuspect(*files);
  if (!suspect.empty()) {
    open = waitForWriters();
    files = readManifestFiles({root_});
    if (!files.isOk()) {
      dirty_ = true;
      return files.status().withContext("fetch " + describe());
    }
    suspect = open.empty() ? settledOrSuspect(*files) : joinPath(root_, open);
    if (!suspect.empty()) {
      dirty_ = true;
      return Status::error("fetch " + describe() + " <- " + suspect +
                           " is being written (still changing after " +
                           std::to_string(settle_.count()) + " ms); not read half-way");
    }
  }
  if (files->empty()) {
    dirty_ = true;
    return Status::error("fetch " + describe() +
                         " <- no manifest files (*.yaml, *.yml, *.json) in " + root_ +
                         "; an empty or unmounted directory is not taken as \"delete everything\"");
  }

  Snapshot snap;
  snap.files = std::move(files).value();
  previousReads_ = std::move(reads_);
  reads_ = std::make_shared<SourceReads>();
  snap.tree = std::make_shared<DirectoryTree>(
      base_, [reads = std::weak_ptr<SourceReads>(reads_)](const std::string& path) {
        if (auto r = reads.lock()) {
          std::lock_guard<std::mutex> lk(r->mu);
          r->paths.insert(path);
        }
      });
  snap.revisionFromLoader = true;
  for (auto& f : snap.files) {
    f.path = fs::path(f.path).lexically_relative(base_).generic_string();
  }
  std::sort(snap.files.begin(), snap.files.end(),
            [](const SourceFile& a, const SourceFile& b) { return a.path < b.path; });
  std::string input;
  for (const auto& f : snap.files) {
    input += f.path;
    input += '\0';
    input += sha256Hex(f.content + std::to_string(f.unreadBytes));  // as ManifestLoader::load
    input += '\n';
  }
  snap.revision = "dir:" + sha256Hex(input).substr(0, 16);
  return snap;
}

bool DirSource::isReadSource(const std::string& rel) const {
  const std::string path = joinPath(path_, rel);
  for (const auto& reads : {reads_, previousReads_}) {
    std::lock_guard<std::mutex> lk(reads->mu);
    if (reads->paths.count(path) > 0) {
      return true;
    }
  }
  return false;
}

std::string DirSource::settledOrSuspect(const std::vector<SourceFile>& files) {
  if (inotifyFd_ >= 0) {
    drainWake();
    return writing_.empty() ? "" : joinPath(root_, *writing_.begin());
  }
  for (const auto& f : files) {
    if (maybeBeingWritten(f, settle_)) {
      std::this_thread::sleep_for(settle_);  // polling: the settle interval is the only signal
      return f.path;
    }
  }
  // The file sources the last load read (this load's are not known before it runs): one
  // modified within the settle interval may be half-written.
  for (const std::string& rel : readSources()) {
    const std::string path = joinPath(root_, rel);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      continue;  // gone: the load says so
    }
    auto mtime = std::chrono::system_clock::time_point(
        std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec));
    if (std::chrono::system_clock::now() - mtime < settle_) {
      std::this_thread::sleep_for(settle_);
      return path;
    }
  }
  return "";
}

std::string DirSource::waitForWriters() {
  if (inotifyFd_ < 0) {
    return "";
  }
  drainWake();
  auto deadline = std::chrono::steady_clock::now() + settle_;
  while (!writing_.empty() && inotifyFd_ >= 0) {
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      break;
    }
    struct pollfd pfd = {inotifyFd_, POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) {
      break;
    }
    if (n > 0) {
      drainWake();
    }
  }
  return writing_.empty() ? "" : *writing_.begin();
}

bool waitQuiet(Source& source, std::chrono::milliseconds quiet, std::chrono::milliseconds max) {
  using Clock = std::chrono::steady_clock;
  int fd = source.wakeFd();
  if (fd < 0) {
    return false;
  }
  auto start = Clock::now();
  auto deadline = start + max;
  bool relevant = source.drainWake();
  auto quietSince = start;
  for (;;) {
    auto now = Clock::now();
    auto until = std::min(quietSince + quiet, deadline);
    if (now >= until) {
      break;
    }
    auto waitMs = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
    struct pollfd pfd = {fd, POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(waitMs));
    if (n < 0 && errno != EINTR) {
      break;
    }
    if (n > 0 && source.drainWake()) {
      // Only relevant events restart the quiet period: a stream of swap-file writes must not
      // hold the reconcile back.
      relevant = true;
      quietSince = Clock::now();
    }
  }
  return relevant;
}

}  // namespace hyper::controller
