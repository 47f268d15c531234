// The Build provider (providers/build): spec checks, build keys and the cache, drift of the
// store, and images that are the same bytes whatever the state dir, umask or TZ.

#include "providers/build/build_provider.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "host/command.h"
#include "providers/build/build_spec.h"
#include "store/provenance.h"
#include "tests/fakes/provider_step.h"

namespace hyper::providers::build {
namespace {

Json initramfsSpec(const std::string& motd = "hello\n") {
  return Json::parse(R"({"type":"initramfs","initramfs":{"files":[
      {"path":"/init","mode":"0755","content":"#!/bin/sh\necho hi\n"},
      {"path":"/etc/motd","content":)" +
                     Json(motd).dump() + "}]}}");
}

class BuildProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hyper-build-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // A stand-in for busybox: its bytes are an input like the real one's.
    busybox_ = dir_ + "/busybox";
    std::ofstream(busybox_) << "not really busybox";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<BuildProvider> provider(const std::string& stateDir) {
    return std::make_unique<BuildProvider>(BuildProviderConfig{stateDir, busybox_});
  }

  using Step = test::ProviderStep;
  // observe, plan and (when there is an action) apply one Build named `name`.
  Step reconcile(BuildProvider& p, const std::string& name, const Json& spec,
                 const ManagedRecord* record, bool apply = true, const KeptKeys* kept = nullptr) {
    Object o;
    o.id = {"Build", name};
    o.spec = spec;
    return test::reconcileOne(p, o, record, {/*validate=*/false, apply, kept});
  }
  static ManagedRecord recordOf(const std::string& name, const Json& spec, const ApplyResponse& r) {
    Object o;
    o.id = {"Build", name};
    o.spec = spec;
    return test::recordOf(o, r);
  }
  static std::string digestOf(const ApplyResponse& r) {
    return r.handles["artifacts"]["initrd"].value("digest", "");
  }

  std::string dir_;
  std::string busybox_;
};

TEST(BuildSpecTest, PathsAreCheckedWithTheirFieldPath) {
  Diagnostics d;
  Json spec = Json::parse(R"({"type":"initramfs","initramfs":{"files":[
      {"path":"/a/../etc/passwd","content":""},
      {"path":"/x","content":"1"},
      {"path":"/x","content":"2"},
      {"path":"/bin/sh","content":""}]}})");
  BuildSpec parsed = parseBuildSpec({"Build", "b"}, spec, d);
  ASSERT_EQ(d.items().size(), 3u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.initramfs.files[0].path");
  EXPECT_NE(d.items()[0].summary.find(".."), std::string::npos);
  EXPECT_EQ(d.items()[1].fieldPath, "spec.initramfs.files[2].path");
  EXPECT_NE(d.items()[1].summary.find("given twice"), std::string::npos);
  EXPECT_EQ(d.items()[2].fieldPath, "spec.initramfs.files[3].path");
  EXPECT_NE(d.items()[2].summary.find("busybox"), std::string::npos);
  EXPECT_EQ(parsed.files.size(), 1u);

  Diagnostics ok;
  spec["initramfs"]["busybox"] = false;
  spec["initramfs"]["files"] = Json::parse(R"([{"path":"/bin/sh","mode":"755","content":""}])");
  BuildSpec own = parseBuildSpec({"Build", "b"}, spec, ok);
  EXPECT_FALSE(ok.hasErrors()) << ok.format();
  ASSERT_EQ(own.files.size(), 1u);
  EXPECT_EQ(own.files[0].mode, 0755u);
}

