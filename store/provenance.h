#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::store {

// The host's ed25519 signing key (libsodium): `<state-dir>/keys/host.ed25519`, 0600, made on first
// use. It signs the provenance of every artifact this host builds; the public key is what a
// verifier needs (`hyperctl keys`).
class HostKey {
 public:
  // Loads the key, or makes and saves one when there is none. A key file that is not a private
  // file of the right size is an error naming it (never its content).
  static Result<HostKey> loadOrCreate(const std::string& stateDir);
  // A new pair in memory only (tests and fuzzing).
  static HostKey generate();
  // Loads the public half only; an error when the state dir has no key yet.
  static Result<HostKey> loadPublic(const std::string& stateDir);

  // "ed25519:<base64 of the 32-byte public key>"
  std::string publicKeyText() const;
  // sha256 of the public key, hex: the DSSE keyid.
  std::string keyId() const;
  Result<std::string> sign(const std::string& message) const;  // 64-byte detached signature
  bool verify(const std::string& message, const std::string& signature) const;

 private:
  std::string publicKey_;  // 32 bytes
  std::string secretKey_;  // 64 bytes; empty for a public-only key
};

// One artifact a build produced, as provenance names it.
struct ProvenanceSubject {
  std::string name;    // "initrd"
  std::string digest;  // "sha256:<hex>"
};

// An in-toto Statement (v1) with a SLSA provenance v1 predicate: the build type, the spec as
// external parameters, every resolved input with its digest or version, the builder and the key.
// No time or host name: the same build gives the same statement on any host.
nlohmann::json provenanceStatement(const std::vector<ProvenanceSubject>& subjects,
                                   const std::string& buildType, const nlohmann::json& spec,
                                   const nlohmann::json& inputs, const std::string& builder,
                                   const std::string& key);

// The inputs a statement records, back in the form provenanceStatement took them ({name: digest
// or version}); what is not shaped as it writes them is left out.
nlohmann::json statementInputs(const nlohmann::json& statement);

// A DSSE envelope (payloadType application/vnd.in-toto+json) of `statement`, signed over the
// DSSE pre-authentication encoding with `hostKey`.
Result<nlohmann::json> signEnvelope(const nlohmann::json& statement, const HostKey& hostKey);

// Checks an envelope's signature with `hostKey` and returns its statement. Errors say what failed
// (not an envelope, wrong payload type, no signature by this key, a bad signature).
Result<nlohmann::json> openEnvelope(const nlohmann::json& envelope, const HostKey& hostKey);

}  // namespace hyper::store
