#include "guest/cpio_archive.h"

#include <sys/stat.h>

#include <cstdio>

namespace hyper::guest {

namespace {

std::string normalise(const std::string& path) {
  size_t start = 0;
  while (start < path.size()) {
    if (path[start] == '/') {
      ++start;
    } else if (path.compare(start, 2, "./") == 0) {
      start += 2;
    } else {
      break;
    }
  }
  std::string out = path.substr(start);
  while (!out.empty() && out.back() == '/') {
    out.pop_back();
  }
  return out;
}

void appendHex(std::string& out, uint32_t value) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08X", value);
  out.append(buf, 8);
}

void padTo4(std::string& out) {
  while (out.size() % 4 != 0) {
    out.push_back('\0');
  }
}

// One newc header + name + data, each padded to a multiple of 4 bytes from the archive start.
void appendEntry(std::string& out, uint32_t ino, uint32_t mode, uint32_t nlink,
                 const std::string& name, const std::string& data) {
  out += "070701";
  appendHex(out, ino);
  appendHex(out, mode);
  appendHex(out, 0);  // uid
  appendHex(out, 0);  // gid
  appendHex(out, nlink);
  appendHex(out, 0);  // mtime
  appendHex(out, static_cast<uint32_t>(data.size()));
  appendHex(out, 0);  // devmajor
  appendHex(out, 0);  // devminor
  appendHex(out, 0);  // rdevmajor
  appendHex(out, 0);  // rdevminor
  appendHex(out, static_cast<uint32_t>(name.size() + 1));
  appendHex(out, 0);  // check (only used by the "070702" format)
  out += name;
  out.push_back('\0');
  padTo4(out);
  out += data;
  padTo4(out);
}

}  // namespace

void CpioArchive::add(const std::string& path, Entry entry) {
  std::string p = normalise(path);
  if (p.empty()) {
    return;  // the root itself exists in every initramfs
  }
  for (size_t slash = p.find('/'); slash != std::string::npos; slash = p.find('/', slash + 1)) {
    std::string parent = p.substr(0, slash);
    if (!entries_.count(parent)) {
      entries_[parent] = Entry{S_IFDIR | 0755, {}};
    }
  }
  entries_[p] = std::move(entry);
}

void CpioArchive::addDirectory(const std::string& path, uint32_t mode) {
  add(path, Entry{S_IFDIR | (mode & 07777), {}});
}

void CpioArchive::addFile(const std::string& path, std::string contents, uint32_t mode) {
  add(path, Entry{S_IFREG | (mode & 07777), std::move(contents)});
}

void CpioArchive::addSymlink(const std::string& path, const std::string& target) {
  add(path, Entry{S_IFLNK | 0777, target});
}

bool CpioArchive::contains(const std::string& path) const {
  return entries_.count(normalise(path)) != 0;
}

std::string CpioArchive::serialize() const {
  std::string out;
  uint32_t ino = 1;
  for (const auto& [name, e] : entries_) {
    uint32_t nlink = (e.mode & S_IFMT) == S_IFDIR ? 2 : 1;
    appendEntry(out, ino++, e.mode, nlink, name, e.data);
  }
  appendEntry(out, 0, 0, 1, "TRAILER!!!", "");
  return out;
}

}  // namespace hyper::guest
