// The Build provider with file sources: objects loaded from a real directory (the loader reads
// `source:` files into Object::files), then observed, planned and applied. A file's bytes are an
// input of the key: a changed file is a cache miss that builds an image with the new bytes, an
// unchanged one a hit.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "host/command.h"
#include "providers/build/build_provider.h"
#include "providers/build/build_spec.h"
#include "providers/builtin.h"
#include "reconciler/loader.h"
#include "reconciler/source_tree.h"
#include "tests/fakes/provider_step.h"

namespace hyper::providers::build {
namespace {
namespace fs = std::filesystem;

const char* kManifest =
    "apiVersion: hyper.dev/v1alpha1\n"
    "kind: Build\n"
    "metadata: {name: web}\n"
    "spec:\n"
    "  type: initramfs\n"
    "  initramfs:\n"
    "    busybox: false\n"
    "    files:\n"
    "      - {path: /init, mode: \"0755\", source: web/init.sh}\n"
    "      - {path: /etc/motd, content: \"hello\\n\"}\n";

class BuildFileSourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hyper-build-src-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto kinds = providers::builtinKinds();
    ASSERT_TRUE(kinds.isOk()) << kinds.status().message();
    loader_ = std::make_unique<ManifestLoader>((*kinds)->schemas(), LoaderLimits{},
                                               (*kinds)->fileSources());
    write("m/build.yaml", kManifest);
    provider_ = std::make_unique<BuildProvider>(
        BuildProviderConfig{dir_ + "/state", dir_ + "/no-busybox-needed"});
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& rel, const std::string& content) {
    fs::path p = fs::path(dir_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  }
  // The revision `hyperctl -f <dir>/m` loads.
  LoadResult load() {
    auto files = readManifestFiles({dir_ + "/m"});
    EXPECT_TRUE(files.isOk()) << files.status().message();
    DirectoryTree tree("");
    return loader_->load(*files, &tree);
  }

  using Step = test::ProviderStep;
  Step reconcile(const Object& o, const ManagedRecord* record) {
    return test::reconcileOne(*provider_, o, record);
  }
  static ManagedRecord recordOf(const Object& o, const ApplyResponse& r) {
    return test::recordOf(o, r);
  }
  // The bytes of /init in the image with `digest`.
  std::string initOf(const std::string& digest) {
    store::ArtifactStore store(dir_ + "/state/store");
    auto out = host::runChecked({"sh", "-c",
                                 "cd \"$1\" && gzip -dc \"$2\" | cpio -i --quiet init && cat init",
                                 "sh", dir_ + "/unpack", store.pathOf(digest)});
    return out.isOk() ? *out : "(" + out.status().message() + ")";
  }

  std::string dir_;
  std::unique_ptr<ManifestLoader> loader_;
  std::unique_ptr<BuildProvider> provider_;
};

TEST_F(BuildFileSourcesTest, TheImageHasTheFilesBytesAndItsDigestIsAnInputOfTheKey) {
  write("m/web/init.sh", "#!/bin/sh\necho one\n");
  LoadResult one = load();
  ASSERT_FALSE(one.diagnostics.hasErrors()) << one.diagnostics.format();
  ASSERT_EQ(one.objects.size(), 1u);
  const Object& o1 = *one.objects[0];
  Step built = reconcile(o1, nullptr);
  ASSERT_FALSE(built.diagnostics.hasErrors()) << built.diagnostics.format();
  ASSERT_TRUE(built.action.has_value());
  EXPECT_EQ(built.applied.handles["cached"], false);
  EXPECT_EQ(built.applied.handles["inputs"]["source:web/init.sh"],
            o1.files.at("web/init.sh")->digest)
      << built.applied.handles.dump();
  const std::string digest1 = built.applied.handles["artifacts"]["initrd"].value("digest", "");
  fs::create_directories(dir_ + "/unpack");
  EXPECT_EQ(initOf(digest1), "#!/bin/sh\necho one\n");

  // Unchanged: the same key, nothing to do.
  ManagedRecord rec = recordOf(o1, built.applied);
  LoadResult same = load();
  ASSERT_EQ(same.revision, one.revision);
  Step idle = reconcile(*same.objects[0], &rec);
  EXPECT_FALSE(idle.diagnostics.hasErrors()) << idle.diagnostics.format();
  EXPECT_FALSE(idle.action.has_value()) << "an unchanged file source rebuilt";

  // The file changes, the manifest does not: another revision, another key, an image with the
  // new bytes; the plan says which input moved.
  write("m/web/init.sh", "#!/bin/sh\necho two\n");
  LoadResult two = load();
  ASSERT_FALSE(two.diagnostics.hasErrors()) << two.diagnostics.format();
  EXPECT_NE(two.revision, one.revision);
  Step rebuilt = reconcile(*two.objects[0], &rec);
  ASSERT_FALSE(rebuilt.diagnostics.hasErrors()) << rebuilt.diagnostics.format();
  ASSERT_TRUE(rebuilt.action.has_value()) << "a changed file source was a cache hit";
  EXPECT_EQ(rebuilt.action->type, ActionType::Update);
  EXPECT_EQ(rebuilt.action->reason, "an input changed (inputs.source:web/init.sh)");
  EXPECT_EQ(rebuilt.applied.handles["cached"], false);
  const std::string digest2 = rebuilt.applied.handles["artifacts"]["initrd"].value("digest", "");
  EXPECT_NE(digest2, digest1);
  fs::remove_all(dir_ + "/unpack");
  fs::create_directories(dir_ + "/unpack");
  EXPECT_EQ(initOf(digest2), "#!/bin/sh\necho two\n");

  // Back to the first bytes: the first key, which the store has (a hit, nothing built).
  write("m/web/init.sh", "#!/bin/sh\necho one\n");
  LoadResult back = load();
  EXPECT_EQ(back.revision, one.revision);
  ManagedRecord rec2 = recordOf(*two.objects[0], rebuilt.applied);
  Step hit = reconcile(*back.objects[0], &rec2);
  ASSERT_TRUE(hit.action.has_value());
  EXPECT_EQ(hit.applied.handles["cached"], true);
  EXPECT_EQ(hit.applied.handles["artifacts"]["initrd"].value("digest", ""), digest1);
}

TEST(BuildSpecSourcesTest, ExactlyOneOfContentAndSourceAndASourceMustHaveBeenRead) {
  Json spec = Json::parse(R"({"type":"initramfs","initramfs":{"busybox":false,"files":[
      {"path":"/a","content":"x","source":"a.sh"},
      {"path":"/b"},
      {"path":"/c","source":"c.sh"},
      {"path":"/d","source":"d.sh"}]}})");
  auto blob = std::make_shared<SourceBlob>();
  blob->digest = "sha256:unused";
  blob->bytes = "the bytes of d.sh";
  Diagnostics d;
  BuildSpec parsed = parseBuildSpec({"Build", "b"}, spec, d, {{"d.sh", blob}});
  ASSERT_EQ(d.items().size(), 3u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.initramfs.files[0]");
  EXPECT_NE(d.items()[0].summary.find("has both content and source"), std::string::npos);
  EXPECT_EQ(d.items()[1].fieldPath, "spec.initramfs.files[1]");
  EXPECT_NE(d.items()[1].summary.find("has none of content, source and artifact"),
            std::string::npos);
  EXPECT_EQ(d.items()[2].fieldPath, "spec.initramfs.files[2].source");
  EXPECT_NE(d.items()[2].summary.find("\"c.sh\" was not read"), std::string::npos);
  ASSERT_EQ(parsed.files.size(), 1u);
  EXPECT_EQ(parsed.files[0].path, "/d");
  EXPECT_EQ(parsed.files[0].content, "the bytes of d.sh");
}

}  // namespace
}  // namespace hyper::providers::build

