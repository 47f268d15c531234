#include "store/sealing.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/base64.h"
#include "base/file.h"
#include "base/sha256.h"

namespace hyper::store {

namespace {

constexpr std::string_view kPrefix = "hyper:v1:";
constexpr std::string_view kKeyPrefix = "x25519:";
constexpr size_t kHintBytes = 8;
// ephemeral public key, nonce, scope hint; then the ciphertext with its tag
constexpr size_t kHeaderBytes =
    crypto_box_PUBLICKEYBYTES + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + kHintBytes;
constexpr size_t kMaxSealedTextBytes = 4 * 1024 + kMaxSecretValueBytes * 4 / 3;

Status initSodium() {
  if (sodium_init() < 0) {
    return Status::error("libsodium could not initialise");
  }
  return Status::ok();
}

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

bool isKeyId(std::string_view id) {
  return id.size() == 16 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string keyIdOf(std::string_view publicKey) { return sha256Hex(publicKey).substr(0, 16); }

// What the AEAD authenticates besides the ciphertext: the format, the key id, the scope and the
// hint, so none of them can be changed without the value failing to open.
std::string associatedData(const std::string& keyId, const SealScope& scope,
                           std::string_view hint) {
  std::string ad = "hyper:v1\n" + keyId + "\n" + scope.text() + "\n";
  ad.append(hint.data(), hint.size());
  return ad;
}

// An unauthenticated-looking but authenticated hint of the scope (its hash's first bytes): lets
// a failure say "sealed for another secret or key" rather than only "does not open".
std::string scopeHint(const SealScope& scope) {
  std::string h = sha256Hex("hyper-seal-scope\n" + scope.text());
  std::string out(kHintBytes, '\0');
  for (size_t i = 0; i < kHintBytes; ++i) {
    out[i] = static_cast<char>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

// The AEAD key of one value: BLAKE2b over the X25519 shared secret and both public keys.
bool deriveKey(const unsigned char* shared, std::string_view ephemeralPublic,
               std::string_view recipientPublic, unsigned char* key) {
  static constexpr unsigned char kContext[] = "hyper sealing key v1";
  crypto_generichash_state st;
  if (crypto_generichash_init(&st, kContext, sizeof kContext - 1,
                              crypto_aead_xchacha20poly1305_ietf_KEYBYTES) != 0) {
    return false;
  }
  crypto_generichash_update(&st, shared, crypto_scalarmult_BYTES);
  crypto_generichash_update(&st, bytes(ephemeralPublic), ephemeralPublic.size());
  crypto_generichash_update(&st, bytes(recipientPublic), recipientPublic.size());
  return crypto_generichash_final(&st, key, crypto_aead_xchacha20poly1305_ietf_KEYBYTES) == 0;
}

Status checkPrivateFile(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return Status::error("sealing key " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
    return Status::error("sealing key " + path +
                         " must be a regular file readable by its owner only (mode 0600)");
  }
  return Status::ok();
}

}  // namespace

Result<SecretBytes> SecretBytes::zeroed(size_t size) {
  HYPER_RETURN_IF_ERROR(initSodium());
  SecretBytes out;
  // One byte at least keeps data_ non-null for an empty value.
  out.data_ = static_cast<char*>(sodium_malloc(std::max<size_t>(size, 1)));
  if (out.data_ == nullptr) {
    return Status::error("cannot allocate locked memory for a secret value");
  }
  sodium_memzero(out.data_, std::max<size_t>(size, 1));
  out.size_ = size;
  return out;
}

Result<SecretBytes> SecretBytes::copyOf(std::string_view in) {
  HYPER_ASSIGN_OR_RETURN(SecretBytes out, zeroed(in.size()));
  if (!in.empty()) {
    std::memcpy(out.data_, in.data(), in.size());
  }
  return out;
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) {
      sodium_free(data_);
    }
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecretBytes::~SecretBytes() {
  if (data_ != nullptr) {
    sodium_free(data_);  // wipes, unlocks and unmaps
  }
}

std::string SealScope::text() const { return kind + "/" + name + "/" + key; }

std::string SealingKey::text() const { return std::string(kKeyPrefix) + encodeBase64(publicKey); }

Result<SealingKey> SealingKey::parse(std::string_view text) {
  HYPER_RETURN_IF_ERROR(initSodium());
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  std::string decoded;
  if (text.substr(0, kKeyPrefix.size()) != kKeyPrefix ||
      !decodeBase64(text.substr(kKeyPrefix.size()), decoded) ||
      decoded.size() != crypto_box_PUBLICKEYBYTES) {
    return Status::error(
        "not a sealing public key: expected \"x25519:\" and the base64 of 32 bytes, as "
        "`hyperctl keys` prints it");
  }
  SealingKey key;
  key.publicKey = std::move(decoded);
  key.id = keyIdOf(key.publicKey);
  return key;
}

Result<SealedValue> parseSealed(std::string_view text) {
  if (text.size() > kMaxSealedTextBytes) {
    return Status::error("a sealed value of " + std::to_string(text.size()) +
                         " bytes: expected at most " + std::to_string(kMaxSealedTextBytes) +
                         " (values up to " + std::to_string(kMaxSecretValueBytes) + " bytes)");
  }
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    return Status::error(
        "not a sealed value: expected \"hyper:v1:<key id>:<base64>\", as `hyperctl secret seal` "
        "prints it");
  }
  text.remove_prefix(kPrefix.size());
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || !isKeyId(text.substr(0, colon))) {
    return Status::error(
        "a sealed value's key id: expected 16 lowercase hex digits after \"hyper:v1:\"");
  }
  SealedValue out;
  out.keyId = std::string(text.substr(0, colon));
  if (!decodeBase64(text.substr(colon + 1), out.payload) ||
      out.payload.size() < kHeaderBytes + crypto_aead_xchacha20poly1305_ietf_ABYTES) {
    return Status::error("a sealed value's payload: expected the base64 of at least " +
                         std::to_string(kHeaderBytes + crypto_aead_xchacha20poly1305_ietf_ABYTES) +
                         " bytes (it was cut or altered)");
  }
  return out;
}

Result<std::string> seal(const SealingKey& key, const SealScope& scope,
                         std::string_view plaintext) {
  HYPER_RETURN_IF_ERROR(initSodium());
  if (plaintext.size() > kMaxSecretValueBytes) {
    return Status::error("a secret value of " + std::to_string(plaintext.size()) +
                         " bytes: expected at most " + std::to_string(kMaxSecretValueBytes));
  }
  if (key.publicKey.size() != crypto_box_PUBLICKEYBYTES) {
    return Status::error("sealing key " + key.id + " is not an X25519 public key");
  }
  unsigned char esk[crypto_box_SECRETKEYBYTES];
  std::string epk(crypto_box_PUBLICKEYBYTES, '\0');
  crypto_box_keypair(reinterpret_cast<unsigned char*>(epk.data()), esk);
  unsigned char shared[crypto_scalarmult_BYTES];
  unsigned char aeadKey[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
  const bool agreed = crypto_scalarmult(shared, esk, bytes(key.publicKey)) == 0 &&
                      deriveKey(shared, epk, key.publicKey, aeadKey);
  sodium_memzero(esk, sizeof esk);
  sodium_memzero(shared, sizeof shared);
  if (!agreed) {
    sodium_memzero(aeadKey, sizeof aeadKey);
    return Status::error("sealing key " + key.id + " is not a usable X25519 public key");
  }
  std::string nonce(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, '\0');
  randombytes_buf(nonce.data(), nonce.size());
  const std::string hint = scopeHint(scope);
  const std::string ad = associatedData(key.id, scope, hint);
  std::string payload = epk + nonce + hint;
  const size_t at = payload.size();
  payload.resize(at + plaintext.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(reinterpret_cast<unsigned char*>(payload.data() + at),
                                             &written, bytes(plaintext), plaintext.size(),
                                             bytes(ad), ad.size(), nullptr, bytes(nonce), aeadKey);
  sodium_memzero(aeadKey, sizeof aeadKey);
  payload.resize(at + written);
  return std::string(kPrefix) + key.id + ":" + encodeBase64(payload);
}

KeyRing::~KeyRing() = default;

KeyRing KeyRing::generate() {
  (void)initSodium();
  KeyRing ring;
  unsigned char sk[crypto_box_SECRETKEYBYTES];
  std::string pk(crypto_box_PUBLICKEYBYTES, '\0');
  crypto_box_keypair(reinterpret_cast<unsigned char*>(pk.data()), sk);
  auto secret = SecretBytes::copyOf(std::string_view(reinterpret_cast<char*>(sk), sizeof sk));
  sodium_memzero(sk, sizeof sk);
  Entry e;
  e.key.publicKey = pk;
  e.key.id = keyIdOf(pk);
  e.secret = std::move(*secret);
  ring.keys_.push_back(std::move(e));
  auto mac = SecretBytes::zeroed(crypto_generichash_KEYBYTES);
  ring.macKey_ = std::move(mac.value());
  randombytes_buf(ring.macKey_.data(), crypto_generichash_KEYBYTES);
  return ring;
}

std::string KeyRing::fingerprint(const SealScope& scope, std::string_view value) const {
  unsigned char out[16];
  crypto_generichash_state st;
  crypto_generichash_init(&st, bytes(macKey_.view()), macKey_.size(), sizeof out);
  const std::string head = scope.text() + "\n";
  crypto_generichash_update(&st, bytes(head), head.size());
  crypto_generichash_update(&st, bytes(value), value.size());
  crypto_generichash_final(&st, out, sizeof out);
  std::string hex(2 * sizeof out + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), out, sizeof out);
  hex.resize(2 * sizeof out);
  return "mac:" + hex;
}

const SealingKey& KeyRing::active() const { return keys_[active_].key; }

std::vector<SealingKey> KeyRing::publicKeys() const {
  std::vector<SealingKey> out;
  for (const auto& e : keys_) {
    out.push_back(e.key);
  }
  return out;
}

namespace {

std::string ringDir(const std::string& stateDir) { return stateDir + "/keys/seal"; }

// Writes a new key's files; the active pointer is the caller's.
Status writeKey(const std::string& dir, const std::string& id, std::string_view secret,
                const SealingKey& key) {
  const std::string path = dir + "/" + id + ".x25519";
  const std::string tmp = path + ".new." + std::to_string(::getpid());
  HYPER_RETURN_IF_ERROR(writeFileAtomically(tmp, secret, 0600));
  // Linked into place: a key file is never replaced.
  int linked = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (linked != 0) {
    return Status::error("create " + path + " <- " + std::strerror(err));
  }
  return writeFileAtomically(dir + "/" + id + ".pub", key.text() + "\n", 0644);
}

Status makeDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Status::error("create " + dir + " <- " + ec.message());
  }
  ::chmod(dir.c_str(), 0700);
  return Status::ok();
}

}  // namespace

Result<KeyRing> KeyRing::loadOrCreate(const std::string& stateDir) {
  HYPER_RETURN_IF_ERROR(initSodium());
  const std::string dir = ringDir(stateDir);
  HYPER_RETURN_IF_ERROR(makeDir(dir));
  KeyRing ring;
  std::vector<std::string> names;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() == 16 + 7 && name.compare(16, 7, ".x25519") == 0 &&
        isKeyId(name.substr(0, 16))) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string path = dir + "/" + name;
    HYPER_RETURN_IF_ERROR(checkPrivateFile(path));
    HYPER_ASSIGN_OR_RETURN(std::string sk,
                           readFile(path, crypto_box_SECRETKEYBYTES + 1, Symlinks::Refuse));
    if (sk.size() != crypto_box_SECRETKEYBYTES) {
      sodium_memzero(sk.data(), sk.size());
      return Status::error("sealing key " + path + " is not an X25519 key (32 bytes)");
    }
    Entry e;
    e.key.publicKey.resize(crypto_box_PUBLICKEYBYTES);
    crypto_scalarmult_base(reinterpret_cast<unsigned char*>(e.key.publicKey.data()), bytes(sk));
    e.key.id = keyIdOf(e.key.publicKey);
    auto secret = SecretBytes::copyOf(sk);
    sodium_memzero(sk.data(), sk.size());
    HYPER_RETURN_IF_ERROR(secret.status());
    if (e.key.id != name.substr(0, 16)) {
      return Status::error("sealing key " + path + " holds the key " + e.key.id +
                           ", not the one its name says");
    }
    e.secret = std::move(*secret);
    ring.keys_.push_back(std::move(e));
  }
  // The fingerprint key: made with the ring, kept like a private key.
  const std::string macPath = dir + "/fingerprint.key";
  if (::access(macPath.c_str(), F_OK) != 0) {
    std::string mac(crypto_generichash_KEYBYTES, '\0');
    randombytes_buf(mac.data(), mac.size());
    Status written = writeFileAtomically(macPath + ".new", mac, 0600);
    if (written.isOk() && ::link((macPath + ".new").c_str(), macPath.c_str()) != 0 &&
        errno != EEXIST) {
      written = Status::error("create " + macPath + " <- " + std::strerror(errno));
    }
    ::unlink((macPath + ".new").c_str());
    sodium_memzero(mac.data(), mac.size());
    HYPER_RETURN_IF_ERROR(written);
  }
  HYPER_RETURN_IF_ERROR(checkPrivateFile(macPath));
  HYPER_ASSIGN_OR_RETURN(std::string mac,
                         readFile(macPath, crypto_generichash_KEYBYTES + 1, Symlinks::Refuse));
  if (mac.size() != crypto_generichash_KEYBYTES) {
    return Status::error("fingerprint key " + macPath + " is not " +
                         std::to_string(crypto_generichash_KEYBYTES) + " bytes");
  }
  auto macKey = SecretBytes::copyOf(mac);
  sodium_memzero(mac.data(), mac.size());
  HYPER_RETURN_IF_ERROR(macKey.status());
  if (ring.keys_.empty()) {
    KeyRing made = generate();
    HYPER_RETURN_IF_ERROR(
        writeKey(dir, made.active().id, made.keys_[0].secret.view(), made.active()));
    HYPER_RETURN_IF_ERROR(writeFileAtomically(dir + "/active", made.active().id + "\n", 0644));
    made.macKey_ = std::move(*macKey);
    return made;
  }
  ring.macKey_ = std::move(*macKey);
  auto active = readFile(dir + "/active", 64, Symlinks::Refuse);
  std::string id = active.isOk() ? active->substr(0, 16) : "";
  auto it = std::find_if(ring.keys_.begin(), ring.keys_.end(),
                         [&](const Entry& e) { return e.key.id == id; });
  if (it == ring.keys_.end()) {
    return Status::error("the sealing key ring " + dir + " names no key of its own as active (" +
                         dir + "/active)");
  }
  ring.active_ = static_cast<size_t>(it - ring.keys_.begin());
  return ring;
}

