#include "netmodel/cidr.h"

#include <algorithm>

namespace hyper::netmodel {

namespace {

// Reads a decimal number of at most `maxDigits` digits; no sign, no spaces.
bool readNumber(std::string_view text, size_t maxDigits, int& out) {
  if (text.empty() || text.size() > maxDigits) {
    return false;
  }
  int v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

}  // namespace

Result<uint32_t> parseIpv4(std::string_view text) {
  uint32_t value = 0;
  size_t start = 0;
  for (int i = 0; i < 4; ++i) {
    size_t end = i < 3 ? text.find('.', start) : text.size();
    if (end == std::string_view::npos) {
      return Status::error("\"" + std::string(text) +
                           "\" is not an IPv4 address (expected four octets like 10.77.0.1)");
    }
    std::string_view part = text.substr(start, end - start);
    int octet = 0;
    if (!readNumber(part, 3, octet)) {
      return Status::error("\"" + std::string(text) + "\" is not an IPv4 address (octet " +
                           std::to_string(i + 1) + " is \"" + std::string(part) +
                           "\", expected a number from 0 to 255)");
    }
    if (octet > 255) {
      return Status::error("\"" + std::string(text) + "\" is not an IPv4 address (octet " +
                           std::to_string(i + 1) + " is " + std::to_string(octet) +
                           ", expected 0 to 255)");
    }
    value = (value << 8) | static_cast<uint32_t>(octet);
    start = end + 1;
  }
  return value;
}

std::string formatIpv4(uint32_t address) {
  return std::to_string(address >> 24) + "." + std::to_string((address >> 16) & 0xff) + "." +
         std::to_string((address >> 8) & 0xff) + "." + std::to_string(address & 0xff);
}

Result<Cidr> Cidr::parse(std::string_view text, bool allowBareAddress) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos && !allowBareAddress) {
    return Status::error("\"" + std::string(text) +
                         "\" has no prefix length (expected CIDR notation like 10.77.0.0/24)");
  }
  Cidr out;
  HYPER_ASSIGN_OR_RETURN(out.address, parseIpv4(text.substr(0, slash)));
  if (slash == std::string_view::npos) {
    out.prefix = 32;
    return out;
  }
  std::string_view len = text.substr(slash + 1);
  if (!readNumber(len, 2, out.prefix) || out.prefix > 32) {
    return Status::error("\"" + std::string(text) + "\" has prefix length \"" + std::string(len) +
                         "\" (expected 0 to 32)");
  }
  return out;
}

uint32_t Cidr::mask() const {
  if (prefix <= 0) {
    return 0;
  }
  return ~uint32_t{0} << (32 - std::min(prefix, 32));
}

bool Cidr::contains(const Cidr& other) const {
  return other.prefix >= prefix && contains(other.network());
}

bool Cidr::overlaps(const Cidr& other) const { return contains(other) || other.contains(*this); }

std::string Cidr::str() const { return formatIpv4(address) + "/" + std::to_string(prefix); }

}  // namespace hyper::netmodel
