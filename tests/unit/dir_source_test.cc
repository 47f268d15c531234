#include "source/dir_source.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "reconciler/loader.h"
#include "reconciler/schema.h"
#include "tests/fakes/temp_tree.h"

// The directory source against a real temporary directory and real inotify events.

namespace hyper::controller {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

const char* kNetwork =
    "apiVersion: hyper.dev/v1alpha1\n"
    "kind: Network\n"
    "metadata:\n"
    "  name: lab\n"
    "spec:\n"
    "  cidr: 10.77.0.0/24\n";

bool readable(int fd, std::chrono::milliseconds timeout) {
  struct pollfd pfd = {fd, POLLIN, 0};
  return ::poll(&pfd, 1, static_cast<int>(timeout.count())) == 1;
}

class DirSourceTest : public test::TempTreeTest {
 protected:
  DirSourceTest() : TempTreeTest("hyper-dirsrc") {}

  std::unique_ptr<DirSource> open(const std::string& path = "") {
    auto src = DirSource::open({root_, "", path, ""});
    EXPECT_TRUE(src.isOk()) << src.status().message();
    return src.isOk() ? std::move(src).value() : nullptr;
  }

  Snapshot fetch(Source& src) {
    auto snap = src.fetch();
    EXPECT_TRUE(snap.isOk()) << snap.status().message();
    return snap.isOk() ? std::move(snap).value() : Snapshot{};
  }

