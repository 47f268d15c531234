#include "providers/build/rootfs_build.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "base/file.h"
#include "store/artifact_store.h"

namespace hyper::providers::build {

namespace {

constexpr size_t kMaxInReleaseBytes = 4u << 20;
constexpr uint64_t kMiB = 1u << 20;

// What a tree needs of an ext4 filesystem, counted the same on any host: a block per directory
// (not its size on the host's filesystem, which differs between ext4 and tmpfs), a file's size
// in 4 KiB blocks, a block for a symlink too long to live in its inode.
struct TreeSize {
  uint64_t bytes = 0;
  uint64_t entries = 0;
};

TreeSize measureTree(const std::string& root) {
  namespace fs = std::filesystem;
  TreeSize size;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, fs::directory_options::none, ec), end;
       !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) {
      continue;
    }
    ++size.entries;
    if (S_ISREG(st.st_mode)) {
      size.bytes += (static_cast<uint64_t>(st.st_size) + 4095) / 4096 * 4096;
    } else if (S_ISDIR(st.st_mode) || (S_ISLNK(st.st_mode) && st.st_size >= 60)) {
      size.bytes += 4096;
    }
  }
  return size;
}

}  // namespace

Result<std::vector<uint64_t>> usedInodes(const std::string& out) {
  uint64_t perGroup = 0;
  std::vector<uint64_t> used;
  int64_t group = -1;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    end = end == std::string::npos ? out.size() : end;
    const std::string line = out.substr(start, end - start);
    start = end + 1;
    if (line.rfind("Inodes per group:", 0) == 0) {
      perGroup = std::strtoull(line.c_str() + 17, nullptr, 10);
    } else if (line.rfind("Group ", 0) == 0) {
      group = std::strtoll(line.c_str() + 6, nullptr, 10);
    } else if (line.rfind("  Free inodes:", 0) == 0 && group >= 0 && perGroup > 0 &&
               perGroup <= (1u << 24)) {
      const uint64_t first = static_cast<uint64_t>(group) * perGroup + 1;
      std::vector<bool> isFree(perGroup, false);
      // "  Free inodes: 24-8192, 8200-8300" or "  Free inodes: " (none free).
      const char* p = line.c_str() + 14;
      while (*p != '\0') {
        char* after = nullptr;
        uint64_t lo = std::strtoull(p, &after, 10);
        if (after == p) {
          ++p;
          continue;
        }
        uint64_t hi = lo;
        p = after;
        if (*p == '-') {
          hi = std::strtoull(p + 1, &after, 10);
          p = after;
        }
        for (uint64_t i = std::max(lo, first); i <= hi && i < first + perGroup; ++i) {
          isFree[i - first] = true;
        }
      }
      for (uint64_t i = 0; i < perGroup; ++i) {
        if (!isFree[i]) {
          used.push_back(first + i);
        }
      }
    }
  }
  if (perGroup == 0) {
    return Status::error("dumpe2fs printed no \"Inodes per group:\"");
  }
  return used;
}

