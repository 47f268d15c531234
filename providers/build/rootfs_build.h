#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "host/command.h"
#include "providers/build/build_queue.h"
#include "providers/build/build_spec.h"

namespace hyper::providers::build {

// A rootfs Build's Debian suite as the host's apt lists hold it: mmdebstrap is given exactly these
// lists (its own `apt-get update` skipped), so the packages it installs are the versions they
// name, and their InRelease's digest is the build's input: the key moves when the host's lists
// do (apt-get update), and not otherwise.
struct SuiteIndex {
  std::string inRelease;              // path of the InRelease file
  std::vector<std::string> packages;  // paths of its main/binary-amd64 Packages files
  std::string digest;                 // "sha256:..." of the InRelease
  std::string date;                   // its Date: line, for people
};

// apt's list file prefix for a mirror URL and suite: "http://deb.debian.org/debian", "bookworm"
// -> "deb.debian.org_debian_dists_bookworm_". Pure.
std::string aptListPrefix(const std::string& mirror, const std::string& suite);

// Finds the suite's lists in `listsDir` (/var/lib/apt/lists). Errors say what to add to the
// host's sources.
Result<SuiteIndex> findSuiteIndex(const std::string& listsDir, const std::string& mirror,
                                  const std::string& suite);

// Builds the rootfs image into `scratch` and returns its path: mmdebstrap (variant, packages)
// into scratch/root with SOURCE_DATE_EPOCH=0 and the suite's lists copied in, the spec's files
// written over it, then the image in spec.format: erofs by `mkfs.erofs -T0 --all-root -U <uuid>`
// (every timestamp 0, every file root's, entries sorted), ext4 by makeExt4Image; either with the
// filesystem UUID `uuid` (derived from the build key by the caller).
Result<std::string> buildRootfsImage(const BuildSpec& spec, const SuiteIndex& index,
                                     const std::string& scratch, const std::string& uuid,
                                     const host::CommandOptions& options, BuildLog& log);

// An ext4 image of the tree at `root`, written to `image`, the same bytes for the same tree
// contents on any host, at any time: mke2fs -d (entries in sorted order) with its built-in
// configuration (not the host's /etc/mke2fs.conf), the filesystem UUID and directory hash seed
// `uuid`, and its clock (E2FSPROGS_FAKE_TIME) fixed; then every used inode's four timestamps and
// the superblock's set to 0 with debugfs, since mke2fs 1.47.0 copies the tree's ctimes (which no
// one can set) and has no SOURCE_DATE_EPOCH. `sizeMiB` 0 sizes it from the tree (a quarter
// free besides the journal); a tree that does not fit in a given size is an error at
// spec.rootfs.sizeMiB. Owners, modes, hard links and extended attributes are the tree's.
Status makeExt4Image(const std::string& root, const std::string& image, const std::string& uuid,
                     uint32_t sizeMiB, const host::CommandOptions& options);

// The inodes in use in an ext4 image, from `dumpe2fs` output: every inode of every group but
// those its "Free inodes:" ranges name. Errors when the output has no "Inodes per group:".
Result<std::vector<uint64_t>> usedInodes(const std::string& dumpe2fsOutput);

// Writes `files` into the tree at `root`, replacing what is there, never through a symlink in the
// tree (one the packages made, /bin -> usr/bin or an absolute one, could lead out of it): such a
// path is an error naming the file's field (spec.rootfs.files[i].path).
Status writeTreeFiles(const std::string& root, const std::vector<ImageFile>& files);

// A UUID (8-4-4-4-12 hex) made of the first 32 hex digits of `hex`.
std::string uuidFromHex(const std::string& hex);

}  // namespace hyper::providers::build
