#include "source/git_source.h"

#include "base/fd.h"
#include "base/secret.h"
#include "controller/hold.h"
#include "source/git_stream.h"
#include "source/known_hosts.h"

#include <fcntl.h>
#include <git2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace hyper::controller {
namespace fs = std::filesystem;

namespace {

template <typename T, void (*Free)(T*)>
struct GitFree {
  void operator()(T* p) const {
    if (p != nullptr) {
      Free(p);
    }
  }
};
template <typename T, void (*Free)(T*)>
using GitPtr = std::unique_ptr<T, GitFree<T, Free>>;

using RemotePtr = GitPtr<git_remote, git_remote_free>;
using ObjectPtr = GitPtr<git_object, git_object_free>;
using CommitPtr = GitPtr<git_commit, git_commit_free>;
using TreePtr = GitPtr<git_tree, git_tree_free>;
using TreeEntryPtr = GitPtr<git_tree_entry, git_tree_entry_free>;
using BlobPtr = GitPtr<git_blob, git_blob_free>;
using OdbPtr = GitPtr<git_odb, git_odb_free>;

constexpr int kMaxDirectoryDepth = 64;
// The loader's default limit (LoaderLimits::maxFileBytes): a bigger blob is reported, not read.
const size_t kMaxFileBytes = LoaderLimits{}.maxFileBytes;
using ReferencePtr = GitPtr<git_reference, git_reference_free>;
using OdbPtr = GitPtr<git_odb, git_odb_free>;

// git_libgit2_init once per process; C++ guarantees the static is initialised exactly once even
// with concurrent callers. Never shut down: sources may live until exit.
Status initLibgit2() {
  static const int rc = git_libgit2_init();
  if (rc < 0) {
    const git_error* e = git_error_last();
    return Status::error(std::string("libgit2 init <- ") + (e ? e->message : "unknown error"));
  }
  return Status::ok();
}

std::string oidHex(const git_oid& id) {
  char buf[GIT_OID_HEXSZ + 1];
  git_oid_tostr(buf, sizeof(buf), &id);
  return buf;
}

std::string oidKey(const git_oid& id) {
  return std::string(reinterpret_cast<const char*>(id.id), GIT_OID_RAWSZ);
}

bool isFullCommitId(const std::string& ref) {
  return ref.size() == GIT_OID_HEXSZ &&
         std::all_of(ref.begin(), ref.end(), [](unsigned char c) { return std::isxdigit(c); });
}

bool isManifestName(const std::string& name) {
  auto endsWith = [&](const char* suffix) {
    std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  return endsWith(".yaml") || endsWith(".yml") || endsWith(".json");
}

// The userinfo of a scheme URL ("user:password" in "https://user:password@host/x"), or "".
std::string urlUserinfo(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) {
    return "";
  }
  size_t start = scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority =
      url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  size_t at = authority.rfind('@');
  return at == std::string::npos ? "" : authority.substr(0, at);
}

std::string percentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

void replaceAll(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) {
    return;
  }
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

std::string normalisePath(std::string path) {
  while (!path.empty() && path.front() == '/') {
    path.erase(path.begin());
  }
  while (!path.empty() && path.back() == '/') {
    path.pop_back();
  }
  if (path == ".") {
    return "";
  }
  return fs::path(path).lexically_normal().generic_string();
}

// The URLs libgit2 1.5 sends over ssh: ssh://, ssh+git://, git+ssh://, and scp-like
// "[user@]host:path" (no scheme, a colon before any slash, as git reads it, and not an existing
// local path). Whatever this misses still meets checkHostKey.
bool isSshUrl(const std::string& url) {
  for (const char* scheme : {"ssh://", "ssh+git://", "git+ssh://"}) {
    if (url.rfind(scheme, 0) == 0) {
      return true;
    }
  }
  size_t colon = url.find(':');
  if (url.find("://") != std::string::npos || colon == std::string::npos || url.find('/') < colon) {
    return false;
  }
  std::error_code ec;
  return !fs::exists(url, ec);
}

// The port of an ssh URL (22 when it names none, and always for scp-like URLs).
int sshUrlPort(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) {
    return 22;
  }
  size_t start = scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority =
      url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  if (size_t at = authority.rfind('@'); at != std::string::npos) {
    authority.erase(0, at + 1);
  }
  size_t colon = authority.rfind(':');
  size_t bracket = authority.rfind(']');
  if (colon == std::string::npos || (bracket != std::string::npos && colon < bracket) ||
      colon + 1 == authority.size()) {
    return 22;
  }
  std::string digits = authority.substr(colon + 1);
  if (digits.size() > 5 ||
      !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return 22;
  }
  return std::stoi(digits);
}

// What the remote callbacks need; one per connection, passed as libgit2's payload.
struct CredentialState {
  std::string user;
  std::string password;
  int attempts = 0;
  // ssh:
  bool ssh = false;
  int port = 22;
  std::string keyFile;        // "" = the agent
  std::string publicKeyFile;  // "" = derived from the private key by libssh2
  std::string knownHostsFile;
  bool hostKeyVerified = false;
  bool keyOffered = false;
};

// Credentials from the URL's userinfo for http(s); for ssh the key file, or else the ssh agent.
// libgit2 calls again after each rejected credential, so the attempts are bounded.
int acquireCredential(git_credential** out, const char* /*url*/, const char* userFromUrl,
                      unsigned int allowed, void* payload) {
  auto* state = static_cast<CredentialState*>(payload);
  if (++state->attempts > 3) {
    git_error_set_str(GIT_ERROR_NET, "authentication failed");
    return GIT_EAUTH;
  }
  std::string user = userFromUrl != nullptr && *userFromUrl != '\0' ? userFromUrl : state->user;
  if (user.empty()) {
    user = "git";
  }
  if (state->ssh && !state->hostKeyVerified) {
    // checkHostKey runs first; never send credentials to a host that was not verified, whatever
    // order a libgit2 version calls the callbacks in.
    git_error_set_str(GIT_ERROR_SSH, "ssh host key not verified; refusing to authenticate");
    return GIT_EAUTH;
  }
  if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) != 0 && !state->password.empty()) {
    return git_credential_userpass_plaintext_new(out, state->user.c_str(), state->password.c_str());
  }
  if ((allowed & GIT_CREDENTIAL_SSH_KEY) != 0 && !state->keyFile.empty()) {
    if (state->keyOffered) {
      // libgit2 asks again only when the server refused the key.
      std::string message = "ssh authentication as " + user + " failed: the server refused key " +
                            state->keyFile + " (is its public key in " + user +
                            "'s authorized_keys?)";
      git_error_set_str(GIT_ERROR_SSH, message.c_str());
      return GIT_EAUTH;
    }
    state->keyOffered = true;
    return git_credential_ssh_key_new(
        out, user.c_str(), state->publicKeyFile.empty() ? nullptr : state->publicKeyFile.c_str(),
        state->keyFile.c_str(), nullptr);
  }
  if ((allowed & GIT_CREDENTIAL_SSH_KEY) != 0) {
    return git_credential_ssh_key_from_agent(out, user.c_str());
  }
  if ((allowed & GIT_CREDENTIAL_USERNAME) != 0) {
    return git_credential_username_new(out, user.c_str());
  }
  return GIT_PASSTHROUGH;
}

