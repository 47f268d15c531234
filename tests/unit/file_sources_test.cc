// File sources (reconciler/file_sources.h, source_tree.h): the path check, the field
// declarations, and the loader reading them through a real directory (DirectoryTree) the way
// `hyperctl -f` does: resolution, every refusal with its place and field path, limits, and a
// revision id that follows the bytes.

#include "reconciler/file_sources.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/sha256.h"
#include "providers/builtin.h"
#include "reconciler/kind_registry.h"
#include "reconciler/loader.h"
#include "reconciler/source_tree.h"
#include "tests/fakes/temp_tree.h"

namespace hyper {
namespace {
namespace fs = std::filesystem;

// --- the path check ---------------------------------------------------------------------------

struct PathCase {
  std::string name;
  std::string path;
  std::string problem;  // a substring of checkSourcePath's answer; "" for a good path
};

class SourcePathTest : public ::testing::TestWithParam<PathCase> {};

TEST_P(SourcePathTest, ChecksARelativePathInsideTheManifestsDirectory) {
  const auto& c = GetParam();
  std::string problem = checkSourcePath(c.path);
  if (c.problem.empty()) {
    EXPECT_EQ(problem, "") << c.path;
  } else {
    EXPECT_NE(problem.find(c.problem), std::string::npos) << c.path << ": " << problem;
  }
}

const char* kLeaves = "leaves the manifest's directory";
const char* kNotPlain = "is not a plain relative path";

INSTANTIATE_TEST_SUITE_P(
    Cases, SourcePathTest,
    ::testing::Values(
        PathCase{"OneName", "init.sh", ""}, PathCase{"Nested", "web/bin/init.sh", ""},
        PathCase{"DotsInsideNames", "a..b/.x/y.", ""}, PathCase{"DotDot", "..", kLeaves},
        PathCase{"UpFirst", "../x", kLeaves}, PathCase{"UpInTheMiddle", "web/../../x", kLeaves},
        PathCase{"UpAtTheEnd", "web/..", kLeaves}, PathCase{"Absolute", "/etc/passwd", kLeaves},
        PathCase{"Empty", "", "is empty"}, PathCase{"EmptySegment", "web//init.sh", kNotPlain},
        PathCase{"TrailingSlash", "web/", kNotPlain}, PathCase{"Dot", "./init.sh", kNotPlain},
        PathCase{"Nul", std::string("a\0b", 3), kNotPlain},
        PathCase{"TooLong", std::string(1025, 'a'), "longer than 1024 bytes"}),
    [](const ::testing::TestParamInfo<PathCase>& info) { return info.param.name; });

TEST(FileSourceFieldsTest, ParsesDeclarationsAndFindsEveryValueWithItsPath) {
  auto fields = FileSourceFields::parse({"a.files[*].source", "one"});
  ASSERT_TRUE(fields.isOk()) << fields.status().message();
  Json spec = Json::parse(
      R"({"one": "x", "a": {"files": [{"source": "p"}, {"content": "c"}, {"source": "q"}]}})");
  std::vector<std::string> seen;
  fields->forEach(spec, [&](const std::string& path, const Json& value, bool directory) {
    EXPECT_FALSE(directory) << path;
    seen.push_back(path + "=" + value.get<std::string>());
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"spec.a.files[0].source=p", "spec.a.files[2].source=q",
                                            "spec.one=x"}));
  for (const char* bad : {"a..b", "a[x]", "", "a.", "[*]"}) {
    auto refused = FileSourceFields::parse({bad});
    ASSERT_FALSE(refused.isOk()) << bad;
    EXPECT_NE(refused.status().message().find("is not a field path under spec"), std::string::npos)
        << refused.status().message();
  }
}

TEST(FileSourceFieldsTest, ABadDeclarationFailsTheKindRegistry) {
  std::vector<ProviderRecord> records = providers::builtinProviderRecords();
  for (auto& p : records) {
    for (auto& k : p.kinds) {
      if (k.kind == "Build") {
        k.fileSources.push_back("initramfs.files[x].source");
      }
    }
  }
  auto r = KindRegistry::create(records);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("kind Build: file source field"), std::string::npos)
      << r.status().message();
  auto builtin = providers::builtinKinds();
  ASSERT_TRUE(builtin.isOk()) << builtin.status().message();
  EXPECT_EQ((*builtin)->fileSources().count("Build"), 1u) << "the Build kind declares none";
}

