#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "reconciler/loader.h"
#include "reconciler/source_tree.h"

namespace hyper::controller {

// One revision of the desired state, as read from a source.
struct Snapshot {
  // "git:<40-hex commit>" for git, "dir:<16-hex content hash>" for a directory. Shown in status,
  // recorded in the inventory, and the same for the same content.
  std::string revision;
  std::string commit;             // git: the full commit id; dir: empty
  std::string message;            // git: the commit's subject line; dir: empty
  std::vector<SourceFile> files;  // manifests, paths relative to the source root (for diagnostics)
  // Reads the file sources of this revision (Engine::load's tree): the directory, or the commit's
  // tree. Keeps nothing of the Source alive; the loop drops it with the files.
  std::shared_ptr<const SourceTree> tree;
  // dir: `revision` covers the manifests only; the loader's id, which also covers the file
  // sources they name, is the revision (the loop loads first and names it so). git: the commit
  // covers everything.
  bool revisionFromLoader = false;
  // git: the ref moved to a commit that does not contain the previously fetched one (a
  // force-push or a rollback); the loop reports it.
  bool rewound = false;
  std::string previousCommit;
  // The revision approves its own mass delete (git: a `Hyper-Allow-Prune: yes` trailer in the
  // commit message, controller/hold.h). A directory never does: approve it with hyperctl.
  bool allowPrune = false;
};

// Where hyperd reads manifests from. Not thread-safe: the loop owns it and calls it from one
// thread; only wakeFd() is read from another.
class Source {
 public:
  virtual ~Source() = default;

  // One line for status and logs, e.g. "git file:///srv/env.git ref main path envs/host1" or
  // "dir /srv/env". Never contains credentials (userinfo in URLs is stripped).
  virtual std::string describe() const = 0;

  // Cheap "did anything move since the last fetch()" check, done before any fetch. For git: the
  // remote ref's commit (ls-remote) compared with the last fetched one; for a directory: whether
  // the watcher saw a change. True on the first call. Errors (an unreachable remote) are values.
  virtual Result<bool> changed() = 0;

  // Reads the current revision in full. For git: fetch the ref, resolve it, read the tree at the
  // sub-path (blobs whose id did not change since the last fetch are served from memory). A
  // failure leaves the previous snapshot in force for the caller.
  virtual Result<Snapshot> fetch() = 0;

  // A file descriptor that becomes readable when the source may have changed (inotify for a
  // directory, after debounce handling by the caller), or -1 when the source must be polled.
  virtual int wakeFd() const { return -1; }
  // Drains wakeFd() after it became readable. Returns true if a relevant change was seen.
  virtual bool drainWake() { return false; }
};

struct SourceSpec {
  std::string location;  // a directory, or a git URL: /path/repo.git, file://, http(s)://, ssh://
  std::string ref;       // git: branch, tag or 40-hex commit; default "main"
  std::string path;      // sub-path within the repository or directory ("" = the root)
  std::string cacheDir;  // git: where the local clone lives (under the state dir)
  // git over the network: connect deadline and the longest wait for any read or write, or, for
  // ssh, the longest silence in both directions (git_stream.h).
  std::chrono::milliseconds timeout{30000};
  // https: a PEM file of extra CA certificates to trust (a private git server), besides the
  // system's. Process-wide, as libgit2's TLS context is.
  std::string caFile;
  // ssh: the private key to authenticate with (0600 or 0400; KEY.pub next to it is used when
  // present); empty: the ssh agent. The host key must be listed in knownHostsFile (OpenSSH
  // format); ssh without it is refused.
  std::string sshKeyFile;
  std::string knownHostsFile;
  // http(s): a file (mode 0600 or 0400) holding one line "user:token", read at every connection
  // instead of credentials in the URL (which a command line shows to every local user). Its
  // values win over the URL's userinfo and are scrubbed from every message like it.
  std::string credentialsFile;
  // directory: how long fetch() waits for a manifest file being written (modified, not yet
  // closed) to be closed before it reports "still being written" instead of reading it half-way.
  std::chrono::milliseconds settle{2000};
  // directory: no inotify; changed() is always true and every fetch reads the tree, checking
  // files for being written by their size and mtime (a network filesystem, whose remote changes
  // make no inotify event, needs this).
  bool poll = false;
};

// The user and token of a credentials file (SourceSpec::credentialsFile). Errors name the file
// and what was expected, never its content.
struct GitCredentials {
  std::string user;
  std::string token;
};
Result<GitCredentials> readGitCredentialsFile(const std::string& path);

// A directory when `location` is an existing directory that is not a bare git repository (no
// HEAD/objects/refs) and has no scheme; git otherwise.
Result<std::unique_ptr<Source>> openSource(const SourceSpec& spec);

}  // namespace hyper::controller
