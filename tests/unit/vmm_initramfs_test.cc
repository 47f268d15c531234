#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "guest/cpio_archive.h"
#include "guest/initramfs.h"
#include "host/command.h"
#include "providers/build/build_spec.h"

namespace hyper::guest {
namespace {

namespace fs = std::filesystem;

struct CpioEntry {
  std::string name;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mtime = 0;
  std::string data;
};

// An independent newc reader, so the writer is checked against the format, not against itself.
std::vector<CpioEntry> parseNewc(const std::string& bytes) {
  std::vector<CpioEntry> out;
  size_t pos = 0;
  auto field = [&](size_t i) {
    return static_cast<uint32_t>(std::stoul(bytes.substr(pos + 6 + i * 8, 8), nullptr, 16));
  };
  auto align = [](size_t n) { return (n + 3) & ~size_t{3}; };
  while (pos + 110 <= bytes.size()) {
    EXPECT_EQ(bytes.substr(pos, 6), "070701") << "at " << pos;
    CpioEntry e;
    e.mode = field(1);
    e.uid = field(2);
    e.gid = field(3);
    e.mtime = field(5);
    uint32_t size = field(6);
    uint32_t nameSize = field(11);
    e.name = bytes.substr(pos + 110, nameSize - 1);
    size_t dataStart = align(pos + 110 + nameSize);
    e.data = bytes.substr(dataStart, size);
    pos = align(dataStart + size);
    if (e.name == "TRAILER!!!") {
      break;
    }
    out.push_back(std::move(e));
  }
  return out;
}

TEST(VmmCpioArchive, SortedImpliedParentsFixedMetadata) {
  CpioArchive a;
  a.addFile("lib/modules/virtio.ko", "B", 0600);
  a.addFile("/init", "#!/bin/sh\n", 0755);
  a.addSymlink("./bin/sh", "busybox");
  auto entries = parseNewc(a.serialize());
  std::vector<std::string> names;
  for (const auto& e : entries) {
    names.push_back(e.name);
    EXPECT_EQ(e.mtime, 0u) << e.name;
    EXPECT_EQ(e.uid, 0u) << e.name;
    EXPECT_EQ(e.gid, 0u) << e.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"bin", "bin/sh", "init", "lib", "lib/modules",
                                             "lib/modules/virtio.ko"}));
  EXPECT_EQ(entries[1].mode, 0120777u);
  EXPECT_EQ(entries[1].data, "busybox");
  EXPECT_EQ(entries[2].mode, 0100755u);
  EXPECT_EQ(entries[5].mode, 0100600u);
  EXPECT_EQ(entries[0].mode, 040755u);
}

TEST(VmmCpioArchive, SameEntriesInAnyOrderGiveTheSameBytes) {
  CpioArchive a;
  a.addFile("b", "2");
  a.addFile("a/x", "1");
  a.addDirectory("c");
  CpioArchive b;
  b.addDirectory("c");
  b.addFile("a/x", "1");
  b.addFile("b", "2");
  EXPECT_EQ(a.serialize(), b.serialize());
  b.addFile("b", "3");
  EXPECT_NE(a.serialize(), b.serialize());
}

TEST(VmmCpioArchive, CpioToolReadsIt) {
  CpioArchive a;
  a.addFile("etc/hello", "hello\n");
  a.addSymlink("etc/link", "hello");
  auto r = host::runChecked({"cpio", "-it", "--quiet"}, a.serialize());
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(*r, "etc\netc/hello\netc/link\n");
}

constexpr const char* kModulesDep =
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/virtio/virtio_ring.ko:\n"
    "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
    "kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
    "kernel/net/core/failover.ko:\n"
    "kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko "
    "kernel/drivers/virtio/virtio_ring.ko\n";

std::vector<std::string> namesOf(const std::vector<ModuleFile>& files) {
  std::vector<std::string> out;
  for (const auto& f : files) {
    out.push_back(f.name);
  }
  return out;
}

