#include "reconciler/source_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/base64.h"

#include <sodium.h>

#include "base/fd.h"
#include "reconciler/directory_archive.h"

namespace hyper {

namespace {

std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    end = end == std::string::npos ? path.size() : end;
    out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

const char* kindOf(mode_t mode) {
  if (S_ISDIR(mode)) {
    return "a directory";
  }
  if (S_ISFIFO(mode)) {
    return "a FIFO";
  }
  if (S_ISSOCK(mode)) {
    return "a socket";
  }
  if (S_ISCHR(mode) || S_ISBLK(mode)) {
    return "a device";
  }
  return "not a regular file";
}

// Reads `fd` to its end into `into`, never more than `most` bytes. Returns how many bytes it saw:
// more than `most` when the file has more (it grew since it was sized), and then `into` holds
// only a part of it. `path` names the file in errors.
Result<size_t> readAtMost(int fd, size_t most, std::string& into, const std::string& path) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Status::error("read " + path + " <- " + std::strerror(errno));
    }
    if (n == 0) {
      return into.size();
    }
    if (static_cast<size_t>(n) > most - into.size()) {
      return into.size() + static_cast<size_t>(n);
    }
    into.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

std::string joinSourcePath(const std::string& dir, const std::string& path) {
  if (dir.empty()) {
    return path;
  }
  return dir.back() == '/' ? dir + path : dir + "/" + path;
}

DirectoryTree::DirectoryTree(std::string base, std::function<void(const std::string&)> onRead)
    : base_(std::move(base)), onRead_(std::move(onRead)) {}

Result<Fd> DirectoryTree::walk(const std::string& dir, const std::string& path, bool directory,
                               File& out, std::string& top) const {
  top = base_.empty() ? dir : (dir.empty() ? base_ : joinSourcePath(base_, dir));
  if (top.empty()) {
    top = ".";
  }
  Fd current(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!current.valid()) {
    return Status::error("open " + top + " <- " + std::strerror(errno));
  }
  const std::vector<std::string> parts = segments(path);
  std::string at;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& name = parts[i];
    const bool last = i + 1 == parts.size();
    const bool wantDir = !last || directory;
    at = at.empty() ? name : at + "/" + name;
    out.at = at;
    struct stat st {};
    if (::fstatat(current.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        out.refusal = File::Refusal::Missing;
        return Fd();
      }
      return Status::error("stat " + joinSourcePath(top, at) + " <- " + std::strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) {
      out.refusal = File::Refusal::Symlink;
      return Fd();
    }
    if (wantDir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
      out.refusal = File::Refusal::NotAFile;
      out.detail = !last ? "not a directory" : S_ISREG(st.st_mode) ? "a file" : kindOf(st.st_mode);
      return Fd();
    }
    // O_NOFOLLOW (and O_NONBLOCK for the file): an entry swapped for a link or a FIFO since the
    // look is refused, not followed or waited on.
    int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (wantDir ? O_DIRECTORY : O_NONBLOCK | O_NOCTTY);
    Fd next(::openat(current.get(), name.c_str(), flags));
    if (!next.valid()) {
      if (errno == ELOOP) {
        out.refusal = File::Refusal::Symlink;
        return Fd();
      }
      return Status::error("open " + joinSourcePath(top, at) + " <- " + std::strerror(errno));
    }
    current = std::move(next);
  }
  return current;
}

Result<SourceTree::File> DirectoryTree::read(const std::string& dir, const std::string& path,
                                             size_t maxBytes) const {
  if (onRead_) {
    onRead_(joinSourcePath(dir, path));
  }
  File out;
  std::string top;
  HYPER_ASSIGN_OR_RETURN(Fd current, walk(dir, path, /*directory=*/false, out, top));
  if (!current.valid()) {
    return out;
  }
  const std::string at = out.at;
  out.at.clear();
  struct stat st {};
  if (::fstat(current.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    out.refusal = File::Refusal::NotAFile;
    out.at = at;
    out.detail = "not a regular file";
    return out;
  }
  if (static_cast<size_t>(st.st_size) > maxBytes) {
    out.refusal = File::Refusal::TooBig;
    out.at = at;
    out.size = static_cast<size_t>(st.st_size);
    return out;
  }
  HYPER_ASSIGN_OR_RETURN(size_t seen,
                         readAtMost(current.get(), maxBytes, out.bytes, joinSourcePath(top, at)));
  if (seen > maxBytes) {
    // It grew since fstat: still over the limit, still not read whole.
    out.refusal = File::Refusal::TooBig;
    out.at = at;
    out.size = seen;
    out.bytes.clear();
  }
  return out;
}

namespace {

// The entries below the open directory `fd` (`prefix` is its path in the archive, "" for the
// top) into `entries`, within `limits`; a refusal is left in `out`. `total` counts the bytes.
Status collectDirectory(int fd, const std::string& prefix, size_t depth, const std::string& top,
                        const ArchiveLimits& limits, std::vector<ArchiveEntry>& entries,
                        size_t& total, SourceTree::File& out) {
  using Refusal = SourceTree::File::Refusal;
  int listFd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  DIR* d = listFd < 0 ? nullptr : ::fdopendir(listFd);
  if (d == nullptr) {
    if (listFd >= 0) {
      ::close(listFd);
    }
    return Status::error("list " + joinSourcePath(top, prefix) + " <- " + std::strerror(errno));
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") {
      names.push_back(name);
    }
    if (names.size() > limits.maxEntries) {
      break;
    }
  }
  const int listErrno = errno;
  ::closedir(d);
  if (listErrno != 0) {
    return Status::error("list " + joinSourcePath(top, prefix) + " <- " + std::strerror(listErrno));
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string rel = prefix.empty() ? name : prefix + "/" + name;
    out.at = rel;
    if (entries.size() >= limits.maxEntries) {
      out.refusal = Refusal::TooMany;
      out.detail = "entries";
      out.size = limits.maxEntries + 1;
      return Status::ok();
    }
    struct stat st {};
    if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::error("stat " + joinSourcePath(top, rel) + " <- " + std::strerror(errno));
    }
    ArchiveEntry entry;
    entry.path = rel;
    if (S_ISDIR(st.st_mode)) {
      if (depth + 1 > limits.maxDepth) {
        out.refusal = Refusal::TooMany;
        out.detail = "levels";
        out.size = depth + 1;
        return Status::ok();
      }
      entry.type = ArchiveEntry::Type::Directory;
      entries.push_back(std::move(entry));
      Fd sub(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub.valid()) {
        return Status::error("open " + joinSourcePath(top, rel) + " <- " + std::strerror(errno));
      }
      HYPER_RETURN_IF_ERROR(
          collectDirectory(sub.get(), rel, depth + 1, top, limits, entries, total, out));
      if (out.refusal != Refusal::None) {
        return Status::ok();
      }
      continue;
    }
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlinkat(fd, name.c_str(), target, sizeof target);
      if (n < 0) {
        return Status::error("readlink " + joinSourcePath(top, rel) + " <- " +
                             std::strerror(errno));
      }
      if (n == 0 || static_cast<size_t>(n) >= sizeof target) {
        out.refusal = Refusal::NotAFile;
        out.detail = "a symlink whose target has no or more than 4095 bytes";
        return Status::ok();
      }
      entry.type = ArchiveEntry::Type::Symlink;
      entry.content.assign(target, static_cast<size_t>(n));
    } else if (S_ISREG(st.st_mode)) {
      entry.type =
          (st.st_mode & S_IXUSR) != 0 ? ArchiveEntry::Type::Executable : ArchiveEntry::Type::File;
      if (static_cast<size_t>(st.st_size) > limits.maxBytes - total) {
        out.refusal = Refusal::TooBig;
        out.size = total + static_cast<size_t>(st.st_size);
        return Status::ok();
      }
      Fd f(::openat(fd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
      if (!f.valid()) {
        return Status::error("open " + joinSourcePath(top, rel) + " <- " + std::strerror(errno));
      }
      const size_t budget = limits.maxBytes - total;
      HYPER_ASSIGN_OR_RETURN(size_t seen,
                             readAtMost(f.get(), budget, entry.content, joinSourcePath(top, rel)));
      if (seen > budget) {
        out.refusal = Refusal::TooBig;  // it grew since the look
        out.size = total + seen;
        return Status::ok();
      }
    } else {
      out.refusal = Refusal::NotAFile;
      out.detail = kindOf(st.st_mode);
      return Status::ok();
    }
    total += entry.content.size();
    entries.push_back(std::move(entry));
  }
  return Status::ok();
}

}  // namespace

Result<SourceTree::File> DirectoryTree::readDirectory(const std::string& dir,
                                                      const std::string& path,
                                                      const ArchiveLimits& limits) const {
  if (onRead_) {
    onRead_(joinSourcePath(dir, path));
  }
  File out;
  std::string top;
  HYPER_ASSIGN_OR_RETURN(Fd current, walk(dir, path, /*directory=*/true, out, top));
  if (!current.valid()) {
    return out;
  }
  out.at.clear();
  std::vector<ArchiveEntry> entries;
  size_t total = 0;
  HYPER_RETURN_IF_ERROR(collectDirectory(current.get(), "", 0, joinSourcePath(top, path), limits,
                                         entries, total, out));
  if (out.refusal != File::Refusal::None) {
    out.at = joinSourcePath(path, out.at);
    return out;
  }
  out.at.clear();
  out.bytes = encodeDirectoryArchive(std::move(entries));
  return out;
}

Result<SourceTree::File> RecordingTree::readDirectory(const std::string& dir,
                                                      const std::string& path,
                                                      const ArchiveLimits& limits) const {
  auto file = inner_.readDirectory(dir, path, limits);
  if (file.isOk()) {
    reads_[joinSourcePath(dir, path) + "/"] = *file;
  }
  return file;
}

Result<SourceTree::File> MemoryTree::readDirectory(const std::string& dir, const std::string& path,
                                                   const ArchiveLimits& limits) const {
  File out;
  auto it = files_.find(joinSourcePath(dir, path) + "/");
  if (it == files_.end()) {
    out.refusal = File::Refusal::Missing;
    out.at = path;
    return out;
  }
  if (it->second.refusal != File::Refusal::None) {
    return it->second;
  }
  // The bytes came from the caller: taken only as a well-formed archive within the limits.
  auto entries = decodeDirectoryArchive(it->second.bytes, limits);
  if (!entries.isOk()) {
    return entries.status().withContext("the directory " + joinSourcePath(dir, path) + " as sent");
  }
  out.bytes = encodeDirectoryArchive(std::move(*entries));
  return out;
}

Result<SourceTree::File> RecordingTree::read(const std::string& dir, const std::string& path,
                                             size_t maxBytes) const {
  auto file = inner_.read(dir, path, maxBytes);
  if (file.isOk()) {
    reads_[joinSourcePath(dir, path)] = *file;
  }
  return file;
}

Result<SourceTree::File> MemoryTree::read(const std::string& dir, const std::string& path,
                                          size_t maxBytes) const {
  auto it = files_.find(joinSourcePath(dir, path));
  if (it == files_.end()) {
    File out;
    out.refusal = File::Refusal::Missing;
    out.at = path;
    return out;
  }
  File out = it->second;
  if (out.refusal == File::Refusal::None && out.bytes.size() > maxBytes) {
    out.refusal = File::Refusal::TooBig;
    out.at = path;
    out.size = out.bytes.size();
    out.bytes.clear();
  }
  return out;
}

namespace {

constexpr std::pair<SourceTree::File::Refusal, const char*> kRefusalNames[] = {
    {SourceTree::File::Refusal::Missing, "missing"},
    {SourceTree::File::Refusal::Symlink, "symlink"},
    {SourceTree::File::Refusal::NotAFile, "not-a-file"},
    {SourceTree::File::Refusal::TooBig, "too-big"},
    {SourceTree::File::Refusal::TooMany, "too-many"},
};

}  // namespace

nlohmann::json sourceReadToJson(const std::string& path, const SourceTree::File& file) {
  if (file.refusal == SourceTree::File::Refusal::None) {
    return {{"path", path}, {"base64", encodeBase64(file.bytes)}};
  }
  std::string refusal;
  for (const auto& [value, name] : kRefusalNames) {
    refusal = value == file.refusal ? name : refusal;
  }
  return {{"path", path},
          {"refusal", refusal},
          {"at", file.at},
          {"detail", file.detail},
          {"size", file.size}};
}

Result<std::pair<std::string, SourceTree::File>> sourceReadFromJson(const nlohmann::json& j) {
  auto text = [&](const char* key) -> const std::string* {
    auto it = j.is_object() ? j.find(key) : j.end();
    return it != j.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
  };
  const std::string* path = text("path");
  const char* expected =
      "expected {\"path\": string, \"base64\": string} or {\"path\": string, \"refusal\": "
      "missing|symlink|not-a-file|too-big|too-many, \"at\", \"detail\", \"size\"}";
  if (path == nullptr) {
    return Status::error(expected);
  }
  SourceTree::File file;
  if (const std::string* encoded = text("base64")) {
    if (!decodeBase64(*encoded, file.bytes)) {
      return Status::error(std::string("base64 that does not decode: ") + expected);
    }
    return std::make_pair(*path, std::move(file));
  }
  const std::string* refusal = text("refusal");
  for (const auto& [value, name] : kRefusalNames) {
    if (refusal != nullptr && *refusal == name) {
      file.refusal = value;
    }
  }
  const std::string* at = text("at");
  const std::string* detail = text("detail");
  auto size = j.find("size");
  if (file.refusal == SourceTree::File::Refusal::None || at == nullptr || detail == nullptr ||
      size == j.end() || !size->is_number_unsigned()) {
    return Status::error(expected);
  }
  file.at = *at;
  file.detail = *detail;
  file.size = size->get<size_t>();
  return std::make_pair(*path, std::move(file));
}

}  // namespace hyper
