#pragma once

#include <memory>
#include <string>
#include <string_view>

struct crypto_hash_sha256_state;

namespace hyper {

// Lowercase hex SHA-256 (libsodium's crypto_hash_sha256).
std::string sha256Hex(std::string_view data);

// SHA-256 of data given in pieces: hex() of the pieces is sha256Hex() of them joined, without
// the joined copy.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data);
  std::string hex();  // the digest of everything given so far; call once

 private:
  std::unique_ptr<crypto_hash_sha256_state> state_;
};

// True for exactly 64 lowercase hex digits: what sha256Hex writes.
bool isSha256Hex(std::string_view text);

}  // namespace hyper
