#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace hyper::store {

// Plaintext in memory that libsodium allocates (sodium_malloc): locked so it is never swapped out,
// left out of core dumps (MADV_DONTDUMP), between guard pages, wiped when freed. Move-only; the
// only way to the bytes is view(), for the moment they are used.
class SecretBytes {
 public:
  SecretBytes() = default;
  static Result<SecretBytes> copyOf(std::string_view bytes);
  static Result<SecretBytes> zeroed(size_t size);
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  std::string_view view() const { return {data_, size_}; }
  char* data() { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

// What a sealed value is bound to: part of the AEAD's associated data, so a value sealed for one
// kind, name and value key does not open as another (moved to another Secret or key, it is an
// error). It comes from where the value is used (the manifest), never from the sealed text.
struct SealScope {
  std::string kind = "Secret";
  std::string name;          // the Secret's metadata.name
  std::string key;           // the value's key in spec.sealed ("password")
  std::string text() const;  // "Secret/db/password"
};

// A sealing public key: X25519, named by an id (the first 16 hex digits of its SHA-256).
struct SealingKey {
  std::string id;
  std::string publicKey;     // 32 bytes
  std::string text() const;  // "x25519:<base64>", what `hyperctl keys` prints and --pubkey reads
  // Parses text() (or a file holding it, with surrounding whitespace); errors say what was
  // expected, never echo more than a short prefix of the input.
  static Result<SealingKey> parse(std::string_view text);
};

// The parts of "hyper:v1:<key id>:<base64>". Errors say what was expected.
struct SealedValue {
  std::string keyId;
  std::string payload;  // ephemeral public key, nonce, scope hint, ciphertext and tag
};
Result<SealedValue> parseSealed(std::string_view text);

constexpr size_t kMaxSecretValueBytes = 64 * 1024;

// Seals `plaintext` to `key` for `scope`: an ephemeral X25519 key agreement with the host's key,
// a key derived from it by BLAKE2b, XChaCha20-Poly1305 with the scope, the key id and the format
// version as associated data. Each call gives another text (fresh ephemeral key and nonce).
Result<std::string> seal(const SealingKey& key, const SealScope& scope, std::string_view plaintext);

// The host's sealing keys, in <state-dir>/keys/seal/: <id>.x25519 (the 32-byte private key, 0600),
// <id>.pub (its text) and `active` (the id new values are sealed to). Old keys stay to open what
// was sealed to them until they are retired.
class KeyRing {
 public:
  // Loads the ring, making a first key when there is none.
  static Result<KeyRing> loadOrCreate(const std::string& stateDir);
  // The public keys only (anyone may read them); an error when the ring has none yet.
  static Result<std::vector<SealingKey>> loadPublic(const std::string& stateDir,
                                                    std::string* activeId = nullptr);
  // A ring in memory only (tests, fuzzing).
  static KeyRing generate();

  const SealingKey& active() const;
  std::vector<SealingKey> publicKeys() const;
  // Makes a new key and makes it the active one (written to `stateDir`).
  Result<SealingKey> rotate(const std::string& stateDir);
  // Removes key `id` (its files in `stateDir` too): what was sealed to it no longer opens. The
  // active key is refused; whether a Secret still uses it is the caller's to check.
  Status retire(const std::string& stateDir, const std::string& id);

  // Opens a sealed value for `scope`. Errors name the key id or what failed, never the value:
  // a key this ring does not have, a value sealed for another scope (moved), or one altered.
  Result<SecretBytes> open(std::string_view sealedText, const SealScope& scope) const;

  // Opens `sealedText` for `scope` and seals the value again to the active key, for the same
  // scope: the scope is the one the value's authentication proves, as a request can name no other
  // (a value does not open for a scope it was not sealed for). The value stays in locked memory.
  Result<std::string> reseal(std::string_view sealedText, const SealScope& scope) const;

  // "mac:" and a keyed BLAKE2b of the scope and the value, with a key only this host has
  // (<state-dir>/keys/seal/fingerprint.key, 0600): what the inventory records to see a value
  // change, which tells nothing of the value to whoever reads the database (no guessing a weak
  // password from its hash without the key).
  std::string fingerprint(const SealScope& scope, std::string_view value) const;

  KeyRing(KeyRing&&) noexcept = default;
  KeyRing& operator=(KeyRing&&) noexcept = default;
  ~KeyRing();

 private:
  KeyRing() = default;
  struct Entry {
    SealingKey key;
    SecretBytes secret;  // 32 bytes
  };
  std::vector<Entry> keys_;
  size_t active_ = 0;
  SecretBytes macKey_;  // crypto_generichash_KEYBYTES
};

}  // namespace hyper::store