// libgit2 1.5 checks no ssh host key itself: the key the server presented must be listed for the
// host in the known_hosts file, re-read at every connection so that an edited file needs no
// restart. TLS certificates keep libgit2's own verdict.
int checkHostKey(git_cert* cert, int /*valid*/, const char* host, void* payload) {
  auto* state = static_cast<CredentialState*>(payload);
  if (cert == nullptr || cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2) {
    return GIT_PASSTHROUGH;
  }
  std::string hostName = host != nullptr ? host : "";
  auto fail = [](const std::string& message) {
    git_error_set_str(GIT_ERROR_SSH, message.c_str());
    return GIT_ECERTIFICATE;
  };
  if (state->knownHostsFile.empty()) {
    return fail("refusing ssh to " + knownHostsName(hostName, state->port) +
                ": no known_hosts file to check its host key against (set source.knownHostsFile "
                "or --source-known-hosts)");
  }
  const auto* key = reinterpret_cast<const git_cert_hostkey*>(cert);
  if ((key->type & GIT_CERT_SSH_RAW) == 0 || key->hostkey == nullptr || key->hostkey_len == 0) {
    return fail("host key verification failed: " + knownHostsName(hostName, state->port) +
                " presented no host key that can be checked");
  }
  auto hosts = KnownHosts::load(state->knownHostsFile);
  if (!hosts.isOk()) {
    return fail("host key verification failed <- " + hosts.status().message());
  }
  Status verified =
      hosts->verify(hostName, state->port, std::string_view(key->hostkey, key->hostkey_len));
  if (!verified.isOk()) {
    return fail(verified.message());
  }
  state->hostKeyVerified = true;
  // A new connection: its authentication starts afresh.
  state->keyOffered = false;
  state->attempts = 0;
  return 0;
}

CredentialState credentialsFromUrl(const std::string& url) {
  CredentialState creds;
  creds.ssh = isSshUrl(url);
  creds.port = sshUrlPort(url);
  std::string userinfo = urlUserinfo(url);
  size_t colon = userinfo.find(':');
  creds.user = percentDecode(userinfo.substr(0, colon));
  if (colon != std::string::npos) {
    creds.password = percentDecode(userinfo.substr(colon + 1));
  }
  return creds;
}

// `creds` must outlive every use of the remote's connection: libgit2 keeps the payload pointer.
int connectForFetch(git_remote* remote, CredentialState& creds) {
  git_remote_callbacks callbacks = GIT_REMOTE_CALLBACKS_INIT;
  callbacks.credentials = acquireCredential;
  callbacks.certificate_check = checkHostKey;
  callbacks.payload = &creds;
  return git_remote_connect(remote, GIT_DIRECTION_FETCH, &callbacks, nullptr, nullptr);
}

// libgit2 reports a local path that does not exist as "unsupported URL protocol".
Status checkLocalPath(const std::string& url) {
  if (url.find("://") != std::string::npos || url.find(':') != std::string::npos) {
    return Status::ok();
  }
  std::error_code ec;
  if (!fs::exists(url, ec)) {
    return Status::error("no repository at " + url);
  }
  return Status::ok();
}

// A commit's tree, for the file sources of its manifests (Snapshot::tree). It has its own handle
// on the cache repository, opened at the first read: a revision whose manifests name no file
// source costs nothing, and the tree does not depend on the GitSource that made it.
class GitCommitTree : public SourceTree {
 public:
  GitCommitTree(std::string cacheDir, std::string commitHex)
      : cacheDir_(std::move(cacheDir)), commitHex_(std::move(commitHex)) {}