Status makeExt4Image(const std::string& root, const std::string& image, const std::string& uuid,
                     uint32_t sizeMiB, const host::CommandOptions& options) {
  const TreeSize tree = measureTree(root);
  // A quarter free besides the journal and the inode tables; inodes for half as many again.
  const uint64_t needMiB = (tree.bytes + tree.bytes / 4) / kMiB + 64;
  const uint64_t inodes = tree.entries + tree.entries / 2 + 1024;
  if (sizeMiB != 0 && sizeMiB < tree.bytes / kMiB + 32) {
    return Status::error("spec.rootfs.sizeMiB: the tree takes " +
                         std::to_string(tree.bytes / kMiB) + " MiB; expected at least " +
                         std::to_string(tree.bytes / kMiB + 32) +
                         " (with the journal), or no sizeMiB to size the image from its tree");
  }
  const uint64_t mib = sizeMiB != 0 ? sizeMiB : needMiB;
  host::CommandOptions o = options;
  // The built-in configuration (a path that does not exist: mke2fs then uses its own), and a
  // fixed clock for what mke2fs and debugfs stamp themselves (0 would mean "not set").
  o.env.push_back("MKE2FS_CONFIG=" + image + ".no-mke2fs.conf");
  o.env.push_back("E2FSPROGS_FAKE_TIME=1");
  o.maxOutputBytes = 16u << 20;
  std::error_code ec;
  std::filesystem::remove(image, ec);
  HYPER_RETURN_IF_ERROR(
      host::runChecked(
          {"mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-N", std::to_string(inodes), "-U",
           uuid, "-E",
           "hash_seed=" + uuid + ",root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard",
           "-d", root, image, std::to_string(mib) + "M"},
          "", o)
          .status()
          .withContext("mke2fs"));
  HYPER_ASSIGN_OR_RETURN(std::string dump, host::runChecked({"dumpe2fs", image}, "", o));
  HYPER_ASSIGN_OR_RETURN(std::vector<uint64_t> used, usedInodes(dump));
  std::string commands;
  for (uint64_t ino : used) {
    const std::string at = "sif <" + std::to_string(ino) + "> ";
    for (const char* field : {"atime", "mtime", "ctime", "crtime"}) {
      commands += at + field + " @0\n" + at + field + "_extra 0\n";
    }
  }
  for (const char* field : {"mkfs_time", "wtime", "mtime", "lastcheck"}) {
    commands += std::string("ssv ") + field + " @0\n";
  }
  const std::string script = image + ".debugfs";
  HYPER_RETURN_IF_ERROR(writeFileAtomically(script, commands, 0600));
  auto fixed = host::runCommand({"debugfs", "-w", "-f", script, image}, "", o);
  std::filesystem::remove(script, ec);
  HYPER_RETURN_IF_ERROR(fixed.status().withContext("debugfs"));
  // debugfs exits 0 whatever its commands did: any line but its banner is a failed command.
  std::string errors;
  size_t start = 0;
  while (start < fixed->err.size()) {
    size_t end = fixed->err.find('\n', start);
    end = end == std::string::npos ? fixed->err.size() : end;
    const std::string line = fixed->err.substr(start, end - start);
    if (!line.empty() && line.rfind("debugfs ", 0) != 0 && errors.size() < 300) {
      errors += (errors.empty() ? "" : "; ") + line;
    }
    start = end + 1;
  }
  if (fixed->exitCode != 0 || !errors.empty()) {
    return Status::error("debugfs (fixing the image's timestamps): " +
                         (errors.empty() ? "exit " + std::to_string(fixed->exitCode) : errors));
  }
  return Status::ok();
}

std::string aptListPrefix(const std::string& mirror, const std::string& suite) {
  std::string uri = mirror;
  for (const char* scheme : {"http://", "https://"}) {
    if (uri.rfind(scheme, 0) == 0) {
      uri = uri.substr(std::string(scheme).size());
    }
  }
  while (!uri.empty() && uri.back() == '/') {
    uri.pop_back();
  }
  std::replace(uri.begin(), uri.end(), '/', '_');
  return uri + "_dists_" + suite + "_";
}

Result<SuiteIndex> findSuiteIndex(const std::string& listsDir, const std::string& mirror,
                                  const std::string& suite) {
  namespace fs = std::filesystem;
  const std::string prefix = aptListPrefix(mirror, suite);
  SuiteIndex index;
  index.inRelease = listsDir + "/" + prefix + "InRelease";
  auto text = readFile(index.inRelease, kMaxInReleaseBytes, Symlinks::Refuse);
  if (!text.isOk()) {
    return Status::error("the host's apt lists have no " + suite + " from " + mirror + " (" +
                         index.inRelease +
                         "): expected a suite in the host's sources (add it, then apt-get update)");
  }
  index.digest = store::digestOf(*text);
  // The Date: line of the Release part (after the PGP header of an InRelease).
  size_t at = text->find("\nDate: ");
  if (at != std::string::npos) {
    size_t end = text->find('\n', at + 1);
    index.date = text->substr(at + 7, end == std::string::npos ? std::string::npos : end - at - 7);
  }
  const std::string packages = prefix + "main_binary-amd64_Packages";
  std::error_code ec;
  for (fs::directory_iterator it(listsDir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind(packages, 0) == 0) {
      index.packages.push_back(it->path().string());
    }
  }
  std::sort(index.packages.begin(), index.packages.end());
  if (index.packages.empty()) {
    return Status::error("the host's apt lists have " + suite + " from " + mirror +
                         " but no main/binary-amd64 Packages index for it (apt-get update)");
  }
  return index;
}

std::string uuidFromHex(const std::string& hex) {
  std::string h = hex.substr(0, 32);
  h.resize(32, '0');
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}

