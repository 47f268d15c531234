// GitSource::exportTree against real repositories made with the git command line: the bytes,
// modes and links it writes, spec.path, submodules, the limits and what it returns.

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "host/command.h"
#include "reconciler/directory_archive.h"
#include "reconciler/source_tree.h"
#include "source/git_source.h"

namespace hyper::controller {
namespace {
namespace fs = std::filesystem;

// git with a fixed identity and no signing, whatever the host's config says; the output without
// its trailing newline.
std::string git(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"git",
                                   "-c",
                                   "user.name=hyper test",
                                   "-c",
                                   "user.email=test@hyper.invalid",
                                   "-c",
                                   "commit.gpgsign=false",
                                   "-c",
                                   "init.defaultBranch=main",
                                   "-c",
                                   "core.symlinks=true",
                                   "-c",
                                   "core.fileMode=true"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto out = host::runChecked(argv);
  EXPECT_TRUE(out.isOk()) << out.status().message();
  std::string s = out.isOk() ? *out : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) {
    s.pop_back();
  }
  return s;
}

std::string readAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

mode_t permsOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class GitExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hyper-git-export-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    work_ = root_ + "/work";
    bare_ = root_ + "/repo.git";
    dest_ = root_ + "/dest";
    fs::create_directories(dest_);
    git({"init", "--quiet", work_});
    git({"init", "--quiet", "--bare", bare_});
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const std::string& rel, const std::string& content, mode_t mode = 0644) {
    fs::path p = fs::path(work_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
  }
  void link(const std::string& rel, const std::string& target) {
    fs::path p = fs::path(work_) / rel;
    fs::create_directories(p.parent_path());
    fs::create_symlink(target, p);
  }
  // Commits the work tree (everything added) and pushes it to the bare repository's main;
  // returns the commit id.
  std::string commit(const std::string& message = "change") {
    git({"-C", work_, "add", "-A"});
    git({"-C", work_, "commit", "--quiet", "--allow-empty", "-m", message});
    git({"-C", work_, "push", "--quiet", bare_, "HEAD:refs/heads/main"});
    return git({"-C", work_, "rev-parse", "HEAD"});
  }
  Result<std::unique_ptr<GitSource>> open(const std::string& ref, const std::string& path = "") {
    SourceSpec spec;
    spec.location = bare_;
    spec.ref = ref;
    spec.path = path;
    spec.cacheDir = root_ + "/cache";
    return GitSource::open(spec);
  }
  // Opens the source at `ref` and exports into dest_.
  Result<ExportedTree> exportAt(const std::string& ref, const std::string& path = "",
                                const TreeExportLimits& limits = {}) {
    auto src = open(ref, path);
    if (!src.isOk()) {
      return src.status();
    }
    return (*src)->exportTree(dest_, limits);
  }
  // The entries below dest_, relative, sorted.
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (auto it = fs::recursive_directory_iterator(dest_);
         it != fs::recursive_directory_iterator(); ++it) {
      out.push_back(it->path().lexically_relative(dest_).string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string root_, work_, bare_, dest_;
};

TEST_F(GitExportTest, WritesFilesWithTheirBytesAndModes) {
  const std::string binary(
      "\x7f"
      "ELF\0\x01\x02\xff",
      8);
  write("README", "hello\n");
  write("run.sh", "#!/bin/sh\necho hi\n", 0755);
  write("bin/data", binary);
  const std::string id = commit();
  ASSERT_EQ(id.size(), 40u);

  const mode_t old = ::umask(077);  // modes are git's, not the umask's
  auto out = exportAt(id);
  ::umask(old);
  ASSERT_TRUE(out.isOk()) << out.status().message();
  EXPECT_EQ(out->commit, id);
  EXPECT_EQ(out->files, 3u);
  EXPECT_EQ(out->bytes, 6u + 18u + 8u);

  EXPECT_EQ(listing(), (std::vector<std::string>{"README", "bin", "bin/data", "run.sh"}));
  EXPECT_EQ(readAll(dest_ + "/README"), "hello\n");
  EXPECT_EQ(readAll(dest_ + "/run.sh"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(readAll(dest_ + "/bin/data"), binary);
  EXPECT_EQ(permsOf(dest_ + "/README"), 0644u);
  EXPECT_EQ(permsOf(dest_ + "/run.sh"), 0755u);
  EXPECT_EQ(permsOf(dest_ + "/bin/data"), 0644u);
  EXPECT_EQ(permsOf(dest_ + "/bin"), 0755u);
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dest_ + "/run.sh")));
}

TEST_F(GitExportTest, EmptyFileCountsAsAFile) {
  write("empty", "");
  write("one", "1");
  const std::string id = commit();
  auto out = exportAt(id);
  ASSERT_TRUE(out.isOk()) << out.status().message();
  EXPECT_EQ(out->files, 2u);
  EXPECT_EQ(out->bytes, 1u);
  EXPECT_TRUE(fs::is_regular_file(dest_ + "/empty"));
  EXPECT_EQ(fs::file_size(dest_ + "/empty"), 0u);
}

TEST_F(GitExportTest, SymlinksAreWrittenAsLinksAndNeverFollowed) {
  const std::string outside = root_ + "/outside";
  write("target.txt", "t\n");
  link("rel", "target.txt");
  link("passwd", "/etc/passwd");
  link("escape", outside);
  link("dir/up", "../../..");
  const std::string id = commit();

  auto out = exportAt(id);
  ASSERT_TRUE(out.isOk()) << out.status().message();
  EXPECT_EQ(out->files, 1u);  // links are not files
  EXPECT_EQ(out->bytes, 2u);

  for (const auto& [name, target] :
       std::vector<std::pair<std::string, std::string>>{{"rel", "target.txt"},
                                                        {"passwd", "/etc/passwd"},
                                                        {"escape", outside},
                                                        {"dir/up", "../../.."}}) {
    const fs::path p = fs::path(dest_) / name;
    EXPECT_TRUE(fs::is_symlink(fs::symlink_status(p))) << name;
    EXPECT_EQ(fs::read_symlink(p).string(), target) << name;
  }
  EXPECT_EQ(readAll(dest_ + "/rel"), "t\n");
  // Nothing was written where a link points.
  EXPECT_FALSE(fs::exists(fs::symlink_status(outside)));
  EXPECT_EQ(listing(),
            (std::vector<std::string>{"dir", "dir/up", "escape", "passwd", "rel", "target.txt"}));
}

TEST_F(GitExportTest, NestedDirectories) {
  write("a/b/c/deep.txt", "deep");
  write("a/b/mid.txt", "mid");
  write("a/top.txt", "top");
  write("z.txt", "z");
  const std::string id = commit();
  auto out = exportAt(id);
  ASSERT_TRUE(out.isOk()) << out.status().message();
  EXPECT_EQ(out->files, 4u);
  EXPECT_EQ(out->bytes, 4u + 3u + 3u + 1u);
  EXPECT_EQ(listing(), (std::vector<std::string>{"a", "a/b", "a/b/c", "a/b/c/deep.txt",
                                                 "a/b/mid.txt", "a/top.txt", "z.txt"}));
  EXPECT_EQ(readAll(dest_ + "/a/b/c/deep.txt"), "deep");
  for (const char* d : {"a", "a/b", "a/b/c"}) {
    EXPECT_EQ(permsOf(dest_ + "/" + d), 0755u) << d;
  }
}

TEST_F(GitExportTest, PathSelectsASubdirectory) {
  write("README", "top");
  write("app/main.c", "int main(){}\n");
  write("app/lib/util.c", "u");
  write("other/x", "x");
  const std::string id = commit();
  auto out = exportAt(id, "app");
  ASSERT_TRUE(out.isOk()) << out.status().message();
  EXPECT_EQ(out->commit, id);
  EXPECT_EQ(out->files, 2u);
  EXPECT_EQ(out->bytes, 13u + 1u);
  EXPECT_EQ(listing(), (std::vector<std::string>{"lib", "lib/util.c", "main.c"}));
  EXPECT_EQ(readAll(dest_ + "/main.c"), "int main(){}\n");

  fs::remove_all(dest_);
  fs::create_directories(dest_);
  auto nested = exportAt(id, "app/lib");
  ASSERT_TRUE(nested.isOk()) << nested.status().message();
  EXPECT_EQ(nested->files, 1u);
  EXPECT_EQ(listing(), std::vector<std::string>{"util.c"});
}

TEST_F(GitExportTest, PathThatIsAFileIsAnError) {
  write("README", "top");
  write("app/main.c", "m");
  const std::string id = commit();
  auto out = exportAt(id, "app/main.c");
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "app/main.c")) << out.status().message();
  EXPECT_TRUE(contains(out.status().message(), "not a directory")) << out.status().message();
  EXPECT_TRUE(listing().empty());
}

