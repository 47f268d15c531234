#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "reconciler/provider.h"
#include "store/sealing.h"
#include "store/secret_value.h"

namespace hyper::providers::secret {

using store::KeyRing;
using store::kMaxSecretValueBytes;
using store::SealingKey;
using store::SealScope;
using store::SecretBytes;

struct SecretProviderConfig {
  std::string stateDir;  // the key ring is <stateDir>/keys/seal; "" = none (validate only)
};

// The `Secret` kind: values sealed to the host's X25519 key (spec.sealed, safe in git) or read
// from root's private files on the host (spec.fromFile). Nothing of a Secret is on the host to
// make: observe opens every value (an error at its field when it does not: a key this host does
// not have, a value moved from another Secret or key, an altered one, a file with loose
// permissions) and fingerprints it with the ring's keyed hash; plan compares the fingerprints with
// the ones the last apply recorded and says which values changed, never how; apply records them
// (and the key ids values were sealed to). The plaintext lives in locked memory only while it is
// opened: never in a record, a plan, a log line or an error.
class SecretProvider : public Provider {
 public:
  explicit SecretProvider(SecretProviderConfig config)
      : config_(std::move(config)), ring_(config_.stateDir) {}

  std::string name() const override { return "secret"; }
  std::vector<std::string> kinds() const override { return {"Secret"}; }

  // Each sealed value parses ("hyper:v1:<key id>:<base64>"); a key given both sealed and
  // fromFile is an error. Needs no key: `hyperctl validate` runs it anywhere.
  void validate(const ValidateRequest& req, ValidateResponse& resp) const override;
  std::vector<Reference> references(const Object&) const override { return {}; }
  void observe(const ObserveRequest& req, ObserveResponse& resp) override;
  void plan(const PlanRequest& req, PlanResponse& resp) const override;
  void apply(const ApplyRequest& req, ApplyResponse& resp) override;

  // One value of a Secret, opened (for delivery): an error naming the field when it does not
  // open. The caller holds the bytes no longer than it needs them.
  Result<SecretBytes> openValue(const Object& secret, const std::string& key);

 private:
  // Opens and fingerprints every value of `object`; errors at their fields.
  std::optional<Json> fingerprints(const Object& object, Diagnostics& diags);

  SecretProviderConfig config_;
  store::KeyRingCache ring_;  // loaded on first use, again after a rotation
};

}  // namespace hyper::providers::secret