TEST_F(BuildProviderTest, BuildsOnceThenTheKeyIsACacheHit) {
  auto p = provider(dir_ + "/state");
  Step first = reconcile(*p, "initrd", initramfsSpec(), nullptr);
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  ASSERT_TRUE(first.action.has_value());
  EXPECT_EQ(first.action->type, ActionType::Create);
  EXPECT_EQ(first.applied.handles["cached"], false);
  const std::string digest = digestOf(first.applied);
  ASSERT_TRUE(store::isDigest(digest)) << first.applied.handles.dump();
  store::ArtifactStore store(dir_ + "/state/store");
  ASSERT_TRUE(store.has(digest));

  // The image: a gzip of a newc cpio holding the files with their modes, and busybox.
  auto cpio = host::runChecked({"sh", "-c", "gzip -dc " + store.pathOf(digest) + " | cpio -tv"});
  ASSERT_TRUE(cpio.isOk()) << cpio.status().message();
  EXPECT_NE(cpio->find("-rwxr-xr-x"), std::string::npos) << *cpio;
  EXPECT_NE(cpio->find("init"), std::string::npos) << *cpio;
  EXPECT_NE(cpio->find("etc/motd"), std::string::npos) << *cpio;
  EXPECT_NE(cpio->find("bin/busybox"), std::string::npos) << *cpio;

  // Applied: nothing more to do.
  ManagedRecord rec = recordOf("initrd", initramfsSpec(), first.applied);
  Step again = reconcile(*p, "initrd", initramfsSpec(), &rec);
  EXPECT_FALSE(again.action.has_value());

  // Another object with the same spec: its key is in the store, nothing is built.
  auto before = std::filesystem::last_write_time(store.pathOf(digest));
  Step other = reconcile(*p, "same", initramfsSpec(), nullptr);
  ASSERT_TRUE(other.action.has_value());
  EXPECT_NE(other.action->reason.find("no work"), std::string::npos) << other.action->reason;
  EXPECT_EQ(other.applied.handles["cached"], true);
  EXPECT_EQ(digestOf(other.applied), digest);
  EXPECT_EQ(std::filesystem::last_write_time(store.pathOf(digest)), before);
}

TEST_F(BuildProviderTest, EveryArtifactHasProvenanceSignedByTheHostKey) {
  auto p = provider(dir_ + "/state");
  Step built = reconcile(*p, "initrd", initramfsSpec(), nullptr);
  ASSERT_FALSE(built.diagnostics.hasErrors()) << built.diagnostics.format();
  store::ArtifactStore store(dir_ + "/state/store");
  auto envelope = store.provenanceOf(digestOf(built.applied));
  ASSERT_TRUE(envelope.isOk()) << envelope.status().message();
  auto key = store::HostKey::loadPublic(dir_ + "/state");
  ASSERT_TRUE(key.isOk()) << key.status().message();
  auto statement = store::openEnvelope(*envelope, *key);
  ASSERT_TRUE(statement.isOk()) << statement.status().message();
  EXPECT_EQ("sha256:" + (*statement)["subject"][0]["digest"]["sha256"].get<std::string>(),
            digestOf(built.applied));
  const auto& definition = (*statement)["predicate"]["buildDefinition"];
  EXPECT_EQ(definition["buildType"], "https://hyper.dev/build/initramfs/v1");
  EXPECT_EQ(definition["externalParameters"]["spec"], initramfsSpec());
  EXPECT_EQ((*statement)["predicate"]["runDetails"]["metadata"]["invocationId"],
            built.applied.handles["key"]);
  bool busybox = false;
  for (const auto& d : definition["resolvedDependencies"]) {
    busybox = busybox ||
              (d["name"] == "busybox" && "sha256:" + d["digest"]["sha256"].get<std::string>() ==
                                             built.applied.handles["inputs"]["busybox"]);
  }
  EXPECT_TRUE(busybox) << definition.dump();
}

TEST_F(BuildProviderTest, ASpecOrInputChangeRebuildsAndSaysWhatMoved) {
  auto p = provider(dir_ + "/state");
  Step first = reconcile(*p, "initrd", initramfsSpec(), nullptr);
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  ManagedRecord rec = recordOf("initrd", initramfsSpec(), first.applied);

  Step spec = reconcile(*p, "initrd", initramfsSpec("changed\n"), &rec, /*apply=*/false);
  ASSERT_TRUE(spec.action.has_value());
  EXPECT_EQ(spec.action->type, ActionType::Update);
  EXPECT_EQ(spec.action->reason, "spec changed");

  std::ofstream(busybox_) << "another busybox";
  Step input = reconcile(*p, "initrd", initramfsSpec(), &rec);
  ASSERT_TRUE(input.action.has_value());
  EXPECT_NE(input.action->reason.find("inputs.busybox"), std::string::npos) << input.action->reason;
  bool keyShown = false;
  for (const auto& c : input.action->changes) {
    keyShown = keyShown || (c.path == "key" && c.before == rec.handles["key"]);
  }
  EXPECT_TRUE(keyShown);
  EXPECT_NE(digestOf(input.applied), digestOf(first.applied));
}

