// The directory source with file sources: its snapshot's tree reads them below each manifest's
// directory (sub-path included), the loader names the revision after them, a symlink is
// refused, and a change to a file that a load read wakes the watcher while other files do not.

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "providers/builtin.h"
#include "reconciler/loader.h"
#include "source/dir_source.h"
#include "tests/fakes/temp_tree.h"

namespace hyper {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using controller::DirSource;
using controller::Snapshot;

std::string buildManifest(const std::string& source) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: web}\nspec:\n"
         "  type: initramfs\n  initramfs:\n    busybox: false\n    files:\n"
         "      - path: /init\n        source: " +
         source + "\n";
}

bool readable(int fd, std::chrono::milliseconds timeout) {
  struct pollfd pfd = {fd, POLLIN, 0};
  return ::poll(&pfd, 1, static_cast<int>(timeout.count())) == 1;
}

class DirSourceFileSourcesTest : public test::TempTreeTest {
 protected:
  DirSourceFileSourcesTest() : TempTreeTest("hyper-dirsrc-files") {}
  void SetUp() override {
    TempTreeTest::SetUp();
    auto kinds = providers::builtinKinds();
    ASSERT_TRUE(kinds.isOk()) << kinds.status().message();
    loader_ = std::make_unique<ManifestLoader>((*kinds)->schemas(), LoaderLimits{},
                                               (*kinds)->fileSources());
  }
  std::unique_ptr<DirSource> open(const std::string& path = "") {
    auto src = DirSource::open({root_, "", path, ""});
    EXPECT_TRUE(src.isOk()) << src.status().message();
    return src.isOk() ? std::move(src).value() : nullptr;
  }
  // fetch(), then the load the loop makes of the snapshot (through its tree).
  LoadResult fetchAndLoad(DirSource& src, Snapshot* snapshot = nullptr) {
    auto s = src.fetch();
    EXPECT_TRUE(s.isOk()) << s.status().message();
    if (!s.isOk()) {
      return {};
    }
    EXPECT_TRUE(s->revisionFromLoader);
    EXPECT_NE(s->tree, nullptr);
    LoadResult r = loader_->load(s->files, s->tree.get());
    if (snapshot) {
      *snapshot = std::move(*s);
    }
    return r;
  }

  std::unique_ptr<ManifestLoader> loader_;
};

TEST_F(DirSourceFileSourcesTest, TheTreeReadsBelowTheManifestAndTheLoaderNamesTheRevision) {
  write("envs/host1/build.yaml", buildManifest("web/init.sh"));
  write("envs/host1/web/init.sh", "#!/bin/sh\necho one\n");
  auto src = open("envs/host1");
  ASSERT_TRUE(src);
  Snapshot s;
  LoadResult one = fetchAndLoad(*src, &s);
  ASSERT_FALSE(one.diagnostics.hasErrors()) << one.diagnostics.format();
  ASSERT_EQ(one.objects.size(), 1u);
  EXPECT_EQ(one.objects[0]->files.at("web/init.sh")->bytes, "#!/bin/sh\necho one\n");
  EXPECT_NE(one.revision, s.revision) << "the file source is not in the loader's revision";

  write("envs/host1/web/init.sh", "#!/bin/sh\necho two\n");
  Snapshot s2;
  LoadResult two = fetchAndLoad(*src, &s2);
  ASSERT_FALSE(two.diagnostics.hasErrors()) << two.diagnostics.format();
  EXPECT_EQ(s2.revision, s.revision) << "the manifests did not change";
  EXPECT_NE(two.revision, one.revision) << "a changed file source kept the revision";
  EXPECT_EQ(two.objects[0]->files.at("web/init.sh")->bytes, "#!/bin/sh\necho two\n");
}

TEST_F(DirSourceFileSourcesTest, ASymlinkIsRefusedWithItsPlace) {
  write("build.yaml", buildManifest("web/init.sh"));
  write("real/init.sh", "x");
  fs::create_directory_symlink("real", fs::path(root_) / "web");
  auto src = open();
  ASSERT_TRUE(src);
  LoadResult r = fetchAndLoad(*src);
  EXPECT_NE(r.diagnostics.format().find("build.yaml:10:9: error: Build/web: "
                                        "spec.initramfs.files[0].source: \"web/init.sh\" "
                                        "reaches a symlink (web)"),
            std::string::npos)
      << r.diagnostics.format();
  EXPECT_TRUE(r.objects.empty());
}

