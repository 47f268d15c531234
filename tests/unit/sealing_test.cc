// Sealing (providers/secret/sealing.h): a round trip, the binding of a value to its kind, name
// and key, tampering, every key id case, the key ring on disk (made, rotated, reloaded, refused
// when loose) and the fingerprint.

#include "store/sealing.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "base/base64.h"
#include "base/file.h"
#include "tests/fakes/temp_tree.h"

namespace hyper::store {
namespace {

namespace fs = std::filesystem;

const SealScope kScope{"Secret", "db", "password"};

std::string message(const Result<SecretBytes>& r) {
  return r.isOk() ? "(opened)" : r.status().message();
}

TEST(SealingTest, ARoundTripOpensWhatWasSealedAndNothingElse) {
  KeyRing ring = KeyRing::generate();
  auto sealed = seal(ring.active(), kScope, "correct horse battery staple");
  ASSERT_TRUE(sealed.isOk()) << sealed.status().message();
  EXPECT_EQ(sealed->rfind("hyper:v1:" + ring.active().id + ":", 0), 0u) << *sealed;
  EXPECT_EQ(sealed->find("horse"), std::string::npos);
  auto opened = ring.open(*sealed, kScope);
  ASSERT_TRUE(opened.isOk()) << opened.status().message();
  EXPECT_EQ(opened->view(), "correct horse battery staple");

  // Each seal is another text; both open.
  auto again = seal(ring.active(), kScope, "correct horse battery staple");
  ASSERT_TRUE(again.isOk());
  EXPECT_NE(*again, *sealed);
  EXPECT_TRUE(ring.open(*again, kScope).isOk());

  // Empty and largest values; one byte more is refused.
  EXPECT_EQ(ring.open(*seal(ring.active(), kScope, ""), kScope)->view(), "");
  std::string big(kMaxSecretValueBytes, 'b');
  auto bigSealed = seal(ring.active(), kScope, big);
  ASSERT_TRUE(bigSealed.isOk());
  EXPECT_EQ(ring.open(*bigSealed, kScope)->view(), big);
  EXPECT_FALSE(seal(ring.active(), kScope, big + "b").isOk());
}

TEST(SealingTest, AValueMovedToAnotherSecretOrKeyDoesNotOpen) {
  KeyRing ring = KeyRing::generate();
  std::string sealed = *seal(ring.active(), kScope, "s3cret");
  for (const SealScope& other :
       {SealScope{"Secret", "cache", "password"}, SealScope{"Secret", "db", "user"},
        SealScope{"VM", "db", "password"}}) {
    auto opened = ring.open(sealed, other);
    ASSERT_FALSE(opened.isOk()) << other.text();
    EXPECT_EQ(message(opened),
              "does not open as " + other.text() +
                  ": it was sealed for another secret or value key (a sealed value is bound to "
                  "the kind, name and key it was sealed for; seal it for this one)");
    EXPECT_EQ(message(opened).find("s3cret"), std::string::npos);
  }
}

// Decodes the payload, lets `edit` change it, encodes it back.
std::string edited(const std::string& sealed, const std::function<void(std::string&)>& edit) {
  size_t colon = sealed.rfind(':');
  std::string raw;
  EXPECT_TRUE(decodeBase64(sealed.substr(colon + 1), raw));
  edit(raw);
  return sealed.substr(0, colon + 1) + encodeBase64(raw);
}

TEST(SealingTest, AnAlteredValueDoesNotOpen) {
  KeyRing ring = KeyRing::generate();
  std::string sealed = *seal(ring.active(), kScope, "s3cret");
  const std::string altered =
      "does not open: the sealed value was altered (its authentication failed)";
  // A byte of the ciphertext, of the tag, of the nonce.
  for (size_t at : {size_t{66}, size_t{75}, size_t{40}}) {
    std::string bad = edited(sealed, [at](std::string& raw) { raw[at] ^= 1; });
    EXPECT_EQ(message(ring.open(bad, kScope)), altered) << at;
  }
  // The ephemeral public key.
  std::string badKey = edited(sealed, [](std::string& raw) { raw[3] ^= 1; });
  EXPECT_FALSE(ring.open(badKey, kScope).isOk());
  // The scope hint (which is authenticated): changed to another scope's, it still does not open.
  std::string badHint = edited(sealed, [](std::string& raw) { raw[32 + 24] ^= 1; });
  EXPECT_NE(message(ring.open(badHint, kScope)).find("does not open as Secret/db/password"),
            std::string::npos);
  // Cut short.
  std::string cut = edited(sealed, [](std::string& raw) { raw.resize(60); });
  EXPECT_NE(message(ring.open(cut, kScope)).find("it was cut or altered"), std::string::npos);
}

TEST(SealingTest, EveryKeyIdCase) {
  KeyRing ring = KeyRing::generate();
  KeyRing other = KeyRing::generate();
  std::string sealed = *seal(other.active(), kScope, "s3cret");
  // Sealed to a key this ring does not have.
  EXPECT_EQ(message(ring.open(sealed, kScope)),
            "sealed to key " + other.active().id +
                ", which this host does not have (its keys: " + ring.active().id +
                "): seal it again with this host's public key (`hyperctl keys`)");
  // The id in the text changed to this ring's: the key id is authenticated too.
  std::string relabelled = sealed;
  relabelled.replace(9, 16, ring.active().id);
  EXPECT_FALSE(ring.open(relabelled, kScope).isOk());
  // Malformed ids and prefixes.
  const std::string payload = sealed.substr(26);
  EXPECT_NE(message(ring.open("hyper:v1:ABCDEF0123456789:" + payload, kScope))
                .find("expected 16 lowercase hex digits"),
            std::string::npos);
  EXPECT_NE(message(ring.open("hyper:v1:0123:" + payload, kScope)).find("16 lowercase hex"),
            std::string::npos);
  EXPECT_NE(message(ring.open("hyper:v1:" + ring.active().id, kScope)).find("16 lowercase hex"),
            std::string::npos);
  EXPECT_NE(message(ring.open("hyper:v2:" + sealed.substr(9), kScope)).find("not a sealed value"),
            std::string::npos);
  EXPECT_NE(message(ring.open("s3cret", kScope)).find("not a sealed value"), std::string::npos);
  EXPECT_NE(message(ring.open(sealed.substr(0, 26) + "!!!notbase64", kScope)).find("payload"),
            std::string::npos);
  // Public keys: their text, parsed back, is the same key.
  auto parsed = SealingKey::parse("  " + ring.active().text() + "\n");
  ASSERT_TRUE(parsed.isOk()) << parsed.status().message();
  EXPECT_EQ(parsed->id, ring.active().id);
  EXPECT_TRUE(ring.open(*seal(*parsed, kScope, "x"), kScope).isOk());
  EXPECT_FALSE(SealingKey::parse("ed25519:" + ring.active().text().substr(7)).isOk());
  EXPECT_FALSE(SealingKey::parse("x25519:AAAA").isOk());
}

class KeyRingTest : public test::TempTreeTest {
 protected:
  KeyRingTest() : TempTreeTest("hyper-keyring") {}
};

TEST_F(KeyRingTest, MadeOnceRotatedAndReloadedWithOldKeysOpeningOldValues) {
  auto first = KeyRing::loadOrCreate(root_);
  ASSERT_TRUE(first.isOk()) << first.status().message();
  const std::string dir = root_ + "/keys/seal";
  const std::string id1 = first->active().id;
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/" + id1 + ".x25519").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir + "/fingerprint.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(*readFile(dir + "/" + id1 + ".pub"), first->active().text() + "\n");

  // The same ring when loaded again.
  auto again = KeyRing::loadOrCreate(root_);
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->active().id, id1);
  std::string old = *seal(first->active(), kScope, "old value");
  EXPECT_EQ(again->fingerprint(kScope, "v"), first->fingerprint(kScope, "v"));