  static std::vector<std::string> paths(const Snapshot& s) {
    std::vector<std::string> out;
    for (const auto& f : s.files) {
      out.push_back(f.path);
    }
    return out;
  }
};

TEST_F(DirSourceTest, RevisionIsStableForSameContentAndChangesWithOneByte) {
  write("a.yaml", kNetwork);
  write("envs/host1/net.yaml", "kind: Network\n");
  auto src = open();
  ASSERT_TRUE(src);
  Snapshot first = fetch(*src);
  ASSERT_EQ(first.revision.size(), 4u + 16u) << first.revision;
  EXPECT_EQ(first.revision.rfind("dir:", 0), 0u) << first.revision;
  EXPECT_TRUE(first.commit.empty());
  EXPECT_EQ(fetch(*src).revision, first.revision);
  // The same content in another source instance gives the same revision.
  EXPECT_EQ(fetch(*open()).revision, first.revision);

  write("envs/host1/net.yaml", "kind: Network!\n");
  std::string edited = fetch(*src).revision;
  EXPECT_NE(edited, first.revision);
  write("envs/host1/net.yaml", "kind: Network\n");
  EXPECT_EQ(fetch(*src).revision, first.revision);

  // A rename with the same content is a different revision: paths are part of it.
  fs::rename(fs::path(root_) / "a.yaml", fs::path(root_) / "b.yaml");
  EXPECT_NE(fetch(*src).revision, first.revision);
}

TEST_F(DirSourceTest, PathsAreRelativeToTheSourceRootAndHiddenFilesSkipped) {
  write("envs/host1/net.yaml", kNetwork);
  write("envs/host1/vm.yml", "a: 1\n");
  write("envs/host1/b.json", "{}\n");
  write("envs/host1/README.md", "not a manifest\n");
  write("envs/host1/.hidden.yaml", "a: 1\n");
  write("envs/host1/.git/x.yaml", "a: 1\n");
  write("envs/host2/other.yaml", "a: 1\n");
  write("top.yaml", "a: 1\n");

  auto all = open();
  ASSERT_TRUE(all);
  EXPECT_EQ(paths(fetch(*all)),
            (std::vector<std::string>{"envs/host1/b.json", "envs/host1/net.yaml",
                                      "envs/host1/vm.yml", "envs/host2/other.yaml", "top.yaml"}));

  auto sub = open("envs/host1");
  ASSERT_TRUE(sub);
  Snapshot s = fetch(*sub);
  EXPECT_EQ(paths(s), (std::vector<std::string>{"envs/host1/b.json", "envs/host1/net.yaml",
                                                "envs/host1/vm.yml"}));
  ASSERT_EQ(s.files.size(), 3u);
  EXPECT_EQ(s.files[1].content, kNetwork);
  EXPECT_EQ(sub->describe(), "dir " + root_ + " path envs/host1");
}

TEST_F(DirSourceTest, RevisionAgreesWithManifestLoaderAndDiagnosticsUseRelativePaths) {
  write("envs/host1/net.yaml", std::string(kNetwork) + "  colour: blue\n");
  auto src = open("envs/host1");
  ASSERT_TRUE(src);
  Snapshot s = fetch(*src);
  auto schemas = SchemaRegistry::builtin();
  ASSERT_TRUE(schemas.isOk()) << schemas.status().message();
  ManifestLoader loader(*schemas);
  LoadResult r = loader.load(s.files);
  EXPECT_EQ(r.revision, s.revision);
  ASSERT_TRUE(r.diagnostics.hasErrors());
  EXPECT_NE(r.diagnostics.format().find("envs/host1/net.yaml:7:3"), std::string::npos)
      << r.diagnostics.format();
}

TEST_F(DirSourceTest, MissingDirectoryIsAnError) {
  auto missing = DirSource::open({root_ + "/nope", "", "", ""});
  ASSERT_FALSE(missing.isOk());
  EXPECT_NE(missing.status().message().find(root_ + "/nope"), std::string::npos)
      << missing.status().message();

  auto escaping = DirSource::open({root_, "", "../etc", ""});
  ASSERT_FALSE(escaping.isOk());
  EXPECT_NE(escaping.status().message().find("leaves the directory"), std::string::npos)
      << escaping.status().message();

  // A missing sub-path opens (it may appear later) but fetch says what is missing.
  auto src = open("envs/none");
  ASSERT_TRUE(src);
  auto changed = src->changed();
  ASSERT_TRUE(changed.isOk());
  EXPECT_TRUE(*changed);
  auto snap = src->fetch();
  ASSERT_FALSE(snap.isOk());
  EXPECT_NE(snap.status().message().find("envs/none"), std::string::npos)
      << snap.status().message();
  EXPECT_EQ(snap.status().message().rfind("fetch dir " + root_, 0), 0u) << snap.status().message();
}

TEST_F(DirSourceTest, ChangedIsTrueFirstThenOnlyAfterARelevantWrite) {
  write("a.yaml", kNetwork);
  auto src = open();
  ASSERT_TRUE(src);
  ASSERT_GE(src->wakeFd(), 0);
  auto c = src->changed();
  ASSERT_TRUE(c.isOk());
  EXPECT_TRUE(*c);
  fetch(*src);
  c = src->changed();
  ASSERT_TRUE(c.isOk());
  EXPECT_FALSE(*c);
  EXPECT_FALSE(readable(src->wakeFd(), 50ms));

  write("a.yaml", std::string(kNetwork) + "  mtu: 1400\n");
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  EXPECT_TRUE(src->drainWake());
  c = src->changed();
  ASSERT_TRUE(c.isOk());
  EXPECT_TRUE(*c);
  fetch(*src);
  c = src->changed();
  ASSERT_TRUE(c.isOk());
  EXPECT_FALSE(*c);

  // Deleting a manifest is a change too.
  fs::remove(fs::path(root_) / "a.yaml");
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  EXPECT_TRUE(src->drainWake());
}

TEST_F(DirSourceTest, ABurstOfWritesIsOneWaitQuiet) {
  write("a.yaml", kNetwork);
  auto src = open();
  ASSERT_TRUE(src);
  fetch(*src);

  std::atomic<bool> burstDone{false};
  std::thread writer([&] {
    for (int i = 0; i < 20; ++i) {
      write("a.yaml", std::string(kNetwork) + "# edit " + std::to_string(i) + "\n");
      std::this_thread::sleep_for(5ms);
    }
    burstDone = true;
  });
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  bool relevant = waitQuiet(*src, 500ms, 10s);
  bool doneWhenReturned = burstDone.load();
  writer.join();
  EXPECT_TRUE(relevant);
  // waitQuiet returned only once the writes had stopped: the whole burst is one reconcile.
  EXPECT_TRUE(doneWhenReturned);
  EXPECT_FALSE(readable(src->wakeFd(), 0ms));
  EXPECT_FALSE(src->drainWake());
  EXPECT_FALSE(waitQuiet(*src, 50ms, 200ms));
  Snapshot s = fetch(*src);
  ASSERT_EQ(s.files.size(), 1u);
  EXPECT_NE(s.files[0].content.find("# edit 19"), std::string::npos);
}

TEST_F(DirSourceTest, WaitQuietIsBoundedByMax) {
  write("a.yaml", kNetwork);
  auto src = open();
  ASSERT_TRUE(src);
  fetch(*src);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      write("a.yaml", std::string(kNetwork) + "# edit " + std::to_string(i) + "\n");
      std::this_thread::sleep_for(10ms);
    }
  });
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  auto start = std::chrono::steady_clock::now();
  bool relevant = waitQuiet(*src, 500ms, 300ms);
  auto took = std::chrono::steady_clock::now() - start;
  stop = true;
  writer.join();
  EXPECT_TRUE(relevant);
  EXPECT_LT(took, 1000ms);
}