TEST_F(GitExportTest, MissingPathIsAnError) {
  write("README", "top");
  const std::string id = commit();
  auto out = exportAt(id, "nope");
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "no nope in commit " + id))
      << out.status().message();
  EXPECT_TRUE(listing().empty());
}

TEST_F(GitExportTest, SubmoduleIsAnError) {
  write("README", "top");
  const std::string first = commit("first");
  git({"-C", work_, "update-index", "--add", "--cacheinfo", "160000," + first + ",sub"});
  git({"-C", work_, "commit", "--quiet", "-m", "add a submodule"});
  git({"-C", work_, "push", "--quiet", bare_, "HEAD:refs/heads/main"});
  const std::string id = git({"-C", work_, "rev-parse", "HEAD"});
  ASSERT_EQ(git({"-C", work_, "ls-tree", "HEAD", "sub"}), "160000 commit " + first + "\tsub");

  auto out = exportAt(id);
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "sub: a submodule")) << out.status().message();
  EXPECT_FALSE(fs::exists(fs::symlink_status(dest_ + "/sub")));
}

TEST_F(GitExportTest, MaxEntries) {
  write("a", "1");
  write("b", "2");
  write("c", "3");
  const std::string id = commit();
  auto out = exportAt(id, "", TreeExportLimits{.maxEntries = 2});
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "more than 2 entries")) << out.status().message();

  fs::remove_all(dest_);
  fs::create_directories(dest_);
  auto exact = exportAt(id, "", TreeExportLimits{.maxEntries = 3});
  ASSERT_TRUE(exact.isOk()) << exact.status().message();
  EXPECT_EQ(exact->files, 3u);
}

