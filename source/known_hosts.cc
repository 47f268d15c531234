#include "source/known_hosts.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "base/base64.h"

namespace hyper::controller {
namespace {

constexpr size_t kMaxFileBytes = 4 * 1024 * 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// "*" matches any run of characters, "?" any one; the rest literally.
bool globMatch(std::string_view pattern, std::string_view name) {
  size_t p = 0, n = 0, starP = std::string_view::npos, starN = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      starP = p++;
      starN = n;
    } else if (starP != std::string_view::npos) {
      p = starP + 1;
      n = ++starN;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      ++i;
    }
    if (i > start) {
      out.push_back(line.substr(start, i - start));
    }
  }
  return out;
}

}  // namespace

std::string knownHostsName(std::string_view host, int port) {
  std::string name = lower(host);
  if (port == 22 || port <= 0) {
    return name;
  }
  return "[" + name + "]:" + std::to_string(port);
}

std::string sshKeyType(std::string_view blob) {
  if (blob.size() < 4) {
    return "";
  }
  uint32_t len = (uint32_t{static_cast<unsigned char>(blob[0])} << 24) |
                 (uint32_t{static_cast<unsigned char>(blob[1])} << 16) |
                 (uint32_t{static_cast<unsigned char>(blob[2])} << 8) |
                 uint32_t{static_cast<unsigned char>(blob[3])};
  if (len == 0 || len > 64 || len > blob.size() - 4) {
    return "";
  }
  std::string type(blob.substr(4, len));
  bool printable =
      std::all_of(type.begin(), type.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; });
  return printable ? type : "";
}

std::string sshKeyFingerprint(std::string_view blob) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(blob.data()), blob.size(), digest);
  std::string out(
      sodium_base64_encoded_len(sizeof digest, sodium_base64_VARIANT_ORIGINAL_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), digest, sizeof digest,
                    sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return "SHA256:" + out;
}

Result<KnownHosts> KnownHosts::parse(std::string_view text, const std::string& displayPath) {
  KnownHosts hosts;
  hosts.file_ = displayPath;
  int lineNo = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++lineNo;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    std::vector<std::string_view> f = fields(line);
    if (f.empty() || f[0][0] == '#') {
      continue;
    }
    const std::string where = displayPath + ":" + std::to_string(lineNo) + ": ";
    Entry entry;
    entry.line = lineNo;
    if (f[0][0] == '@') {
      if (f[0] == "@revoked") {
        entry.revoked = true;
      } else if (f[0] == "@cert-authority") {
        entry.certAuthority = true;
      } else {
        return Status::error(where + "unknown marker \"" + std::string(f[0].substr(0, 32)) +
                             "\" (expected @revoked or @cert-authority)");
      }
      f.erase(f.begin());
    }
    if (f.size() < 3) {
      return Status::error(where + std::to_string(f.size()) +
                           " fields (expected HOSTS KEYTYPE BASE64-KEY [COMMENT], as "
                           "ssh-keyscan writes)");
    }
    std::string_view hostsField = f[0];
    if (hostsField[0] == '|') {
      // |1|salt|hash: HMAC-SHA1 of the host name keyed with the salt (HashKnownHosts yes).
      if (hostsField.substr(0, 3) != "|1|") {
        return Status::error(where + "hashed host name of an unknown kind (expected |1|SALT|HASH)");
      }
      std::string_view rest = hostsField.substr(3);
      size_t bar = rest.find('|');
      if (bar == std::string_view::npos || !decodeBase64(rest.substr(0, bar), entry.salt) ||
          !decodeBase64(rest.substr(bar + 1), entry.hash) ||
          entry.hash.size() != SHA_DIGEST_LENGTH || entry.salt.empty()) {
        return Status::error(where +
                             "malformed hashed host name (expected |1|BASE64-SALT|BASE64-SHA1)");
      }
    } else {
      size_t start = 0;
      while (start <= hostsField.size()) {
        size_t comma = hostsField.find(',', start);
        std::string_view pattern = hostsField.substr(
            start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        if (!pattern.empty() && pattern != "!") {
          entry.patterns.push_back(lower(pattern));
        }
        if (comma == std::string_view::npos) {
          break;
        }
        start = comma + 1;
      }
      if (entry.patterns.empty()) {
        return Status::error(where + "no host names (expected a comma-separated list)");
      }
    }
    entry.keyType = std::string(f[1]);
    if (!decodeBase64(f[2], entry.key)) {
      return Status::error(where + "the key of type " + entry.keyType.substr(0, 64) +
                           " is not valid base64 (expected the key as ssh-keyscan prints it)");
    }
    if (sshKeyType(entry.key) != entry.keyType) {
      return Status::error(where + "the key says it is of type \"" + sshKeyType(entry.key) +
                           "\", the line says \"" + entry.keyType.substr(0, 64) +
                           "\" (expected the two to agree)");
    }
    hosts.entries_.push_back(std::move(entry));
  }
  return hosts;
}

Result<KnownHosts> KnownHosts::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::error("read known_hosts file " + path + " <- " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return Status::error("read known_hosts file " + path + " <- I/O error");
  }
  std::string s = text.str();
  if (s.size() > kMaxFileBytes) {
    return Status::error("read known_hosts file " + path + " <- larger than 4 MiB");
  }
  return parse(s, path);
}

bool KnownHosts::matches(const Entry& entry, const std::string& name) {
  if (!entry.hash.empty()) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha1(), entry.salt.data(), static_cast<int>(entry.salt.size()),
             reinterpret_cast<const unsigned char*>(name.data()), name.size(), mac,
             &len) == nullptr) {
      return false;
    }
    return len == entry.hash.size() && CRYPTO_memcmp(mac, entry.hash.data(), len) == 0;
  }
  bool matched = false;
  for (const auto& pattern : entry.patterns) {
    if (pattern[0] == '!') {
      if (globMatch(std::string_view(pattern).substr(1), name)) {
        return false;  // a negated match rules the line out, whatever else matches
      }
    } else if (globMatch(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

Status KnownHosts::verify(std::string_view host, int port, std::string_view keyBlob) const {
  const std::string name = knownHostsName(host, port);
  std::string type = sshKeyType(keyBlob);
  if (type.empty()) {
    type = "unknown-type";
  }
  const std::string offered =
      "the " + type + " host key " + name + " presented (" + sshKeyFingerprint(keyBlob) + ")";
  for (const auto& e : entries_) {
    if (e.revoked && e.key == keyBlob) {
      return Status::error("host key verification failed: " + offered + " is marked @revoked in " +
                           file_ + ":" + std::to_string(e.line));
    }
  }
  std::set<std::string> listedTypes;
  for (const auto& e : entries_) {
    if (e.revoked || e.certAuthority || !matches(e, name)) {
      continue;
    }
    if (e.key == keyBlob) {
      return Status::ok();
    }
    listedTypes.insert(e.keyType);
  }
  if (listedTypes.empty()) {
    return Status::error("host key verification failed: " + name + " is not listed in " + file_ +
                         " (" + offered + "; add the host's keys, e.g. from ssh-keyscan" +
                         (port == 22 || port <= 0 ? "" : " -p " + std::to_string(port)) + " " +
                         std::string(host) + ", after checking their fingerprints)");
  }
  std::string types;
  for (const auto& t : listedTypes) {
    types += (types.empty() ? "" : ", ") + t;
  }
  return Status::error("host key verification failed: " + offered + " matches none of the keys " +
                       file_ + " lists for it (" + types +
                       "): the host key changed, or someone is intercepting the connection");
}

}  // namespace hyper::controller