namespace hyper::providers::build {
namespace {

// An initramfs file may take another Build's artifact (a script build's output): the Build is
// a reference of the initramfs, and the file's bytes come from the store at build time.
TEST(BuildSpecSourcesTest, AnInitramfsFileMayBeAnotherBuildsArtifact) {
  Json spec = Json::parse(R"({"type":"initramfs","initramfs":{"busybox":false,"files":[
      {"path":"/bin/app","mode":"0755","artifact":{"build":"app","name":"app"}},
      {"path":"/x","content":"x","artifact":{"build":"app","name":"app"}}]}})");
  Diagnostics d;
  BuildSpec parsed = parseBuildSpec({"Build", "img"}, spec, d);
  ASSERT_EQ(d.items().size(), 1u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.initramfs.files[1]");
  EXPECT_NE(d.items()[0].summary.find("has both content and artifact"), std::string::npos)
      << d.items()[0].summary;
  ASSERT_EQ(parsed.files.size(), 1u);
  EXPECT_EQ(parsed.files[0].artifactBuild, "app");
  EXPECT_EQ(parsed.files[0].artifactName, "app");
  EXPECT_EQ(parsed.files[0].mode, 0755u);
  EXPECT_EQ(artifactInput("/bin/app"), "artifact:/bin/app");

  char tmpl[] = "/tmp/hyper-artifact-file.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string tmp = tmpl;
  BuildProvider provider(BuildProviderConfig{tmp + "/state"});
  Object o;
  o.id = {"Build", "img"};
  o.spec = spec;
  auto refs = provider.references(o);
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[0].fieldPath, "spec.initramfs.files[0].artifact.build");
  EXPECT_EQ(refs[0].target, (ObjectId{"Build", "app"}));
  std::error_code ec;
  std::filesystem::remove_all(tmp, ec);
}

}  // namespace
}  // namespace hyper::providers::build