TEST_F(GitExportTest, MaxEntriesCountsDirectories) {
  write("d/e/f", "1");  // d, d/e and d/e/f: three entries, one file
  const std::string id = commit();
  auto out = exportAt(id, "", TreeExportLimits{.maxEntries = 2});
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "more than 2 entries")) << out.status().message();
}

TEST_F(GitExportTest, MaxFileBytes) {
  write("small", "1234");
  write("big.bin", std::string(100, 'x'));
  const std::string id = commit();
  auto out = exportAt(id, "", TreeExportLimits{.maxFileBytes = 99});
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "big.bin: 100 bytes, more than 99"))
      << out.status().message();

  fs::remove_all(dest_);
  fs::create_directories(dest_);
  auto exact = exportAt(id, "", TreeExportLimits{.maxFileBytes = 100});
  ASSERT_TRUE(exact.isOk()) << exact.status().message();
  EXPECT_EQ(exact->bytes, 104u);
}

TEST_F(GitExportTest, MaxBytes) {
  write("a.txt", std::string(10, 'a'));
  write("b.txt", std::string(10, 'b'));
  const std::string id = commit();
  auto out = exportAt(id, "", TreeExportLimits{.maxBytes = 15});
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "b.txt: the tree's files are more than 15 bytes"))
      << out.status().message();
  EXPECT_FALSE(fs::exists(dest_ + "/b.txt"));

  fs::remove_all(dest_);
  fs::create_directories(dest_);
  auto exact = exportAt(id, "", TreeExportLimits{.maxBytes = 20});
  ASSERT_TRUE(exact.isOk()) << exact.status().message();
  EXPECT_EQ(exact->bytes, 20u);
}

TEST_F(GitExportTest, MaxDepth) {
  write("a/b/c/file", "f");
  const std::string id = commit();
  auto out = exportAt(id, "", TreeExportLimits{.maxDepth = 1});
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "a/b: deeper than 1 directories"))
      << out.status().message();

  // a, a/b and a/b/c are three directories below the top.
  fs::remove_all(dest_);
  fs::create_directories(dest_);
  auto two = exportAt(id, "", TreeExportLimits{.maxDepth = 2});
  ASSERT_FALSE(two.isOk());
  EXPECT_TRUE(contains(two.status().message(), "a/b/c: deeper than 2")) << two.status().message();

  fs::remove_all(dest_);
  fs::create_directories(dest_);
  auto three = exportAt(id, "", TreeExportLimits{.maxDepth = 3});
  ASSERT_TRUE(three.isOk()) << three.status().message();
  EXPECT_EQ(readAll(dest_ + "/a/b/c/file"), "f");
}

TEST_F(GitExportTest, UnknownCommitIsAnError) {
  write("README", "top");
  commit();
  const std::string unknown = "0123456789abcdef0123456789abcdef01234567";
  auto out = exportAt(unknown);
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "commit " + unknown + " not found"))
      << out.status().message();
  EXPECT_TRUE(listing().empty());
}

