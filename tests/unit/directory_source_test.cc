// Directory sources: the directory archive (encode, the checks decode makes, writing it out),
// DirectoryTree::readDirectory over a real directory, the loader reading a script Build's
// source.path, and the archive's way from hyperctl to hyperd.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/sha256.h"
#include "providers/builtin.h"
#include "reconciler/directory_archive.h"
#include "reconciler/loader.h"
#include "reconciler/source_tree.h"
#include "tests/fakes/temp_tree.h"

namespace hyper {
namespace {
namespace fs = std::filesystem;
using Type = ArchiveEntry::Type;
using Refusal = SourceTree::File::Refusal;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> describe(const std::vector<ArchiveEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) {
    const char* t = e.type == Type::Directory    ? "d"
                    : e.type == Type::File       ? "f"
                    : e.type == Type::Executable ? "x"
                                                 : "l";
    out.push_back(std::string(t) + " " + e.path + (e.content.empty() ? "" : "=" + e.content));
  }
  return out;
}

// --- the archive --------------------------------------------------------------------------

TEST(DirectoryArchiveTest, EncodesSortedAndDecodesWhatItEncoded) {
  std::string bytes = encodeDirectoryArchive({{"src/main.c", Type::File, "int main;\n"},
                                              {"configure", Type::Executable, "#!/bin/sh\n"},
                                              {"src", Type::Directory, ""},
                                              {"latest", Type::Symlink, "src/main.c"},
                                              {"empty", Type::Directory, ""},
                                              {"src/bin", Type::File, std::string("\0\n\xff", 3)}});
  EXPECT_EQ(bytes.substr(0, 26), "hyper-directory-archive 1\n");
  auto back = decodeDirectoryArchive(bytes);
  ASSERT_TRUE(back.isOk()) << back.status().message();
  EXPECT_EQ(describe(*back),
            (std::vector<std::string>{"x configure=#!/bin/sh\n", "d empty", "l latest=src/main.c",
                                      "d src", "f src/bin=" + std::string("\0\n\xff", 3),
                                      "f src/main.c=int main;\n"}));
  EXPECT_EQ(encodeDirectoryArchive(*back), bytes) << "the same entries, the same bytes";
  EXPECT_EQ(summarizeDirectoryArchive(*back).files, 3u);
  EXPECT_EQ(summarizeDirectoryArchive(*back).bytes, 23u);
  auto empty = decodeDirectoryArchive(encodeDirectoryArchive({}));
  ASSERT_TRUE(empty.isOk()) << empty.status().message();
  EXPECT_TRUE(empty->empty());
}

struct BadArchive {
  std::string name;
  std::string bytes;
  std::string message;  // a substring of the error
};

class DirectoryArchiveRefusalTest : public ::testing::TestWithParam<BadArchive> {};

TEST_P(DirectoryArchiveRefusalTest, IsAnErrorSayingWhatWasExpected) {
  ArchiveLimits limits;
  limits.maxEntries = 3;
  limits.maxBytes = 10;
  limits.maxDepth = 2;
  auto r = decodeDirectoryArchive(GetParam().bytes, limits);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find(GetParam().message), std::string::npos)
      << r.status().message();
}

const std::string kH = "hyper-directory-archive 1\n";