Result<std::vector<SealingKey>> KeyRing::loadPublic(const std::string& stateDir,
                                                    std::string* activeId) {
  HYPER_RETURN_IF_ERROR(initSodium());
  const std::string dir = ringDir(stateDir);
  std::vector<SealingKey> out;
  std::error_code ec;
  std::vector<std::string> names;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() == 16 + 4 && name.compare(16, 4, ".pub") == 0) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    HYPER_ASSIGN_OR_RETURN(std::string text, readFile(dir + "/" + name, 256, Symlinks::Refuse));
    auto key = SealingKey::parse(text);
    if (!key.isOk()) {
      return key.status().withContext(dir + "/" + name);
    }
    out.push_back(std::move(*key));
  }
  if (out.empty()) {
    return Status::error("no sealing key in " + dir +
                         " yet: hyperd or `hyperctl keys` makes one on first use");
  }
  if (activeId != nullptr) {
    auto active = readFile(dir + "/active", 64, Symlinks::Refuse);
    *activeId = active.isOk() ? active->substr(0, 16) : "";
  }
  return out;
}

Result<SealingKey> KeyRing::rotate(const std::string& stateDir) {
  const std::string dir = ringDir(stateDir);
  HYPER_RETURN_IF_ERROR(makeDir(dir));
  KeyRing made = generate();
  Entry& e = made.keys_[0];
  HYPER_RETURN_IF_ERROR(writeKey(dir, e.key.id, e.secret.view(), e.key));
  HYPER_RETURN_IF_ERROR(writeFileAtomically(dir + "/active", e.key.id + "\n", 0644));
  keys_.push_back(std::move(e));
  active_ = keys_.size() - 1;
  return keys_.back().key;
}

