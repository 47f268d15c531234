#include "providers/build/debian_package.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <vector>

#include "base/file.h"
#include "base/sha256.h"
#include "store/artifact_store.h"

namespace hyper::providers::build {

namespace {

constexpr size_t kMaxControlBytes = 1 << 20;
constexpr size_t kMaxControlFields = 200;

std::string trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) {
    ++b;
  }
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

std::string statStamp(const char* path) {
  struct stat st {};
  if (::stat(path, &st) != 0) {
    return "-";
  }
  return std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

// `apt-cache show --no-all-versions NAME`: the candidate version's paragraph.
Result<host::CommandResult> aptCacheShow(const std::string& name) {
  host::CommandOptions options;
  options.timeout = std::chrono::seconds(60);
  options.maxOutputBytes = 4 << 20;
  return host::runCommand({"apt-cache", "show", "--no-all-versions", name}, "", options);
}

}  // namespace

std::map<std::string, std::string> parseControlParagraph(std::string_view text) {
  std::map<std::string, std::string> fields;
  text = text.substr(0, kMaxControlBytes);
  std::string* last = nullptr;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line == "\r") {
      if (!fields.empty()) {
        break;  // the first paragraph ends
      }
      continue;
    }
    if (line[0] == ' ' || line[0] == '\t') {
      if (last != nullptr) {
        *last += "\n" + trim(line);
      }
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      last = nullptr;
      continue;
    }
    if (fields.size() >= kMaxControlFields) {
      break;
    }
    std::string name = trim(line.substr(0, colon));
    last = &fields[name];
    *last = trim(line.substr(colon + 1));
  }
  return fields;
}

std::string kernelImageDependency(std::string_view depends) {
  std::string found;
  int count = 0;
  size_t start = 0;
  while (start <= depends.size()) {
    size_t end = depends.find_first_of(",|", start);
    if (end == std::string_view::npos) {
      end = depends.size();
    }
    std::string item = trim(depends.substr(start, end - start));
    start = end + 1;
    std::string name = item.substr(0, item.find_first_of(" (:"));
    constexpr std::string_view kPrefix = "linux-image-";
    if (name.size() > kPrefix.size() && name.rfind(kPrefix, 0) == 0 &&
        std::isdigit(static_cast<unsigned char>(name[kPrefix.size()]))) {
      if (name != found) {
        found = name;
        ++count;
      }
    }
    if (end == depends.size()) {
      break;
    }
  }
  return count == 1 ? found : "";
}

std::string aptListsStamp() {
  return statStamp("/var/lib/apt/lists") + "|" + statStamp("/var/cache/apt/pkgcache.bin") + "|" +
         statStamp("/etc/apt/sources.list") + "|" + statStamp("/etc/apt/sources.list.d");
}

Result<std::vector<std::string>> unknownPackages(const std::vector<std::string>& packages) {
  if (packages.empty()) {
    return std::vector<std::string>{};
  }
  std::vector<std::string> argv = {"apt-cache", "policy"};
  argv.insert(argv.end(), packages.begin(), packages.end());
  host::CommandOptions options;
  options.timeout = std::chrono::seconds(60);
  options.maxOutputBytes = 16u << 20;
  HYPER_ASSIGN_OR_RETURN(std::string out, host::runChecked(argv, "", options));
  // "NAME:" at the start of a line, then "  Candidate: VERSION" ("(none)": nothing to install).
  std::map<std::string, bool> installable;
  std::string current;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    end = end == std::string::npos ? out.size() : end;
    std::string_view line(out.data() + start, end - start);
    start = end + 1;
    if (!line.empty() && line[0] != ' ' && line.back() == ':') {
      current = std::string(line.substr(0, line.size() - 1));
      installable[current] = false;
    } else if (!current.empty() && trim(line).rfind("Candidate:", 0) == 0) {
      installable[current] = trim(line) != "Candidate: (none)";
    }
  }
  std::vector<std::string> unknown;
  for (const auto& p : packages) {
    auto it = installable.find(p);
    if (it == installable.end() || !it->second) {
      unknown.push_back(p);
    }
  }
  return unknown;
}