TEST_F(GitExportTest, ExportsTheCommitAskedForNotTheBranchTip) {
  write("v", "one");
  const std::string first = commit("first");
  write("v", "two!");
  write("w", "new");
  const std::string second = commit("second");
  ASSERT_NE(first, second);

  auto out = exportAt(first);
  ASSERT_TRUE(out.isOk()) << out.status().message();
  EXPECT_EQ(out->commit, first);
  EXPECT_EQ(out->files, 1u);
  EXPECT_EQ(out->bytes, 3u);
  EXPECT_EQ(listing(), std::vector<std::string>{"v"});
  EXPECT_EQ(readAll(dest_ + "/v"), "one");

  // A branch name works too and gives the tip.
  fs::remove_all(dest_);
  fs::create_directories(dest_);
  auto tip = exportAt("main");
  ASSERT_TRUE(tip.isOk()) << tip.status().message();
  EXPECT_EQ(tip->commit, second);
  EXPECT_EQ(tip->files, 2u);
  EXPECT_EQ(tip->bytes, 7u);
  EXPECT_EQ(readAll(dest_ + "/v"), "two!");
}

TEST_F(GitExportTest, ExportTwiceFromOneSourceGivesTheSame) {
  write("x/y", "yy");
  const std::string id = commit();
  auto src = open(id);
  ASSERT_TRUE(src.isOk()) << src.status().message();
  auto first = (*src)->exportTree(dest_);
  ASSERT_TRUE(first.isOk()) << first.status().message();
  const std::string second = root_ + "/dest2";
  fs::create_directories(second);
  auto again = (*src)->exportTree(second);
  ASSERT_TRUE(again.isOk()) << again.status().message();
  EXPECT_EQ(again->commit, id);
  EXPECT_EQ(again->files, 1u);
  EXPECT_EQ(again->bytes, 2u);
  EXPECT_EQ(readAll(second + "/x/y"), "yy");
}

TEST_F(GitExportTest, DestinationThatIsNotEmptyIsAnError) {
  write("a", "new");
  const std::string id = commit();
  std::ofstream(dest_ + "/a") << "old";
  auto out = exportAt(id);
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "a: create")) << out.status().message();
  EXPECT_EQ(readAll(dest_ + "/a"), "old");
}

TEST_F(GitExportTest, ALinkAlreadyInTheDestinationIsNotWrittenThrough) {
  write("a", "new");
  const std::string id = commit();
  const std::string outside = root_ + "/outside-file";
  fs::create_symlink(outside, dest_ + "/a");
  auto out = exportAt(id);
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "a: create")) << out.status().message();
  EXPECT_FALSE(fs::exists(fs::symlink_status(outside)));
}

TEST_F(GitExportTest, MissingDestinationIsAnError) {
  write("a", "1");
  const std::string id = commit();
  fs::remove_all(dest_);
  auto out = exportAt(id);
  ASSERT_FALSE(out.isOk());
  EXPECT_TRUE(contains(out.status().message(), "open " + dest_)) << out.status().message();
}

TEST_F(GitExportTest, RemoteCommitIsTheBranchTipAndFollowsIt) {
  write("a", "1");
  const std::string first = commit("first");
  auto src = open("main");
  ASSERT_TRUE(src.isOk()) << src.status().message();
  auto at = (*src)->remoteCommit();
  ASSERT_TRUE(at.isOk()) << at.status().message();
  EXPECT_EQ(*at, first);
  write("a", "2");
  const std::string second = commit("second");
  ASSERT_NE(second, first);
  at = (*src)->remoteCommit();
  ASSERT_TRUE(at.isOk()) << at.status().message();
  EXPECT_EQ(*at, second);
  // Only listed, never fetched: the cache has no objects of the second commit.
  EXPECT_FALSE(fs::exists(root_ + "/cache/refs/heads/main"));
}

TEST_F(GitExportTest, RemoteCommitOfAnAnnotatedTagIsItsCommit) {
  write("a", "1");
  const std::string id = commit();
  git({"-C", work_, "tag", "-a", "-m", "release", "v1", id});
  git({"-C", work_, "push", "--quiet", bare_, "refs/tags/v1"});
  const std::string tagObject = git({"-C", work_, "rev-parse", "v1"});
  ASSERT_NE(tagObject, id);
  auto src = open("v1");
  ASSERT_TRUE(src.isOk()) << src.status().message();
  auto at = (*src)->remoteCommit();
  ASSERT_TRUE(at.isOk()) << at.status().message();
  EXPECT_EQ(*at, id);
}

