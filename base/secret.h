#pragma once

#include <string>
#include <utility>

#include "base/status.h"

namespace hyper {

// A secret read from a file (webhook secrets, alert signing keys). The value is reachable only
// through reveal(): the type has no stream or fmt output, so it cannot reach a log line or an
// error message by accident.
class SecretValue {
 public:
  SecretValue() = default;
  explicit SecretValue(std::string value) : value_(std::move(value)) {}
  const std::string& reveal() const { return value_; }
  bool empty() const { return value_.empty(); }

 private:
  std::string value_;
};

// Reads a secret from `path`: it must be a regular file with no access for group or others
// (0600, 0400) and not empty; one trailing newline ("\n" or "\r\n") is stripped. Errors name the
// file and, for a bad mode, the mode; never the content.
Result<SecretValue> readSecretFile(const std::string& path);

}  // namespace hyper
