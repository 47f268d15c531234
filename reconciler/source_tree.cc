#include "reconciler/source_tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/base64.h"

#include <sodium.h>

#include "base/fd.h"

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

}  // namespace

std::string joinSourcePath(const std::string& dir, const std::string& path) {
  if (dir.empty()) {
    return path;
  }
  return dir.back() == '/' ? dir + path : dir + "/" + path;
}

DirectoryTree::DirectoryTree(std::string base, std::function<void(const std::string&)> onRead)
    : base_(std::move(base)), onRead_(std::move(onRead)) {}

Result<SourceTree::File> DirectoryTree::read(const std::string& dir, const std::string& path,
                                             size_t maxBytes) const {
  if (onRead_) {
    onRead_(joinSourcePath(dir, path));
  }
  std::string top = base_.empty() ? dir : (dir.empty() ? base_ : joinSourcePath(base_, dir));
  if (top.empty()) {
    top = ".";
  }
  Fd current(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!current.valid()) {
    return Status::error("open " + top + " <- " + std::strerror(errno));
  }
  const std::vector<std::string> parts = segments(path);
  File out;
  std::string at;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& name = parts[i];
    const bool last = i + 1 == parts.size();
    at = at.empty() ? name : at + "/" + name;
    struct stat st {};
    if (::fstatat(current.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        out.refusal = File::Refusal::Missing;
        out.at = at;
        return out;
      }
      return Status::error("stat " + joinSourcePath(top, at) + " <- " + std::strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) {
      out.refusal = File::Refusal::Symlink;
      out.at = at;
      return out;
    }
    if (last ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode)) {
      out.refusal = File::Refusal::NotAFile;
      out.at = at;
      out.detail = last ? kindOf(st.st_mode) : "not a directory";
      return out;
    }
    // O_NOFOLLOW (and O_NONBLOCK for the file): an entry swapped for a link or a FIFO since the
    // look is refused, not followed or waited on.
    int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (last ? O_NONBLOCK | O_NOCTTY : O_DIRECTORY);
    Fd next(::openat(current.get(), name.c_str(), flags));
    if (!next.valid()) {
      if (errno == ELOOP) {
        out.refusal = File::Refusal::Symlink;
        out.at = at;
        return out;
      }
      return Status::error("open " + joinSourcePath(top, at) + " <- " + std::strerror(errno));
    }
    current = std::move(next);
  }
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
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(current.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Status::error("read " + joinSourcePath(top, at) + " <- " + std::strerror(errno));
    }
    if (n == 0) {
      return out;
    }
    if (static_cast<size_t>(n) > maxBytes - out.bytes.size()) {
      // It grew since fstat: still over the limit, still not read whole.
      out.refusal = File::Refusal::TooBig;
      out.at = at;
      out.size = out.bytes.size() + static_cast<size_t>(n);
      out.bytes.clear();
      return out;
    }
    out.bytes.append(buf, static_cast<size_t>(n));
  }
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
      "missing|symlink|not-a-file|too-big, \"at\", \"detail\", \"size\"}";
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
