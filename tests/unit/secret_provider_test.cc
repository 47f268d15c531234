// The Secret provider (providers/secret/secret_provider.h) over a real key ring in a temp state
// dir: validate, observe opening every value, plan saying which values changed and never how,
// apply recording fingerprints only; a moved value, a loose file and a canary value that never
// shows in anything the provider returns.

#include "providers/secret/secret_provider.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/fakes/provider_step.h"
#include "tests/fakes/temp_tree.h"

namespace hyper::providers::secret {
using namespace store;
namespace {

constexpr const char* kCanary = "canary-7f3a9c1e-do-not-leak";

class SecretProviderTest : public test::TempTreeTest {
 protected:
  SecretProviderTest() : TempTreeTest("hyper-secret") {}
  void SetUp() override {
    TempTreeTest::SetUp();
    provider_ = std::make_unique<SecretProvider>(SecretProviderConfig{root_ + "/state"});
    auto ring = KeyRing::loadOrCreate(root_ + "/state");
    ASSERT_TRUE(ring.isOk()) << ring.status().message();
    key_ = ring->active();
  }
  std::string sealFor(const std::string& name, const std::string& key, const std::string& value) {
    auto s = seal(key_, {"Secret", name, key}, value);
    EXPECT_TRUE(s.isOk());
    return s.isOk() ? *s : "";
  }
  using Step = test::ProviderStep;
  Step reconcile(const std::string& name, const Json& spec, const ManagedRecord* record) {
    Object o;
    o.id = {"Secret", name};
    o.spec = spec;
    Step out = test::reconcileOne(*provider_, o, record);
    // Nothing the provider hands back holds the canary.
    std::string everything = out.diagnostics.format() + out.observed.context.dump() +
                             out.observed.fields.dump() + out.applied.handles.dump() +
                             out.applied.fingerprint;
    if (out.action) {
      everything += out.action->reason;
      for (const auto& c : out.action->changes) {
        everything += c.path + c.before.dump() + c.after.dump();
      }
      everything += out.action->privateData.dump();
    }
    EXPECT_EQ(everything.find(kCanary), std::string::npos) << everything;
    return out;
  }
  static ManagedRecord recordOf(const std::string& name, const Json& spec, const ApplyResponse& r) {
    Object o;
    o.id = {"Secret", name};
    o.spec = spec;
    return test::recordOf(o, r);
  }
  std::unique_ptr<SecretProvider> provider_;
  SealingKey key_;
};

TEST_F(SecretProviderTest, CreatedThenInSyncThenAChangedValueIsNamedNotShown) {
  Json spec = {{"sealed", {{"password", sealFor("db", "password", kCanary)}}}};
  Step created = reconcile("db", spec, nullptr);
  ASSERT_FALSE(created.diagnostics.hasErrors()) << created.diagnostics.format();
  ASSERT_TRUE(created.action.has_value());
  EXPECT_EQ(created.action->type, ActionType::Create);
  ASSERT_EQ(created.action->changes.size(), 1u);
  EXPECT_EQ(created.action->changes[0].path, "spec.sealed.password");
  EXPECT_EQ(created.action->changes[0].after, "(sealed)");
  EXPECT_EQ(created.applied.handles["keyIds"]["password"], key_.id);
  ManagedRecord rec = recordOf("db", spec, created.applied);

  EXPECT_FALSE(reconcile("db", spec, &rec).action.has_value()) << "in sync";
  // Sealed again (another text, the same value): nothing to do.
  Json resealed = {{"sealed", {{"password", sealFor("db", "password", kCanary)}}}};
  ASSERT_NE(resealed, spec);
  EXPECT_FALSE(reconcile("db", resealed, &rec).action.has_value()) << "a reseal is no change";

  Json rotated = {{"sealed",
                   {{"password", sealFor("db", "password", std::string(kCanary) + "2")},
                    {"user", sealFor("db", "user", "app")}}}};
  Step changed = reconcile("db", rotated, &rec);
  ASSERT_TRUE(changed.action.has_value()) << changed.diagnostics.format();
  EXPECT_EQ(changed.action->type, ActionType::Update);
  EXPECT_EQ(changed.action->reason, "2 values changed");
  ASSERT_EQ(changed.action->changes.size(), 2u);
  EXPECT_EQ(changed.action->changes[0].path, "spec.sealed.password");
  EXPECT_EQ(changed.action->changes[0].after, "(sealed value changed)");
  EXPECT_EQ(changed.action->changes[1].path, "spec.sealed.user");

  // The same values resealed to a new key: an update that records the key, no value change.
  ManagedRecord rotatedRec = recordOf("db", rotated, changed.applied);
  auto ring = KeyRing::loadOrCreate(root_ + "/state");
  ASSERT_TRUE(ring.isOk());
  auto next = ring->rotate(root_ + "/state");
  ASSERT_TRUE(next.isOk());
  key_ = *next;
  Json moved = {{"sealed",
                 {{"password", sealFor("db", "password", std::string(kCanary) + "2")},
                  {"user", sealFor("db", "user", "app")}}}};
  Step toNewKey = reconcile("db", moved, &rotatedRec);
  ASSERT_TRUE(toNewKey.action.has_value()) << toNewKey.diagnostics.format();
  EXPECT_EQ(toNewKey.action->reason, "resealed to another key (the values are the same)");
  EXPECT_EQ(toNewKey.applied.handles["keyIds"]["password"], next->id);
}

TEST_F(SecretProviderTest, AMovedMalformedOrForeignValueIsAnErrorAtItsField) {
  // Sealed for Secret/cache, put in Secret/db.
  Json moved = {{"sealed", {{"password", sealFor("cache", "password", kCanary)}}}};
  Step m = reconcile("db", moved, nullptr);
  ASSERT_TRUE(m.diagnostics.hasErrors());
  EXPECT_EQ(m.diagnostics.items()[0].fieldPath, "spec.sealed.password");
  EXPECT_NE(m.diagnostics.items()[0].summary.find("it was sealed for another secret"),
            std::string::npos)
      << m.diagnostics.format();
  EXPECT_FALSE(m.action.has_value());

  Json malformed = {{"sealed", {{"password", "plaintext-by-mistake"}}}};
  Step bad = reconcile("db", malformed, nullptr);
  ASSERT_TRUE(bad.diagnostics.hasErrors());
  EXPECT_EQ(bad.diagnostics.items()[0].fieldPath, "spec.sealed.password");
  EXPECT_NE(bad.diagnostics.format().find("not a sealed value"), std::string::npos);
  EXPECT_EQ(bad.diagnostics.format().find("plaintext-by-mistake"), std::string::npos)
      << "an error repeats no value";

  KeyRing other = KeyRing::generate();
  Json foreign = {
      {"sealed", {{"password", *seal(other.active(), {"Secret", "db", "password"}, kCanary)}}}};
  Step f = reconcile("db", foreign, nullptr);
  ASSERT_TRUE(f.diagnostics.hasErrors());
  EXPECT_NE(f.diagnostics.format().find("which this host does not have"), std::string::npos);

  Json twice = {{"sealed", {{"password", sealFor("db", "password", "x")}}},
                {"fromFile", {{"password", root_ + "/pw"}}}};
  Step t = reconcile("db", twice, nullptr);
  ASSERT_TRUE(t.diagnostics.hasErrors());
  EXPECT_EQ(t.diagnostics.items()[0].fieldPath, "spec.fromFile.password");
}

TEST_F(SecretProviderTest, AFileValueMustBeRootsAndPrivate) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root (the file must be root's)";
  }
  const std::string pw = root_ + "/db-password";
  std::ofstream(pw) << kCanary;
  ::chmod(pw.c_str(), 0644);
  Json spec = {{"fromFile", {{"password", pw}}}};
  Step loose = reconcile("db", spec, nullptr);
  ASSERT_TRUE(loose.diagnostics.hasErrors());
  EXPECT_EQ(loose.diagnostics.items()[0].fieldPath, "spec.fromFile.password");
  EXPECT_NE(loose.diagnostics.format().find("mode 0644: expected a file owned by root"),
            std::string::npos)
      << loose.diagnostics.format();

  ::chmod(pw.c_str(), 0400);
  Step ok = reconcile("db", spec, nullptr);
  ASSERT_FALSE(ok.diagnostics.hasErrors()) << ok.diagnostics.format();
  ManagedRecord rec = recordOf("db", spec, ok.applied);
  ::chmod(pw.c_str(), 0600);
  std::ofstream(pw, std::ios::trunc) << kCanary << "-rotated";
  Step changed = reconcile("db", spec, &rec);
  ASSERT_TRUE(changed.action.has_value());
  EXPECT_EQ(changed.action->changes[0].after, "(file's value changed)");

  std::filesystem::create_symlink(pw, root_ + "/link");
  Step link = reconcile("db", {{"fromFile", {{"password", root_ + "/link"}}}}, nullptr);
  EXPECT_NE(link.diagnostics.format().find("is a symlink"), std::string::npos);

  Object db;
  db.id = {"Secret", "db"};
  db.spec = spec;
  auto opened = provider_->openValue(db, "password");
  ASSERT_TRUE(opened.isOk()) << opened.status().message();
  EXPECT_EQ(opened->view(), std::string(kCanary) + "-rotated");
}

}  // namespace
}  // namespace hyper::providers::secret