  Result<File> read(const std::string& dir, const std::string& path,
                    size_t maxBytes) const override {
    const std::string context = "read " + joinSourcePath(dir, path) + " in commit " + commitHex_;
    HYPER_ASSIGN_OR_RETURN(TreePtr current, openManifestDir(dir, context));
    File out;
    std::string at;
    size_t start = 0;
    for (;;) {
      size_t end = path.find('/', start);
      const bool last = end == std::string::npos;
      const std::string name = path.substr(start, last ? std::string::npos : end - start);
      at = at.empty() ? name : at + "/" + name;
      const git_tree_entry* entry = git_tree_entry_byname(current.get(), name.c_str());
      if (entry == nullptr) {
        out.refusal = File::Refusal::Missing;
        out.at = at;
        return out;
      }
      const git_filemode_t mode = git_tree_entry_filemode(entry);
      if (mode == GIT_FILEMODE_LINK) {
        out.refusal = File::Refusal::Symlink;
        out.at = at;
        return out;
      }
      if (!last) {
        if (mode != GIT_FILEMODE_TREE) {
          out.refusal = File::Refusal::NotAFile;
          out.at = at;
          out.detail = "not a directory";
          return out;
        }
        git_tree* raw = nullptr;
        if (git_tree_lookup(&raw, repo_.get(), git_tree_entry_id(entry)) < 0) {
          return error(context);
        }
        current.reset(raw);
        start = end + 1;
        continue;
      }
      if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE) {
        out.refusal = File::Refusal::NotAFile;
        out.at = at;
        out.detail = mode == GIT_FILEMODE_TREE ? "a directory" : "a submodule";
        return out;
      }
      HYPER_ASSIGN_OR_RETURN(size_t size, blobSize(entry, context));
      if (size > maxBytes) {
        out.refusal = File::Refusal::TooBig;
        out.at = at;
        out.size = size;
        return out;
      }
      git_blob* rawBlob = nullptr;
      if (git_blob_lookup(&rawBlob, repo_.get(), git_tree_entry_id(entry)) < 0) {
        return error(context);
      }
      BlobPtr blob(rawBlob);
      out.bytes.assign(static_cast<const char*>(git_blob_rawcontent(blob.get())),
                       static_cast<size_t>(git_blob_rawsize(blob.get())));
      return out;
    }
  }

  Result<File> readDirectory(const std::string& dir, const std::string& path,
                             const ArchiveLimits& limits) const override {
    const std::string context =
        "read the directory " + joinSourcePath(dir, path) + " in commit " + commitHex_;
    HYPER_ASSIGN_OR_RETURN(TreePtr current, openManifestDir(dir, context));
    File out;
    std::string at;
    size_t start = 0;
    while (start <= path.size()) {
      size_t end = path.find('/', start);
      end = end == std::string::npos ? path.size() : end;
      const std::string name = path.substr(start, end - start);
      at = at.empty() ? name : at + "/" + name;
      out.at = at;
      const git_tree_entry* entry = git_tree_entry_byname(current.get(), name.c_str());
      if (entry == nullptr) {
        out.refusal = File::Refusal::Missing;
        return out;
      }
      const git_filemode_t mode = git_tree_entry_filemode(entry);
      if (mode != GIT_FILEMODE_TREE) {
        out.refusal = mode == GIT_FILEMODE_LINK ? File::Refusal::Symlink : File::Refusal::NotAFile;
        out.detail = end < path.size()             ? "not a directory"
                     : mode == GIT_FILEMODE_COMMIT ? "a submodule"
                                                   : "a file";
        return out;
      }
      git_tree* raw = nullptr;
      if (git_tree_lookup(&raw, repo_.get(), git_tree_entry_id(entry)) < 0) {
        return error(context);
      }
      current.reset(raw);
      start = end + 1;
    }
    std::vector<ArchiveEntry> entries;
    size_t total = 0;
    out.at.clear();
    HYPER_RETURN_IF_ERROR(collect(current.get(), "", 0, limits, entries, total, out, context));
    if (out.refusal != File::Refusal::None) {
      out.at = joinSourcePath(path, out.at);
      return out;
    }
    out.bytes = encodeDirectoryArchive(std::move(entries));
    return out;
  }

 private:
  using RepositoryPtr = GitPtr<git_repository, git_repository_free>;

  // A blob's size from its object's header: a blob over a limit is never inflated.
  Result<size_t> blobSize(const git_tree_entry* entry, const std::string& context) const {
    git_odb* rawOdb = nullptr;
    if (git_repository_odb(&rawOdb, repo_.get()) < 0) {
      return error(context);
    }
    OdbPtr odb(rawOdb);
    size_t size = 0;
    git_object_t type = GIT_OBJECT_INVALID;
    if (git_odb_read_header(&size, &type, odb.get(), git_tree_entry_id(entry)) < 0) {
      return error(context);
    }
    return size;
  }

  // The tree of the manifest's directory `dir` ("" for the top).
  Result<TreePtr> openManifestDir(const std::string& dir, const std::string& context) const {
    HYPER_RETURN_IF_ERROR(openOnce().withContext(context));
    git_tree* raw = nullptr;
    if (dir.empty()) {
      if (git_tree_lookup(&raw, repo_.get(), git_tree_id(root_.get())) < 0) {
        return error(context);
      }
      return TreePtr(raw);
    }
    git_tree_entry* rawEntry = nullptr;
    if (git_tree_entry_bypath(&rawEntry, root_.get(), dir.c_str()) < 0) {
      return error(context + " <- the manifest's directory " + dir);
    }
    TreeEntryPtr entry(rawEntry);
    if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE ||
        git_tree_lookup(&raw, repo_.get(), git_tree_entry_id(entry.get())) < 0) {
      return Status::error(context + " <- the manifest's directory " + dir + " is not a tree");
    }
    return TreePtr(raw);
  }

  // The entries below `tree` (at `prefix` in the archive) into `entries`, as
  // DirectoryTree::readDirectory collects a directory's; a refusal is left in `out`.
  Status collect(const git_tree* tree, const std::string& prefix, size_t depth,
                 const ArchiveLimits& limits, std::vector<ArchiveEntry>& entries, size_t& total,
                 File& out, const std::string& context) const {
    const size_t count = git_tree_entrycount(tree);
    for (size_t i = 0; i < count; ++i) {
      const git_tree_entry* e = git_tree_entry_byindex(tree, i);
      const std::string rel =
          prefix.empty() ? git_tree_entry_name(e) : prefix + "/" + git_tree_entry_name(e);
      out.at = rel;
      if (entries.size() >= limits.maxEntries) {
        out.refusal = File::Refusal::TooMany;
        out.detail = "entries";
        out.size = limits.maxEntries + 1;
        return Status::ok();
      }
      ArchiveEntry entry;
      entry.path = rel;
      const git_filemode_t mode = git_tree_entry_filemode(e);
      if (mode == GIT_FILEMODE_TREE) {
        if (depth + 1 > limits.maxDepth) {
          out.refusal = File::Refusal::TooMany;
          out.detail = "levels";
          out.size = depth + 1;
          return Status::ok();
        }
        git_tree* raw = nullptr;
        if (git_tree_lookup(&raw, repo_.get(), git_tree_entry_id(e)) < 0) {
          return error(context);
        }
        TreePtr sub(raw);
        entry.type = ArchiveEntry::Type::Directory;
        entries.push_back(std::move(entry));
        HYPER_RETURN_IF_ERROR(
            collect(sub.get(), rel, depth + 1, limits, entries, total, out, context));
        if (out.refusal != File::Refusal::None) {
          return Status::ok();
        }
        continue;
      }
      if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE &&
          mode != GIT_FILEMODE_LINK) {
        out.refusal = File::Refusal::NotAFile;
        out.detail = "a submodule";
        return Status::ok();
      }
      HYPER_ASSIGN_OR_RETURN(size_t size, blobSize(e, context));
      if (mode == GIT_FILEMODE_LINK && (size == 0 || size > 4095)) {
        out.refusal = File::Refusal::NotAFile;
        out.detail = "a symlink whose target has no or more than 4095 bytes";
        return Status::ok();
      }
      if (size > limits.maxBytes - total) {
        out.refusal = File::Refusal::TooBig;
        out.size = total + size;
        return Status::ok();
      }
      git_blob* rawBlob = nullptr;
      if (git_blob_lookup(&rawBlob, repo_.get(), git_tree_entry_id(e)) < 0) {
        return error(context);
      }
      BlobPtr blob(rawBlob);
      entry.type = mode == GIT_FILEMODE_LINK              ? ArchiveEntry::Type::Symlink
                   : mode == GIT_FILEMODE_BLOB_EXECUTABLE ? ArchiveEntry::Type::Executable
                                                          : ArchiveEntry::Type::File;
      entry.content.assign(static_cast<const char*>(git_blob_rawcontent(blob.get())),
                           static_cast<size_t>(git_blob_rawsize(blob.get())));
      if (entry.type == ArchiveEntry::Type::Symlink &&
          entry.content.find('\0') != std::string::npos) {
        out.refusal = File::Refusal::NotAFile;
        out.detail = "a symlink whose target has a NUL byte";
        return Status::ok();
      }
      total += entry.content.size();
      entries.push_back(std::move(entry));
    }
    return Status::ok();
  }

  static Status error(const std::string& context) {
    const git_error* e = git_error_last();
    return Status::error(context + " <- " + (e != nullptr ? e->message : "unknown error"));
  }

  Status openOnce() const {
    if (root_) {
      return Status::ok();
    }
    git_repository* rawRepo = nullptr;
    if (git_repository_open_bare(&rawRepo, cacheDir_.c_str()) < 0) {
      return error("open cache " + cacheDir_);
    }
    RepositoryPtr repo(rawRepo);
    git_oid id;
    git_commit* rawCommit = nullptr;
    if (git_oid_fromstr(&id, commitHex_.c_str()) < 0 ||
        git_commit_lookup(&rawCommit, repo.get(), &id) < 0) {
      return error("read commit");
    }
    CommitPtr commit(rawCommit);
    git_tree* rawTree = nullptr;
    if (git_commit_tree(&rawTree, commit.get()) < 0) {
      return error("read the commit's tree");
    }
    repo_ = std::move(repo);
    root_.reset(rawTree);
    return Status::ok();
  }

  std::string cacheDir_;
  std::string commitHex_;
  // Opened by the first read; root_ (declared after) goes before the repository it belongs to.
  mutable RepositoryPtr repo_;
  mutable TreePtr root_;
};

}  // namespace

