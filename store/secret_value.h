#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "store/sealing.h"

namespace hyper::store {

// A host file a Secret's value comes from: a regular file (not a symlink) owned by root, mode
// 0600 or 0400 (no group or other bits), at most kMaxSecretValueBytes, read as it is (no newline
// dropped) into locked memory. Stricter than base/secret.h's readSecretFile (hyperd's own secret
// files, any owner): a Secret's file may be named by any manifest. Errors say what was found and
// expected, never the content.
Result<SecretBytes> readHostSecretFile(const std::string& path);

// One value of a Secret whose spec is `spec` ({sealed: {KEY: text}, fromFile: {KEY: path}}):
// opened with `ring` for the scope Secret/<secretName>/<key>, or read from its host file. Errors
// name the Secret and the field ("Secret/db spec.sealed.password: ..."), never the value. Both
// the Secret provider (fingerprints) and the VM provider (delivery) open values this way.
Result<SecretBytes> openSecretValue(const KeyRing& ring, const std::string& secretName,
                                    const nlohmann::json& spec, const std::string& key);

// The host's key ring as a long-lived process sees it: loaded (made) on first use, and again when
// keys/seal/active changed since (`hyperctl keys rotate` while hyperd runs). get() and the use of
// the ring it returns happen under lock(): the next get() may load another.
class KeyRingCache {
 public:
  explicit KeyRingCache(std::string stateDir) : stateDir_(std::move(stateDir)) {}
  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mu_); }
  // With lock() held. An error when there is no state directory, or the ring cannot be read or
  // made.
  Result<const KeyRing*> get();
  const std::string& stateDir() const { return stateDir_; }

 private:
  std::string stateDir_;
  std::mutex mu_;
  std::unique_ptr<KeyRing> ring_;
  std::string stamp_;
};

}  // namespace hyper::store