TEST_F(DirSourceTest, EditorTempFilesAndHiddenEntriesAreNotRelevant) {
  write("a.yaml", kNetwork);
  auto src = open();
  ASSERT_TRUE(src);
  fetch(*src);

  write(".a.yaml.swp", "vim swap");
  write(".#a.yaml", "emacs lock");
  write("a.yaml~", "backup");
  write("a.yaml.swp", "swap");
  write("notes.txt", "not a manifest");
  fs::create_directories(fs::path(root_) / ".cache");
  write(".cache/x.yaml", "hidden dir");
  // The events were delivered (the fd woke) but none of them counts.
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  EXPECT_FALSE(src->drainWake());
  auto c = src->changed();
  ASSERT_TRUE(c.isOk());
  EXPECT_FALSE(*c);
  EXPECT_FALSE(waitQuiet(*src, 50ms, 500ms));

  // The same source still reports a real edit.
  write("a.yaml", std::string(kNetwork) + "# real\n");
  EXPECT_TRUE(waitQuiet(*src, 50ms, 2000ms));
}

TEST_F(DirSourceTest, NewSubdirectoriesAreWatched) {
  write("a.yaml", kNetwork);
  auto src = open();
  ASSERT_TRUE(src);
  fetch(*src);

  fs::create_directories(fs::path(root_) / "new");
  EXPECT_TRUE(waitQuiet(*src, 50ms, 2000ms));
  // Only a watch on "new" can report this write.
  write("new/x.yaml", "a: 1\n");
  EXPECT_TRUE(waitQuiet(*src, 50ms, 2000ms));

  // Nested directories made at once: the inner ones are watched too.
  fs::create_directories(fs::path(root_) / "p/q/r");
  EXPECT_TRUE(waitQuiet(*src, 50ms, 2000ms));
  write("p/q/r/y.yaml", "b: 2\n");
  EXPECT_TRUE(waitQuiet(*src, 50ms, 2000ms));

  Snapshot s = fetch(*src);
  EXPECT_EQ(paths(s), (std::vector<std::string>{"a.yaml", "new/x.yaml", "p/q/r/y.yaml"}));
}

TEST_F(DirSourceTest, RenamedDirectoriesStayWatched) {
  write("envs/host1/net.yaml", kNetwork);
  auto src = open();
  ASSERT_TRUE(src);
  fetch(*src);

  fs::rename(fs::path(root_) / "envs", fs::path(root_) / "environments");
  EXPECT_TRUE(waitQuiet(*src, 50ms, 2000ms));
  write("environments/host1/net.yaml", std::string(kNetwork) + "# moved\n");
  EXPECT_TRUE(waitQuiet(*src, 50ms, 2000ms));
  EXPECT_EQ(paths(fetch(*src)), (std::vector<std::string>{"environments/host1/net.yaml"}));

  fs::remove_all(fs::path(root_) / "environments");
  EXPECT_TRUE(waitQuiet(*src, 50ms, 2000ms));
  // No manifest left: a source error, not an empty revision.
  auto gone = src->fetch();
  ASSERT_FALSE(gone.isOk());
  EXPECT_NE(gone.status().message().find("no manifest files"), std::string::npos)
      << gone.status().message();
}

TEST_F(DirSourceTest, EmptyOrMissingRootIsASourceErrorNotAnEmptyRevision) {
  auto src = open();
  ASSERT_TRUE(src);
  auto empty = src->fetch();
  ASSERT_FALSE(empty.isOk());
  EXPECT_NE(empty.status().message().find("no manifest files"), std::string::npos)
      << empty.status().message();
  EXPECT_NE(empty.status().message().find(root_), std::string::npos) << empty.status().message();
  write("README.md", "not a manifest\n");
  write(".hidden.yaml", kNetwork);
  EXPECT_FALSE(src->fetch().isOk());
  // The near miss: a manifest file with no document is there, and says "nothing" (a revision
  // with no objects, which hyperd holds for approval).
  write("empty.yaml", "# everything removed on purpose\n");
  EXPECT_EQ(paths(fetch(*src)), (std::vector<std::string>{"empty.yaml"}));

  // A sub-path that is a file, and a root removed after open.
  auto file = open("empty.yaml");
  ASSERT_TRUE(file);
  auto notDir = file->fetch();
  ASSERT_FALSE(notDir.isOk());
  EXPECT_NE(notDir.status().message().find("not a directory"), std::string::npos)
      << notDir.status().message();
  fs::remove_all(root_);
  auto missing = src->fetch();
  ASSERT_FALSE(missing.isOk());
  EXPECT_NE(missing.status().message().find("no such directory"), std::string::npos)
      << missing.status().message();
}

