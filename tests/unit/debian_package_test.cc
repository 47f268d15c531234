// What a debian-kernel Build reads from apt (providers/build/debian_package.h) and what an
// initramfs Build checks in its spec (build_spec.h): pure parsing, no apt run here (the
// integration tests run the real one: tests/integration/kernel_build_test.cc).

#include "providers/build/debian_package.h"

#include <gtest/gtest.h>

#include "providers/build/build_spec.h"

namespace hyper::providers::build {
namespace {

TEST(ControlParagraphTest, ReadsTheFirstParagraphWithFoldedLines) {
  auto fields = parseControlParagraph(
      "Package: linux-image-amd64\n"
      "Version: 6.1.192-3\n"
      "Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\n"
      "Description-en: Linux for 64-bit PCs (meta-package)\n"
      " This package depends on the latest Linux kernel\n"
      " .\n"
      "SHA256: 14d219d01e1283261817d961dbb3895cb5b4288d0de10e0ba0632a0d993e15bf\n"
      "not a field line\n"
      "\n"
      "Package: second-paragraph\n");
  EXPECT_EQ(fields["Package"], "linux-image-amd64");
  EXPECT_EQ(fields["Version"], "6.1.192-3");
  EXPECT_EQ(fields["Depends"], "linux-image-6.1.0-57-amd64 (= 6.1.192-3)");
  EXPECT_EQ(fields["Description-en"],
            "Linux for 64-bit PCs (meta-package)\nThis package depends on the latest Linux "
            "kernel\n.");
  EXPECT_EQ(fields["SHA256"], "14d219d01e1283261817d961dbb3895cb5b4288d0de10e0ba0632a0d993e15bf");
  EXPECT_EQ(fields.size(), 5u) << "the second paragraph is not read";
  EXPECT_TRUE(parseControlParagraph("").empty());
  EXPECT_TRUE(parseControlParagraph("\n\n: no name\n").empty());
}

TEST(ControlParagraphTest, ManyFieldsAreBounded) {
  std::string text;
  for (int i = 0; i < 1000; ++i) {
    text += "F" + std::to_string(i) + ": v\n";
  }
  EXPECT_EQ(parseControlParagraph(text).size(), 200u);
}

TEST(ControlParagraphTest, AMetapackageNamesOneKernelImage) {
  EXPECT_EQ(kernelImageDependency("linux-image-6.1.0-57-amd64 (= 6.1.192-3)"),
            "linux-image-6.1.0-57-amd64");
  EXPECT_EQ(kernelImageDependency("initramfs-tools | linux-initramfs-tool, "
                                  "linux-image-6.1.0-57-cloud-amd64:amd64 (= 6.1.192-3), kmod"),
            "linux-image-6.1.0-57-cloud-amd64");
  EXPECT_EQ(kernelImageDependency("kmod, linux-base (>= 4.3~)"), "") << "a kernel image itself";
  EXPECT_EQ(kernelImageDependency("linux-image-amd64"), "") << "not a versioned image";
  EXPECT_EQ(kernelImageDependency("linux-image-6.1.0-1-amd64, linux-image-6.1.0-2-amd64"), "")
      << "two kernels: which one is not for us to guess";
  EXPECT_EQ(kernelImageDependency("linux-image-6.1.0-1-amd64 | linux-image-6.1.0-1-amd64"),
            "linux-image-6.1.0-1-amd64");
  EXPECT_EQ(kernelImageDependency(""), "");
}

TEST(KernelBuildSpecTest, ModulesNeedAKernelAndSectionsMatchTheType) {
  Diagnostics d;
  Json spec = Json::parse(R"({"type":"initramfs","initramfs":{"modules":["virtio_net"]},
                              "debianKernel":{"package":"linux-image-amd64"}})");
  parseBuildSpec({"Build", "b"}, spec, d);
  ASSERT_EQ(d.items().size(), 2u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.debianKernel");
  EXPECT_EQ(d.items()[0].summary,
            "is for type debian-kernel, and this Build's type is initramfs: expected "
            "spec.initramfs instead");
  EXPECT_EQ(d.items()[1].fieldPath, "spec.initramfs.modules");

  Diagnostics k;
  BuildSpec kernel = parseBuildSpec({"Build", "k"}, Json::parse(R"({"type":"debian-kernel"})"), k);
  EXPECT_FALSE(k.hasErrors()) << k.format();
  EXPECT_EQ(kernel.package, "linux-image-amd64") << "the default";
}

TEST(KernelBuildSpecTest, HyperInitTakesItsPathsAndDefaultsTheModules) {
  Diagnostics d;
  Json spec = Json::parse(R"({"type":"initramfs","initramfs":{"hyperInit":true,
      "kernel":{"build":"guest-kernel"},
      "files":[{"path":"/init","content":""},{"path":"/etc/motd","content":"hi"}]}})");
  BuildSpec parsed = parseBuildSpec({"Build", "b"}, spec, d);
  ASSERT_EQ(d.items().size(), 1u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.initramfs.files[0].path");
  EXPECT_NE(d.items()[0].summary.find("hyper's init"), std::string::npos);
  EXPECT_EQ(parsed.kernel, "guest-kernel");
  EXPECT_EQ(parsed.kernelArtifact, "modules");
  EXPECT_EQ(wantedModules(parsed), guest::defaultGuestModules());
  parsed.modules = {"virtio_blk"};
  EXPECT_EQ(wantedModules(parsed), std::vector<std::string>{"virtio_blk"});
  parsed.hyperInit = false;
  parsed.modules.clear();
  EXPECT_TRUE(wantedModules(parsed).empty()) << "no defaults without hyper's init";
}

}  // namespace
}  // namespace hyper::providers::build
