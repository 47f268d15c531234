#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "host/command.h"

namespace hyper::providers::build {

// A Debian binary package as apt's lists describe it: the exact file a build downloads.
struct DebianPackage {
  std::string name;     // "linux-image-6.1.0-57-amd64"
  std::string version;  // "6.1.192-3"
  std::string sha256;   // 64 hex, from the Packages index (signed by the archive's Release)
  uint64_t size = 0;
};

// The fields of the first paragraph of a Debian control text (`apt-cache show`): "Name: value"
// lines, continuation lines (starting with a space) folded into the field before them. Field
// names are case-sensitive here as apt prints them. At most 1 MiB of text and 200 fields are
// read; a line that is neither a field nor a continuation is skipped.
std::map<std::string, std::string> parseControlParagraph(std::string_view text);

// The one "linux-image-<version>" package a Depends field names ("linux-image-6.1.0-57-amd64
// (= 6.1.192-3)"), or "" when it names none or several: how a metapackage such as
// linux-image-amd64 says which kernel it currently means.
std::string kernelImageDependency(std::string_view depends);

// Changes whenever apt's lists or sources do (their sizes and mtimes): what resolutions from the
// lists are cached by.
std::string aptListsStamp();

// The names in `packages` that apt's lists do not have (no candidate version in any suite of
// the host's sources), in their order; one `apt-cache policy` run.
Result<std::vector<std::string>> unknownPackages(const std::vector<std::string>& packages);

struct AptConfig {
  std::string debCache = "/var/cache/hyper/debs";  // verified .debs, named <sha256>.deb
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};  // per download
};

// What a build needs from apt: which package version a name means today, and its .deb. Uses
// the host's apt (apt-cache, apt-get download); installs nothing. Thread-safe.
class Apt {
 public:
  explicit Apt(AptConfig config) : config_(std::move(config)) {}

  // The package a kernel name means now: a metapackage (linux-image-amd64) is followed to the
  // versioned image it depends on. Resolved once per change of apt's lists (their mtime), since
  // observe asks on every reconcile and apt-cache takes ~1 s. Errors say the name is unknown.
  Result<DebianPackage> resolveKernel(const std::string& name);

  // The path of `package`'s .deb in the cache, downloaded (apt-get download NAME=VERSION, within
  // the timeout, its process group killed past it) and checked against package.sha256 when not
  // there yet. A cached file with other bytes is replaced. `say` gets a line for people on what
  // it does (found in the cache, or downloading what from where, and the size it got).
  Result<std::string> fetch(const DebianPackage& package, const std::atomic<bool>* cancel,
                            const std::function<void(const std::string&)>& say = {});

 private:
  Result<DebianPackage> show(const std::string& name) const;

  AptConfig config_;
  std::mutex mu_;
  std::string stamp_;
  std::map<std::string, DebianPackage> resolved_;  // by requested name, for stamp_
};

}  // namespace hyper::providers::build
