// What a debian-kernel Build reads from apt (providers/build/debian_package.h) and what an
// initramfs Build checks in its spec (build_spec.h): pure parsing, no apt run here (the
// integration tests run the real one: tests/integration/kernel_build_test.cc).

#include "providers/build/debian_package.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fcntl.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/file.h"
#include "host/command.h"
#include "providers/build/build_spec.h"
#include "providers/build/rootfs_build.h"
#include "store/artifact_store.h"

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

// What a kernel Build's log (and a waiting hyperctl's terminal) says about the .deb: found in
// the cache with its digest checked, or what is downloaded from where. apt-get itself runs here
// only for a package that does not exist (no network needed: it fails from the local lists).
TEST_F(RootfsPiecesTest, FetchingADebSaysWhatItFindsOrDownloads) {
  const std::string bytes = "not really a .deb";
  const std::string sha = store::digestOf(bytes).substr(7);
  ASSERT_TRUE(writeFileAtomically(dir_ + "/" + sha + ".deb", bytes, 0644).isOk());
  Apt apt(AptConfig{dir_, std::chrono::seconds(30)});
  std::vector<std::string> said;
  auto say = [&](const std::string& line) { said.push_back(line); };
  DebianPackage cached;
  cached.name = "linux-image-test";
  cached.version = "1.0";
  cached.sha256 = sha;
  auto path = apt.fetch(cached, nullptr, say);
  ASSERT_TRUE(path.isOk()) << path.status().message();
  EXPECT_EQ(*path, dir_ + "/" + sha + ".deb");
  ASSERT_EQ(said.size(), 1u);
  EXPECT_EQ(said[0], "found " + *path + " (its SHA256 checked)");

  said.clear();
  DebianPackage missing;
  missing.name = "hyper-no-such-package";
  missing.version = "9.9";
  missing.sha256 = std::string(64, 'a');
  missing.size = 5u << 20;
  auto got = apt.fetch(missing, nullptr, say);
  EXPECT_FALSE(got.isOk());
  ASSERT_EQ(said.size(), 1u);
  EXPECT_EQ(said[0],
            "downloading hyper-no-such-package 9.9 (5 MiB) from the mirror in apt's "
            "sources (apt-get download) into " +
                dir_);
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

TEST(Ext4InodesTest, UsedInodesAreThoseNoFreeRangeNames) {
  const std::string dump =
      "Filesystem volume name:   <none>\n"
      "Inodes per group:         16\n"
      "Group 0: (Blocks 0-32767) csum 0x1234 [ITABLE_ZEROED]\n"
      "  Free inodes: 12-14, 16\n"
      "Group 1: (Blocks 32768-65535)\n"
      "  Free inodes: 17-32\n"
      "Group 2: (Blocks 65536-98303)\n"
      "  Free inodes: \n";
  auto used = usedInodes(dump);
  ASSERT_TRUE(used.isOk()) << used.status().message();
  std::vector<uint64_t> want = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15};
  for (uint64_t i = 33; i <= 48; ++i) {
    want.push_back(i);
  }
  EXPECT_EQ(*used, want);
  EXPECT_FALSE(usedInodes("Group 0:\n  Free inodes: 1-8\n").isOk()) << "no inodes per group";
}