TEST(VmmInitramfsModules, DependenciesFirstEachOnce) {
  auto r = resolveModules(kModulesDep, {"virtio_net", "virtio_mmio"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(namesOf(*r), (std::vector<std::string>{"virtio_ring", "virtio", "failover",
                                                   "net_failover", "virtio_net", "virtio_mmio"}));
  EXPECT_EQ((*r)[4].relativePath, "kernel/drivers/net/virtio_net.ko");
}

TEST(VmmInitramfsModules, DashesAndUnderscoresAreOneName) {
  auto r = resolveModules(kModulesDep, {"virtio_rng"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->back().relativePath, "kernel/drivers/char/hw_random/virtio-rng.ko");
}

TEST(VmmInitramfsModules, MissingModuleIsNamed) {
  auto r = resolveModules(kModulesDep, {"virtio_net", "e1000"});
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("e1000"), std::string::npos) << r.status().message();
}

// hyper's guest image as the Build provider makes it (providers/build/build_spec.h: an initramfs
// with hyperInit and a kernel's modules), from a fake kernel module tree in a temporary directory.
class VmmInitramfsBuild : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("hyper-initramfs-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    std::ofstream(write("modules/modules.dep")) << kModulesDep;
    for (const char* m :
         {"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
          "kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/net/virtio_net.ko",
          "kernel/drivers/net/net_failover.ko", "kernel/net/core/failover.ko"}) {
      std::ofstream(write(std::string("modules/") + m)) << "ELF " << m;
    }
    spec_.type = "initramfs";
    spec_.hyperInit = true;
    spec_.kernel = "guest-kernel";
    spec_.modules = {"virtio_mmio", "virtio_net"};
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& rel) {
    fs::path p = dir_ / rel;
    fs::create_directories(p.parent_path());
    return p.string();
  }
  Result<std::string> build() {
    HYPER_ASSIGN_OR_RETURN(auto modules, resolveModules(kModulesDep, spec_.modules));
    return providers::build::buildInitramfsImage(spec_, busybox_, (dir_ / "modules").string(),
                                                 modules);
  }

  fs::path dir_;
  providers::build::BuildSpec spec_;
  std::string busybox_ = "fake busybox";
};

TEST_F(VmmInitramfsBuild, SameInputsGiveIdenticalBytes) {
  auto a = build();
  ASSERT_TRUE(a.isOk()) << a.status().message();
  auto b = build();
  ASSERT_TRUE(b.isOk()) << b.status().message();
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(a->substr(0, 2), std::string("\x1f\x8b", 2)) << "not gzip";
  // Touching the modules' timestamps changes nothing.
  fs::last_write_time(dir_ / "modules/kernel/drivers/net/virtio_net.ko",
                      fs::file_time_type::clock::now());
  auto c = build();
  ASSERT_TRUE(c.isOk());
  EXPECT_EQ(*a, *c);
  // A different input does change the output.
  busybox_ = "another busybox";
  auto d = build();
  ASSERT_TRUE(d.isOk());
  EXPECT_NE(*a, *d);
}

TEST_F(VmmInitramfsBuild, HoldsInitBusyboxAndModulesInLoadOrder) {
  auto image = build();
  ASSERT_TRUE(image.isOk()) << image.status().message();
  auto cpio = host::runChecked({"gzip", "-dc"}, *image);
  ASSERT_TRUE(cpio.isOk()) << cpio.status().message();
  std::map<std::string, CpioEntry> byName;
  for (auto& e : parseNewc(*cpio)) {
    byName[e.name] = e;
  }
  ASSERT_TRUE(byName.count("init"));
  EXPECT_EQ(byName["init"].mode, 0100755u);
  EXPECT_EQ(byName["init"].data, std::string(guestInitScript()));
  EXPECT_EQ(byName["bin/busybox"].data, "fake busybox");
  EXPECT_EQ(byName["lib/modules/virtio_net.ko"].data, "ELF kernel/drivers/net/virtio_net.ko");
  EXPECT_EQ(byName["etc/hyper/modules"].data,
            "virtio_ring\nvirtio\nvirtio_mmio\nfailover\nnet_failover\nvirtio_net\n");
  for (const char* d : {"dev", "proc", "sys"}) {
    EXPECT_TRUE(byName.count(d)) << d;
  }
}

TEST_F(VmmInitramfsBuild, AMissingModuleFileIsNamed) {
  fs::remove(dir_ / "modules/kernel/drivers/net/virtio_net.ko");
  auto r = build();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("kernel/drivers/net/virtio_net.ko"), std::string::npos)
      << r.status().message();
}

TEST(VmmInitramfsScript, ReadsHyperParametersAndReportsPings) {
  std::string_view s = guestInitScript();
  for (const char* needle : {"hyper.ip=", "hyper.gw=", "hyper.ready=", "hyper-ping-ok",
                             "hyper-ping-fail", "/etc/hyper/modules", "Power Button"}) {
    EXPECT_NE(s.find(needle), std::string_view::npos) << needle;
  }
}

}  // namespace
}  // namespace hyper::guest
