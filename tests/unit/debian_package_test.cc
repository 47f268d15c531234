// What a debian-kernel Build reads from apt (providers/build/debian_package.h) and what an
// initramfs Build checks in its spec (build_spec.h): pure parsing, no apt run here (the
// integration tests run the real one: tests/integration/kernel_build_test.cc).

#include "providers/build/debian_package.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "base/file.h"
#include "providers/build/build_spec.h"
#include "providers/build/rootfs_build.h"

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

class RootfsPiecesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hyper-rootfs-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(RootfsPiecesTest, TheSuitesListsAreFoundByMirrorAndSuite) {
  EXPECT_EQ(aptListPrefix("http://deb.debian.org/debian", "bookworm"),
            "deb.debian.org_debian_dists_bookworm_");
  EXPECT_EQ(aptListPrefix("https://mirror.example.org:8080/debian/", "trixie"),
            "mirror.example.org:8080_debian_dists_trixie_");
  const std::string prefix = dir_ + "/deb.debian.org_debian_dists_bookworm_";
  std::ofstream(prefix + "InRelease") << "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"
                                         "Origin: Debian\nDate: Sat, 15 Nov 2026 09:00:00 UTC\n";
  std::ofstream(prefix + "main_binary-amd64_Packages.lz4") << "x";
  auto index = findSuiteIndex(dir_, "http://deb.debian.org/debian", "bookworm");
  ASSERT_TRUE(index.isOk()) << index.status().message();
  EXPECT_EQ(index->date, "Sat, 15 Nov 2026 09:00:00 UTC");
  EXPECT_EQ(index->packages, std::vector<std::string>{prefix + "main_binary-amd64_Packages.lz4"});
  EXPECT_EQ(index->digest.rfind("sha256:", 0), 0u);

  auto none = findSuiteIndex(dir_, "http://deb.debian.org/debian", "sid");
  ASSERT_FALSE(none.isOk());
  EXPECT_NE(none.status().message().find("have no sid from http://deb.debian.org/debian"),
            std::string::npos)
      << none.status().message();
  std::filesystem::remove(prefix + "main_binary-amd64_Packages.lz4");
  auto noPackages = findSuiteIndex(dir_, "http://deb.debian.org/debian", "bookworm");
  ASSERT_FALSE(noPackages.isOk());
  EXPECT_NE(noPackages.status().message().find("no main/binary-amd64 Packages"), std::string::npos);
  EXPECT_EQ(uuidFromHex("584cfca71523e596c1dcc50e771095ff6218236f"),
            "584cfca7-1523-e596-c1dc-c50e771095ff");
}

TEST_F(RootfsPiecesTest, FilesAreWrittenIntoTheTreeNeverThroughASymlink) {
  const std::string root = dir_ + "/root";
  std::filesystem::create_directories(root + "/usr/bin");
  std::filesystem::create_directories(root + "/etc");
  std::filesystem::create_directory_symlink("usr/bin", root + "/bin");
  std::filesystem::create_directory_symlink("/", root + "/host");
  // A file that is a symlink is replaced, not followed.
  std::ofstream(dir_ + "/outside") << "untouched";
  std::filesystem::create_symlink(dir_ + "/outside", root + "/etc/motd");

  ASSERT_TRUE(writeTreeFiles(root, {{"/etc/motd", 0644, "hello\n"},
                                    {"/usr/bin/tool", 0755, "#!/bin/sh\n"},
                                    {"/opt/new/file", 0600, "x"}})
                  .isOk());
  EXPECT_EQ(*readFile(root + "/etc/motd"), "hello\n");
  EXPECT_EQ(*readFile(dir_ + "/outside"), "untouched");
  EXPECT_FALSE(std::filesystem::is_symlink(root + "/etc/motd"));
  struct stat st {};
  ASSERT_EQ(::stat((root + "/usr/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_EQ(*readFile(root + "/opt/new/file"), "x");

  Status through = writeTreeFiles(root, {{"/etc/ok", 0644, ""}, {"/bin/tool", 0755, ""}});
  ASSERT_FALSE(through.isOk());
  EXPECT_EQ(through.message(),
            "spec.rootfs.files[1].path: /bin is a symlink in the image: expected a path through "
            "real directories (like /usr/bin rather than /bin)");
  EXPECT_FALSE(writeTreeFiles(root, {{"/host/tmp/escaped", 0644, "x"}}).isOk());
  EXPECT_FALSE(std::filesystem::exists("/tmp/escaped"));
}

}  // namespace
}  // namespace hyper::providers::build