struct GitSource::RemoteRef {
  std::string name;  // full remote ref name, e.g. refs/heads/main
  git_oid id;
};

size_t GitSource::OidKeyHash::operator()(const std::string& key) const {
  size_t h = 0;
  std::memcpy(&h, key.data(), std::min(sizeof(h), key.size()));
  return h;
}

struct GitSource::TreeListing {
  std::vector<std::pair<std::string, git_oid>> blobs;  // manifests below the tree, sorted by path
  std::vector<std::string> subtrees;                   // oidKey of each non-hidden subtree
};

struct GitSource::Fetched {
  std::string commit;    // 40 hex
  std::string remoteId;  // what the remote advertised (a tag object for annotated tags)
};

std::string stripUrlCredentials(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) {
    return url;
  }
  size_t start = scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  size_t at = url.rfind('@', end == std::string::npos ? std::string::npos : end - 1);
  if (at == std::string::npos || at < start) {
    return url;
  }
  return url.substr(0, start) + url.substr(at + 1);
}

GitSource::GitSource(const SourceSpec& spec, git_repository* repo)
    : repo_(repo),
      url_(spec.location),
      shownUrl_(stripUrlCredentials(spec.location)),
      ref_(spec.ref.empty() ? "main" : spec.ref),
      path_(normalisePath(spec.path)),
      cacheDir_(spec.cacheDir),
      sshKeyFile_(spec.sshKeyFile),
      knownHostsFile_(spec.knownHostsFile),
      credentialsFile_(spec.credentialsFile) {
  std::string userinfo = urlUserinfo(url_);
  size_t colon = userinfo.find(':');
  // A lone http(s) userinfo is often a token; over ssh it is the login name, which messages may
  // show (scrubbing "root" would also mangle every path under /root).
  if (colon != std::string::npos || !isSshUrl(url_)) {
    secretUserinfo_ = userinfo;
  }
  if (colon != std::string::npos) {
    secretPassword_ = userinfo.substr(colon + 1);
  }
  pinned_ = isFullCommitId(ref_);
  std::error_code ec;
  if (!sshKeyFile_.empty() && fs::is_regular_file(sshKeyFile_ + ".pub", ec)) {
    sshPublicKeyFile_ = sshKeyFile_ + ".pub";
  }
}

GitSource::~GitSource() {
  if (repo_ != nullptr) {
    git_repository_free(repo_);
  }
}

Result<std::unique_ptr<GitSource>> GitSource::open(const SourceSpec& spec) {
  std::string shown = "git " + stripUrlCredentials(spec.location);
  HYPER_RETURN_IF_ERROR(initLibgit2().withContext("open " + shown));
  HYPER_RETURN_IF_ERROR(installGitNetworkTimeout(spec.timeout).withContext("open " + shown));
  if (!spec.caFile.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(spec.caFile, ec)) {
      return Status::error("open " + shown + " <- CA file " + spec.caFile +
                           " does not exist or is not a regular file (expected PEM certificates)");
    }
    // Adds to the system's trust store (set up at libgit2 init); does not replace it.
    if (git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, spec.caFile.c_str(), nullptr) < 0) {
      const git_error* e = git_error_last();
      return Status::error("open " + shown + " <- CA file " + spec.caFile + ": " +
                           (e != nullptr && e->message != nullptr ? e->message : "not loadable"));
    }
  }
  if (spec.location.empty()) {
    return Status::error("open git source <- no repository URL given");
  }
  if (spec.cacheDir.empty()) {
    return Status::error("open " + shown + " <- no cache directory given");
  }
  if (isSshUrl(spec.location)) {
    // Secure by default: an ssh host whose key is not checked could be anyone.
    if (spec.knownHostsFile.empty()) {
      return Status::error("open " + shown +
                           " <- ssh needs a known_hosts file with the server's host key to check "
                           "it against: set source.knownHostsFile (--source-known-hosts), e.g. "
                           "from ssh-keyscan once the fingerprints are verified");
    }
    auto hosts = KnownHosts::load(spec.knownHostsFile);
    if (!hosts.isOk()) {
      return hosts.status().withContext("open " + shown);
    }
    if (!spec.sshKeyFile.empty()) {
      // The same rules as every secret file (owner-only mode, regular, readable, not empty);
      // libssh2 reads the key itself at each connection.
      auto key = readSecretFile(spec.sshKeyFile);
      if (!key.isOk()) {
        return key.status().withContext("open " + shown + " <- ssh key");
      }
    }
  }
  if (!spec.credentialsFile.empty()) {
    // Checked now, so a wrong mode or format stops start-up with its reason; read again at
    // every connection.
    auto creds = readGitCredentialsFile(spec.credentialsFile);
    if (!creds.isOk()) {
      return creds.status().withContext("open " + shown);
    }
  }
  std::error_code ec;
  bool exists = fs::exists(spec.cacheDir, ec);
  bool empty = !exists || fs::is_empty(spec.cacheDir, ec);
  if (!exists) {
    fs::create_directories(spec.cacheDir, ec);
    if (ec) {
      return Status::error("open " + shown + " <- create cache " + spec.cacheDir + ": " +
                           ec.message());
    }
  }
  git_repository* repo = nullptr;
  int rc = empty ? git_repository_init(&repo, spec.cacheDir.c_str(), /*is_bare=*/1)
                 : git_repository_open_bare(&repo, spec.cacheDir.c_str());
  if (rc < 0) {
    const git_error* e = git_error_last();
    return Status::error("open " + shown + " <- " + (empty ? "init" : "open") + " cache " +
                         spec.cacheDir + ": " + (e ? e->message : "unknown error"));
  }
  return std::unique_ptr<GitSource>(new GitSource(spec, repo));
}

