#include "base/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace hyper {

namespace {

constexpr size_t kDigestBytes = 32;

std::string hexOf(const unsigned char (&digest)[kDigestBytes]) {
  static const char* kHex = "0123456789abcdef";
  std::string out(2 * kDigestBytes, '\0');
  for (size_t i = 0; i < kDigestBytes; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return out;
}

// OpenSSL fails here only when it cannot allocate or has no SHA-256 at all: nothing to go on
// with (every hash hyper writes would be wrong).
void check(int ok, const char* call) {
  if (ok != 1) {
    std::fprintf(stderr, "sha256: %s failed\n", call);
    std::abort();
  }
}

}  // namespace

std::string sha256Hex(std::string_view data) {
  unsigned char digest[kDigestBytes];
  unsigned int length = 0;
  check(EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr), "EVP_Digest");
  return hexOf(digest);
}

void Sha256::FreeContext::operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  check(ctx_ ? 1 : 0, "EVP_MD_CTX_new");
  check(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

Sha256::~Sha256() = default;

void Sha256::update(std::string_view data) {
  check(EVP_DigestUpdate(ctx_.get(), data.data(), data.size()), "EVP_DigestUpdate");
}

std::string Sha256::hex() {
  unsigned char digest[kDigestBytes];
  unsigned int length = 0;
  check(EVP_DigestFinal_ex(ctx_.get(), digest, &length), "EVP_DigestFinal_ex");
  return hexOf(digest);
}

bool isSha256Hex(std::string_view text) {
  if (text.size() != 64) {
    return false;
  }
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

}  // namespace hyper