Status KeyRing::retire(const std::string& stateDir, const std::string& id) {
  auto it =
      std::find_if(keys_.begin(), keys_.end(), [&](const Entry& e) { return e.key.id == id; });
  if (it == keys_.end()) {
    return Status::error("no sealing key " + id + " in " + ringDir(stateDir));
  }
  if (static_cast<size_t>(it - keys_.begin()) == active_) {
    return Status::error("sealing key " + id +
                         " is the active one: rotate first (`hyperctl keys rotate`)");
  }
  const std::string path = ringDir(stateDir) + "/" + id;
  for (const char* suffix : {".x25519", ".pub"}) {
    if (::unlink((path + suffix).c_str()) != 0 && errno != ENOENT) {
      return Status::error("remove " + path + suffix + " <- " + std::strerror(errno));
    }
  }
  const std::string activeId = keys_[active_].key.id;
  keys_.erase(it);
  active_ = static_cast<size_t>(std::find_if(keys_.begin(), keys_.end(),
                                             [&](const Entry& e) { return e.key.id == activeId; }) -
                                keys_.begin());
  return Status::ok();
}

Result<SecretBytes> KeyRing::open(std::string_view sealedText, const SealScope& scope) const {
  HYPER_ASSIGN_OR_RETURN(SealedValue sealed, parseSealed(sealedText));
  auto it = std::find_if(keys_.begin(), keys_.end(),
                         [&](const Entry& e) { return e.key.id == sealed.keyId; });
  if (it == keys_.end()) {
    std::string ids;
    for (const auto& e : keys_) {
      ids += (ids.empty() ? "" : ", ") + e.key.id;
    }
    return Status::error("sealed to key " + sealed.keyId +
                         ", which this host does not have (its keys: " + ids +
                         "): seal it again with this host's public key (`hyperctl keys`)");
  }
  const std::string_view payload = sealed.payload;
  const std::string_view epk = payload.substr(0, crypto_box_PUBLICKEYBYTES);
  const std::string_view nonce =
      payload.substr(crypto_box_PUBLICKEYBYTES, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  const std::string_view hint = payload.substr(
      crypto_box_PUBLICKEYBYTES + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, kHintBytes);
  const std::string_view ciphertext = payload.substr(kHeaderBytes);
  unsigned char shared[crypto_scalarmult_BYTES];
  unsigned char aeadKey[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
  const bool agreed = crypto_scalarmult(shared, bytes(it->secret.view()), bytes(epk)) == 0 &&
                      deriveKey(shared, epk, it->key.publicKey, aeadKey);
  sodium_memzero(shared, sizeof shared);
  if (!agreed) {
    sodium_memzero(aeadKey, sizeof aeadKey);
    return Status::error("does not open: its ephemeral key is not usable (it was altered)");
  }
  auto buffer = SecretBytes::zeroed(ciphertext.size());
  HYPER_RETURN_IF_ERROR(buffer.status());
  const std::string ad = associatedData(sealed.keyId, scope, hint);
  unsigned long long len = 0;
  int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
      reinterpret_cast<unsigned char*>(buffer->data()), &len, nullptr, bytes(ciphertext),
      ciphertext.size(), bytes(ad), ad.size(), bytes(nonce), aeadKey);
  sodium_memzero(aeadKey, sizeof aeadKey);
  if (rc != 0) {
    if (hint != scopeHint(scope)) {
      return Status::error("does not open as " + scope.text() +
                           ": it was sealed for another secret or value key (a sealed value is "
                           "bound to the kind, name and key it was sealed for; seal it for this "
                           "one)");
    }
    return Status::error("does not open: the sealed value was altered (its authentication failed)");
  }
  return SecretBytes::copyOf(buffer->view().substr(0, len));
}

Result<std::string> KeyRing::reseal(std::string_view sealedText, const SealScope& scope) const {
  HYPER_ASSIGN_OR_RETURN(SecretBytes value, open(sealedText, scope));
  return seal(active(), scope, value.view());
}

}  // namespace hyper::store
