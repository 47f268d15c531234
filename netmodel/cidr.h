#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace hyper::netmodel {

// Parses a dotted-quad IPv4 address ("10.77.0.1"): exactly four decimal octets of 0-255. The
// result is in host byte order. Errors say which octet is wrong.
Result<uint32_t> parseIpv4(std::string_view text);

// "10.77.0.1" for a host-byte-order address.
std::string formatIpv4(uint32_t address);

// An IPv4 prefix as it was written. `address` keeps any host bits, so that validation can tell
// the user which network address was probably meant ("10.77.0.5/24": did you mean 10.77.0.0/24?).
struct Cidr {
  uint32_t address = 0;
  int prefix = 0;

  // "a.b.c.d/n" with n from 0 to 32; with `allowBareAddress`, "a.b.c.d" is read as "/32".
  static Result<Cidr> parse(std::string_view text, bool allowBareAddress = false);

  uint32_t mask() const;  // prefix 0 -> 0, prefix 32 -> 0xffffffff
  uint32_t network() const { return address & mask(); }
  uint32_t broadcast() const { return network() | ~mask(); }
  bool isNetworkAddress() const { return address == network(); }
  Cidr canonical() const { return {network(), prefix}; }

  bool contains(uint32_t a) const { return (a & mask()) == network(); }
  // True when every address of `other` is in this prefix.
  bool contains(const Cidr& other) const;
  // True when the two prefixes share at least one address (one contains the other).
  bool overlaps(const Cidr& other) const;

  std::string str() const;  // "10.77.0.0/24", host bits as written

  bool operator==(const Cidr&) const = default;
};

}  // namespace hyper::netmodel
