#include "store/artifact_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "base/fd.h"
#include "base/file.h"
#include "base/sha256.h"

namespace hyper::store {

namespace {

constexpr std::string_view kPrefix = "sha256:";

Status errnoStatus(const std::string& what) {
  return Status::error(what + " <- " + std::strerror(errno));
}

Status syncDirectory(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) {
    return errnoStatus("fsync " + dir);
  }
  return Status::ok();
}

}  // namespace

// OpenSSL's SHA-256 rather than base's (libsodium): it uses the CPU's SHA instructions where
// there are some, and artifacts are the one place hyper hashes hundreds of megabytes
// (hyper_build_bench: hashing bound ArtifactStore::put at a quarter of cp's speed).
namespace {

std::string digestText(const unsigned char* md) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kPrefix);
  out.reserve(kPrefix.size() + 2 * SHA256_DIGEST_LENGTH);
  for (size_t i = 0; i < SHA256_DIGEST_LENGTH; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// Hashes what `fd` holds from its current offset to the end.
Result<std::string> digestOfFd(int fd, const std::string& path) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Status::error("sha256 of " + path + " <- EVP_DigestInit_ex failed");
  }
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errnoStatus("read " + path);
    }
    if (n == 0) {
      break;
    }
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return digestText(md);
}

}  // namespace

std::string digestOf(std::string_view bytes) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  return digestText(md);
}

Result<std::string> digestOfFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    return errnoStatus("open " + path);
  }
  return digestOfFd(fd.get(), path);
}

bool isDigest(std::string_view digest) {
  return digest.substr(0, kPrefix.size()) == kPrefix && isSha256Hex(digest.substr(kPrefix.size()));
}

Status ArtifactStore::makeDirectories() const {
  for (const char* sub : {"sha256", "keys", "tmp", "provenance"}) {
    std::error_code ec;
    std::filesystem::create_directories(root_ + "/" + sub, ec);
    if (ec) {
      return Status::error("create " + root_ + "/" + sub + " <- " + ec.message());
    }
  }
  return Status::ok();
}

std::string ArtifactStore::pathOf(const std::string& digest) const {
  if (!isDigest(digest)) {
    return "";
  }
  return root_ + "/sha256/" + digest.substr(kPrefix.size());
}

bool ArtifactStore::has(const std::string& digest) const {
  std::string path = pathOf(digest);
  struct stat st {};
  return !path.empty() && ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<std::string> ArtifactStore::put(std::string_view bytes) {
  const std::string digest = digestOf(bytes);
  if (has(digest)) {
    return digest;
  }
  HYPER_RETURN_IF_ERROR(makeDirectories());
  static std::atomic<unsigned> counter{0};
  const std::string tmp = root_ + "/tmp/" + std::to_string(::getpid()) + "." +
                          std::to_string(counter.fetch_add(1)) + "." +
                          digest.substr(kPrefix.size(), 16);
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) {
    return errnoStatus("create " + tmp);
  }
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      Status s = errnoStatus("write " + tmp);
      ::unlink(tmp.c_str());
      return s;
    }
    done += static_cast<size_t>(n);
  }
  // Read-only from here on: an artifact never changes under the digest that names it.
  if (::fchmod(fd.get(), 0444) != 0 || ::fsync(fd.get()) != 0) {
    Status s = errnoStatus("fsync " + tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  fd.reset();
  const std::string path = pathOf(digest);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = errnoStatus("rename " + tmp + " to " + path);
    ::unlink(tmp.c_str());
    return s;
  }
  HYPER_RETURN_IF_ERROR(syncDirectory(root_ + "/sha256"));
  return digest;
}

Result<std::string> ArtifactStore::makeScratchDir(const std::string& label) {
  HYPER_RETURN_IF_ERROR(makeDirectories());
  std::string pattern = root_ + "/tmp/" + label + ".XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    return errnoStatus("create a scratch directory " + pattern);
  }
  return std::string(buf.data());
}

Result<std::string> ArtifactStore::adopt(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0) {
    return errnoStatus("open " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::error("store " + path + ": not a regular file");
  }
  HYPER_ASSIGN_OR_RETURN(std::string digest, digestOfFd(fd.get(), path));
  if (has(digest)) {
    ::unlink(path.c_str());
    return digest;
  }
  HYPER_RETURN_IF_ERROR(makeDirectories());
  // Read-only from here on: an artifact never changes under the digest that names it.
  if (::fchmod(fd.get(), 0444) != 0 || ::fsync(fd.get()) != 0) {
    return errnoStatus("fsync " + path);
  }
  fd.reset();
  const std::string target = pathOf(digest);
  if (::rename(path.c_str(), target.c_str()) != 0) {
    return errnoStatus("rename " + path + " to " + target);
  }
  HYPER_RETURN_IF_ERROR(syncDirectory(root_ + "/sha256"));
  return digest;
}

Result<std::string> ArtifactStore::read(const std::string& digest, size_t maxBytes) const {
  std::string path = pathOf(digest);
  if (path.empty()) {
    return Status::error("\"" + digest + "\" is not an artifact digest (sha256:<64 hex>)");
  }
  HYPER_ASSIGN_OR_RETURN(std::string bytes, readFile(path, maxBytes, Symlinks::Refuse));
  if (digestOf(bytes) != digest) {
    return Status::error("artifact " + path + " no longer has its digest " + digest +
                         ": it was changed on disk");
  }
  return bytes;
}

