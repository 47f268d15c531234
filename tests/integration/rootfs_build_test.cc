// The rootfs Build type through the real hyperctl, mmdebstrap, mkfs.erofs and mke2fs, from the
// host's apt lists of its Debian suite; and a real QEMU VM with that image as its disk, mounted by
// hyper's guest init. Needs no network namespace: the VM has no network.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/file.h"
#include "tests/integration/guest_util.h"
#include "tests/integration/hyperctl_util.h"

namespace hyper::test {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string rootfsBuild(const std::string& mirror, const std::string& packages) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: web-rootfs}\nspec:\n"
         "  type: rootfs\n  rootfs:\n    suite: bookworm\n    mirror: " +
         mirror + "\n    packages: " + packages +
         "\n    files:\n      - {path: /etc/motd, content: \"a hyper rootfs\\n\"}\n";
}

class RootfsBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mirror_ = test::hostBookwormMirror();
    ASSERT_NE(mirror_, "")
        << "the host's apt lists hold no bookworm (scripts/deps.sh updates them)";
    auto tmp = TempDir::create("rootfs");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    runDir_ = tmp_->path() + "/run";
    fs::create_directories(runDir_);
    ::chmod(runDir_.c_str(), 0700);
  }
  void TearDown() override {
    if (tmp_) {
      killQemusUnder(runDir_);
    }
  }
  CommandRun hyperctl(const std::string& state, std::vector<std::string> args,
                      const std::string& umask = "022", const std::string& tz = "UTC") {
    return runHyperctl(tmp_->path() + "/" + state, args,
                       {umask, tz, {"HYPER_VM_RUN_DIR=" + runDir_}, {}});
  }
  std::string storeListing(const std::string& state) {
    std::string out;
    std::vector<std::string> names;
    for (auto& e : fs::directory_iterator(tmp_->path() + "/" + state + "/store/sha256")) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      out += n + "\n";
    }
    return out;
  }
  std::string mirror_;
  std::unique_ptr<TempDir> tmp_;
  std::string runDir_;
};