TEST_F(DirSourceTest, ASymlinkOutOfTheRootIsAnErrorNamingIt) {
  write("net.yaml", kNetwork);
  write("sub/real.yaml", "a: 1\n");
  // A sibling whose name starts like the root's: outside, though its path has the root's prefix.
  std::string sibling = root_ + "2";
  fs::create_directories(sibling);
  std::ofstream(sibling + "/secret.yaml") << "a: 2\n";
  // Inside the root: followed.
  fs::create_symlink("sub/real.yaml", fs::path(root_) / "link.yaml");
  auto src = open();
  ASSERT_TRUE(src);
  EXPECT_EQ(paths(fetch(*src)),
            (std::vector<std::string>{"link.yaml", "net.yaml", "sub/real.yaml"}));

  fs::create_symlink(sibling + "/secret.yaml", fs::path(root_) / "evil.yaml");
  auto out = src->fetch();
  ASSERT_FALSE(out.isOk());
  EXPECT_NE(out.status().message().find(root_ + "/evil.yaml is a symlink to " + sibling),
            std::string::npos)
      << out.status().message();
  fs::remove(fs::path(root_) / "evil.yaml");

  // A directory link out of the root, one level down.
  fs::create_directory_symlink(sibling, fs::path(root_) / "sub/elsewhere");
  out = src->fetch();
  ASSERT_FALSE(out.isOk());
  EXPECT_NE(out.status().message().find("sub/elsewhere"), std::string::npos)
      << out.status().message();
  fs::remove(fs::path(root_) / "sub/elsewhere");
  EXPECT_TRUE(src->fetch().isOk());
  fs::remove_all(sibling);
}

TEST_F(DirSourceTest, AFileWrittenInTwoStepsIsNotReadHalfWay) {
  write("a.yaml", kNetwork);
  SourceSpec spec;
  spec.location = root_;
  spec.settle = 200ms;
  auto opened = DirSource::open(spec);
  ASSERT_TRUE(opened.isOk()) << opened.status().message();
  auto& src = **opened;
  ASSERT_GE(src.wakeFd(), 0);
  // A file written and closed just before is read at once.
  write("b.yaml", kNetwork);
  EXPECT_EQ(paths(fetch(src)), (std::vector<std::string>{"a.yaml", "b.yaml"}));

  std::string whole = std::string(kNetwork) + "  mtu: 1400\n";
  std::string path = root_ + "/c.yaml";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  size_t half = whole.size() / 2;
  ASSERT_EQ(::write(fd, whole.data(), half), static_cast<ssize_t>(half));
  auto during = src.fetch();
  ASSERT_FALSE(during.isOk()) << "read half-way: " << during->files.size() << " files";
  EXPECT_NE(during.status().message().find(path + " is being written"), std::string::npos)
      << during.status().message();
  ASSERT_EQ(::write(fd, whole.data() + half, whole.size() - half),
            static_cast<ssize_t>(whole.size() - half));
  ::close(fd);
  Snapshot after = fetch(src);
  ASSERT_EQ(paths(after), (std::vector<std::string>{"a.yaml", "b.yaml", "c.yaml"}));
  EXPECT_EQ(after.files[2].content, whole);

  // An existing file rewritten in place (truncate, then write) is waited for the same way.
  fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, whole.data(), half), static_cast<ssize_t>(half));
  EXPECT_FALSE(src.fetch().isOk());
  ::close(fd);
  EXPECT_TRUE(src.fetch().isOk());
}

TEST_F(DirSourceTest, OpenSourcePicksDirectoryOrGit) {
  auto dir = openSource({root_, "", "", ""});
  ASSERT_TRUE(dir.isOk()) << dir.status().message();
  EXPECT_EQ((*dir)->describe(), "dir " + root_);

  // A bare repository's layout makes it a git source.
  fs::create_directories(fs::path(root_) / "repo.git/objects");
  fs::create_directories(fs::path(root_) / "repo.git/refs");
  write("repo.git/HEAD", "ref: refs/heads/main\n");
  auto git = openSource({root_ + "/repo.git", "main", "envs", root_ + "/cache"});
  ASSERT_TRUE(git.isOk()) << git.status().message();
  EXPECT_EQ((*git)->describe(), "git " + root_ + "/repo.git ref main path envs");

  auto http = openSource({"https://user:secret@example.com/env.git", "", "", root_ + "/cache2"});
  ASSERT_TRUE(http.isOk()) << http.status().message();
  EXPECT_EQ((*http)->describe(), "git https://example.com/env.git ref main");
}

}  // namespace
}  // namespace hyper::controller
