#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "source/source.h"

struct git_repository;
struct git_remote;
struct git_oid;

namespace hyper::controller {

// Limits of GitSource::exportTree: a tree that comes from git is hostile.
struct TreeExportLimits {
  size_t maxEntries = 100000;                 // files, directories and links, all together
  uint64_t maxBytes = uint64_t{2} << 30;      // the files' bytes, all together
  uint64_t maxFileBytes = uint64_t{1} << 30;  // one file
  int maxDepth = 64;                          // directories below the top
};

// What exportTree wrote.
struct ExportedTree {
  std::string commit;  // 40 hex
  size_t files = 0;
  uint64_t bytes = 0;
};

// Manifests in a git repository, read with libgit2.
//
// The objects live in a bare repository at spec.cacheDir (created when missing) that hyper owns;
// the remote is anonymous, so the URL — and any credentials in it — is never written there. A
// fetch force-updates the local ref from the remote's ("+" refspec), so a force-push is followed
// like any other move. spec.ref is a branch (refs/heads/X), a tag (refs/tags/X), a full ref name
// ("refs/..."), or a 40-hex commit id, which is pinned: after the first successful fetch, changed()
// is false without touching the network.
//
// Files are the *.yaml, *.yml and *.json blobs under spec.path at the commit (hidden entries
// skipped, symlinks and submodules ignored), with repository-relative paths, sorted. Blob contents
// are kept in memory by blob id between fetches, so an unchanged file is not read again.
//
// ssh (ssh://, scp-like): open() refuses it without spec.knownHostsFile; at every connection the
// host key the server presents must be listed for the host there (known_hosts.h), before any
// credential is sent. Authentication uses spec.sshKeyFile (an unencrypted private key, mode 0600
// or 0400, KEY.pub beside it when present) or else the ssh agent, as the URL's user or "git".
//
// Not thread-safe (see Source). http(s) connections time out after spec.timeout without progress
// (git_stream.h); ssh gets the connect deadline only.
class GitSource : public Source {
 public:
  static Result<std::unique_ptr<GitSource>> open(const SourceSpec& spec);
  ~GitSource() override;
  GitSource(const GitSource&) = delete;
  GitSource& operator=(const GitSource&) = delete;

  // "git <url without userinfo> ref <ref>[ path <path>]".
  std::string describe() const override;
  // Lists the remote's refs (no fetch) and compares the ref's id with the one last fetched.
  Result<bool> changed() override;
  Result<Snapshot> fetch() override;
  // The commit spec.ref names on the remote now, from its list of refs (no fetch): a branch's
  // tip, an annotated tag's commit; a pinned commit id as it is, without the network.
  Result<std::string> remoteCommit();

  // Fetches spec.ref as fetch() does and writes the whole tree below spec.path at that commit into
  // `dest`, an existing empty directory (a build's source): directories 0755, files 0644 or 0755 as
  // git has them, symlinks as symlinks with their target as written (never followed here).
  // Entries go in with openat/mkdirat/symlinkat below descriptors of directories this call made,
  // so no entry can lead the writing out of `dest`. A submodule, a name that is empty, "." or "..",
  // or has a '/', a duplicate name, or a tree past `limits` is an error naming the entry's path;
  // what was written by then is the caller's to remove.
  Result<ExportedTree> exportTree(const std::string& dest, const TreeExportLimits& limits = {});

 private:
  struct RemoteRef;
  struct Fetched;
  struct TreeListing;
  // Keys are raw 20-byte object ids, which are already uniformly distributed.
  struct OidKeyHash {
    size_t operator()(const std::string& key) const;
  };
  using TreeCache = std::unordered_map<std::string, std::shared_ptr<const TreeListing>, OidKeyHash>;
  using BlobCache = std::unordered_map<std::string, std::shared_ptr<const std::string>, OidKeyHash>;
  GitSource(const SourceSpec& spec, git_repository* repo);

  // The remote ref spec.ref names, from the connected remote's advertisement; with `peel`, an
  // annotated tag's id is the commit's it points to rather than the tag object's.
  Result<RemoteRef> findRef(git_remote* remote, bool peel = false) const;
  // The id spec.ref names on the remote (ls-remote).
  Result<std::string> remoteId(bool peel = false);
  // Brings the commit into the cache and returns it with the id the remote advertised.
  Result<Fetched> fetchCommit();
  Result<std::vector<SourceFile>> readFiles(const std::string& commitHex);
  // The manifests below a tree, from trees_ when its id was listed before; records every tree
  // used in `next`.
  Result<std::shared_ptr<const TreeListing>> listTree(const git_oid& id, TreeCache& next,
                                                      int depth = 0);
  void keepTree(const std::string& key, TreeCache& next) const;
  // "<operation> <- <libgit2's last error>", with credentials scrubbed.
  Status gitError(const std::string& operation) const;
  std::string redact(std::string message) const;
  // The credentials file's user and token, re-read at every connection (a rotated token needs
  // no restart); nullopt without a file.
  Result<std::optional<GitCredentials>> fileCredentials() const;

  git_repository* repo_ = nullptr;
  std::string url_;       // as given; may carry credentials, never shown
  std::string shownUrl_;  // userinfo stripped
  std::string ref_;
  std::string path_;
  std::string cacheDir_;
  std::string secretUserinfo_;  // "user:password" from the URL, for scrubbing messages
  std::string secretPassword_;
  std::string sshKeyFile_;        // "" = the ssh agent
  std::string sshPublicKeyFile_;  // sshKeyFile_ + ".pub" when that exists
  std::string knownHostsFile_;
  std::string credentialsFile_;
  mutable std::string fileToken_;  // the credentials file's token as last read, for scrubbing
  bool pinned_ = false;
  // Set by the last successful fetch().
  std::optional<std::string> lastRemoteId_;  // the id the remote advertised for the ref
  std::optional<std::string> lastCommit_;
  BlobCache blobs_;  // blob id -> content
  TreeCache trees_;
};

// The URL with any userinfo ("user:password@") removed: "https://u:p@h/x.git" -> "https://h/x.git".
// Strings that are not scheme URLs (paths, scp-like "git@host:x") are returned unchanged.
std::string stripUrlCredentials(const std::string& url);

}  // namespace hyper::controller