// --- the loader over a real directory ---------------------------------------------------------

// A Build whose first file comes from `source`; the field is at line 10, column 9.
std::string buildManifest(const std::string& name, const std::string& source) {
  return "apiVersion: hyper.dev/v1alpha1\n"
         "kind: Build\n"
         "metadata: {name: " +
         name +
         "}\n"
         "spec:\n"
         "  type: initramfs\n"
         "  initramfs:\n"
         "    busybox: false\n"
         "    files:\n"
         "      - path: /init\n"
         "        source: " +
         Json(source).dump() + "\n";
}

class FileSourceLoaderTest : public test::TempTreeTest {
 protected:
  FileSourceLoaderTest() : TempTreeTest("hyper-filesrc") {}
  void SetUp() override {
    TempTreeTest::SetUp();
    auto kinds = providers::builtinKinds();
    ASSERT_TRUE(kinds.isOk()) << kinds.status().message();
    kinds_ = *kinds;
  }
  ManifestLoader loader(LoaderLimits limits = LoaderLimits{}) const {
    return ManifestLoader(kinds_->schemas(), limits, kinds_->fileSources());
  }
  // What `hyperctl -f <root>/<rel>` loads.
  LoadResult load(ManifestLoader& l, const std::string& rel = "") {
    auto files = readManifestFiles({rel.empty() ? root_ : root_ + "/" + rel});
    EXPECT_TRUE(files.isOk()) << files.status().message();
    DirectoryTree tree("");
    return l.load(files.isOk() ? *files : std::vector<SourceFile>{}, &tree);
  }

  std::shared_ptr<const KindRegistry> kinds_;
};

TEST_F(FileSourceLoaderTest, ReadsTheFileRelativeToTheManifestsDirectory) {
  write("envs/a/build.yaml", buildManifest("a", "web/init.sh"));
  write("envs/a/web/init.sh", "#!/bin/sh\necho from a\n");
  write("envs/b/build.yaml", buildManifest("b", "web/init.sh"));
  write("envs/b/web/init.sh", "#!/bin/sh\necho from b\n");
  write("web/init.sh", "the top's, which neither names\n");
  ManifestLoader l = loader();
  LoadResult r = load(l);
  ASSERT_FALSE(r.diagnostics.hasErrors()) << r.diagnostics.format();
  ASSERT_EQ(r.objects.size(), 2u);
  for (const auto& o : r.objects) {
    ASSERT_EQ(o->files.count("web/init.sh"), 1u) << o->id.str();
    const SourceBlob& blob = *o->files.at("web/init.sh");
    const std::string want = "#!/bin/sh\necho from " + o->id.name + "\n";
    EXPECT_EQ(blob.bytes, want) << o->id.str();
    EXPECT_EQ(blob.digest, "sha256:" + sha256Hex(want));
  }
  // A single file given with -f: its directory is the root.
  ManifestLoader single = loader();
  LoadResult one = load(single, "envs/b/build.yaml");
  ASSERT_FALSE(one.diagnostics.hasErrors()) << one.diagnostics.format();
  ASSERT_EQ(one.objects.size(), 1u);
  EXPECT_EQ(one.objects[0]->files.at("web/init.sh")->bytes, "#!/bin/sh\necho from b\n");
}