std::string GitSource::describe() const {
  return "git " + shownUrl_ + " ref " + ref_ + (path_.empty() ? "" : " path " + path_);
}

std::string GitSource::redact(std::string message) const {
  replaceAll(message, url_, shownUrl_);
  if (!secretUserinfo_.empty()) {
    replaceAll(message, secretUserinfo_ + "@", "");
    replaceAll(message, secretUserinfo_, "***");
  }
  if (!secretPassword_.empty()) {
    replaceAll(message, secretPassword_, "***");
    replaceAll(message, percentDecode(secretPassword_), "***");
  }
  if (!fileToken_.empty()) {
    replaceAll(message, fileToken_, "***");
  }
  return message;
}

Result<std::optional<GitCredentials>> GitSource::fileCredentials() const {
  if (credentialsFile_.empty()) {
    return std::optional<GitCredentials>();
  }
  HYPER_ASSIGN_OR_RETURN(GitCredentials c, readGitCredentialsFile(credentialsFile_));
  fileToken_ = c.token;
  return std::optional<GitCredentials>(std::move(c));
}

Result<GitCredentials> readGitCredentialsFile(const std::string& path) {
  const std::string op = "read git credentials file " + path;
  auto secret = readSecretFile(path);
  if (!secret.isOk()) {
    return secret.status().withContext("read git credentials");
  }
  const std::string& text = secret->reveal();
  const std::string expected = " (expected one line \"user:token\")";
  if (text.find_first_of("\r\n") != std::string::npos) {
    return Status::error(op + " <- more than one line" + expected);
  }
  size_t colon = text.find(':');
  if (colon == std::string::npos) {
    return Status::error(op + " <- no ':' between user and token" + expected);
  }
  GitCredentials c{text.substr(0, colon), text.substr(colon + 1)};
  if (c.user.empty() || c.token.empty()) {
    return Status::error(op + " <- " + (c.user.empty() ? "the user" : "the token") + " is empty" +
                         expected);
  }
  return c;
}

Status GitSource::gitError(const std::string& operation) const {
  const git_error* e = git_error_last();
  std::string cause = e != nullptr && e->message != nullptr ? e->message : "unknown libgit2 error";
  while (!cause.empty() && (cause.back() == '\n' || cause.back() == '.')) {
    cause.pop_back();
  }
  if (std::string idle = takeGitIdleTimeout(); !idle.empty()) {
    cause = idle + " <- " + cause;  // the cause first; libgit2 saw only the closed socket
  }
  if (cause.find("safe.directory") != std::string::npos) {
    // libgit2's ownership check on a local repository that belongs to another user (a bare
    // repository owned by a git user, read by hyperd as root) says only this.
    cause =
        "the repository is owned by another user: list it under safe.directory in the "
        "system or global git config, or run hyperd as its owner <- " +
        cause;
  }
  return Status::error(redact(operation.empty() ? cause : operation + " <- " + cause));
}

Result<GitSource::RemoteRef> GitSource::findRef(git_remote* remote, bool peel) const {
  const git_remote_head** heads = nullptr;
  size_t count = 0;
  if (git_remote_ls(&heads, &count, remote) < 0) {
    return gitError("list refs");
  }
  std::vector<std::string> candidates;
  if (ref_.rfind("refs/", 0) == 0) {
    candidates.push_back(ref_);
  } else {
    candidates.push_back("refs/heads/" + ref_);
    candidates.push_back("refs/tags/" + ref_);
  }
  for (const auto& want : candidates) {
    for (size_t i = 0; i < count; ++i) {
      if (want == heads[i]->name) {
        RemoteRef found{want, heads[i]->oid};
        // An annotated tag is advertised twice: the tag object, then "<name>^{}" with the
        // commit it points to.
        const std::string peeled = want + "^{}";
        for (size_t j = 0; peel && j < count; ++j) {
          if (peeled == heads[j]->name) {
            found.id = heads[j]->oid;
          }
        }
        return found;
      }
    }
  }
  return Status::error("no branch or tag \"" + ref_ + "\" on the remote");
}

namespace {

// An in-memory remote for `url`, with no name and no fetch refspec of its own. It skips the
// url.<base>.insteadOf rewriting of the host's git configuration: a daemon fetches the URL the
// manifests name, not one a user's ~/.gitconfig rewrites. It also avoids a leak: libgit2 1.5.1
// matches every configuration entry against the insteadOf pattern and leaks the PCRE2 match data
// of each entry that does not match (about 20 KiB each, fixed upstream in libgit2 #6382), which
// a poll loop would pay on every fetch.
int createAnonymousRemote(git_remote** out, git_repository* repo, const std::string& url) {
  git_remote_create_options opts = GIT_REMOTE_CREATE_OPTIONS_INIT;
  opts.repository = repo;
  opts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
  return git_remote_create_with_opts(out, url.c_str(), &opts);
}

}  // namespace

