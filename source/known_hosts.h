#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace hyper::controller {

// An OpenSSH known_hosts file (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"), used to check the host key
// an ssh git server presents. libgit2 1.5 hands the raw key to a callback and checks nothing
// itself.
//
// Understood: one entry per line, "[marker] hosts keytype base64-key [comment]"; hosts is a comma
// list of names or patterns ("*" and "?" wildcards, "!" negation; a line whose negated pattern
// matches does not apply), names of non-default ports written "[host]:port", or one hashed name
// "|1|base64-salt|base64-hmac-sha1"; blank lines and "#" comments. Names are matched
// case-insensitively. "@revoked" rejects its key for every host (stricter than OpenSSH, which
// scopes it to the line's hosts); "@cert-authority" lines are skipped, because libgit2 1.5 does
// not pass host certificates. A malformed line is an error for the whole file ("FILE:LINE: ..."):
// a trust anchor that is half read is not trusted.
class KnownHosts {
 public:
  static Result<KnownHosts> parse(std::string_view text, const std::string& displayPath);
  // Reads and parses `path`.
  static Result<KnownHosts> load(const std::string& path);

  // Ok when `keyBlob` (the public key in SSH wire format, as the server sent it) is listed for
  // `host` at `port` ("host" for port 22, "[host]:port" otherwise) and not revoked. Otherwise an
  // error that names the host, the key's type and SHA256 fingerprint, and the file.
  Status verify(std::string_view host, int port, std::string_view keyBlob) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    int line = 0;
    bool revoked = false;
    bool certAuthority = false;
    std::vector<std::string> patterns;  // lowercased; "!" first for a negated one
    std::string salt;                   // hashed entry: raw salt and HMAC-SHA1
    std::string hash;
    std::string keyType;
    std::string key;  // decoded wire-format blob
  };
  static bool matches(const Entry& entry, const std::string& name);

  std::string file_;
  std::vector<Entry> entries_;
};

// The type named inside an SSH wire-format public key ("ssh-ed25519", "ecdsa-sha2-nistp256"), or
// "" when the blob is malformed.
std::string sshKeyType(std::string_view blob);

// "SHA256:" and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints it.
std::string sshKeyFingerprint(std::string_view blob);

// The name known_hosts lists a host under: "host" for port 22, "[host]:port" otherwise.
std::string knownHostsName(std::string_view host, int port);

}  // namespace hyper::controller