TEST_F(FileSourceLoaderTest, ARevisionFollowsTheBytesOfItsFileSources) {
  write("build.yaml", buildManifest("a", "init.sh"));
  write("init.sh", "one\n");
  ManifestLoader l = loader();
  LoadResult first = load(l);
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  LoadResult again = load(l);
  EXPECT_EQ(again.revision, first.revision);
  EXPECT_TRUE(again.unchanged);

  // The manifest is unchanged (its parse is cached); the file is not: a new revision whose
  // object carries the new bytes, not the cached object's old ones.
  write("init.sh", "two\n");
  LoadResult changed = load(l);
  ASSERT_FALSE(changed.diagnostics.hasErrors()) << changed.diagnostics.format();
  EXPECT_NE(changed.revision, first.revision);
  EXPECT_FALSE(changed.unchanged);
  ASSERT_EQ(changed.objects.size(), 1u);
  EXPECT_EQ(changed.objects[0]->files.at("init.sh")->bytes, "two\n");
  EXPECT_EQ(first.objects[0]->files.at("init.sh")->bytes, "one\n") << "a loaded revision moved";

  // Without file sources a revision's id is the manifests' alone, as the directory source
  // computes it.
  write("build.yaml", std::string("apiVersion: hyper.dev/v1alpha1\nkind: Network\n") +
                          "metadata: {name: lab}\nspec: {cidr: 10.0.0.0/24}\n");
  ManifestLoader plain = loader();
  auto files = readManifestFiles({root_});
  ASSERT_TRUE(files.isOk());
  ManifestLoader noSources(kinds_->schemas());
  EXPECT_EQ(load(plain).revision, noSources.load(*files).revision);
}

TEST_F(FileSourceLoaderTest, AFileSourceMissingThenWrittenIsANewRevision) {
  write("build.yaml", buildManifest("a", "init.sh"));
  ManifestLoader l = loader();
  LoadResult missing = load(l);
  ASSERT_TRUE(missing.diagnostics.hasErrors());
  write("init.sh", "here now\n");
  LoadResult found = load(l);
  ASSERT_FALSE(found.diagnostics.hasErrors()) << found.diagnostics.format();
  EXPECT_NE(found.revision, missing.revision)
      << "the revision rejected for the missing file would be taken as unchanged";
}

TEST_F(FileSourceLoaderTest, WithoutATreeAFileSourceIsAnError) {
  ManifestLoader l = loader();
  LoadResult r = l.load({{"m/build.yaml", buildManifest("a", "init.sh")}});
  ASSERT_TRUE(r.diagnostics.hasErrors());
  EXPECT_NE(r.diagnostics.format().find("m/build.yaml:10:9: error: Build/a: "
                                        "spec.initramfs.files[0].source: \"init.sh\" cannot be "
                                        "read here"),
            std::string::npos)
      << r.diagnostics.format();
  EXPECT_TRUE(r.objects.empty());
}

struct RefusalCase {
  std::string name;
  std::string source;
  std::function<void(const std::string& dir)> setUp;  // makes the tree under `dir`
  std::string message;                                // a substring of the diagnostic
  LoaderLimits limits;
};