INSTANTIATE_TEST_SUITE_P(
    Cases, DirectoryArchiveRefusalTest,
    ::testing::Values(
        BadArchive{"NoHeader", "f 1 0\na", "expected it to start with"},
        BadArchive{"OtherVersion", "hyper-directory-archive 2\n", "expected it to start with"},
        BadArchive{"UnknownType", kH + "p 1 0\na", "record 1: unknown type"},
        BadArchive{"NoSpace", kH + "f1 0\na", "expected \"<type> <path bytes>"},
        BadArchive{"LeadingZero", kH + "f 01 0\na", "expected \"<type> <path bytes>"},
        BadArchive{"Negative", kH + "f -1 0\na", "expected \"<type> <path bytes>"},
        BadArchive{"HugeNumber", kH + "f 99999999999999999999 0\na",
                   "expected \"<type> <path bytes>"},
        BadArchive{"Truncated", kH + "f 1 5\nabc", "record 1: ends before its 1 path bytes"},
        BadArchive{"DotDot", kH + "f 2 0\n..", "record 1: the path leaves"},
        BadArchive{"Absolute", kH + "f 2 0\n/a", "record 1: the path leaves"},
        BadArchive{"EmptyPath", kH + "f 0 0\n", "record 1: the path is empty"},
        BadArchive{"Unsorted", kH + "f 1 0\nbf 1 0\na", "record 2 (a): not after b"},
        BadArchive{"Twice", kH + "f 1 0\naf 1 0\na", "record 2 (a): not after a"},
        BadArchive{"NoParent", kH + "f 3 0\nd/a", "its parent is not a directory entry"},
        BadArchive{"FileAsParent", kH + "f 1 0\ndf 3 0\nd/a",
                   "its parent is not a directory entry"},
        BadArchive{"DirectoryWithContent", kH + "d 1 1\nax", "a directory with content"},
        BadArchive{"EmptyLink", kH + "l 1 0\na", "a symlink's target must have 1 to 4095"},
        BadArchive{"LinkWithNul", kH + std::string("l 1 2\na\0b", 9), "a symlink's target"},
        BadArchive{"TooManyEntries", kH + "f 1 0\naf 1 0\nbf 1 0\ncf 1 0\nd",
                   "record 4: more than 3 entries"},
        BadArchive{"TooManyBytes", kH + "f 1 6\nabbbbbbf 1 5\ncddddd",
                   "record 2 (c): the contents pass 10 bytes"},
        BadArchive{"TooDeep", kH + "d 1 0\nad 3 0\na/bd 5 0\na/b/c",
                   "record 3 (a/b/c): deeper than 2"}),
    [](const ::testing::TestParamInfo<BadArchive>& info) { return info.param.name; });

TEST(DirectoryArchiveTest, DecodeOfEveryPrefixOfAnArchiveFailsOrIsAPrefix) {
  // A cut archive is never read as more than was there.
  const std::string bytes = encodeDirectoryArchive(
      {{"a", Type::Directory, ""}, {"a/b", Type::File, "hello"}, {"c", Type::Symlink, "a/b"}});
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = decodeDirectoryArchive(bytes.substr(0, n));
    if (r.isOk()) {
      EXPECT_LE(r->size(), 2u) << n;
    }
  }
}

class DirectoryArchiveWriteTest : public test::TempTreeTest {
 protected:
  DirectoryArchiveWriteTest() : TempTreeTest("hyper-archive") {}
};

TEST_F(DirectoryArchiveWriteTest, WritesEntriesWithTheirModesWhateverTheUmask) {
  const mode_t old = ::umask(0077);
  auto entries =
      decodeDirectoryArchive(encodeDirectoryArchive({{"src", Type::Directory, ""},
                                                     {"src/main.c", Type::File, "int main;\n"},
                                                     {"configure", Type::Executable, "#!/bin/sh\n"},
                                                     {"empty", Type::Directory, ""},
                                                     {"latest", Type::Symlink, "../../outside"}}));
  ASSERT_TRUE(entries.isOk()) << entries.status().message();
  Status written = writeDirectoryArchive(*entries, root_);
  ::umask(old);
  ASSERT_TRUE(written.isOk()) << written.message();
  auto modeOf = [&](const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(::lstat((root_ + "/" + rel).c_str(), &st), 0) << rel;
    return st.st_mode;
  };
  EXPECT_EQ(slurp(root_ + "/src/main.c"), "int main;\n");
  EXPECT_EQ(modeOf("src/main.c") & 07777, 0644u);
  EXPECT_EQ(modeOf("configure") & 07777, 0755u);
  EXPECT_TRUE(S_ISDIR(modeOf("empty")));
  EXPECT_EQ(modeOf("src") & 07777, 0755u);
  ASSERT_TRUE(S_ISLNK(modeOf("latest")));
  EXPECT_EQ(fs::read_symlink(root_ + "/latest").string(), "../../outside");
}