Result<GitSource::Fetched> GitSource::fetchCommit() {
  (void)takeGitIdleTimeout();  // a note left by an earlier operation is not about this one
  HYPER_RETURN_IF_ERROR(checkLocalPath(url_));
  CredentialState creds = credentialsFromUrl(url_);  // declared first: outlives the remote
  HYPER_ASSIGN_OR_RETURN(std::optional<GitCredentials> fromFile, fileCredentials());
  if (fromFile) {
    creds.user = fromFile->user;
    creds.password = fromFile->token;
  }
  creds.keyFile = sshKeyFile_;
  creds.publicKeyFile = sshPublicKeyFile_;
  creds.knownHostsFile = knownHostsFile_;
  git_remote* rawRemote = nullptr;
  if (createAnonymousRemote(&rawRemote, repo_, url_) < 0) {
    return gitError("");
  }
  RemotePtr remote(rawRemote);
  git_odb* rawOdb = nullptr;
  if (git_repository_odb(&rawOdb, repo_) < 0) {
    return gitError("open cache object database");
  }
  OdbPtr odb(rawOdb);

  git_fetch_options opts = GIT_FETCH_OPTIONS_INIT;
  opts.callbacks.credentials = acquireCredential;
  opts.callbacks.certificate_check = checkHostKey;
  opts.callbacks.payload = &creds;
  opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  opts.update_fetchhead = 0;

  git_oid target;
  std::string localRef;
  if (pinned_) {
    if (git_oid_fromstr(&target, ref_.c_str()) < 0) {
      return gitError("parse commit id " + ref_);
    }
    if (!git_odb_exists(odb.get(), &target)) {
      // Not every server lets a client ask for a bare commit id (allow-reachable-sha1-in-want),
      // so fetch every branch and tag and look for it there.
      const char* specs[] = {"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"};
      git_strarray refspecs = {const_cast<char**>(specs), 2};
      if (git_remote_fetch(remote.get(), &refspecs, &opts, "hyper: fetch") < 0) {
        return gitError("");
      }
      if (!git_odb_exists(odb.get(), &target)) {
        return Status::error("commit " + ref_ +
                             " not found on the remote (searched all branches and tags)");
      }
    }
    localRef = "refs/hyper/pinned";
  } else {
    if (connectForFetch(remote.get(), creds) < 0) {
      return gitError("");
    }
    HYPER_ASSIGN_OR_RETURN(RemoteRef ref, findRef(remote.get()));
    target = ref.id;
    localRef = ref.name;
    // Unchanged, or moved back to a commit already here (a force-push to an older commit):
    // nothing to download.
    if (!git_odb_exists(odb.get(), &target)) {
      std::string spec = "+" + ref.name + ":" + ref.name;
      char* specs[] = {spec.data()};
      git_strarray refspecs = {specs, 1};
      if (git_remote_download(remote.get(), &refspecs, &opts) < 0) {
        return gitError("");
      }
      if (!git_odb_exists(odb.get(), &target)) {
        return Status::error("the remote advertised " + ref.name + " at " + oidHex(target) +
                             " but did not send it");
      }
    }
    git_remote_disconnect(remote.get());
  }
  // The local ref keeps what was fetched reachable (for `git gc` in the cache) and gives the next
  // fetch something to negotiate from.
  git_oid current;
  if (git_reference_name_to_id(&current, repo_, localRef.c_str()) < 0 ||
      !git_oid_equal(&current, &target)) {
    git_reference* rawRef = nullptr;
    if (git_reference_create(&rawRef, repo_, localRef.c_str(), &target, /*force=*/1,
                             "hyper: fetch") < 0) {
      return gitError("update cache ref " + localRef);
    }
    ReferencePtr refHolder(rawRef);
  }

  git_object* rawObj = nullptr;
  if (git_object_lookup(&rawObj, repo_, &target, GIT_OBJECT_ANY) < 0) {
    return gitError("read " + oidHex(target));
  }
  ObjectPtr obj(rawObj);
  git_object* rawCommit = nullptr;
  if (git_object_peel(&rawCommit, obj.get(), GIT_OBJECT_COMMIT) < 0) {
    return gitError("ref " + ref_ + " (" + oidHex(target) + ") does not name a commit");
  }
  ObjectPtr commit(rawCommit);
  return Fetched{oidHex(*git_object_id(commit.get())), oidHex(target)};
}

void GitSource::keepTree(const std::string& key, TreeCache& next) const {
  auto it = trees_.find(key);
  if (it == trees_.end() || !next.emplace(key, it->second).second) {
    return;
  }
  for (const auto& sub : it->second->subtrees) {
    keepTree(sub, next);
  }
}

