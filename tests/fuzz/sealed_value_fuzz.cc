// What a Secret's manifest holds, from git: sealed values and public keys. Input: the text, tried
// as a sealed value and as a public key; and the same bytes as edits to a value this process
// sealed. Invariants: no crash or hang; a value opens only for the scope it was sealed for and
// only unaltered: any edit of its payload makes it fail, no edit gives the value back.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/base64.h"
#include "store/sealing.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using hyper::store::KeyRing;
using hyper::store::SealScope;

const SealScope kScope{"Secret", "db", "password"};

struct Fixture {
  KeyRing ring = KeyRing::generate();
  std::string sealed = *hyper::store::seal(ring.active(), kScope, "s3cret");
  std::string prefix;  // "hyper:v1:<id>:"
  std::string raw;     // the decoded payload
  Fixture() {
    size_t colon = sealed.rfind(':');
    prefix = sealed.substr(0, colon + 1);
    hyper::decodeBase64(sealed.substr(colon + 1), raw);
  }
  std::string encode(const std::string& payload) const {
    return prefix + hyper::encodeBase64(payload);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Fixture f;
  const std::string text(reinterpret_cast<const char*>(data), size);

  // As a sealed value: parsed or refused; it opens with no key of this ring (random, unknown to
  // the input) unless it is the fixture's own value.
  auto opened = f.ring.open(text, kScope);
  if (opened.isOk()) {
    FUZZ_CHECK(text == f.sealed && opened->view() == "s3cret");
  }
  (void)hyper::store::parseSealed(text);
  (void)hyper::store::SealingKey::parse(text);

  // As edits (position, xor) pairs to the fixture's payload.
  std::string payload = f.raw;
  for (size_t i = 0; i + 1 < size; i += 2) {
    payload[data[i] % payload.size()] ^= static_cast<char>(data[i + 1]);
  }
  auto edited = f.ring.open(f.encode(payload), kScope);
  if (payload == f.raw) {
    FUZZ_CHECK(edited.isOk() && edited->view() == "s3cret");
  } else {
    FUZZ_CHECK(!edited.isOk());
  }
  // Never for another scope.
  FUZZ_CHECK(!f.ring.open(f.sealed, {"Secret", "db", "user"}).isOk());
  return 0;
}
