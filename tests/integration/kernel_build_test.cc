// The debian-kernel Build type and initramfs images made from its modules, through the real
// hyperctl, apt and Debian's kernel package (downloaded once into /var/cache/hyper/debs, checked
// against apt's SHA256). Needs no network namespace: a build touches only its state directory.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "host/command.h"
#include "tests/integration/hyperctl_util.h"

namespace hyper::test {
namespace {

using Json = nlohmann::json;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string kernelBuild(const std::string& package) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: guest-kernel}\nspec:\n"
         "  type: debian-kernel\n  debianKernel: {package: " +
         package + "}\n";
}

std::string initrdBuild(const std::string& modules) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: guest-initrd}\nspec:\n"
         "  type: initramfs\n  initramfs:\n    kernel: {build: guest-kernel}\n"
         "    hyperInit: true\n    modules: " +
         modules + "\n";
}

class KernelBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists("/bin/busybox")) {
      GTEST_SKIP() << "needs Debian's busybox-static (scripts/deps.sh installs it)";
    }
    auto tmp = TempDir::create("kernel-build");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    src_ = tmp_->path() + "/src";
    ASSERT_TRUE(tmp_->write("src/kernel.yaml", kernelBuild("linux-image-amd64")).isOk());
    ASSERT_TRUE(tmp_->write("src/initrd.yaml", initrdBuild("[virtio_net]")).isOk());
  }
  CommandRun hyperctl(const std::string& state, std::vector<std::string> args,
                      const std::string& umask = "", const std::string& tz = "") {
    return runHyperctl(tmp_->path() + "/" + state, args, {umask, tz, {}, {}});
  }
  // The artifacts of a Build, from `get builds -o json` (status.observed.artifacts).
  Json artifacts(const std::string& state, const std::string& name) {
    CommandRun get = hyperctl(state, {"get", "builds", "-o", "json"});
    EXPECT_EQ(get.exitCode, 0) << get.describe();
    Json all = Json::parse(get.out, nullptr, false);
    for (const auto& item : all.is_object() ? all.value("items", Json::array()) : all) {
      if (item["metadata"].value("name", "") == name) {
        return item["status"]["observed"]["artifacts"];
      }
    }
    ADD_FAILURE() << "no Build " << name << " in\n" << get.out;
    return Json();
  }
  std::set<std::string> storeDigests(const std::string& state) {
    std::set<std::string> out;
    for (auto& e :
         std::filesystem::directory_iterator(tmp_->path() + "/" + state + "/store/sha256")) {
      out.insert(e.path().filename().string());
    }
    return out;
  }
  std::unique_ptr<TempDir> tmp_;
  std::string src_;
};

