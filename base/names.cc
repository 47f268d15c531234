#include "base/names.h"

#include <cstdio>

#include "base/sha256.h"

namespace hyper {

std::string checkDnsLabel(std::string_view name) {
  if (name.empty()) {
    return "must not be empty (expected a DNS label: 1-63 of a-z, 0-9, '-')";
  }
  if (name.size() > 63) {
    return "is " + std::to_string(name.size()) + " characters long (expected at most 63)";
  }
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) {
      char buf[8];
      if (c >= 0x21 && c < 0x7f) {
        std::snprintf(buf, sizeof buf, "'%c'", c);
      } else {
        std::snprintf(buf, sizeof buf, "0x%02x", static_cast<unsigned char>(c));
      }
      return std::string("has ") + buf + " at position " + std::to_string(i + 1) +
             " (expected a DNS label: lowercase a-z, 0-9 and '-')";
    }
  }
  if (name.front() == '-' || name.back() == '-') {
    return "must not start or end with '-' (expected a DNS label)";
  }
  return "";
}

std::string deriveInterfaceName(std::string_view prefix, std::string_view name) {
  constexpr size_t kMax = 15;
  std::string full = std::string(prefix) + std::string(name);
  if (full.size() <= kMax) {
    return full;
  }
  std::string hash = sha256Hex(name).substr(0, 5);
  size_t headLen = kMax - prefix.size() - 1 - hash.size();
  std::string head(name.substr(0, headLen));
  while (!head.empty() && head.back() == '-') {
    head.pop_back();
  }
  return std::string(prefix) + head + "-" + hash;
}

std::string checkInterfaceName(std::string_view name) {
  if (name.empty() || name.size() > 15) {
    return "must be 1-15 characters (Linux IFNAMSIZ), got " + std::to_string(name.size());
  }
  if (name == "." || name == "..") {
    return "must not be '.' or '..'";
  }
  for (char c : name) {
    if (c == '/' || c == ':' || c <= ' ' || c == 0x7f) {
      return "must not contain '/', ':', whitespace or control characters";
    }
  }
  return "";
}

}  // namespace hyper
