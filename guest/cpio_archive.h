#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace hyper::guest {

// An in-memory newc ("070701") cpio archive, as the Linux kernel unpacks an initramfs.
//
// Reproducible by construction: every entry has mtime 0, uid and gid 0, and an inode number given
// by its position; entries are written sorted by path (byte order), so the same entries give the
// same bytes whatever order they were added in. Parent directories of every entry are implied
// (mode 0755) unless added explicitly, and always precede their children.
class CpioArchive {
 public:
  // Paths are relative ("bin/busybox"); a leading "/" or "./" is dropped. Adding a path twice
  // replaces the earlier entry.
  void addDirectory(const std::string& path, uint32_t mode = 0755);
  void addFile(const std::string& path, std::string contents, uint32_t mode = 0644);
  void addSymlink(const std::string& path, const std::string& target);

  bool contains(const std::string& path) const;
  size_t size() const { return entries_.size(); }

  // The archive bytes, ending with the TRAILER!!! entry.
  std::string serialize() const;

 private:
  struct Entry {
    uint32_t mode = 0;  // full st_mode: type bits | permissions
    std::string data;   // file contents, or the symlink target
  };
  void add(const std::string& path, Entry entry);

  std::map<std::string, Entry> entries_;  // sorted by path
};

}  // namespace hyper::guest