// Built from the host's lists, the same bytes from another state dir under umask 077 and another
// TZ, and booted as a VM's disk: hyper's init mounts it and reads its /etc/debian_version.
TEST_F(RootfsBuildTest, ReproducibleImageThatAVmMounts) {
  const GuestImage& guest = guestImage();
  if (!guest.skipReason.empty()) {
    GTEST_SKIP() << guest.skipReason;
  }
  ASSERT_TRUE(tmp_->write("rootfs/rootfs.yaml", rootfsBuild(mirror_, "[busybox]")).isOk());
  ASSERT_TRUE(tmp_->write("vm/rootfs.yaml", rootfsBuild(mirror_, "[busybox]")).isOk());
  ASSERT_TRUE(tmp_->write("vm/vm.yaml",
                          "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: disky}\n"
                          "spec:\n  memoryMiB: 256\n  kernel: {path: " +
                              guest.kernel + "}\n  initrd: {path: " + guest.initrd +
                              "}\n  disk: {build: web-rootfs}\n  cmdline: \"hyper.disk=/mnt\"\n")
                  .isOk());
  CommandRun a = hyperctl("a", {"apply", "-f", tmp_->path() + "/vm"});
  ASSERT_EQ(a.exitCode, 0) << a.describe();
  CommandRun log = hyperctl("a", {"logs", "build/web-rootfs"});
  EXPECT_TRUE(contains(log.out, "mmdebstrap bookworm (minbase, index sha256:")) << log.out;
  EXPECT_TRUE(contains(log.out, "erofs image, filesystem UUID ")) << log.out;
  EXPECT_EQ(hyperctl("a", {"verify", "build/web-rootfs"}).exitCode, 0);

  // The guest mounted /dev/vda and read Debian's version from it.
  std::string console;
  for (int i = 0; i < 100 && !contains(console, "hyper-disk"); ++i) {
    console = hyperctl("a", {"logs", "vm/disky"}).out;
    if (!contains(console, "hyper-disk")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  EXPECT_TRUE(contains(console, "hyper-disk /dev/vda on /mnt (ro): 12.")) << console;

  CommandRun b =
      hyperctl("b", {"apply", "-f", tmp_->path() + "/rootfs"}, "077", "Pacific/Kiritimati");
  ASSERT_EQ(b.exitCode, 0) << b.describe();
  const std::string listing = storeListing("b");
  EXPECT_EQ(std::count(listing.begin(), listing.end(), '\n'), 1) << listing;
  EXPECT_TRUE(contains(storeListing("a"), listing)) << "the same rootfs digest in both stores";

  // Unchanged lists and spec: a cache hit.
  CommandRun again = hyperctl("b", {"apply", "-f", tmp_->path() + "/rootfs"});
  EXPECT_TRUE(contains(again.out, "No changes")) << again.describe();
}

// An ext4 image: the same bytes from another state dir under umask 077 and another TZ, and a
// VM's writable disk (a copy): the guest mounts it read-write, the stored image stays as built.
TEST_F(RootfsBuildTest, AnExt4ImageIsReproducibleAndAWritableDisk) {
  const GuestImage& guest = guestImage();
  if (!guest.skipReason.empty()) {
    GTEST_SKIP() << guest.skipReason;
  }
  std::string ext4 = rootfsBuild(mirror_, "[busybox]");
  ext4.replace(ext4.find("    files:"), 0, "    format: ext4\n");
  ASSERT_TRUE(tmp_->write("rootfs/rootfs.yaml", ext4).isOk());
  ASSERT_TRUE(tmp_->write("vm/rootfs.yaml", ext4).isOk());
  ASSERT_TRUE(tmp_->write("vm/vm.yaml",
                          "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: writer}\n"
                          "spec:\n  memoryMiB: 256\n  kernel: {path: " +
                              guest.kernel + "}\n  initrd: {path: " + guest.initrd +
                              "}\n  disk: {build: web-rootfs, readOnly: false}\n"
                              "  cmdline: \"hyper.disk=/mnt\"\n")
                  .isOk());
  CommandRun a = hyperctl("a", {"apply", "-f", tmp_->path() + "/vm"});
  ASSERT_EQ(a.exitCode, 0) << a.describe();
  CommandRun log = hyperctl("a", {"logs", "build/web-rootfs"});
  EXPECT_TRUE(contains(log.out, "ext4 image, filesystem UUID ")) << log.out;

  std::string console;
  for (int i = 0; i < 100 && !contains(console, "hyper-disk"); ++i) {
    console = hyperctl("a", {"logs", "vm/writer"}).out;
    if (!contains(console, "hyper-disk")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  EXPECT_TRUE(contains(console, "hyper-disk /dev/vda on /mnt (rw): 12.")) << console;
  // The guest wrote to its copy (a journal replay at least, and the probe file): the store's
  // image still verifies.
  CommandRun verify = hyperctl("a", {"verify", "build/web-rootfs"});
  EXPECT_EQ(verify.exitCode, 0) << verify.describe();

  CommandRun b =
      hyperctl("b", {"apply", "-f", tmp_->path() + "/rootfs"}, "077", "Pacific/Kiritimati");
  ASSERT_EQ(b.exitCode, 0) << b.describe();
  const std::string listing = storeListing("b");
  EXPECT_EQ(std::count(listing.begin(), listing.end(), '\n'), 1) << listing;
  EXPECT_TRUE(contains(storeListing("a"), listing)) << "the same ext4 digest in both stores";
}

TEST_F(RootfsBuildTest, UnknownPackagesAndSuitesAreNamedWithTheirField) {
  ASSERT_TRUE(
      tmp_->write("src/rootfs.yaml", rootfsBuild(mirror_, "[busybox, hyper-no-such-package]"))
          .isOk());
  CommandRun unknown = hyperctl("s", {"diff", "-f", tmp_->path() + "/src"});
  EXPECT_EQ(unknown.exitCode, 1) << unknown.describe();
  EXPECT_TRUE(contains(unknown.err, "rootfs.yaml:")) << unknown.err;
  EXPECT_TRUE(contains(unknown.err, "spec.rootfs.packages[1]")) << unknown.err;
  EXPECT_TRUE(contains(unknown.err, "\"hyper-no-such-package\" is not in the host's apt lists"))
      << unknown.err;

  std::string other = rootfsBuild(mirror_, "[busybox]");
  other.replace(other.find("suite: bookworm"), 15, "suite: hyper-no-such-suite");
  ASSERT_TRUE(tmp_->write("src/rootfs.yaml", other).isOk());
  CommandRun suite = hyperctl("s", {"diff", "-f", tmp_->path() + "/src"});
  EXPECT_EQ(suite.exitCode, 1) << suite.describe();
  EXPECT_TRUE(contains(suite.err, "spec.rootfs.suite")) << suite.err;
  EXPECT_TRUE(contains(suite.err, "have no hyper-no-such-suite from")) << suite.err;
}

// Ctrl-C while mmdebstrap runs: hyperctl gives the build up, its process group is killed, and
// nothing is left: no mount of the build's tree on the host, no scratch directory.
TEST_F(RootfsBuildTest, AnInterruptedBuildLeavesNoMountAndNoScratch) {
  ASSERT_TRUE(tmp_->write("src/rootfs.yaml", rootfsBuild(mirror_, "[busybox]")).isOk());
  // timeout(1) sends SIGINT after 8 s, well inside mmdebstrap's ~20 s, as a terminal's Ctrl-C.
  CommandRun run = runHyperctl(tmp_->path() + "/s", {"apply", "-f", tmp_->path() + "/src"},
                               {"", "", {}, {"timeout", "-s", "INT", "8"}});
  EXPECT_EQ(run.exitCode, 124) << run.describe();  // timeout's: it had to send the signal
  EXPECT_TRUE(contains(run.err, "cancelled while building (its process group killed)"))
      << run.describe();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto mounts = readFile("/proc/self/mounts");
  ASSERT_TRUE(mounts.isOk());
  EXPECT_FALSE(contains(*mounts, tmp_->path())) << *mounts;
  std::error_code ec;
  size_t left = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(tmp_->path() + "/s/store/tmp", ec)) {
    ++left;
  }
  EXPECT_EQ(left, 0u) << "a scratch directory was left in the store";
}

}  // namespace
}  // namespace hyper::test