  auto rotated = again->rotate(root_);
  ASSERT_TRUE(rotated.isOk()) << rotated.status().message();
  EXPECT_NE(rotated->id, id1);
  EXPECT_EQ(again->active().id, rotated->id);
  auto reloaded = KeyRing::loadOrCreate(root_);
  ASSERT_TRUE(reloaded.isOk());
  EXPECT_EQ(reloaded->active().id, rotated->id);
  EXPECT_EQ(reloaded->publicKeys().size(), 2u);
  EXPECT_EQ(reloaded->open(old, kScope)->view(), "old value") << "an old key opens old values";
  EXPECT_EQ(reloaded->fingerprint(kScope, "v"), first->fingerprint(kScope, "v"))
      << "a rotation keeps the fingerprints";
  std::string activeId;
  auto pub = KeyRing::loadPublic(root_, &activeId);
  ASSERT_TRUE(pub.isOk()) << pub.status().message();
  EXPECT_EQ(pub->size(), 2u);
  EXPECT_EQ(activeId, rotated->id);

  // Retired: the active key is refused; the old one goes, with what it opened.
  Status active = reloaded->retire(root_, rotated->id);
  ASSERT_FALSE(active.isOk());
  EXPECT_NE(active.message().find("is the active one"), std::string::npos);
  ASSERT_TRUE(reloaded->retire(root_, id1).isOk());
  EXPECT_FALSE(reloaded->open(old, kScope).isOk());
  EXPECT_EQ(reloaded->active().id, rotated->id);
  EXPECT_FALSE(fs::exists(dir + "/" + id1 + ".x25519"));
  auto after = KeyRing::loadOrCreate(root_);
  ASSERT_TRUE(after.isOk());
  EXPECT_EQ(after->publicKeys().size(), 1u);
  EXPECT_FALSE(reloaded->retire(root_, id1).isOk()) << "retired twice";
}

TEST_F(KeyRingTest, ALooseOrWrongKeyFileIsRefusedByName) {
  auto ring = KeyRing::loadOrCreate(root_);
  ASSERT_TRUE(ring.isOk());
  const std::string path = root_ + "/keys/seal/" + ring->active().id + ".x25519";
  ::chmod(path.c_str(), 0644);
  auto loose = KeyRing::loadOrCreate(root_);
  ASSERT_FALSE(loose.isOk());
  EXPECT_EQ(
      loose.status().message(),
      "sealing key " + path + " must be a regular file readable by its owner only (mode 0600)");
  ::chmod(path.c_str(), 0600);
  std::ofstream(path, std::ios::app) << "x";
  auto wrong = KeyRing::loadOrCreate(root_);
  ASSERT_FALSE(wrong.isOk());
  EXPECT_NE(wrong.status().message().find("is not an X25519 key"), std::string::npos);
  EXPECT_FALSE(KeyRing::loadPublic(root_ + "/nowhere").isOk());
}

TEST(SealingTest, FingerprintsDependOnTheScopeTheValueAndTheHost) {
  KeyRing ring = KeyRing::generate();
  KeyRing other = KeyRing::generate();
  const std::string fp = ring.fingerprint(kScope, "s3cret");
  EXPECT_EQ(fp.rfind("mac:", 0), 0u);
  EXPECT_EQ(fp.size(), 4u + 32u);
  EXPECT_EQ(ring.fingerprint(kScope, "s3cret"), fp);
  EXPECT_NE(ring.fingerprint(kScope, "s3cret!"), fp);
  EXPECT_NE(ring.fingerprint({"Secret", "db", "user"}, "s3cret"), fp);
  EXPECT_NE(other.fingerprint(kScope, "s3cret"), fp) << "another host's key: another fingerprint";
}

TEST(SecretBytesTest, HoldsMovesAndEmpties) {
  auto a = SecretBytes::copyOf("abc");
  ASSERT_TRUE(a.isOk());
  SecretBytes b = std::move(*a);
  EXPECT_EQ(b.view(), "abc");
  EXPECT_EQ(a->size(), 0u);
  SecretBytes c;
  c = std::move(b);
  EXPECT_EQ(c.view(), "abc");
  EXPECT_EQ(SecretBytes::copyOf("")->view(), "");
}

}  // namespace
}  // namespace hyper::store