TEST_F(DirectoryArchiveWriteTest, NeverWritesThroughALinkItMade) {
  // Decode refuses an entry below a link; the writer would not follow one either.
  fs::create_directories(root_ + "/out");
  fs::create_directories(root_ + "/elsewhere");
  std::vector<ArchiveEntry> crafted = {{"d", Type::Symlink, root_ + "/elsewhere"},
                                       {"d/x", Type::File, "escaped"}};
  Status s = writeDirectoryArchive(crafted, root_ + "/out");
  EXPECT_FALSE(s.isOk());
  EXPECT_FALSE(fs::exists(root_ + "/elsewhere/x"));
}

// --- DirectoryTree::readDirectory ---------------------------------------------------------

class DirectoryTreeListTest : public test::TempTreeTest {
 protected:
  DirectoryTreeListTest() : TempTreeTest("hyper-dirtree") {}
  Result<SourceTree::File> readApp(const ArchiveLimits& limits = {}) {
    DirectoryTree tree(root_);
    return tree.readDirectory("m", "app", limits);
  }
};

TEST_F(DirectoryTreeListTest, ReadsEveryEntryBelowWithoutFollowingLinks) {
  write("m/app/main.c", "int main;\n");
  write("m/app/lib/util.c", "void f(void);\n");
  write("m/app/configure", "#!/bin/sh\n");
  ASSERT_EQ(::chmod((root_ + "/m/app/configure").c_str(), 0755), 0);
  fs::create_directories(root_ + "/m/app/empty");
  write("secret", "outside\n");
  fs::create_symlink("../../secret", root_ + "/m/app/leak");
  auto read = readApp();
  ASSERT_TRUE(read.isOk()) << read.status().message();
  ASSERT_EQ(read->refusal, Refusal::None);
  auto entries = decodeDirectoryArchive(read->bytes);
  ASSERT_TRUE(entries.isOk()) << entries.status().message();
  EXPECT_EQ(
      describe(*entries),
      (std::vector<std::string>{"x configure=#!/bin/sh\n", "d empty", "l leak=../../secret",
                                "d lib", "f lib/util.c=void f(void);\n", "f main.c=int main;\n"}));
  // Times and the owner are not part of it: touching a file gives the same bytes.
  ASSERT_EQ(::utimensat(AT_FDCWD, (root_ + "/m/app/main.c").c_str(), nullptr, 0), 0);
  auto again = readApp();
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->bytes, read->bytes);
}

struct ListRefusal {
  std::string name;
  std::function<void(const std::string& root)> setUp;
  Refusal refusal;
  std::string at;
  std::string detail;
};