Result<DebianPackage> Apt::show(const std::string& name) const {
  HYPER_ASSIGN_OR_RETURN(host::CommandResult r, aptCacheShow(name));
  auto fields = parseControlParagraph(r.out);
  if (r.exitCode != 0 || fields.count("Package") == 0) {
    std::string why = trim(r.err.substr(0, r.err.find('\n')));
    return Status::error("package \"" + name + "\" is not known to apt" +
                         (why.empty() ? std::string() : " (" + why + ")") +
                         ": expected a package in the host's apt lists (apt-get update refreshes "
                         "them)");
  }
  DebianPackage p;
  p.name = fields["Package"];
  p.version = fields["Version"];
  p.sha256 = fields["SHA256"];
  if (!fields["Size"].empty()) {
    p.size = std::strtoull(fields["Size"].c_str(), nullptr, 10);
  }
  if (p.version.empty() || !isSha256Hex(p.sha256)) {
    return Status::error("apt-cache show " + name + ": no Version or SHA256 for " + p.name);
  }
  return p;
}

Result<DebianPackage> Apt::resolveKernel(const std::string& name) {
  const std::string stamp = aptListsStamp();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stamp != stamp_) {
      stamp_ = stamp;
      resolved_.clear();
    }
    auto it = resolved_.find(name);
    if (it != resolved_.end()) {
      return it->second;
    }
  }
  HYPER_ASSIGN_OR_RETURN(host::CommandResult meta, aptCacheShow(name));
  auto fields = parseControlParagraph(meta.out);
  std::string target = name;
  if (meta.exitCode == 0 && fields.count("Package") > 0) {
    std::string image = kernelImageDependency(fields["Depends"]);
    if (!image.empty()) {
      target = image;  // a metapackage: the kernel it means today
    }
  }
  HYPER_ASSIGN_OR_RETURN(DebianPackage p, show(target));
  std::lock_guard<std::mutex> lk(mu_);
  if (stamp_ == stamp) {
    resolved_[name] = p;
  }
  return p;
}

Result<std::string> Apt::fetch(const DebianPackage& package, const std::atomic<bool>* cancel,
                               const std::function<void(const std::string&)>& say) {
  namespace fs = std::filesystem;
  auto tell = [&](const std::string& line) {
    if (say) {
      say(line);
    }
  };
  if (!isSha256Hex(package.sha256)) {
    return Status::error("package " + package.name + " has no SHA256 to check its .deb against");
  }
  const std::string path = config_.debCache + "/" + package.sha256 + ".deb";
  std::error_code ec;
  fs::create_directories(config_.debCache, ec);
  if (ec) {
    return Status::error("create " + config_.debCache + " <- " + ec.message());
  }
  if (fs::exists(path, ec)) {
    auto digest = store::digestOfFile(path);
    if (digest.isOk() && *digest == "sha256:" + package.sha256) {
      tell("found " + path + " (its SHA256 checked)");
      return path;
    }
    fs::remove(path, ec);  // other bytes under the name: fetched again
  }
  std::string pattern = config_.debCache + "/download.XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    return Status::error("create a download directory in " + config_.debCache);
  }
  const std::string dir(buf.data());
  RemoveTreeOnExit cleanup(dir);
  tell("downloading " + package.name + " " + package.version +
       (package.size > 0 ? " (" + std::to_string((package.size + (1u << 20) - 1) >> 20) + " MiB)"
                         : std::string()) +
       " from the mirror in apt's sources (apt-get download) into " + config_.debCache);
  host::CommandOptions options;
  options.cwd = dir;
  options.timeout = config_.timeout;
  options.cancel = cancel;
  options.maxOutputBytes = 1 << 20;
  auto got = host::runChecked({"apt-get", "download", "-q", package.name + "=" + package.version},
                              "", options);
  if (!got.isOk()) {
    return got.status().withContext("download " + package.name + " " + package.version +
                                    " (apt-get update refreshes stale package lists)");
  }
  std::string deb;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".deb") {
      deb = it->path().string();
    }
  }
  if (deb.empty()) {
    return Status::error("apt-get download " + package.name + " left no .deb in " + dir);
  }
  HYPER_ASSIGN_OR_RETURN(std::string digest, store::digestOfFile(deb));
  if (digest != "sha256:" + package.sha256) {
    return Status::error("the downloaded " + package.name + " " + package.version + " has " +
                         digest + ", not the sha256:" + package.sha256 + " apt's lists give");
  }
  if (::rename(deb.c_str(), path.c_str()) != 0) {
    return Status::error("rename " + deb + " to " + path);
  }
  std::error_code sizeError;
  const uintmax_t fetched = fs::file_size(path, sizeError);
  tell("downloaded " + path + (sizeError ? "" : " (" + std::to_string(fetched) + " bytes)") +
       ", its SHA256 checked");
  return path;
}

}  // namespace hyper::providers::build