// The kernel and an initramfs with its modules: built, listed, logged, verified, and the same
// bytes from another state directory under another umask and TZ.
TEST_F(KernelBuildTest, KernelAndModulesImageAreReproducibleAndHoldWhatWasAsked) {
  CommandRun a = hyperctl("a", {"apply", "-f", src_}, "022", "UTC");
  ASSERT_EQ(a.exitCode, 0) << a.describe();
  CommandRun get = hyperctl("a", {"get", "builds"});
  EXPECT_TRUE(contains(get.out, "debian-kernel")) << get.out;
  CommandRun log = hyperctl("a", {"logs", "build/guest-kernel"});
  EXPECT_TRUE(contains(log.out, "package linux-image-")) << log.out;
  EXPECT_TRUE(contains(log.out, "depmod ")) << log.out;
  CommandRun initrdLog = hyperctl("a", {"logs", "build/guest-initrd"});
  // virtio_net with its dependencies, in load order, from the kernel's modules.dep.
  EXPECT_TRUE(contains(initrdLog.out, ": virtio_ring virtio failover net_failover virtio_net\n"))
      << initrdLog.out;
  for (const char* what : {"build/guest-kernel", "build/guest-initrd"}) {
    CommandRun verify = hyperctl("a", {"verify", what});
    EXPECT_EQ(verify.exitCode, 0) << verify.describe();
  }

  Json kernel = artifacts("a", "guest-kernel");
  Json initrd = artifacts("a", "guest-initrd");
  ASSERT_TRUE(kernel.contains("vmlinuz") && kernel.contains("modules")) << kernel.dump();
  ASSERT_TRUE(initrd.contains("initrd")) << initrd.dump();

  // What the image holds: hyper's init, busybox, the modules and their load order.
  const std::string store = tmp_->path() + "/a/store/sha256/";
  const std::string image = store + initrd["initrd"]["digest"].get<std::string>().substr(7);
  auto listing = host::runChecked({"sh", "-c", "gzip -dc \"$1\" | cpio -it --quiet", "sh", image});
  ASSERT_TRUE(listing.isOk()) << listing.status().message();
  for (const char* path : {"init", "bin/busybox", "lib/modules/virtio_net.ko",
                           "lib/modules/net_failover.ko", "etc/hyper/modules"}) {
    EXPECT_TRUE(contains(*listing, std::string(path) + "\n")) << path << "\n" << *listing;
  }
  EXPECT_FALSE(contains(*listing, "lib/modules/virtio_console.ko")) << "only what was asked";
  auto order = host::runChecked(
      {"sh", "-c", "gzip -dc \"$1\" | cpio -i --quiet --to-stdout etc/hyper/modules", "sh", image});
  ASSERT_TRUE(order.isOk()) << order.status().message();
  EXPECT_EQ(*order, "virtio_ring\nvirtio\nfailover\nnet_failover\nvirtio_net\n");

  // Another state dir, umask and time zone: the same three artifacts, byte for byte.
  CommandRun b = hyperctl("b", {"apply", "-f", src_}, "077", "Pacific/Kiritimati");
  ASSERT_EQ(b.exitCode, 0) << b.describe();
  EXPECT_EQ(storeDigests("a").size(), 3u);
  EXPECT_EQ(storeDigests("a"), storeDigests("b"));

  // A second apply is a cache hit: nothing to do.
  CommandRun again = hyperctl("a", {"apply", "-f", src_});
  EXPECT_EQ(again.exitCode, 0) << again.describe();
  EXPECT_TRUE(contains(again.out, "No changes")) << again.out;

  // The kernel's spec changes (its versioned package named directly: the same bytes). The
  // initramfs waits for it, and then finds its key unchanged.
  std::string package = log.out.substr(log.out.find("package ") + 8);
  package = package.substr(0, package.find(' '));
  ASSERT_TRUE(tmp_->write("src/kernel.yaml", kernelBuild(package)).isOk());
  CommandRun waits = hyperctl("a", {"diff", "-f", src_});
  EXPECT_EQ(waits.exitCode, 2) << waits.describe();
  EXPECT_TRUE(contains(waits.out, "waits for Build/guest-kernel")) << waits.out;
  CommandRun moved = hyperctl("a", {"apply", "-f", src_});
  EXPECT_EQ(moved.exitCode, 0) << moved.describe();
  EXPECT_EQ(artifacts("a", "guest-kernel"), kernel);
  EXPECT_EQ(artifacts("a", "guest-initrd"), initrd);
  EXPECT_EQ(hyperctl("a", {"diff", "-f", src_}).exitCode, 0);

  // A module the kernel does not have: refused where it is written, before any build.
  ASSERT_TRUE(tmp_->write("src/initrd.yaml", initrdBuild("[virtio_net, no_such_module]")).isOk());
  CommandRun missing = hyperctl("a", {"diff", "-f", src_});
  EXPECT_EQ(missing.exitCode, 1) << missing.describe();
  EXPECT_TRUE(contains(missing.err, "initrd.yaml:")) << missing.err;
  EXPECT_TRUE(contains(missing.err, "spec.initramfs.modules[1]")) << missing.err;
  EXPECT_TRUE(contains(missing.err, "has no module \"no_such_module\"")) << missing.err;
}

TEST_F(KernelBuildTest, BadKernelInputIsNamedWithItsField) {
  ASSERT_TRUE(tmp_->write("src/kernel.yaml", kernelBuild("linux-image-hyper-no-such")).isOk());
  CommandRun unknown = hyperctl("s", {"diff", "-f", src_});
  EXPECT_EQ(unknown.exitCode, 1) << unknown.describe();
  EXPECT_TRUE(contains(unknown.err, "kernel.yaml:")) << unknown.err;
  EXPECT_TRUE(contains(unknown.err, "spec.debianKernel.package")) << unknown.err;
  EXPECT_TRUE(contains(unknown.err, "is not known to apt")) << unknown.err;

  // Modules without a kernel, and a section another type reads: validation errors.
  ASSERT_TRUE(tmp_->write("src/kernel.yaml",
                          "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: k}\n"
                          "spec:\n  type: debian-kernel\n  initramfs: {busybox: true}\n")
                  .isOk());
  ASSERT_TRUE(tmp_->write("src/initrd.yaml",
                          "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: i}\n"
                          "spec:\n  type: initramfs\n  initramfs: {modules: [virtio_net]}\n")
                  .isOk());
  CommandRun invalid = hyperctl("s", {"validate", "-f", src_});
  EXPECT_EQ(invalid.exitCode, 1) << invalid.describe();
  EXPECT_TRUE(contains(invalid.err, "spec.initramfs: is for type initramfs")) << invalid.err;
  EXPECT_TRUE(contains(invalid.err, "spec.initramfs.modules: modules come from a kernel"))
      << invalid.err;

  // An initramfs naming a Build that is not in the manifests.
  ASSERT_TRUE(tmp_->write("src/kernel.yaml", "").isOk());
  ASSERT_TRUE(tmp_->write("src/initrd.yaml", initrdBuild("[virtio_net]")).isOk());
  CommandRun dangling = hyperctl("s", {"validate", "-f", src_});
  EXPECT_EQ(dangling.exitCode, 1) << dangling.describe();
  EXPECT_TRUE(contains(dangling.err, "spec.initramfs.kernel.build")) << dangling.err;
  EXPECT_TRUE(contains(dangling.err, "guest-kernel")) << dangling.err;
}

}  // namespace
}  // namespace hyper::test
