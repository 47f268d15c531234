// Provenance: the host key, in-toto statements and DSSE envelopes (store/provenance.h), and the
// Build provider signing what it builds.

#include "store/provenance.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "base/file.h"

namespace hyper::store {
namespace {

class ProvenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hyper-provenance-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

nlohmann::json sampleStatement() {
  return provenanceStatement({{"initrd", "sha256:" + std::string(64, 'a')}},
                             "https://hyper.dev/build/initramfs/v1", {{"type", "initramfs"}},
                             {{"busybox", "sha256:" + std::string(64, 'b')}, {"gzip", "gzip 1.12"}},
                             "hyper-build/1", std::string(64, 'c'));
}

TEST_F(ProvenanceTest, TheHostKeyIsMadeOncePrivateAndLoadsAgain) {
  auto made = HostKey::loadOrCreate(dir_);
  ASSERT_TRUE(made.isOk()) << made.status().message();
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/keys/host.ed25519").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = HostKey::loadOrCreate(dir_);
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->publicKeyText(), made->publicKeyText());
  auto pub = HostKey::loadPublic(dir_);
  ASSERT_TRUE(pub.isOk()) << pub.status().message();
  EXPECT_EQ(pub->keyId(), made->keyId());
  EXPECT_FALSE(pub->sign("x").isOk()) << "the public half cannot sign";

  ::chmod((dir_ + "/keys/host.ed25519").c_str(), 0644);
  auto loose = HostKey::loadOrCreate(dir_);
  ASSERT_FALSE(loose.isOk());
  EXPECT_NE(loose.status().message().find("0600"), std::string::npos) << loose.status().message();
  EXPECT_FALSE(HostKey::loadPublic(dir_ + "/none").isOk());
}

// The inputs come back as they went in; a dependency of another shape is left out, not thrown on.
TEST_F(ProvenanceTest, StatementInputsReadBackWhatWasRecorded) {
  nlohmann::json statement = sampleStatement();
  EXPECT_EQ(statementInputs(statement),
            (nlohmann::json{{"busybox", "sha256:" + std::string(64, 'b')}, {"gzip", "gzip 1.12"}}));
  statement["predicate"]["buildDefinition"]["resolvedDependencies"].push_back(
      {{"name", "odd"}, {"digest", "not an object"}});
  statement["predicate"]["buildDefinition"]["resolvedDependencies"].push_back(42);
  nlohmann::json back = statementInputs(statement);
  EXPECT_EQ(back["odd"], "");
  EXPECT_EQ(back.size(), 3u);
  EXPECT_EQ(statementInputs(nlohmann::json::parse(R"({"predicate":[]})")),
            nlohmann::json::object());
}

TEST_F(ProvenanceTest, AnEnvelopeOpensWithItsKeyOnlyAndUntouched) {
  auto key = HostKey::loadOrCreate(dir_ + "/one");
  auto other = HostKey::loadOrCreate(dir_ + "/two");
  ASSERT_TRUE(key.isOk() && other.isOk());
  nlohmann::json statement = sampleStatement();
  EXPECT_EQ(statement["predicateType"], "https://slsa.dev/provenance/v1");
  EXPECT_EQ(statement["subject"][0]["digest"]["sha256"], std::string(64, 'a'));
  auto envelope = signEnvelope(statement, *key);
  ASSERT_TRUE(envelope.isOk()) << envelope.status().message();
  EXPECT_EQ(envelope->dump(), signEnvelope(statement, *key)->dump()) << "deterministic";

  auto opened = openEnvelope(*envelope, *key);
  ASSERT_TRUE(opened.isOk()) << opened.status().message();
  EXPECT_EQ(*opened, statement);

  auto wrongKey = openEnvelope(*envelope, *other);
  ASSERT_FALSE(wrongKey.isOk());
  EXPECT_NE(wrongKey.status().message().find("no signature by the host key"), std::string::npos);

  // Another statement under the same signature.
  nlohmann::json forged = *envelope;
  nlohmann::json changed = statement;
  changed["subject"][0]["digest"]["sha256"] = std::string(64, 'f');
  auto forgedPayload = signEnvelope(changed, *other);
  forged["payload"] = (*forgedPayload)["payload"];
  auto refused = openEnvelope(forged, *key);
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.status().message().find("does not verify"), std::string::npos)
      << refused.status().message();

  for (const char* bad : {"{}", "[]", R"({"payload":1,"signatures":[]})",
                          R"({"payloadType":"text/plain","payload":"","signatures":[]})",
                          R"({"payloadType":"application/vnd.in-toto+json","payload":"!!",)"
                          R"("signatures":[]})"}) {
    EXPECT_FALSE(openEnvelope(nlohmann::json::parse(bad), *key).isOk()) << bad;
  }
}

}  // namespace
}  // namespace hyper::store
