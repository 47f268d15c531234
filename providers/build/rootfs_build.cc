#include "providers/build/rootfs_build.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "base/file.h"
#include "store/artifact_store.h"

namespace hyper::providers::build {

namespace {

constexpr size_t kMaxInReleaseBytes = 4u << 20;

}  // namespace

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
  const std::string image = scratch + "/rootfs.erofs";
  HYPER_RETURN_IF_ERROR(
      host::runChecked({"mkfs.erofs", "--quiet", "-T0", "--all-root", "-U" + uuid, image, root}, "",
                       o)
          .status()
          .withContext("mkfs.erofs"));
  log += "erofs image, filesystem UUID " + uuid + "\n";
  std::error_code ec;
  fs::remove_all(root, ec);
  return image;
}

}  // namespace hyper::providers::build