TEST_F(GitExportTest, RemoteCommitOfAPinnedCommitNeedsNoRemote) {
  write("a", "1");
  const std::string id = commit();
  auto src = open(id);
  ASSERT_TRUE(src.isOk()) << src.status().message();
  fs::remove_all(bare_);
  auto at = (*src)->remoteCommit();
  ASSERT_TRUE(at.isOk()) << at.status().message();
  EXPECT_EQ(*at, id);
}

TEST_F(GitExportTest, RemoteCommitOfAMissingRefIsAnErrorNamingIt) {
  write("a", "1");
  commit();
  auto src = open("nope");
  ASSERT_TRUE(src.isOk()) << src.status().message();
  auto at = (*src)->remoteCommit();
  ASSERT_FALSE(at.isOk());
  EXPECT_TRUE(contains(at.status().message(), "no branch or tag \"nope\" on the remote"))
      << at.status().message();
}

// --- a commit's tree read as a directory source (Snapshot::tree) -----------------------------

TEST_F(GitExportTest, ADirectoryOfACommitIsTheArchiveTheSameDirectoryOnDiskGives) {
  write("m/app.yaml", "# a manifest\n");
  write("m/app/main.c", "int main(void) { return 0; }\n");
  write("m/app/configure", "#!/bin/sh\n", 0755);
  write("m/app/lib/util.c", std::string("bin\0ary", 7));
  link("m/app/latest", "main.c");
  const std::string id = commit();
  auto src = open("main");
  ASSERT_TRUE(src.isOk()) << src.status().message();
  auto snapshot = (*src)->fetch();
  ASSERT_TRUE(snapshot.isOk()) << snapshot.status().message();
  ASSERT_TRUE(snapshot->tree);
  auto fromGit = snapshot->tree->readDirectory("m", "app", {});
  ASSERT_TRUE(fromGit.isOk()) << fromGit.status().message();
  ASSERT_EQ(fromGit->refusal, SourceTree::File::Refusal::None);
  DirectoryTree disk(work_);
  auto fromDisk = disk.readDirectory("m", "app", {});
  ASSERT_TRUE(fromDisk.isOk()) << fromDisk.status().message();
  EXPECT_EQ(fromGit->bytes, fromDisk->bytes) << "the same content, other bytes";
  auto entries = decodeDirectoryArchive(fromGit->bytes);
  ASSERT_TRUE(entries.isOk()) << entries.status().message();
  ASSERT_EQ(entries->size(), 5u);
  EXPECT_EQ((*entries)[0].path, "configure");
  EXPECT_EQ((*entries)[0].type, ArchiveEntry::Type::Executable);
  EXPECT_EQ((*entries)[1].type, ArchiveEntry::Type::Symlink);
  EXPECT_EQ((*entries)[1].content, "main.c");

  auto file = snapshot->tree->readDirectory("m", "app/main.c", {});
  ASSERT_TRUE(file.isOk()) << file.status().message();
  EXPECT_EQ(file->refusal, SourceTree::File::Refusal::NotAFile);
  EXPECT_EQ(file->detail, "a file");
  EXPECT_EQ(snapshot->tree->readDirectory("m", "nope", {})->refusal,
            SourceTree::File::Refusal::Missing);
  auto few = snapshot->tree->readDirectory("m", "app", ArchiveLimits{.maxEntries = 3});
  ASSERT_TRUE(few.isOk()) << few.status().message();
  EXPECT_EQ(few->refusal, SourceTree::File::Refusal::TooMany);
  EXPECT_EQ(few->at, "app/lib/util.c");
  (void)id;
}

TEST_F(GitExportTest, ASubmoduleInADirectorySourceIsRefusedAtItsPlace) {
  write("app/README", "top");
  const std::string first = commit("first");
  git({"-C", work_, "update-index", "--add", "--cacheinfo", "160000," + first + ",app/sub"});
  git({"-C", work_, "commit", "--quiet", "-m", "add a submodule"});
  git({"-C", work_, "push", "--quiet", bare_, "HEAD:refs/heads/main"});
  auto src = open("main");
  ASSERT_TRUE(src.isOk()) << src.status().message();
  auto snapshot = (*src)->fetch();
  ASSERT_TRUE(snapshot.isOk()) << snapshot.status().message();
  auto read = snapshot->tree->readDirectory("", "app", {});
  ASSERT_TRUE(read.isOk()) << read.status().message();
  EXPECT_EQ(read->refusal, SourceTree::File::Refusal::NotAFile);
  EXPECT_EQ(read->at, "app/sub");
  EXPECT_EQ(read->detail, "a submodule");
}

}  // namespace
}  // namespace hyper::controller