// Content applied before keeps the key it was applied with while that key's artifacts are in the
// store, whatever its moving inputs say now: a rollback takes what ran then, with no build.
TEST_F(BuildProviderTest, AKeptKeyIsTakenAgainWhenItsArtifactsAreThere) {
  auto p = provider(dir_ + "/state");
  Step first = reconcile(*p, "initrd", initramfsSpec(), nullptr);
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  ManagedRecord then = recordOf("initrd", initramfsSpec(), first.applied);
  const std::string keptKey = then.handles["key"];

  // An input moves (busybox) and another content applies its build.
  std::ofstream(busybox_) << "a newer busybox";
  Step moved = reconcile(*p, "initrd", initramfsSpec(), &then);
  ASSERT_TRUE(moved.action.has_value());
  ManagedRecord now = recordOf("initrd", initramfsSpec(), moved.applied);
  ASSERT_NE(now.handles["key"], keptKey);

  // Back to the first content: its key again, its artifacts, no build.
  const KeptKeys kept{{"Build/initrd", {keptKey}}};
  Step back = reconcile(*p, "initrd", initramfsSpec(), &now, /*apply=*/true, &kept);
  ASSERT_TRUE(back.action.has_value()) << back.diagnostics.format();
  EXPECT_EQ(back.action->type, ActionType::Update);
  EXPECT_EQ(back.action->reason, "this content was applied before with key " +
                                     keptKey.substr(0, 12) +
                                     ": its artifacts are taken again (no build)");
  EXPECT_EQ(back.applied.handles["key"], keptKey);
  EXPECT_TRUE(back.applied.handles.value("cached", false));
  EXPECT_EQ(digestOf(back.applied), digestOf(first.applied));

  // In force: nothing to do, though busybox still says otherwise.
  ManagedRecord restored = recordOf("initrd", initramfsSpec(), back.applied);
  Step steady = reconcile(*p, "initrd", initramfsSpec(), &restored, /*apply=*/false, &kept);
  EXPECT_FALSE(steady.action.has_value());
  // Without the kept key, the moved input is seen.
  Step fresh = reconcile(*p, "initrd", initramfsSpec(), &restored, /*apply=*/false);
  ASSERT_TRUE(fresh.action.has_value());
  EXPECT_NE(fresh.action->reason.find("inputs.busybox"), std::string::npos);

  // A key that is not of this spec, or that the store does not have, is passed over.
  Step other = reconcile(*p, "initrd", initramfsSpec("changed\n"), &restored, false, &kept);
  ASSERT_TRUE(other.action.has_value());
  EXPECT_EQ(other.action->reason, "spec changed");
  const KeptKeys unknown{{"Build/initrd", {std::string(64, 'c')}}};
  Step gone = reconcile(*p, "initrd", initramfsSpec(), &restored, false, &unknown);
  ASSERT_TRUE(gone.action.has_value());
  EXPECT_NE(gone.action->reason.find("inputs.busybox"), std::string::npos);
}

TEST_F(BuildProviderTest, AKeptImageWithAnotherHypersGuestInitIsNotTaken) {
  // hyper's guest init speaks with this hyper (readiness, the secrets channel): an image an older
  // hyper made is built again, though its content was applied in full.
  const Json spec = Json::parse(R"({"type":"initramfs","initramfs":{"hyperInit":true}})");
  auto p = provider(dir_ + "/state");
  Step first = reconcile(*p, "initrd", spec, nullptr);
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  ManagedRecord now = recordOf("initrd", spec, first.applied);
  const std::string key = now.handles["key"];
  store::ArtifactStore store(dir_ + "/state/store");
  std::optional<Json> made = store.lookupKey(key);
  ASSERT_TRUE(made.has_value());
  ASSERT_TRUE((*made)["inputs"].contains("hyperInit"));

  // This hyper's own image: kept, nothing to do.
  const KeptKeys keptNow{{"Build/initrd", {key}}};
  Step steady = reconcile(*p, "initrd", spec, &now, /*apply=*/false, &keptNow);
  EXPECT_FALSE(steady.action.has_value()) << steady.action->reason;

  // The same content as an older hyper applied it: its init had another digest.
  Json older = *made;
  older["inputs"]["hyperInit"] = "sha256:" + std::string(64, '0');
  const std::string olderKey = buildKey(spec, older["inputs"]);
  ASSERT_TRUE(store.recordKey(olderKey, older).isOk());
  ManagedRecord then = now;
  then.handles["key"] = olderKey;
  then.handles["inputs"] = older["inputs"];
  const KeptKeys keptThen{{"Build/initrd", {olderKey}}};
  Step again = reconcile(*p, "initrd", spec, &then, /*apply=*/false, &keptThen);
  ASSERT_TRUE(again.action.has_value());
  EXPECT_NE(again.action->reason.find("inputs.hyperInit"), std::string::npos)
      << again.action->reason;
}