// Two trees with the same contents, made in a different order, on different filesystems, at
// other times, with other timestamps: the same image bytes; and the image is a clean ext4 with
// the tree in it and every timestamp 0.
TEST_F(RootfsPiecesTest, AnExt4ImageIsTheSameFromAnyCopyOfTheTreeAtAnyTime) {
  namespace fs = std::filesystem;
  auto makeTree = [](const std::string& root, bool reversed) {
    std::vector<int> order;
    for (int i = 0; i < 300; ++i) {
      order.push_back(reversed ? 299 - i : i);
    }
    fs::create_directories(root + "/etc");
    fs::create_directories(root + "/var/empty");
    for (int i : order) {  // enough entries for a hashed (htree) directory
      std::ofstream(root + "/etc/f" + std::to_string(i)) << "file " << i << "\n";
    }
    std::ofstream(root + "/etc/motd") << "a hyper rootfs\n";
    fs::create_hard_link(root + "/etc/motd", root + "/etc/motd.link");
    fs::create_symlink("motd", root + "/etc/short");
    fs::create_symlink(std::string(100, 'x'), root + "/etc/long");
    ::chmod((root + "/etc/f7").c_str(), 0700);
  };
  const std::string a = dir_ + "/a";
  makeTree(a, false);
  // tmpfs lists a directory in another order than ext4 does, when the machine has one.
  std::string b = dir_ + "/b";
  char shm[] = "/dev/shm/hyper-ext4-test.XXXXXX";
  std::string shmDir;
  if (fs::is_directory("/dev/shm") && ::mkdtemp(shm) != nullptr) {
    shmDir = shm;
    b = shmDir + "/b";
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  makeTree(b, true);
  struct timespec times[2] = {{12345, 678}, {98765, 432}};
  ::utimensat(AT_FDCWD, (b + "/etc/motd").c_str(), times, AT_SYMLINK_NOFOLLOW);

  const std::string uuid = uuidFromHex("584cfca71523e596c1dcc50e771095ff6218236f");
  ASSERT_TRUE(makeExt4Image(a, dir_ + "/a.ext4", uuid, 0, {}).isOk());
  ASSERT_TRUE(makeExt4Image(b, dir_ + "/b.ext4", uuid, 0, {}).isOk());
  if (!shmDir.empty()) {
    fs::remove_all(shmDir);
  }
  auto da = store::digestOfFile(dir_ + "/a.ext4");
  auto db = store::digestOfFile(dir_ + "/b.ext4");
  ASSERT_TRUE(da.isOk() && db.isOk());
  EXPECT_EQ(*da, *db) << "the same tree gives the same image";

  auto check = host::runCommand({"e2fsck", "-fn", dir_ + "/a.ext4"});
  ASSERT_TRUE(check.isOk());
  EXPECT_EQ(check->exitCode, 0) << check->out << check->err;
  auto motd = host::runChecked({"debugfs", "-R", "cat /etc/motd.link", dir_ + "/a.ext4"});
  ASSERT_TRUE(motd.isOk()) << motd.status().message();
  EXPECT_EQ(*motd, "a hyper rootfs\n");
  auto stat = host::runChecked({"debugfs", "-R", "stat /etc/motd", dir_ + "/a.ext4"});
  ASSERT_TRUE(stat.isOk());
  for (const char* field :
       {" ctime: 0x00000000:00000000", " atime: 0x00000000:00000000", " mtime: 0x00000000:00000000",
        "crtime: 0x00000000:00000000", "Links: 2"}) {
    EXPECT_NE(stat->find(field), std::string::npos) << field << " in\n" << *stat;
  }
  auto uuidLine = host::runChecked({"dumpe2fs", "-h", dir_ + "/a.ext4"});
  ASSERT_TRUE(uuidLine.isOk());
  EXPECT_NE(uuidLine->find("Filesystem UUID:          " + uuid), std::string::npos);

  // Another UUID, other bytes; a size the tree does not fit in, an error at the field.
  ASSERT_TRUE(makeExt4Image(a, dir_ + "/c.ext4",
                            uuidFromHex("0000000000000000000000000000000000000001"), 0, {})
                  .isOk());
  EXPECT_NE(*store::digestOfFile(dir_ + "/c.ext4"), *da);
  std::ofstream(a + "/big", std::ios::binary) << std::string(40u << 20, 'b');
  Status small = makeExt4Image(a, dir_ + "/d.ext4", uuid, 48, {});
  ASSERT_FALSE(small.isOk());
  EXPECT_EQ(small.message().rfind("spec.rootfs.sizeMiB: the tree takes 41 MiB", 0), 0u)
      << small.message();
}

TEST(KernelBuildSpecTest, SizeMiBIsForExt4Only) {
  Diagnostics diags;
  BuildSpec spec = parseBuildSpec(
      {"Build", "web-rootfs"},
      Json{{"type", "rootfs"}, {"rootfs", {{"suite", "bookworm"}, {"sizeMiB", 256}}}}, diags);
  ASSERT_EQ(diags.items().size(), 1u);
  EXPECT_EQ(diags.items()[0].fieldPath, "spec.rootfs.sizeMiB");
  Diagnostics ok;
  spec = parseBuildSpec(
      {"Build", "web-rootfs"},
      Json{{"type", "rootfs"},
           {"rootfs", {{"suite", "bookworm"}, {"format", "ext4"}, {"sizeMiB", 256}}}},
      ok);
  EXPECT_FALSE(ok.hasErrors());
  EXPECT_EQ(spec.format, "ext4");
  EXPECT_EQ(spec.sizeMiB, 256u);
}

}  // namespace
}  // namespace hyper::providers::build
