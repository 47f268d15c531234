#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "providers/vmm/accel.h"

namespace hyper::providers::vmm {
namespace {

namespace fs = std::filesystem;

// A temporary directory with a fake cpuinfo and a fake KVM device (a regular file opens
// read-write as the real device would; a directory does not).
class FakeHost {
 public:
  FakeHost() {
    dir_ = fs::temp_directory_path() /
           ("hyper-accel-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::create_directories(dir_);
  }
  ~FakeHost() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string cpuinfo(const std::string& flags, const std::string& mhz = "2096.013") {
    std::string path = (dir_ / "cpuinfo").string();
    std::ofstream(path) << "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu MHz\t\t: " << mhz
                        << "\nflags\t\t: " << flags << "\n\nprocessor\t: 1\nflags\t\t: " << flags
                        << "\n";
    return path;
  }
  std::string openableDevice() {
    std::string path = (dir_ / "kvm").string();
    std::ofstream(path) << "";
    return path;
  }
  std::string unopenableDevice() {
    std::string path = (dir_ / "kvm-dir").string();
    fs::create_directories(path);
    return path;
  }
  std::string missing() const { return (dir_ / "missing").string(); }

 private:
  static inline int counter_ = 0;
  fs::path dir_;
};

enum class Device { Openable, Unopenable, Missing };

struct AccelCase {
  std::string name;
  AccelMode mode;
  std::string flags;
  Device device;
  bool wantError;
  Accel want;
  std::string warningHas;  // substring of the warning; empty: no warning expected
};

class VmmAccelTest : public ::testing::TestWithParam<AccelCase> {};

TEST_P(VmmAccelTest, Chooses) {
  const auto& c = GetParam();
  FakeHost host;
  AccelProbe probe;
  probe.cpuinfoPath = host.cpuinfo(c.flags);
  probe.kvmDevice = c.device == Device::Openable     ? host.openableDevice()
                    : c.device == Device::Unopenable ? host.unopenableDevice()
                                                     : host.missing();
  auto r = chooseAccel(c.mode, probe);
  if (c.wantError) {
    ASSERT_FALSE(r.isOk()) << "chose " << accelName(r->accel);
    EXPECT_NE(r.status().message().find("kvm unavailable"), std::string::npos)
        << r.status().message();
    return;
  }
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(accelName(r->accel), accelName(c.want));
  if (c.warningHas.empty()) {
    EXPECT_EQ(r->warning, "");
  } else {
    EXPECT_NE(r->warning.find(c.warningHas), std::string::npos) << r->warning;
  }
}

const std::string kPlain = "fpu vme de pse tsc msr pae hypervisor lm";
const std::string kVmx = "fpu vme vmx de pse tsc";
const std::string kSvm = "fpu svm lm";

INSTANTIATE_TEST_SUITE_P(
    Cases, VmmAccelTest,
    ::testing::Values(AccelCase{"AutoVmxAndDevice", AccelMode::Auto, kVmx, Device::Openable, false,
                                Accel::Kvm, ""},
                      AccelCase{"AutoSvmAndDevice", AccelMode::Auto, kSvm, Device::Openable, false,
                                Accel::Kvm, ""},
                      // The case of the CI host: /dev/kvm present, no vmx/svm.
                      AccelCase{"AutoDeviceWithoutVmxOrSvm", AccelMode::Auto, kPlain,
                                Device::Openable, false, Accel::Tcg, "vmx or svm"},
                      AccelCase{"AutoFlagLookalikeIsNotVmx", AccelMode::Auto, "fpu vmxe svm_lock",
                                Device::Openable, false, Accel::Tcg, "vmx or svm"},
                      AccelCase{"AutoVmxNoDevice", AccelMode::Auto, kVmx, Device::Missing, false,
                                Accel::Tcg, "No such file"},
                      AccelCase{"AutoVmxDeviceNotReadWrite", AccelMode::Auto, kVmx,
                                Device::Unopenable, false, Accel::Tcg, "kvm-dir"},
                      AccelCase{"TcgAlwaysTcg", AccelMode::Tcg, kVmx, Device::Openable, false,
                                Accel::Tcg, ""},
                      AccelCase{"KvmWhenAvailable", AccelMode::Kvm, kVmx, Device::Openable, false,
                                Accel::Kvm, ""},
                      AccelCase{"KvmWithoutFlagsIsAnError", AccelMode::Kvm, kPlain,
                                Device::Openable, true, Accel::Tcg, ""},
                      AccelCase{"KvmWithoutDeviceIsAnError", AccelMode::Kvm, kVmx, Device::Missing,
                                true, Accel::Tcg, ""}),
    [](const ::testing::TestParamInfo<AccelCase>& info) { return info.param.name; });

TEST(VmmAccel, MissingCpuinfoFallsBackWithTheReason) {
  AccelProbe probe;
  probe.cpuinfoPath = "/nonexistent/cpuinfo";
  auto r = chooseAccel(AccelMode::Auto, probe);
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->accel, Accel::Tcg);
  EXPECT_NE(r->warning.find("/nonexistent/cpuinfo"), std::string::npos) << r->warning;
}

// Whatever this host is: without vmx/svm, auto must never pick KVM (even when /dev/kvm exists).
TEST(VmmAccel, ThisHostWithoutVmxOrSvmGetsTcg) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  bool virt = false;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) {
      virt = line.find(" vmx") != std::string::npos || line.find(" svm") != std::string::npos;
      break;
    }
  }
  if (virt) {
    GTEST_SKIP() << "this host advertises vmx/svm";
  }
  auto r = chooseAccel(AccelMode::Auto);
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->accel, Accel::Tcg);
  EXPECT_FALSE(r->warning.empty());
}

TEST(VmmAccel, ParsesModes) {
  EXPECT_EQ(*parseAccelMode("auto"), AccelMode::Auto);
  EXPECT_EQ(*parseAccelMode("kvm"), AccelMode::Kvm);
  EXPECT_EQ(*parseAccelMode("tcg"), AccelMode::Tcg);
  auto bad = parseAccelMode("KVM");
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("'KVM'"), std::string::npos);
}

TEST(VmmAccel, HostTscKhzFromCpuMhz) {
  FakeHost host;
  EXPECT_EQ(hostTscKhz(host.cpuinfo(kPlain, "2096.013")), 2096013);
  EXPECT_EQ(hostTscKhz(host.cpuinfo(kPlain, "garbage")), 0);
  EXPECT_EQ(hostTscKhz(host.missing()), 0);
}

}  // namespace
}  // namespace hyper::providers::vmm
