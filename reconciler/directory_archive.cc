#include "reconciler/directory_archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "base/fd.h"
#include "reconciler/file_sources.h"

namespace hyper {

namespace {

constexpr std::string_view kHeader = "hyper-directory-archive 1\n";
constexpr size_t kMaxLinkTarget = 4095;

char typeChar(ArchiveEntry::Type type) {
  switch (type) {
    case ArchiveEntry::Type::Directory:
      return 'd';
    case ArchiveEntry::Type::File:
      return 'f';
    case ArchiveEntry::Type::Executable:
      return 'x';
    case ArchiveEntry::Type::Symlink:
      return 'l';
  }
  return '?';
}

// A decimal of at most 19 digits, no sign, no leading zero (but "0"), ended by `end`.
bool readNumber(std::string_view bytes, size_t& pos, char end, size_t& value) {
  size_t digits = 0;
  value = 0;
  while (pos < bytes.size() && bytes[pos] >= '0' && bytes[pos] <= '9') {
    if (digits == 19 || (digits == 1 && value == 0)) {
      return false;
    }
    value = value * 10 + static_cast<size_t>(bytes[pos] - '0');
    ++digits;
    ++pos;
  }
  if (digits == 0 || pos >= bytes.size() || bytes[pos] != end) {
    return false;
  }
  ++pos;
  return true;
}

std::string parentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

std::string sysError(const std::string& what, const std::string& path) {
  return what + " " + path + " <- " + std::strerror(errno);
}

// The directory `dir` below `root` (made by this writer), opened without following links.
Result<Fd> openDirBelow(int root, const std::string& dir) {
  Fd current(::fcntl(root, F_DUPFD_CLOEXEC, 0));
  if (!current.valid()) {
    return Status::error(sysError("dup", "the archive's root"));
  }
  size_t start = 0;
  while (!dir.empty() && start <= dir.size()) {
    size_t end = dir.find('/', start);
    end = end == std::string::npos ? dir.size() : end;
    const std::string name = dir.substr(start, end - start);
    Fd next(::openat(current.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) {
      return Status::error(sysError("open", dir));
    }
    current = std::move(next);
    start = end + 1;
  }
  return current;
}

}  // namespace

std::string encodeDirectoryArchive(std::vector<ArchiveEntry> entries) {
  std::sort(entries.begin(), entries.end(),
            [](const ArchiveEntry& a, const ArchiveEntry& b) { return a.path < b.path; });
  size_t size = kHeader.size();
  for (const auto& e : entries) {
    size += e.path.size() + e.content.size() + 48;
  }
  std::string out;
  out.reserve(size);
  out += kHeader;
  for (const auto& e : entries) {
    out += typeChar(e.type);
    out += ' ';
    out += std::to_string(e.path.size());
    out += ' ';
    out += std::to_string(e.content.size());
    out += '\n';
    out += e.path;
    out += e.content;
  }
  return out;
}

Result<std::vector<ArchiveEntry>> decodeDirectoryArchive(std::string_view bytes,
                                                         const ArchiveLimits& limits) {
  if (bytes.substr(0, kHeader.size()) != kHeader) {
    return Status::error("not a directory archive: expected it to start with \"" +
                         std::string(kHeader.substr(0, kHeader.size() - 1)) + "\"");
  }
  std::vector<ArchiveEntry> out;
  std::set<std::string> directories;
  size_t total = 0;
  size_t pos = kHeader.size();
  while (pos < bytes.size()) {
    const std::string record = "record " + std::to_string(out.size() + 1);
    if (out.size() == limits.maxEntries) {
      return Status::error(record + ": more than " + std::to_string(limits.maxEntries) +
                           " entries (expected at most that many)");
    }
    ArchiveEntry e;
    const char t = bytes[pos];
    if (t == 'd') {
      e.type = ArchiveEntry::Type::Directory;
    } else if (t == 'f') {
      e.type = ArchiveEntry::Type::File;
    } else if (t == 'x') {
      e.type = ArchiveEntry::Type::Executable;
    } else if (t == 'l') {
      e.type = ArchiveEntry::Type::Symlink;
    } else {
      return Status::error(record + ": unknown type: expected d, f, x or l");
    }
    pos += 1;
    size_t pathBytes = 0;
    size_t contentBytes = 0;
    if (pos >= bytes.size() || bytes[pos] != ' ' || !readNumber(bytes, ++pos, ' ', pathBytes) ||
        !readNumber(bytes, pos, '\n', contentBytes)) {
      return Status::error(record +
                           ": expected \"<type> <path bytes> <content bytes>\\n\" (decimals)");
    }
    if (pathBytes > bytes.size() - pos || contentBytes > bytes.size() - pos - pathBytes) {
      return Status::error(record + ": ends before its " + std::to_string(pathBytes) +
                           " path bytes and " + std::to_string(contentBytes) + " content bytes");
    }
    e.path.assign(bytes.substr(pos, pathBytes));
    pos += pathBytes;
    const std::string at = record + " (" + e.path.substr(0, 200) + ")";
    if (std::string problem = checkSourcePath(e.path); !problem.empty()) {
      return Status::error(record + ": the path " + problem);
    }
    if (!out.empty() && !(out.back().path < e.path)) {
      return Status::error(at + ": not after " + out.back().path.substr(0, 200) +
                           ": expected the paths in increasing byte order, each once");
    }
    const std::string parent = parentOf(e.path);
    if (!parent.empty() && directories.count(parent) == 0) {
      return Status::error(at + ": its parent is not a directory entry before it");
    }
    if (e.type == ArchiveEntry::Type::Directory &&
        static_cast<size_t>(std::count(e.path.begin(), e.path.end(), '/')) >= limits.maxDepth) {
      return Status::error(at + ": deeper than " + std::to_string(limits.maxDepth) +
                           " directories (expected at most that)");
    }
    if (contentBytes > limits.maxBytes - total) {
      return Status::error(at + ": the contents pass " + std::to_string(limits.maxBytes) +
                           " bytes (expected at most that, all together)");
    }
    total += contentBytes;
    e.content.assign(bytes.substr(pos, contentBytes));
    pos += contentBytes;
    if (e.type == ArchiveEntry::Type::Directory) {
      if (contentBytes != 0) {
        return Status::error(at + ": a directory with content: expected none");
      }
      directories.insert(e.path);
    }
    if (e.type == ArchiveEntry::Type::Symlink &&
        (e.content.empty() || e.content.size() > kMaxLinkTarget ||
         e.content.find('\0') != std::string::npos)) {
      return Status::error(at + ": a symlink's target must have 1 to " +
                           std::to_string(kMaxLinkTarget) + " bytes and no NUL");
    }
    out.push_back(std::move(e));
  }
  return out;
}

Status writeDirectoryArchive(const std::vector<ArchiveEntry>& entries, const std::string& root) {
  Fd top(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top.valid()) {
    return Status::error(sysError("open", root));
  }
  for (const auto& e : entries) {
    const std::string parent = parentOf(e.path);
    const std::string name = parent.empty() ? e.path : e.path.substr(parent.size() + 1);
    HYPER_ASSIGN_OR_RETURN(Fd dir, openDirBelow(top.get(), parent));
    switch (e.type) {
      case ArchiveEntry::Type::Directory: {
        if (::mkdirat(dir.get(), name.c_str(), 0755) != 0) {
          return Status::error(sysError("mkdir", e.path));
        }
        Fd made(::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!made.valid() || ::fchmod(made.get(), 0755) != 0) {  // whatever the umask
          return Status::error(sysError("chmod", e.path));
        }
        break;
      }
      case ArchiveEntry::Type::Symlink:
        if (::symlinkat(e.content.c_str(), dir.get(), name.c_str()) != 0) {
          return Status::error(sysError("symlink", e.path));
        }
        break;
      case ArchiveEntry::Type::File:
      case ArchiveEntry::Type::Executable: {
        const mode_t mode = e.type == ArchiveEntry::Type::Executable ? 0755 : 0644;
        Fd f(::openat(dir.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      mode));
        if (!f.valid()) {
          return Status::error(sysError("create", e.path));
        }
        size_t done = 0;
        while (done < e.content.size()) {
          ssize_t n = ::write(f.get(), e.content.data() + done, e.content.size() - done);
          if (n < 0 && errno == EINTR) {
            continue;
          }
          if (n <= 0) {
            return Status::error(sysError("write", e.path));
          }
          done += static_cast<size_t>(n);
        }
        // The umask does not decide a build's input.
        if (::fchmod(f.get(), mode) != 0) {
          return Status::error(sysError("chmod", e.path));
        }
        break;
      }
    }
  }
  return Status::ok();
}

ArchiveSummary summarizeDirectoryArchive(const std::vector<ArchiveEntry>& entries) {
  ArchiveSummary s;
  for (const auto& e : entries) {
    if (e.type == ArchiveEntry::Type::File || e.type == ArchiveEntry::Type::Executable) {
      ++s.files;
      s.bytes += e.content.size();
    }
  }
  return s;
}

}  // namespace hyper
