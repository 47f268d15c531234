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

}  // namespace
}  // namespace hyper