Result<std::shared_ptr<const GitSource::TreeListing>> GitSource::listTree(const git_oid& id,
                                                                          TreeCache& next,
                                                                          int depth) {
  std::string key = oidKey(id);
  if (auto it = next.find(key); it != next.end()) {
    return it->second;
  }
  if (auto it = trees_.find(key); it != trees_.end()) {
    keepTree(key, next);
    return it->second;
  }
  git_tree* rawTree = nullptr;
  if (git_tree_lookup(&rawTree, repo_, &id) < 0) {
    return gitError("read tree " + oidHex(id));
  }
  TreePtr tree(rawTree);
  auto listing = std::make_shared<TreeListing>();
  size_t count = git_tree_entrycount(tree.get());
  for (size_t i = 0; i < count; ++i) {
    const git_tree_entry* entry = git_tree_entry_byindex(tree.get(), i);
    std::string name = git_tree_entry_name(entry);
    if (name.empty() || name[0] == '.') {
      continue;  // hidden, as readManifestFiles skips it
    }
    git_filemode_t mode = git_tree_entry_filemode(entry);
    if (mode == GIT_FILEMODE_TREE) {
      // Listing recurses per directory level: a pushed tree must not choose the stack's depth.
      if (depth + 1 > kMaxDirectoryDepth) {
        return Status::error("read tree <- " + name + " is nested deeper than " +
                             std::to_string(kMaxDirectoryDepth) +
                             " directories (limit maxDirectoryDepth)");
      }
      HYPER_ASSIGN_OR_RETURN(auto sub, listTree(*git_tree_entry_id(entry), next, depth + 1));
      listing->subtrees.push_back(oidKey(*git_tree_entry_id(entry)));
      for (const auto& [path, blob] : sub->blobs) {
        listing->blobs.emplace_back(name + "/" + path, blob);
      }
    } else if ((mode == GIT_FILEMODE_BLOB || mode == GIT_FILEMODE_BLOB_EXECUTABLE) &&
               isManifestName(name)) {
      listing->blobs.emplace_back(name, *git_tree_entry_id(entry));
    }
    // Symlinks and submodules are not followed: their targets are not in this tree.
  }
  std::sort(listing->blobs.begin(), listing->blobs.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  next.emplace(key, listing);
  return std::shared_ptr<const TreeListing>(std::move(listing));
}

Result<std::vector<SourceFile>> GitSource::readFiles(const std::string& commitHex) {
  git_oid commitId;
  git_oid_fromstr(&commitId, commitHex.c_str());
  git_commit* rawCommit = nullptr;
  if (git_commit_lookup(&rawCommit, repo_, &commitId) < 0) {
    return gitError("read commit " + commitHex);
  }
  CommitPtr commit(rawCommit);

  std::vector<std::pair<std::string, git_oid>> single;
  std::shared_ptr<const TreeListing> listing;
  TreeCache nextTrees;
  std::string prefix;
  if (path_.empty()) {
    HYPER_ASSIGN_OR_RETURN(listing, listTree(*git_commit_tree_id(commit.get()), nextTrees));
  } else {
    git_tree* rawTree = nullptr;
    if (git_commit_tree(&rawTree, commit.get()) < 0) {
      return gitError("read tree of " + commitHex);
    }
    TreePtr tree(rawTree);
    git_tree_entry* rawEntry = nullptr;
    int rc = git_tree_entry_bypath(&rawEntry, tree.get(), path_.c_str());
    if (rc == GIT_ENOTFOUND) {
      return Status::error("path " + path_ + " not found in commit " + commitHex);
    }
    if (rc < 0) {
      return gitError("find path " + path_ + " in commit " + commitHex);
    }
    TreeEntryPtr entry(rawEntry);
    git_object_t type = git_tree_entry_type(entry.get());
    if (type == GIT_OBJECT_BLOB) {
      // A single file, like readManifestFiles given a file path.
      single.emplace_back(path_, *git_tree_entry_id(entry.get()));
    } else if (type == GIT_OBJECT_TREE) {
      HYPER_ASSIGN_OR_RETURN(listing, listTree(*git_tree_entry_id(entry.get()), nextTrees));
      prefix = path_ + "/";
    } else {
      return Status::error("path " + path_ + " in commit " + commitHex +
                           " is not a directory or a file");
    }
  }
  const auto& blobs = listing ? listing->blobs : single;

  git_odb* rawOdb = nullptr;
  if (git_repository_odb(&rawOdb, repo_) < 0) {
    return gitError("open object database");
  }
  OdbPtr odb(rawOdb);
  BlobCache nextBlobs;
  nextBlobs.reserve(blobs.size());
  std::vector<SourceFile> files;
  files.reserve(blobs.size());
  for (const auto& [path, id] : blobs) {
    std::string key = oidKey(id);
    std::shared_ptr<const std::string> content;
    if (auto it = nextBlobs.find(key); it != nextBlobs.end()) {
      content = it->second;
    } else if (auto old = blobs_.find(key); old != blobs_.end()) {
      content = old->second;
    } else {
      // The size first, from the object's header: a blob over the limit is never inflated.
      size_t size = 0;
      git_object_t type = GIT_OBJECT_INVALID;
      if (git_odb_read_header(&size, &type, odb.get(), &id) == 0 && size > kMaxFileBytes) {
        files.push_back({prefix + path, "", size});
        continue;
      }
      git_blob* rawBlob = nullptr;
      if (git_blob_lookup(&rawBlob, repo_, &id) < 0) {
        return gitError("read " + prefix + path + " in commit " + commitHex);
      }
      BlobPtr blob(rawBlob);
      content = std::make_shared<const std::string>(
          static_cast<const char*>(git_blob_rawcontent(blob.get())),
          static_cast<size_t>(git_blob_rawsize(blob.get())));
    }
    nextBlobs.emplace(key, content);
    files.push_back({prefix + path, *content});
  }
  // Only what this revision uses stays cached, so memory follows the repository's size.
  blobs_ = std::move(nextBlobs);
  trees_ = std::move(nextTrees);
  return files;
}

Result<bool> GitSource::changed() {
  if (pinned_ && lastCommit_.has_value()) {
    return false;
  }
  if (!lastRemoteId_.has_value()) {
    return true;
  }
  HYPER_ASSIGN_OR_RETURN(std::string id, remoteId());
  return id != *lastRemoteId_;
}

Result<std::string> GitSource::remoteCommit() {
  if (pinned_) {
    return ref_;
  }
  return remoteId(/*peel=*/true);
}

Result<std::string> GitSource::remoteId(bool peel) {
  std::string context = "ls-remote " + shownUrl_ + " ref " + ref_;
  (void)takeGitIdleTimeout();  // a note left by an earlier operation is not about this one
  CredentialState creds = credentialsFromUrl(url_);  // declared first: outlives the remote
  HYPER_ASSIGN_OR_RETURN(std::optional<GitCredentials> fromFile, fileCredentials());
  if (fromFile) {
    creds.user = fromFile->user;
    creds.password = fromFile->token;
  }
  creds.keyFile = sshKeyFile_;
  creds.publicKeyFile = sshPublicKeyFile_;
  creds.knownHostsFile = knownHostsFile_;
  git_remote* rawRemote = nullptr;
  if (createAnonymousRemote(&rawRemote, repo_, url_) < 0) {
    return gitError(context);
  }
  RemotePtr remote(rawRemote);
  HYPER_RETURN_IF_ERROR(checkLocalPath(url_).withContext(context));
  if (connectForFetch(remote.get(), creds) < 0) {
    return gitError(context);
  }
  auto ref = findRef(remote.get(), peel);
  git_remote_disconnect(remote.get());
  if (!ref.isOk()) {
    return ref.status().withContext(context);
  }
  return oidHex(ref->id);
}

Result<Snapshot> GitSource::fetch() {
  std::string context = "fetch " + shownUrl_ + " ref " + ref_;
  auto fetched = fetchCommit();
  if (!fetched.isOk()) {
    return fetched.status().withContext(context);
  }
  auto files = readFiles(fetched->commit);
  if (!files.isOk()) {
    return files.status().withContext(context);
  }
  Snapshot snap;
  snap.commit = fetched->commit;
  snap.revision = "git:" + fetched->commit;
  snap.files = std::move(files).value();
  snap.tree = std::make_shared<GitCommitTree>(cacheDir_, fetched->commit);
  git_oid commitId;
  git_oid_fromstr(&commitId, fetched->commit.c_str());
  git_commit* rawCommit = nullptr;
  if (git_commit_lookup(&rawCommit, repo_, &commitId) == 0) {
    CommitPtr commit(rawCommit);
    const char* summary = git_commit_summary(commit.get());
    snap.message = summary != nullptr ? summary : "";
    const char* whole = git_commit_message(commit.get());
    snap.allowPrune = whole != nullptr && messageAllowsPrune(whole);
  }
  if (lastCommit_.has_value() && *lastCommit_ != fetched->commit) {
    git_oid previous;
    if (git_oid_fromstr(&previous, lastCommit_->c_str()) == 0 &&
        git_graph_descendant_of(repo_, &commitId, &previous) != 1) {
      snap.rewound = true;
      snap.previousCommit = *lastCommit_;
    }
  }
  lastRemoteId_ = fetched->remoteId;
  lastCommit_ = fetched->commit;
  return snap;
}

namespace {

// Writes one git tree below the directory `dirfd` (exportTree).
class TreeWriter {
 public:
  TreeWriter(git_repository* repo, const TreeExportLimits& limits, ExportedTree& out)
      : repo_(repo), limits_(limits), out_(out) {}

  Status write(const git_tree* tree, int dirfd, const std::string& at, int depth) {
    if (depth > limits_.maxDepth) {
      return Status::error(at + ": deeper than " + std::to_string(limits_.maxDepth) +
                           " directories");
    }
    const size_t count = git_tree_entrycount(tree);
    for (size_t i = 0; i < count; ++i) {
      const git_tree_entry* entry = git_tree_entry_byindex(tree, i);
      const std::string name = git_tree_entry_name(entry);
      const std::string path = at.empty() ? name : at + "/" + name;
      if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
        return Status::error("an entry named \"" + name + "\" in " + (at.empty() ? "the top" : at) +
                             ": expected a file name");
      }
      if (++entries_ > limits_.maxEntries) {
        return Status::error("more than " + std::to_string(limits_.maxEntries) + " entries");
      }
      const git_filemode_t mode = git_tree_entry_filemode(entry);
      if (mode == GIT_FILEMODE_TREE) {
        git_tree* raw = nullptr;
        if (git_tree_lookup(&raw, repo_, git_tree_entry_id(entry)) < 0) {
          return gitFailure(path);
        }
        TreePtr sub(raw);
        if (::mkdirat(dirfd, name.c_str(), 0755) != 0) {
          return sysFailure(path, "mkdir");
        }
        Fd subfd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!subfd.valid() || ::fchmod(subfd.get(), 0755) != 0) {
          return sysFailure(path, "open");
        }
        HYPER_RETURN_IF_ERROR(write(sub.get(), subfd.get(), path, depth + 1));
      } else if (mode == GIT_FILEMODE_BLOB || mode == GIT_FILEMODE_BLOB_EXECUTABLE ||
                 mode == GIT_FILEMODE_LINK) {
        HYPER_ASSIGN_OR_RETURN(BlobPtr blob, readBlob(entry, path, mode == GIT_FILEMODE_LINK));
        const char* bytes = static_cast<const char*>(git_blob_rawcontent(blob.get()));
        const size_t size = static_cast<size_t>(git_blob_rawsize(blob.get()));
        if (mode == GIT_FILEMODE_LINK) {
          const std::string target(bytes, size);
          if (target.empty() || target.find('\0') != std::string::npos) {
            return Status::error(path + ": a symlink whose target is empty or has a NUL byte");
          }
          if (::symlinkat(target.c_str(), dirfd, name.c_str()) != 0) {
            return sysFailure(path, "symlink");
          }
          continue;
        }
        const mode_t fileMode = mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644;
        Fd fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       fileMode));
        if (!fd.valid() || ::fchmod(fd.get(), fileMode) != 0) {
          return sysFailure(path, "create");
        }
        for (size_t done = 0; done < size;) {
          ssize_t n = ::write(fd.get(), bytes + done, size - done);
          if (n < 0 && errno == EINTR) {
            continue;
          }
          if (n <= 0) {
            return sysFailure(path, "write");
          }
          done += static_cast<size_t>(n);
        }
        ++out_.files;
        out_.bytes += size;
      } else {
        return Status::error(path +
                             ": a submodule (a commit in the tree): not supported, expected "
                             "files, directories and symlinks");
      }
    }
    return Status::ok();
  }

 private:
  // The blob, its size checked from the object's header first: one over the limits is never
  // inflated.
  Result<BlobPtr> readBlob(const git_tree_entry* entry, const std::string& path, bool link) {
    git_odb* rawOdb = nullptr;
    if (git_repository_odb(&rawOdb, repo_) < 0) {
      return gitFailure(path);
    }
    OdbPtr odb(rawOdb);
    size_t size = 0;
    git_object_t type = GIT_OBJECT_INVALID;
    if (git_odb_read_header(&size, &type, odb.get(), git_tree_entry_id(entry)) < 0) {
      return gitFailure(path);
    }
    const uint64_t most = link ? 4096 : limits_.maxFileBytes;
    if (size > most) {
      return Status::error(path + ": " + std::to_string(size) + " bytes, more than " +
                           std::to_string(most) + (link ? " for a symlink's target" : ""));
    }
    if (out_.bytes + size > limits_.maxBytes) {
      return Status::error(path + ": the tree's files are more than " +
                           std::to_string(limits_.maxBytes) + " bytes together");
    }
    git_blob* raw = nullptr;
    if (git_blob_lookup(&raw, repo_, git_tree_entry_id(entry)) < 0) {
      return gitFailure(path);
    }
    return BlobPtr(raw);
  }

  static Status gitFailure(const std::string& path) {
    const git_error* e = git_error_last();
    return Status::error(path + " <- " + (e != nullptr ? e->message : "unknown error"));
  }
  static Status sysFailure(const std::string& path, const char* what) {
    return Status::error(path + ": " + what + " <- " + std::strerror(errno));
  }

  git_repository* repo_;
  const TreeExportLimits& limits_;
  ExportedTree& out_;
  size_t entries_ = 0;
};

}  // namespace

