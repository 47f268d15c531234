#include "store/provenance.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/base64.h"
#include "base/fd.h"
#include "base/file.h"
#include "base/sha256.h"

namespace hyper::store {

namespace {

constexpr const char* kPayloadType = "application/vnd.in-toto+json";

std::string base64(const std::string& bytes) { return encodeBase64(bytes); }

Result<std::string> unbase64(const std::string& text, size_t maxBytes) {
  std::string out;
  if (!decodeBase64(text, out, maxBytes)) {
    return Status::error("not base64 of at most " + std::to_string(maxBytes) + " bytes");
  }
  return out;
}

// DSSE's pre-authentication encoding: "DSSEv1 <len(type)> <type> <len(body)> <body>".
std::string pae(const std::string& type, const std::string& body) {
  return "DSSEv1 " + std::to_string(type.size()) + " " + type + " " + std::to_string(body.size()) +
         " " + body;
}

Status initSodium() {
  if (sodium_init() < 0) {
    return Status::error("libsodium could not initialise");
  }
  return Status::ok();
}

}  // namespace

HostKey HostKey::generate() {
  (void)initSodium();  // keypair needs only the random source, which init reports on
  HostKey made;
  made.publicKey_.resize(crypto_sign_PUBLICKEYBYTES);
  made.secretKey_.resize(crypto_sign_SECRETKEYBYTES);
  crypto_sign_keypair(reinterpret_cast<unsigned char*>(made.publicKey_.data()),
                      reinterpret_cast<unsigned char*>(made.secretKey_.data()));
  return made;
}

Result<HostKey> HostKey::loadOrCreate(const std::string& stateDir) {
  HYPER_RETURN_IF_ERROR(initSodium());
  const std::string dir = stateDir + "/keys";
  const std::string path = dir + "/host.ed25519";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Status::error("create " + dir + " <- " + ec.message());
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    // None yet: made aside and linked into place, so two processes starting at once end up with
    // one key (the second link fails and that process loads the first one's).
    HostKey made = generate();
    const std::string tmp = path + ".new." + std::to_string(::getpid());
    HYPER_RETURN_IF_ERROR(writeFileAtomically(tmp, made.secretKey_, 0600));
    int linked = ::link(tmp.c_str(), path.c_str());
    int err = errno;
    ::unlink(tmp.c_str());
    if (linked == 0) {
      HYPER_RETURN_IF_ERROR(writeFileAtomically(path + ".pub", made.publicKeyText() + "\n", 0644));
      return made;
    }
    if (err != EEXIST) {
      return Status::error("create " + path + " <- " + std::strerror(err));
    }
  } else if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
    return Status::error("host key " + path +
                         " must be a regular file readable by its owner only (mode 0600)");
  }
  HYPER_ASSIGN_OR_RETURN(std::string secret,
                         readFile(path, crypto_sign_SECRETKEYBYTES, Symlinks::Refuse));
  if (secret.size() != crypto_sign_SECRETKEYBYTES) {
    return Status::error("host key " + path + " is not an ed25519 key (" +
                         std::to_string(crypto_sign_SECRETKEYBYTES) + " bytes)");
  }
  HostKey key;
  key.secretKey_ = std::move(secret);
  key.publicKey_.resize(crypto_sign_PUBLICKEYBYTES);
  crypto_sign_ed25519_sk_to_pk(reinterpret_cast<unsigned char*>(key.publicKey_.data()),
                               reinterpret_cast<const unsigned char*>(key.secretKey_.data()));
  return key;
}

Result<HostKey> HostKey::loadPublic(const std::string& stateDir) {
  HYPER_RETURN_IF_ERROR(initSodium());
  const std::string path = stateDir + "/keys/host.ed25519.pub";
  auto text = readFile(path, 256, Symlinks::Refuse);
  if (!text.isOk()) {
    return Status::error("no host key in " + stateDir + " (" + text.status().message() +
                         "): it is made by the first build");
  }
  std::string line = text->substr(0, text->find('\n'));
  constexpr std::string_view kPrefix = "ed25519:";
  auto raw = line.rfind(kPrefix, 0) == 0
                 ? unbase64(line.substr(kPrefix.size()), crypto_sign_PUBLICKEYBYTES)
                 : Result<std::string>(Status::error("no ed25519: prefix"));
  if (!raw.isOk() || raw->size() != crypto_sign_PUBLICKEYBYTES) {
    return Status::error("host public key " + path + " is not \"ed25519:<base64>\"");
  }
  HostKey key;
  key.publicKey_ = std::move(*raw);
  return key;
}

std::string HostKey::publicKeyText() const { return "ed25519:" + base64(publicKey_); }

std::string HostKey::keyId() const { return sha256Hex(publicKey_); }

Result<std::string> HostKey::sign(const std::string& message) const {
  if (secretKey_.size() != crypto_sign_SECRETKEYBYTES) {
    return Status::error("this host key has no private half: it can verify, not sign");
  }
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       reinterpret_cast<const unsigned char*>(secretKey_.data()));
  return sig;
}