void put(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

class DirectoryTreeRefusalTest : public DirectoryTreeListTest,
                                 public ::testing::WithParamInterface<ListRefusal> {};

TEST_P(DirectoryTreeRefusalTest, RefusesAtTheEntry) {
  const auto& c = GetParam();
  fs::create_directories(root_ + "/m");
  c.setUp(root_);
  ArchiveLimits limits;
  limits.maxEntries = 4;
  limits.maxBytes = 100;
  limits.maxDepth = 2;
  auto read = readApp(limits);
  ASSERT_TRUE(read.isOk()) << read.status().message();
  EXPECT_EQ(read->refusal, c.refusal);
  EXPECT_EQ(read->at, c.at);
  EXPECT_EQ(read->detail, c.detail);
  EXPECT_TRUE(read->bytes.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DirectoryTreeRefusalTest,
    ::testing::Values(
        ListRefusal{"Missing", [](const std::string&) {}, Refusal::Missing, "app", ""},
        ListRefusal{"AFile", [](const std::string& r) { put(r + "/m/app", "x"); },
                    Refusal::NotAFile, "app", "a file"},
        ListRefusal{"ALinkToADirectory",
                    [](const std::string& r) {
                      fs::create_directories(r + "/real");
                      fs::create_symlink("../real", r + "/m/app");
                    },
                    Refusal::Symlink, "app", ""},
        ListRefusal{"AFifoInside",
                    [](const std::string& r) {
                      fs::create_directories(r + "/m/app/sub");
                      ASSERT_EQ(::mkfifo((r + "/m/app/sub/pipe").c_str(), 0600), 0);
                    },
                    Refusal::NotAFile, "app/sub/pipe", "a FIFO"},
        ListRefusal{"TooManyEntries",
                    [](const std::string& r) {
                      for (const char* n : {"a", "b", "c", "d", "e"}) {
                        put(r + "/m/app/" + n, "");
                      }
                    },
                    Refusal::TooMany, "app/e", "entries"},
        ListRefusal{"TooDeep", [](const std::string& r) { put(r + "/m/app/a/b/c/f", ""); },
                    Refusal::TooMany, "app/a/b/c", "levels"},
        ListRefusal{"TooBig",
                    [](const std::string& r) {
                      put(r + "/m/app/a", std::string(60, 'a'));
                      put(r + "/m/app/b", std::string(60, 'b'));
                    },
                    Refusal::TooBig, "app/b", ""}),
    [](const ::testing::TestParamInfo<ListRefusal>& info) { return info.param.name; });

// --- the loader: a script Build's source.path --------------------------------------------

std::string scriptManifest(const std::string& path) {
  return "apiVersion: hyper.dev/v1alpha1\n"
         "kind: Build\n"
         "metadata: {name: app}\n"
         "spec:\n"
         "  type: script\n"
         "  script:\n"
         "    source: {path: " +
         path +
         "}\n"
         "    builder: {kernel: {build: k}, initrd: {build: i}}\n"
         "    steps: [[make]]\n"
         "    outputs: [{name: app, path: /out/app}]\n";
}

class DirectorySourceLoaderTest : public test::TempTreeTest {
 protected:
  DirectorySourceLoaderTest() : TempTreeTest("hyper-dirsrc") {}
  void SetUp() override {
    TempTreeTest::SetUp();
    auto kinds = providers::builtinKinds();
    ASSERT_TRUE(kinds.isOk()) << kinds.status().message();
    kinds_ = *kinds;
  }
  LoadResult load(ManifestLoader& l, const SourceTree* tree = nullptr) {
    auto files = readManifestFiles({root_});
    EXPECT_TRUE(files.isOk()) << files.status().message();
    DirectoryTree disk("");
    return l.load(files.isOk() ? *files : std::vector<SourceFile>{}, tree ? tree : &disk);
  }
  ManifestLoader loader(LoaderLimits limits = {}) const {
    return ManifestLoader(kinds_->schemas(), limits, kinds_->fileSources());
  }
  std::shared_ptr<const KindRegistry> kinds_;
};

TEST_F(DirectorySourceLoaderTest, ReadsTheDirectoryBesideTheManifestAndFollowsItsBytes) {
  write("envs/app.yaml", scriptManifest("app/"));
  write("envs/app/main.c", "int main(void) { return 0; }\n");
  write("envs/app/Makefile", "all:\n\tcc main.c\n");
  ManifestLoader l = loader();
  LoadResult first = load(l);
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  ASSERT_EQ(first.objects.size(), 1u);
  const auto& files = first.objects[0]->files;
  ASSERT_EQ(files.count("app/"), 1u);
  auto entries = decodeDirectoryArchive(files.at("app/")->bytes);
  ASSERT_TRUE(entries.isOk()) << entries.status().message();
  EXPECT_EQ(entries->size(), 2u);
  EXPECT_EQ(files.at("app/")->digest, "sha256:" + sha256Hex(files.at("app/")->bytes));

  LoadResult same = load(l);
  EXPECT_TRUE(same.unchanged);
  write("envs/app/lib/new.c", "int x;\n");  // a new file deep inside: a new revision
  LoadResult changed = load(l);
  ASSERT_FALSE(changed.diagnostics.hasErrors()) << changed.diagnostics.format();
  EXPECT_NE(changed.revision, first.revision);
  EXPECT_NE(changed.objects[0]->files.at("app/")->digest, files.at("app/")->digest);
}

TEST_F(DirectorySourceLoaderTest, RefusalsAreErrorsAtTheFieldWithTheirPlace) {
  write("app.yaml", scriptManifest("main.c"));
  write("main.c", "int main;\n");
  ManifestLoader l = loader();
  LoadResult r = load(l);
  EXPECT_TRUE(r.objects.empty());
  EXPECT_NE(r.diagnostics.format().find(
                "/app.yaml:7:14: error: Build/app: spec.script.source.path: \"main.c\" is not a "
                "directory: " +
                root_ + "/main.c is a file (expected a directory)"),
            std::string::npos)
      << r.diagnostics.format();

  write("app.yaml", scriptManifest("../outside"));
  LoadResult out = load(l);
  EXPECT_NE(out.diagnostics.format().find("spec.script.source.path: \"../outside\" leaves the "
                                          "manifest's directory"),
            std::string::npos)
      << out.diagnostics.format();

  write("app.yaml", scriptManifest("app"));
  for (int i = 0; i < 5; ++i) {
    write("app/f" + std::to_string(i), "x");
  }
  LoaderLimits small;
  small.maxSourceDirectoryEntries = 3;
  ManifestLoader limited = loader(small);
  LoadResult many = load(limited);
  EXPECT_NE(many.diagnostics.format().find(
                "limit maxSourceDirectoryEntries exceeded: \"app\" (" + root_ +
                "/app) has more than 3 entries, counting up to " + root_ + "/app/f3"),
            std::string::npos)
      << many.diagnostics.format();
}

TEST_F(DirectorySourceLoaderTest, WhatHyperctlReadReachesHyperdAndABadArchiveIsRefused) {
  write("app.yaml", scriptManifest("app"));
  write("app/main.c", "int main;\n");
  DirectoryTree disk("");
  RecordingTree recording(disk);
  ManifestLoader l = loader();
  LoadResult local = load(l, &recording);
  ASSERT_FALSE(local.diagnostics.hasErrors()) << local.diagnostics.format();
  ASSERT_EQ(recording.reads().size(), 1u);
  const std::string key = recording.reads().begin()->first;
  EXPECT_EQ(key, root_ + "/app/") << "a directory's read is told from a file's";

  std::map<std::string, SourceTree::File> sent;
  for (const auto& [path, file] : recording.reads()) {
    auto back = sourceReadFromJson(Json::parse(sourceReadToJson(path, file).dump()));
    ASSERT_TRUE(back.isOk()) << back.status().message();
    sent.insert(std::move(*back));
  }
  MemoryTree memory(sent);
  ManifestLoader remote = loader();
  LoadResult there = load(remote, &memory);
  ASSERT_FALSE(there.diagnostics.hasErrors()) << there.diagnostics.format();
  EXPECT_EQ(there.objects[0]->files.at("app")->digest, local.objects[0]->files.at("app")->digest);
  EXPECT_EQ(there.revision, local.revision);

  sent[key].bytes += "f 2 0\n..";  // a caller's crafted archive
  MemoryTree crafted(sent);
  ManifestLoader victim = loader();
  LoadResult refused = load(victim, &crafted);
  EXPECT_TRUE(refused.objects.empty());
  EXPECT_NE(refused.diagnostics.format().find("spec.script.source.path: \"app\" cannot be read "
                                              "<- the directory "),
            std::string::npos)
      << refused.diagnostics.format();
}

}  // namespace
}  // namespace hyper