TEST_F(BuildProviderTest, AnArtifactGoneFromTheStoreIsDriftAndIsBuiltAgain) {
  auto p = provider(dir_ + "/state");
  Step first = reconcile(*p, "initrd", initramfsSpec(), nullptr);
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  ManagedRecord rec = recordOf("initrd", initramfsSpec(), first.applied);
  store::ArtifactStore store(dir_ + "/state/store");
  std::filesystem::remove(store.pathOf(digestOf(first.applied)));

  Step repair = reconcile(*p, "initrd", initramfsSpec(), &rec);
  ASSERT_TRUE(repair.action.has_value());
  EXPECT_TRUE(repair.action->drift);
  EXPECT_NE(repair.action->reason.find("gone from the store"), std::string::npos)
      << repair.action->reason;
  EXPECT_EQ(repair.applied.handles["cached"], false);
  EXPECT_EQ(digestOf(repair.applied), digestOf(first.applied)) << "the same bytes again";
  EXPECT_TRUE(store.has(digestOf(first.applied)));
}

TEST_F(BuildProviderTest, SameDigestInAnotherStateDirUnderAnotherUmaskAndTimeZone) {
  Step a = reconcile(*provider(dir_ + "/one"), "initrd", initramfsSpec(), nullptr);
  ASSERT_FALSE(a.diagnostics.hasErrors()) << a.diagnostics.format();
  mode_t old = ::umask(077);
  const char* tz = ::getenv("TZ");
  std::string oldTz = tz ? tz : "";
  ::setenv("TZ", "Pacific/Kiritimati", 1);
  ::tzset();
  Step b = reconcile(*provider(dir_ + "/two"), "renamed", initramfsSpec(), nullptr);
  ::umask(old);
  tz ? ::setenv("TZ", oldTz.c_str(), 1) : ::unsetenv("TZ");
  ::tzset();
  ASSERT_FALSE(b.diagnostics.hasErrors()) << b.diagnostics.format();
  EXPECT_EQ(a.applied.handles["cached"], false);
  EXPECT_EQ(b.applied.handles["cached"], false);
  EXPECT_EQ(a.applied.handles["key"], b.applied.handles["key"]);
  EXPECT_EQ(digestOf(a.applied), digestOf(b.applied));
}

// A create that never completed leaves a record without handles (Inventory::unconfirmed): it
// is built, not a crash.
TEST_F(BuildProviderTest, ARecordWithoutHandlesIsBuilt) {
  ManagedRecord unconfirmed;
  unconfirmed.id = {"Build", "initrd"};
  unconfirmed.spec = initramfsSpec();
  Step s = reconcile(*provider(dir_ + "/state"), "initrd", initramfsSpec(), &unconfirmed);
  ASSERT_FALSE(s.diagnostics.hasErrors()) << s.diagnostics.format();
  ASSERT_TRUE(s.action.has_value());
  EXPECT_TRUE(store::isDigest(digestOf(s.applied)));
}

TEST_F(BuildProviderTest, AMissingBusyboxIsAnErrorThatSaysWhere) {
  std::filesystem::remove(busybox_);
  Step s = reconcile(*provider(dir_ + "/state"), "initrd", initramfsSpec(), nullptr);
  ASSERT_TRUE(s.diagnostics.hasErrors());
  EXPECT_NE(s.diagnostics.format().find(busybox_ + " is missing"), std::string::npos)
      << s.diagnostics.format();
  EXPECT_FALSE(s.action.has_value());

  // Without busybox in the image, it is no input.
  Json spec = initramfsSpec();
  spec["initramfs"]["busybox"] = false;
  Step none = reconcile(*provider(dir_ + "/state"), "initrd", spec, nullptr);
  EXPECT_FALSE(none.diagnostics.hasErrors()) << none.diagnostics.format();
  EXPECT_FALSE(none.applied.handles["inputs"].contains("busybox"));
}

}  // namespace
}  // namespace hyper::providers::build