Result<ExportedTree> GitSource::exportTree(const std::string& dest,
                                           const TreeExportLimits& limits) {
  const std::string context = "export " + shownUrl_ + " ref " + ref_ + " to " + dest;
  auto fetched = fetchCommit();
  if (!fetched.isOk()) {
    return fetched.status().withContext(context);
  }
  ExportedTree out;
  out.commit = fetched->commit;
  git_oid commitId;
  git_commit* rawCommit = nullptr;
  if (git_oid_fromstr(&commitId, out.commit.c_str()) < 0 ||
      git_commit_lookup(&rawCommit, repo_, &commitId) < 0) {
    return gitError("read commit " + out.commit).withContext(context);
  }
  CommitPtr commit(rawCommit);
  git_tree* rawTree = nullptr;
  if (git_commit_tree(&rawTree, commit.get()) < 0) {
    return gitError("read the tree of " + out.commit).withContext(context);
  }
  TreePtr tree(rawTree);
  if (!path_.empty()) {
    git_tree_entry* rawEntry = nullptr;
    if (git_tree_entry_bypath(&rawEntry, tree.get(), path_.c_str()) < 0) {
      return Status::error("no " + path_ + " in commit " + out.commit).withContext(context);
    }
    TreeEntryPtr entry(rawEntry);
    git_tree* rawSub = nullptr;
    if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE ||
        git_tree_lookup(&rawSub, repo_, git_tree_entry_id(entry.get())) < 0) {
      return Status::error(path_ + " in commit " + out.commit + " is not a directory")
          .withContext(context);
    }
    tree.reset(rawSub);
  }
  Fd top(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top.valid()) {
    return Status::error("open " + dest + " <- " + std::strerror(errno)).withContext(context);
  }
  TreeWriter writer(repo_, limits, out);
  if (Status s = writer.write(tree.get(), top.get(), "", 0); !s.isOk()) {
    return s.withContext(context + " (commit " + out.commit + ")");
  }
  return out;
}

}  // namespace hyper::controller