Status writeTreeFiles(const std::string& root, const std::vector<ImageFile>& files) {
  namespace fs = std::filesystem;
  for (size_t i = 0; i < files.size(); ++i) {
    const ImageFile& f = files[i];
    const std::string path = root + f.path;
    // Never through a symlink: one the packages made (/bin -> usr/bin, or an absolute one) would
    // lead the write elsewhere, possibly out of the image.
    std::string at = root;
    for (size_t start = 1; start < f.path.size();) {
      size_t end = f.path.find('/', start);
      if (end == std::string::npos) {
        break;
      }
      at += "/" + f.path.substr(start, end - start);
      struct stat st {};
      if (::lstat(at.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
        return Status::error("spec.rootfs.files[" + std::to_string(i) +
                             "].path: " + at.substr(root.size()) +
                             " is a symlink in the image: expected a path through real "
                             "directories (like /usr/bin rather than /bin)");
      }
      start = end + 1;
    }
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    // A file the packages made is replaced, never followed.
    fs::remove(path, ec);
    HYPER_RETURN_IF_ERROR(writeFileAtomically(path, f.content, f.mode));
    ::chmod(path.c_str(), f.mode);
  }
  return Status::ok();
}

Result<std::string> buildRootfsImage(const BuildSpec& spec, const SuiteIndex& index,
                                     const std::string& scratch, const std::string& uuid,
                                     const host::CommandOptions& options, BuildLog& log) {
  namespace fs = std::filesystem;
  const std::string root = scratch + "/root";
  // The lists are copied in before mmdebstrap's apt runs, and its own update is skipped: the
  // build installs what the key's index names. Paths are apt's list names (letters, digits,
  // '.', '_', '-'), checked so the hook's shell sees nothing else.
  std::string copy = "mkdir -p \"$1/var/lib/apt/lists/partial\" && cp";
  for (const std::string& path : [&] {
         std::vector<std::string> all = {index.inRelease};
         all.insert(all.end(), index.packages.begin(), index.packages.end());
         return all;
       }()) {
    for (char c : path) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '_' ||
            c == '-' || c == '+' || c == '~')) {
        return Status::error("apt list path " + path + " has a character hyper does not pass on");
      }
    }
    copy += " " + path;
  }
  copy += " \"$1/var/lib/apt/lists/\"";
  // In a mount namespace of its own: mmdebstrap mounts proc, sys and dev inside the tree, and a
  // build killed (timeout, cancel) would leave those mounts on the host; they go with the
  // namespace instead.
  std::vector<std::string> argv = {"unshare",
                                   "--mount",
                                   "--propagation",
                                   "private",
                                   "mmdebstrap",
                                   "--quiet",
                                   "--mode=root",
                                   "--format=directory",
                                   "--variant=" + spec.variant,
                                   "--skip=update",
                                   "--setup-hook=" + copy,
                                   "--aptopt=Acquire::Languages \"none\""};
  if (!spec.packages.empty()) {
    std::string include;
    for (const auto& p : spec.packages) {
      include += (include.empty() ? "" : ",") + p;
    }
    argv.push_back("--include=" + include);
  }
  argv.push_back(spec.suite);
  argv.push_back(root);
  argv.push_back(spec.mirror);
  host::CommandOptions o = options;
  o.cwd = scratch;
  o.env = {"SOURCE_DATE_EPOCH=0", "TZ=UTC", "LC_ALL=C.UTF-8"};
  o.maxOutputBytes = 1u << 20;
  HYPER_ASSIGN_OR_RETURN(host::CommandResult r, host::runCommand(argv, "", o));
  if (r.exitCode != 0 || r.timedOut || r.cancelled) {
    // Its whole stderr goes to the build log; the error keeps the line that says why.
    log += r.err;
    std::string why;
    size_t start = 0;
    while (start < r.err.size()) {
      size_t end = r.err.find('\n', start);
      end = end == std::string::npos ? r.err.size() : end;
      std::string line = r.err.substr(start, end - start);
      if (line.rfind("E: ", 0) == 0 && why.empty()) {
        why = line.substr(3, 300);
      }
      start = end + 1;
    }
    if (r.timedOut || r.cancelled) {
      why = r.timedOut ? "timed out (its process group killed)" : "cancelled";
    }
    return Status::error("mmdebstrap " + spec.suite + " (" + spec.variant +
                         ") failed: " + (why.empty() ? "exit " + std::to_string(r.exitCode) : why) +
                         " (the build log has its output; is " + spec.mirror + " reachable?)");
  }
  log += "mmdebstrap " + spec.suite + " (" + spec.variant + ", index " + index.digest + ")\n";
  HYPER_RETURN_IF_ERROR(writeTreeFiles(root, spec.files));
  if (!spec.files.empty()) {
    log += "files: " + std::to_string(spec.files.size()) + "\n";
  }
  const std::string image = scratch + "/rootfs." + spec.format;
  if (spec.format == "ext4") {
    HYPER_RETURN_IF_ERROR(makeExt4Image(root, image, uuid, spec.sizeMiB, o));
  } else {
    HYPER_RETURN_IF_ERROR(
        host::runChecked({"mkfs.erofs", "--quiet", "-T0", "--all-root", "-U" + uuid, image, root},
                         "", o)
            .status()
            .withContext("mkfs.erofs"));
  }
  log += spec.format + " image, filesystem UUID " + uuid + "\n";
  std::error_code ec;
  fs::remove_all(root, ec);
  return image;
}

}  // namespace hyper::providers::build
