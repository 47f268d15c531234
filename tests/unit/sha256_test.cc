#include "base/sha256.h"

#include <gtest/gtest.h>

#include <string>

namespace hyper {
namespace {

// FIPS 180-2's two-block example: the pieces may split it anywhere, a block boundary included.
TEST(Sha256Test, PiecesHashAsTheirJoinedText) {
  const std::string text = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const std::string expected = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
  ASSERT_EQ(sha256Hex(text), expected);
  for (size_t cut : {size_t{0}, size_t{1}, size_t{31}, text.size()}) {
    Sha256 h;
    h.update(std::string_view(text).substr(0, cut));
    h.update(std::string_view(text).substr(cut));
    EXPECT_EQ(h.hex(), expected) << "cut at " << cut;
  }
  Sha256 empty;
  EXPECT_EQ(empty.hex(), sha256Hex(""));
}

// FIPS 180-2's long example, a million "a": many blocks through the CPU's SHA instructions, in
// one call and in uneven pieces.
TEST(Sha256Test, AMillionAs) {
  const std::string text(1000000, 'a');
  const std::string expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  EXPECT_EQ(sha256Hex(text), expected);
  Sha256 h;
  for (size_t at = 0; at < text.size(); at += 777) {
    h.update(std::string_view(text).substr(at, 777));
  }
  EXPECT_EQ(h.hex(), expected);
}

}  // namespace
}  // namespace hyper
