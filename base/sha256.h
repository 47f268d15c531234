#pragma once

#include <memory>
#include <string>
#include <string_view>

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace hyper {

// Lowercase hex SHA-256 (OpenSSL's: the CPU's SHA instructions where it has them, some 4 times
// libsodium's portable code on a 2 MB input, and never slower on small ones).
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
  struct FreeContext {
    void operator()(EVP_MD_CTX* ctx) const;
  };
  std::unique_ptr<EVP_MD_CTX, FreeContext> ctx_;
};

// True for exactly 64 lowercase hex digits: what sha256Hex writes.
bool isSha256Hex(std::string_view text);

}  // namespace hyper
