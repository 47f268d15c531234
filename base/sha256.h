#pragma once

#include <string>
#include <string_view>

namespace hyper {

// Lowercase hex SHA-256 (libsodium's crypto_hash_sha256).
std::string sha256Hex(std::string_view data);

// True for exactly 64 lowercase hex digits: what sha256Hex writes.
bool isSha256Hex(std::string_view text);

}  // namespace hyper
