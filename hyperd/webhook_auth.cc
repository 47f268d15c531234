#include "hyperd/webhook_auth.h"

#include <array>
#include <cstddef>

#include <sodium.h>

namespace hyper::controller {
namespace {

using Digest = std::array<unsigned char, crypto_auth_hmacsha256_BYTES>;

void ensureSodium() {
  // sodium_init() is idempotent and thread-safe; a failure (no entropy source) does not affect
  // HMAC or SHA-256, which need no randomness.
  static const int initialised = sodium_init();
  (void)initialised;
}

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

Digest hmacSha256(std::string_view key, std::string_view body) {
  ensureSodium();
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, bytes(key), key.size());
  crypto_auth_hmacsha256_update(&state, bytes(body), body.size());
  Digest out{};
  crypto_auth_hmacsha256_final(&state, out.data());
  sodium_memzero(&state, sizeof state);
  return out;
}

}  // namespace

std::string hmacSha256Hex(std::string_view key, std::string_view body) {
  Digest mac = hmacSha256(key, body);
  std::array<char, crypto_auth_hmacsha256_BYTES * 2 + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), mac.data(), mac.size());
  return std::string(hex.data(), mac.size() * 2);
}

bool verifyGithubSignature(std::string_view secret, std::string_view body,
                           std::string_view header) {
  constexpr std::string_view kPrefix = "sha256=";
  if (secret.empty() || header.size() != kPrefix.size() + crypto_auth_hmacsha256_BYTES * 2 ||
      header.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  std::string_view hex = header.substr(kPrefix.size());
  Digest claimed{};
  size_t decoded = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(claimed.data(), claimed.size(), hex.data(), hex.size(), nullptr, &decoded,
                     &end) != 0 ||
      decoded != claimed.size() || end != hex.data() + hex.size()) {
    return false;
  }
  Digest expected = hmacSha256(secret, body);
  return sodium_memcmp(claimed.data(), expected.data(), expected.size()) == 0;
}

bool verifyGitlabToken(std::string_view secret, std::string_view header) {
  if (secret.empty()) {
    return false;
  }
  ensureSodium();
  // Comparing fixed-size digests instead of the strings: sodium_memcmp needs equal lengths, and
  // an early "lengths differ" return would tell an attacker the secret's length.
  std::array<unsigned char, crypto_hash_sha256_BYTES> a{};
  std::array<unsigned char, crypto_hash_sha256_BYTES> b{};
  crypto_hash_sha256(a.data(), bytes(secret), secret.size());
  crypto_hash_sha256(b.data(), bytes(header), header.size());
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace hyper::controller