bool HostKey::verify(const std::string& message, const std::string& signature) const {
  return signature.size() == crypto_sign_BYTES &&
         crypto_sign_verify_detached(
             reinterpret_cast<const unsigned char*>(signature.data()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(),
             reinterpret_cast<const unsigned char*>(publicKey_.data())) == 0;
}

nlohmann::json provenanceStatement(const std::vector<ProvenanceSubject>& subjects,
                                   const std::string& buildType, const nlohmann::json& spec,
                                   const nlohmann::json& inputs, const std::string& builder,
                                   const std::string& key) {
  nlohmann::json subject = nlohmann::json::array();
  for (const auto& s : subjects) {
    std::string hex = s.digest.rfind("sha256:", 0) == 0 ? s.digest.substr(7) : s.digest;
    subject.push_back({{"name", s.name}, {"digest", {{"sha256", hex}}}});
  }
  nlohmann::json dependencies = nlohmann::json::array();
  for (const auto& [name, value] : inputs.items()) {
    std::string v = value.is_string() ? value.get<std::string>() : value.dump();
    if (v.rfind("sha256:", 0) == 0) {
      dependencies.push_back({{"name", name}, {"digest", {{"sha256", v.substr(7)}}}});
    } else {
      dependencies.push_back({{"name", name}, {"annotations", {{"version", v}}}});
    }
  }
  return {
      {"_type", "https://in-toto.io/Statement/v1"},
      {"subject", subject},
      {"predicateType", "https://slsa.dev/provenance/v1"},
      {"predicate",
       {{"buildDefinition",
         {{"buildType", buildType},
          {"externalParameters", {{"spec", spec}}},
          {"resolvedDependencies", dependencies}}},
        {"runDetails", {{"builder", {{"id", builder}}}, {"metadata", {{"invocationId", key}}}}}}}};
}

nlohmann::json statementInputs(const nlohmann::json& statement) {
  nlohmann::json out = nlohmann::json::object();
  const nlohmann::json* deps = &statement;
  for (const char* key : {"predicate", "buildDefinition", "resolvedDependencies"}) {
    if (!deps->is_object() || !deps->contains(key)) {
      return out;
    }
    deps = &(*deps)[key];
  }
  if (!deps->is_array()) {
    return out;
  }
  auto text = [](const nlohmann::json& parent, const char* a, const char* b) -> std::string {
    if (!parent.contains(a) || !parent[a].is_object() || !parent[a].contains(b) ||
        !parent[a][b].is_string()) {
      return "";
    }
    return parent[a][b].get<std::string>();
  };
  for (const auto& d : *deps) {
    if (!d.is_object() || !d.contains("name") || !d["name"].is_string()) {
      continue;
    }
    std::string digest = text(d, "digest", "sha256");
    out[d["name"].get<std::string>()] =
        digest.empty() ? text(d, "annotations", "version") : "sha256:" + digest;
  }
  return out;
}

Result<nlohmann::json> signEnvelope(const nlohmann::json& statement, const HostKey& hostKey) {
  std::string payload = statement.dump();
  HYPER_ASSIGN_OR_RETURN(std::string sig, hostKey.sign(pae(kPayloadType, payload)));
  return nlohmann::json{{"payloadType", kPayloadType},
                        {"payload", base64(payload)},
                        {"signatures", {{{"keyid", hostKey.keyId()}, {"sig", base64(sig)}}}}};
}

Result<nlohmann::json> openEnvelope(const nlohmann::json& envelope, const HostKey& hostKey) {
  if (!envelope.is_object() || !envelope.contains("payload") || !envelope["payload"].is_string() ||
      !envelope.contains("signatures") || !envelope["signatures"].is_array()) {
    return Status::error("not a DSSE envelope (payloadType, payload, signatures)");
  }
  if (envelope.value("payloadType", "") != kPayloadType) {
    return Status::error(std::string("payload type is not ") + kPayloadType);
  }
  auto payload = unbase64(envelope["payload"].get<std::string>(), 16u << 20);
  if (!payload.isOk()) {
    return Status::error("payload: " + payload.status().message());
  }
  bool signedByKey = false;
  for (const auto& s : envelope["signatures"]) {
    if (!s.is_object() || s.value("keyid", "") != hostKey.keyId() || !s.contains("sig") ||
        !s["sig"].is_string()) {
      continue;
    }
    signedByKey = true;
    auto sig = unbase64(s["sig"].get<std::string>(), 64);
    if (sig.isOk() && hostKey.verify(pae(kPayloadType, *payload), *sig)) {
      nlohmann::json statement = nlohmann::json::parse(*payload, nullptr, false);
      if (statement.is_discarded()) {
        return Status::error("the signed payload is not JSON");
      }
      return statement;
    }
  }
  return Status::error(signedByKey ? "the signature does not verify with the host key"
                                   : "no signature by the host key " + hostKey.keyId());
}

}  // namespace hyper::store