void writeFile(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

LoaderLimits smallLimits() {
  LoaderLimits limits;
  limits.maxSourceFileBytes = 10;
  return limits;
}

LoaderLimits smallRevision() {
  LoaderLimits limits;
  limits.maxRevisionBytes = 400;  // the manifest and a little
  return limits;
}

class FileSourceRefusalTest : public FileSourceLoaderTest,
                              public ::testing::WithParamInterface<RefusalCase> {};

TEST_P(FileSourceRefusalTest, IsAnErrorAtTheFieldAndNothingIsLoaded) {
  const auto& c = GetParam();
  write("m/build.yaml", buildManifest("a", c.source));
  write("secret", "outside the manifest's directory\n");
  c.setUp(root_ + "/m");
  ManifestLoader l = loader(c.limits);
  // The manifest file itself: a directory walk refuses a link out of the tree before any load.
  LoadResult r = load(l, "m/build.yaml");
  const std::string text = r.diagnostics.format();
  const std::string want = root_ +
                           "/m/build.yaml:10:9: error: Build/a: "
                           "spec.initramfs.files[0].source: ";
  EXPECT_NE(text.find(want), std::string::npos) << text;
  EXPECT_NE(text.find(c.message), std::string::npos) << text;
  EXPECT_TRUE(r.objects.empty()) << "an object whose file source was refused was loaded";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, FileSourceRefusalTest,
    ::testing::Values(
        RefusalCase{"UpAndOut", "../secret", [](const std::string&) {},
                    "\"../secret\" leaves the manifest's directory: expected a path inside it "
                    "(no \"..\", not absolute, no symlinks)"},
        RefusalCase{"Missing", "web/init.sh", [](const std::string&) {},
                    "\"web/init.sh\" not found: "},
        RefusalCase{"SymlinkedFile", "init.sh",
                    [](const std::string& dir) {
                      (void)::symlink("../secret", (dir + "/init.sh").c_str());
                    },
                    "\"init.sh\" reaches a symlink ("},
        RefusalCase{"SymlinkInside", "init.sh",
                    [](const std::string& dir) {
                      writeFile(dir + "/real.sh", "x");
                      (void)::symlink("real.sh", (dir + "/init.sh").c_str());
                    },
                    "\"init.sh\" reaches a symlink ("},
        RefusalCase{"SymlinkedDirectoryOnTheWay", "web/init.sh",
                    [](const std::string& dir) {
                      writeFile(dir + "/real/init.sh", "x");
                      (void)::symlink("real", (dir + "/web").c_str());
                    },
                    "\"web/init.sh\" reaches a symlink ("},
        RefusalCase{"ADirectory", "web",
                    [](const std::string& dir) { fs::create_directories(dir + "/web"); },
                    "\"web\" is not a regular file: "},
        RefusalCase{"AFifo", "pipe",
                    [](const std::string& dir) { (void)::mkfifo((dir + "/pipe").c_str(), 0600); },
                    "is a FIFO (expected a regular file)"},
        RefusalCase{"AFileWhereADirectoryIsNeeded", "init.sh/x",
                    [](const std::string& dir) { writeFile(dir + "/init.sh", "x"); },
                    "is not a directory"},
        RefusalCase{"OverTheFileLimit", "big",
                    [](const std::string& dir) { writeFile(dir + "/big", std::string(11, 'b')); },
                    "limit maxSourceFileBytes exceeded: \"big\" (", smallLimits()},
        RefusalCase{"OverTheRevisionLimit", "big",
                    [](const std::string& dir) { writeFile(dir + "/big", std::string(300, 'b')); },
                    "limit maxRevisionBytes exceeded: \"big\" (", smallRevision()}),
    [](const ::testing::TestParamInfo<RefusalCase>& info) { return info.param.name; });

// --- the trees of other places ----------------------------------------------------------------

TEST(SourceTreeWireTest, WhatHyperctlReadsReachesHyperdAsItWasRead) {
  char tmpl[] = "/tmp/hyper-srcwire-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  writeFile(dir + "/m/init.sh", std::string("bin\0ary\xff", 8));
  (void)::symlink("init.sh", (dir + "/m/link").c_str());
  DirectoryTree disk(dir);
  RecordingTree recording(disk);
  ASSERT_TRUE(recording.read("m", "init.sh", 100).isOk());
  ASSERT_TRUE(recording.read("m", "link", 100).isOk());
  ASSERT_TRUE(recording.read("m", "gone", 100).isOk());
  ASSERT_EQ(recording.reads().size(), 3u);

  std::map<std::string, SourceTree::File> sent;
  for (const auto& [path, file] : recording.reads()) {
    auto back = sourceReadFromJson(Json::parse(sourceReadToJson(path, file).dump()));
    ASSERT_TRUE(back.isOk()) << back.status().message();
    sent.insert(std::move(*back));
  }
  MemoryTree memory(std::move(sent));
  auto bytes = memory.read("m", "init.sh", 100);
  ASSERT_TRUE(bytes.isOk());
  EXPECT_EQ(bytes->refusal, SourceTree::File::Refusal::None);
  EXPECT_EQ(bytes->bytes, std::string("bin\0ary\xff", 8));
  auto link = memory.read("m", "link", 100);
  EXPECT_EQ(link->refusal, SourceTree::File::Refusal::Symlink);
  EXPECT_EQ(link->at, "link");
  EXPECT_EQ(memory.read("m", "gone", 100)->refusal, SourceTree::File::Refusal::Missing);
  EXPECT_EQ(memory.read("m", "never-sent", 100)->refusal, SourceTree::File::Refusal::Missing);
  EXPECT_EQ(memory.read("m", "init.sh", 4)->refusal, SourceTree::File::Refusal::TooBig);
  EXPECT_FALSE(sourceReadFromJson(Json::parse(R"({"path": "x", "base64": "!!"})")).isOk());
  EXPECT_FALSE(sourceReadFromJson(Json::parse(R"({"path": "x", "refusal": "odd"})")).isOk());
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace hyper
