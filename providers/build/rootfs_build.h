#pragma once

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
// written over it, then `mkfs.erofs -T0 --all-root -U <uuid>`: every timestamp 0, every file
// root's, entries sorted, the filesystem UUID `uuid` (derived from the build key by the caller).
Result<std::string> buildRootfsImage(const BuildSpec& spec, const SuiteIndex& index,
                                     const std::string& scratch, const std::string& uuid,
                                     const host::CommandOptions& options, BuildLog& log);

// Writes `files` into the tree at `root`, replacing what is there, never through a symlink in the
// tree (one the packages made, /bin -> usr/bin or an absolute one, could lead out of it): such a
// path is an error naming the file's field (spec.rootfs.files[i].path).
Status writeTreeFiles(const std::string& root, const std::vector<ImageFile>& files);

// A UUID (8-4-4-4-12 hex) made of the first 32 hex digits of `hex`.
std::string uuidFromHex(const std::string& hex);

}  // namespace hyper::providers::build