TEST_F(DirSourceFileSourcesTest, AChangeToAFileALoadReadWakesTheWatcherOthersDoNot) {
  write("build.yaml", buildManifest("web/init.sh"));
  write("web/init.sh", "one\n");
  write("web/other.sh", "not named\n");
  auto src = open();
  ASSERT_TRUE(src);
  ASSERT_GE(src->wakeFd(), 0);
  fetchAndLoad(*src);
  ASSERT_FALSE(*src->changed());

  write("web/other.sh", "still not named\n");
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  EXPECT_FALSE(src->drainWake()) << "a file no manifest names woke the loop";
  EXPECT_FALSE(*src->changed());

  write("web/init.sh", "two\n");
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  EXPECT_TRUE(src->drainWake()) << "a file source changed and the watcher slept";
  EXPECT_TRUE(*src->changed());
  fetchAndLoad(*src);

  // A file named but missing: its appearance is a change (the revision was rejected for it).
  write("build.yaml", buildManifest("web/later.sh"));
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  EXPECT_TRUE(src->drainWake());
  LoadResult missing = fetchAndLoad(*src);
  EXPECT_TRUE(missing.diagnostics.hasErrors());
  write("web/later.sh", "here\n");
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  EXPECT_TRUE(src->drainWake()) << "the missing file source appeared and the watcher slept";
  LoadResult found = fetchAndLoad(*src);
  EXPECT_FALSE(found.diagnostics.hasErrors()) << found.diagnostics.format();
}

// A file source under a hidden directory, or with a hidden name, which the walk and the watch
// skip otherwise: the watch covers it once a load has read it.
TEST_F(DirSourceFileSourcesTest, HiddenNamesOnAFileSourcesPathAreWatched) {
  write("build.yaml",
        "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: web}\nspec:\n"
        "  type: initramfs\n  initramfs:\n    busybox: false\n    files:\n"
        "      - {path: /init, source: .config/app/init.sh}\n"
        "      - {path: /env, source: web/.env}\n");
  write(".config/app/init.sh", "one\n");
  write(".config/unrelated", "x\n");
  write("web/.env", "A=1\n");
  auto src = open();
  ASSERT_TRUE(src);
  ASSERT_GE(src->wakeFd(), 0);
  LoadResult first = fetchAndLoad(*src);
  ASSERT_FALSE(first.diagnostics.hasErrors()) << first.diagnostics.format();
  ASSERT_FALSE(*src->changed());

  write(".config/app/init.sh", "two\n");
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms)) << "no event from the hidden directory";
  EXPECT_TRUE(src->drainWake());
  fetchAndLoad(*src);
  write("web/.env", "A=2\n");
  ASSERT_TRUE(readable(src->wakeFd(), 2000ms));
  EXPECT_TRUE(src->drainWake()) << "a hidden file source changed and the watcher slept";
  fetchAndLoad(*src);
  ASSERT_FALSE(*src->changed());
  write(".config/unrelated", "y\n");
  write("web/.other", "y\n");
  if (readable(src->wakeFd(), 500ms)) {
    EXPECT_FALSE(src->drainWake()) << "a hidden file no manifest names woke the loop";
  }
  EXPECT_FALSE(*src->changed());
}

// Polling (source.poll, or no inotify): a file source modified within the settle interval is
// waited for, and one that keeps changing is reported as being written, not read half-way.
TEST_F(DirSourceFileSourcesTest, PolledAFileSourceBeingWrittenIsNotReadHalfWay) {
  write("build.yaml", buildManifest("web/init.sh"));
  write("web/init.sh", "one\n");
  controller::SourceSpec spec;
  spec.location = root_;
  spec.settle = 300ms;
  spec.poll = true;
  auto opened = DirSource::open(spec);
  ASSERT_TRUE(opened.isOk()) << opened.status().message();
  DirSource& src = **opened;
  EXPECT_EQ(src.wakeFd(), -1);
  EXPECT_TRUE(*src.changed());
  // Settled before the first fetch, so it is read at once.
  std::this_thread::sleep_for(400ms);
  ASSERT_FALSE(fetchAndLoad(src).diagnostics.hasErrors());

  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load() && i < 200; ++i) {
      std::ofstream(root_ + "/web/init.sh", std::ios::app) << i << "\n";
      ++writes;
      std::this_thread::sleep_for(50ms);
    }
  });
  while (writes.load() == 0) {
    std::this_thread::sleep_for(1ms);
  }
  auto during = src.fetch();
  stop = true;
  writer.join();
  ASSERT_FALSE(during.isOk()) << "a file source was read while it was being written";
  EXPECT_NE(during.status().message().find(root_ + "/web/init.sh is being written"),
            std::string::npos)
      << during.status().message();
  std::this_thread::sleep_for(400ms);
  EXPECT_TRUE(src.fetch().isOk());
}

}  // namespace
}  // namespace hyper