Status ArtifactStore::recordKey(const std::string& key, const nlohmann::json& result) {
  if (!isSha256Hex(key)) {
    return Status::error("\"" + key + "\" is not a build key (64 hex)");
  }
  HYPER_RETURN_IF_ERROR(makeDirectories());
  return writeFileAtomically(root_ + "/keys/" + key + ".json", result.dump(), 0644);
}

std::optional<nlohmann::json> ArtifactStore::lookupKey(const std::string& key) const {
  if (!isSha256Hex(key)) {
    return std::nullopt;
  }
  auto text = readFile(root_ + "/keys/" + key + ".json", 1 << 20, Symlinks::Refuse);
  if (!text.isOk()) {
    return std::nullopt;
  }
  nlohmann::json record = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!record.is_object() || !record.contains("artifacts") || !record["artifacts"].is_object()) {
    return std::nullopt;  // unreadable: built again
  }
  for (const auto& [name, artifact] : record["artifacts"].items()) {
    if (!artifact.is_object() || !artifact.contains("digest") || !artifact["digest"].is_string() ||
        !has(artifact["digest"].get<std::string>())) {
      return std::nullopt;  // an artifact was collected or removed: not a hit
    }
  }
  return record;
}

Status ArtifactStore::putProvenance(const std::string& digest, const nlohmann::json& envelope) {
  if (!isDigest(digest)) {
    return Status::error("\"" + digest + "\" is not an artifact digest (sha256:<64 hex>)");
  }
  HYPER_RETURN_IF_ERROR(makeDirectories());
  return writeFileAtomically(root_ + "/provenance/" + digest.substr(kPrefix.size()) + ".dsse.json",
                             envelope.dump(), 0644);
}

Result<nlohmann::json> ArtifactStore::provenanceOf(const std::string& digest) const {
  if (!isDigest(digest)) {
    return Status::error("\"" + digest + "\" is not an artifact digest (sha256:<64 hex>)");
  }
  const std::string path = root_ + "/provenance/" + digest.substr(kPrefix.size()) + ".dsse.json";
  HYPER_ASSIGN_OR_RETURN(std::string text, readFile(path, 16u << 20, Symlinks::Refuse));
  nlohmann::json envelope = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (envelope.is_discarded()) {
    return Status::error(path + " is not JSON");
  }
  return envelope;
}

Result<ArtifactStore::GcReport> ArtifactStore::collectGarbage(const std::set<std::string>& keep,
                                                              bool dryRun) {
  GcReport report;
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(root_ + "/sha256", ec)) {
    return report;  // nothing was ever stored
  }
  std::set<std::string> removed;
  for (fs::directory_iterator it(root_ + "/sha256", ec), end; !ec && it != end; it.increment(ec)) {
    std::string hex = it->path().filename().string();
    if (!isSha256Hex(hex)) {
      continue;
    }
    std::string digest = std::string(kPrefix) + hex;
    std::error_code sizeError;
    uint64_t size = it->is_regular_file(sizeError) ? fs::file_size(it->path(), sizeError) : 0;
    if (keep.count(digest) > 0) {
      ++report.kept;
      report.keptBytes += size;
      continue;
    }
    if (!dryRun && ::unlink(it->path().c_str()) != 0 && errno != ENOENT) {
      return errnoStatus("gc: remove " + it->path().string());
    }
    removed.insert(digest);
    report.removedBytes += size;
    if (!dryRun) {
      std::error_code ignored;
      fs::remove(root_ + "/provenance/" + hex + ".dsse.json", ignored);
    }
  }
  if (ec) {
    return Status::error("gc: list " + root_ + "/sha256 <- " + ec.message());
  }
  report.removed.assign(removed.begin(), removed.end());
  for (fs::directory_iterator it(root_ + "/keys", ec), end; !ec && it != end; it.increment(ec)) {
    auto text = readFile(it->path().string(), 1 << 20, Symlinks::Refuse);
    nlohmann::json record =
        text.isOk() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    bool stale = !record.is_object() || !record.contains("artifacts");
    if (!stale) {
      for (const auto& [name, a] : record["artifacts"].items()) {
        std::string digest = a.is_object() ? a.value("digest", "") : "";
        stale = stale || removed.count(digest) > 0 || (!has(digest) && !dryRun);
      }
    }
    if (stale) {
      ++report.recordsRemoved;
      if (!dryRun) {
        std::error_code ignored;  // a record left behind only costs a miss later
        fs::remove(it->path(), ignored);
      }
    }
  }
  if (!dryRun) {
    for (fs::directory_iterator it(root_ + "/tmp", ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code ignored;
      fs::remove_all(it->path(), ignored);  // a scratch directory too
    }
  }
  if (!dryRun && !removed.empty()) {
    HYPER_RETURN_IF_ERROR(syncDirectory(root_ + "/sha256"));
  }
  return report;
}

}  // namespace hyper::store
