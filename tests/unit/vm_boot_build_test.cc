// VMs booting from a Build's artifact ({build: NAME}) through one engine with the real Build
// provider and the VM provider over a fake driver: the Build is applied first and the VM boots
// its artifact from the store; a new artifact replaces the VM; a Build change that makes the
// same bytes keeps it; a missing artifact is a plan error at its field.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "providers/build/build_provider.h"
#include "providers/vmm/vm_provider.h"
#include "store/artifact_store.h"
#include "tests/fakes/engine_harness.h"
#include "tests/fakes/fake_vm_driver.h"

namespace hyper::providers::vmm {
namespace {

namespace fs = std::filesystem;

class VmBootBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-vmboot-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    kernel_ = root_ + "/vmlinuz";
    std::ofstream(kernel_) << "not really a kernel";
    std::ofstream(root_ + "/busybox") << "not really busybox";
    auto driver = std::make_unique<test::FakeVmDriver>(root_ + "/run");
    driver_ = driver.get();
    VmProviderConfig config;
    config.runRoot = root_ + "/run";
    config.storeRoot = root_ + "/state/store";
    std::vector<std::unique_ptr<Provider>> providers;
    providers.push_back(std::make_unique<VmProvider>(config, std::move(driver)));
    providers.push_back(std::make_unique<build::BuildProvider>(
        build::BuildProviderConfig{root_ + "/state", root_ + "/busybox"}));
    harness_ = std::make_unique<test::EngineHarness>(std::move(providers), root_ + "/state");
    ASSERT_EQ(harness_->error(), "");
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string manifests(const std::string& motd, const std::string& initrd = "{build: initrd}",
                        const std::string& buildExtra = "") const {
    return "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: initrd}\nspec:\n"
           "  type: initramfs\n  initramfs:\n" +
           buildExtra + "    files:\n      - {path: /etc/motd, content: \"" + motd +
           "\"}\n---\napiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: web}\nspec:\n"
           "  kernel: {path: " +
           kernel_ + "}\n  initrd: " + initrd + "\n";
  }

  std::string converge(const std::string& yaml) { return harness_->converge({{"m.yaml", yaml}}); }

  // The digest the Build's record names for its initrd.
  std::string buildDigest() {
    auto r = harness_->inventory().get({"Build", "initrd"});
    if (!r.isOk() || !*r) {
      return "";
    }
    return (**r).handles["artifacts"]["initrd"].value("digest", "");
  }

  std::string root_, kernel_;
  test::FakeVmDriver* driver_ = nullptr;
  std::unique_ptr<test::EngineHarness> harness_;
};

TEST_F(VmBootBuildTest, TheVmBootsTheArtifactItsBuildMadeInTheSameApply) {
  std::string out = converge(manifests("one"));
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_NE(out.find("build.initrd: \"(what Build/initrd makes now)\""), std::string::npos) << out;
  const std::string digest = buildDigest();
  ASSERT_TRUE(store::isDigest(digest));
  store::ArtifactStore store(root_ + "/state/store");
  EXPECT_EQ(driver_->lastSpec("web").initrd, store.pathOf(digest));
  EXPECT_EQ(driver_->lastSpec("web").kernel, kernel_);
  auto vm = harness_->inventory().get({"VM", "web"});
  ASSERT_TRUE(vm.isOk() && *vm);
  EXPECT_EQ((**vm).handles["boot"]["initrd"], digest) << "what gc keeps";
  EXPECT_EQ(converge(manifests("one")), "No changes. The host matches the desired state.\n")
      << "nothing more to do";
}

TEST_F(VmBootBuildTest, ANewArtifactReplacesTheVmAndTheSameBytesKeepIt) {
  ASSERT_EQ(converge(manifests("one")).rfind("error", 0), std::string::npos);
  const std::string first = buildDigest();
  ASSERT_EQ(driver_->calls().size(), 2u);  // start, wait

  std::string out = converge(manifests("two"));
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_NE(out.find("must be replaced"), std::string::npos) << out;
  EXPECT_NE(out.find("build.initrd: \"" + first), std::string::npos) << out;
  const std::string second = buildDigest();
  EXPECT_NE(second, first);
  store::ArtifactStore store(root_ + "/state/store");
  EXPECT_EQ(driver_->lastSpec("web").initrd, store.pathOf(second));
  EXPECT_EQ(driver_->calls().size(), 5u) << "stop, start, wait";

  // Busybox said explicitly: a new spec and key, the same bytes. Planned as a replace (the
  // Build had not run), kept by apply.
  out = converge(manifests("two", "{build: initrd}", "    busybox: true\n"));
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_NE(out.find("must be replaced"), std::string::npos) << out;
  EXPECT_EQ(buildDigest(), second);
  EXPECT_EQ(driver_->calls().size(), 5u) << "the VM was kept";
  EXPECT_EQ(converge(manifests("two", "{build: initrd}", "    busybox: true\n")),
            "No changes. The host matches the desired state.\n");
}

TEST_F(VmBootBuildTest, AnArtifactTheBuildDoesNotMakeIsAPlanErrorAtItsField) {
  ASSERT_EQ(converge(manifests("one")).rfind("error", 0), std::string::npos);
  std::string out = converge(manifests("one", "{build: initrd, artifact: vmlinuz}"));
  EXPECT_EQ(out.rfind("error", 0), 0u) << out;
  EXPECT_NE(out.find("spec.initrd.build"), std::string::npos) << out;
  EXPECT_NE(out.find("Build/initrd has no artifact \"vmlinuz\" (it has initrd)"), std::string::npos)
      << out;

  std::string both = converge(manifests("one", "{build: initrd, path: /x}"));
  EXPECT_NE(both.find("spec.initrd: give either path"), std::string::npos) << both;
  std::string missing = converge(manifests("one", "{build: nosuch}"));
  EXPECT_NE(missing.find("nosuch"), std::string::npos) << missing;
}

TEST_F(VmBootBuildTest, ADiskFromABuildIsBootedReadOnlyOrAsAWritableCopy) {
  // The initramfs Build stands in for a rootfs: the plumbing is the same for any artifact.
  std::string yaml = manifests("one") + "  disk: {build: initrd, artifact: initrd}\n";
  std::string out = converge(yaml);
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_NE(out.find("build.disk: \"(what Build/initrd makes now)\""), std::string::npos) << out;
  const std::string digest = buildDigest();
  store::ArtifactStore store(root_ + "/state/store");
  EXPECT_EQ(driver_->lastSpec("web").disk, store.pathOf(digest));
  EXPECT_TRUE(driver_->lastSpec("web").diskReadOnly);
  auto vm = harness_->inventory().get({"VM", "web"});
  ASSERT_TRUE(vm.isOk() && *vm);
  EXPECT_EQ((**vm).handles["boot"]["disk"], digest) << "what gc keeps";

  // Writable: a boot field of its own, so the VM is replaced and started on a copy.
  out = converge(manifests("one") + "  disk: {build: initrd, artifact: initrd, readOnly: false}\n");
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_NE(out.find("must be replaced"), std::string::npos) << out;
  EXPECT_NE(out.find("(writable copy)"), std::string::npos) << out;
  EXPECT_FALSE(driver_->lastSpec("web").diskReadOnly);

  std::string missing = converge(manifests("one") + "  disk: {path: /nonexistent/disk.img}\n");
  EXPECT_EQ(missing.rfind("error", 0), 0u) << missing;
  EXPECT_NE(missing.find("spec.disk.path"), std::string::npos) << missing;
}

}  // namespace
}  // namespace hyper::providers::vmm
