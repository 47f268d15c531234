#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "providers/vmm/exit_watcher.h"
#include "providers/vmm/qemu_driver.h"

namespace hyper::providers::vmm {
namespace {

bool hasPair(const std::vector<std::string>& argv, const std::string& flag,
             const std::string& value) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag && argv[i + 1] == value) {
      return true;
    }
  }
  return false;
}

TEST(VmmQemuArgv, MicrovmDetachedWithRunDirFiles) {
  VmSpec spec;
  spec.name = "web-1";
  spec.vcpus = 2;
  spec.memoryMiB = 256;
  spec.kernel = "/k/vmlinuz";
  spec.initrd = "/k/initrd";
  spec.cmdline = "quiet hyper.ip=10.77.0.10/24";
  spec.tap = "hv-web-1";
  spec.mac = "52:54:00:00:00:01";
  auto argv =
      QemuDriver::buildArgv("qemu-system-x86_64", spec, Accel::Tcg, "/run/v/web-1", 2096013);
  EXPECT_TRUE(hasPair(argv, "-M", "microvm"));
  EXPECT_TRUE(hasPair(argv, "-accel", "tcg"));
  EXPECT_TRUE(hasPair(argv, "-smp", "2"));
  EXPECT_TRUE(hasPair(argv, "-m", "256"));
  EXPECT_TRUE(hasPair(argv, "-kernel", "/k/vmlinuz"));
  EXPECT_TRUE(hasPair(argv, "-initrd", "/k/initrd"));
  // append=on: hyper's copy-truncate rotation (guest_log.h) relies on it.
  EXPECT_TRUE(hasPair(argv, "-chardev", "file,id=console,path=/run/v/web-1/console.log,append=on"));
  EXPECT_TRUE(hasPair(argv, "-serial", "chardev:console"));
  EXPECT_TRUE(hasPair(argv, "-qmp", "unix:/run/v/web-1/qmp.sock,server=on,wait=off"));
  EXPECT_TRUE(hasPair(argv, "-pidfile", "/run/v/web-1/qemu.pid"));
  EXPECT_TRUE(hasPair(argv, "-netdev", "tap,id=net0,ifname=hv-web-1,script=no,downscript=no"));
  EXPECT_TRUE(hasPair(argv, "-device", "virtio-net-device,netdev=net0,mac=52:54:00:00:00:01"));
  for (const char* flag : {"-daemonize", "-nodefaults", "-no-user-config", "-no-reboot"}) {
    EXPECT_NE(std::find(argv.begin(), argv.end(), flag), argv.end()) << flag;
  }
  EXPECT_TRUE(hasPair(argv, "-append",
                      "quiet hyper.ip=10.77.0.10/24 console=ttyS0 panic=-1 tsc_early_khz=2096013"));
}

TEST(VmmQemuArgv, ChannelsAreVirtioSerialPortsLoggedInTheRunDir) {
  VmSpec spec;
  spec.name = "a";
  spec.kernel = "/k";
  spec.channels = {"org.hyper.ready", "logs"};
  auto argv = QemuDriver::buildArgv("qemu", spec, Accel::Tcg, "/r/a", 0);
  EXPECT_TRUE(hasPair(argv, "-device", "virtio-serial-device"));
  EXPECT_TRUE(hasPair(argv, "-chardev",
                      "file,id=channel0,path=/r/a/channel-org.hyper.ready.log,append=on"));
  EXPECT_TRUE(hasPair(argv, "-device", "virtserialport,chardev=channel0,name=org.hyper.ready"));
  EXPECT_TRUE(hasPair(argv, "-chardev", "file,id=channel1,path=/r/a/channel-logs.log,append=on"));
  EXPECT_TRUE(hasPair(argv, "-device", "virtserialport,chardev=channel1,name=logs"));
  EXPECT_EQ(channelLogPath("/r/a", "logs"), "/r/a/channel-logs.log");

  spec.channels.clear();
  auto plain = QemuDriver::buildArgv("qemu", spec, Accel::Tcg, "/r/a", 0);
  EXPECT_FALSE(hasPair(plain, "-device", "virtio-serial-device"));
}

TEST(VmmQemuArgv, ChannelNames) {
  EXPECT_EQ(checkChannelName("org.hyper.ready"), "");
  EXPECT_EQ(checkChannelName("a_b-1"), "");
  EXPECT_NE(checkChannelName(""), "");
  EXPECT_NE(checkChannelName(std::string(64, 'a')), "");
  EXPECT_NE(checkChannelName(".hidden"), "");
  EXPECT_NE(checkChannelName("a,b"), "") << "a comma would end QEMU's option";
  EXPECT_NE(checkChannelName("a/b"), "") << "a slash would leave the run dir";
  EXPECT_NE(checkChannelName("Upper"), "");
}

TEST(VmmQemuArgv, ADiskIsVirtioBlkReadOnlyOrTheRunDirsCopy) {
  VmSpec spec;
  spec.name = "a";
  spec.kernel = "/k";
  spec.disk = "/store/sha256/ab,cd";
  auto ro = QemuDriver::buildArgv("qemu", spec, Accel::Tcg, "/r/a", 0);
  EXPECT_TRUE(
      hasPair(ro, "-drive", "file=/store/sha256/ab,,cd,format=raw,if=none,id=disk0,readonly=on"))
      << "the artifact itself, read-only, its comma doubled";
  EXPECT_TRUE(hasPair(ro, "-device", "virtio-blk-device,drive=disk0"));
  spec.diskReadOnly = false;
  auto rw = QemuDriver::buildArgv("qemu", spec, Accel::Tcg, "/r/a", 0);
  EXPECT_TRUE(hasPair(rw, "-drive", "file=/r/a/disk.img,format=raw,if=none,id=disk0"))
      << "writable: the VM's own copy in its run dir";
  spec.disk.clear();
  auto none = QemuDriver::buildArgv("qemu", spec, Accel::Tcg, "/r/a", 0);
  EXPECT_EQ(std::find(none.begin(), none.end(), "-drive"), none.end());
}

TEST(VmmQemuArgv, KvmUsesTheHostCpuAndNoNetworkWithoutTap) {
  VmSpec spec;
  spec.name = "a";
  spec.kernel = "/k";
  auto argv = QemuDriver::buildArgv("qemu", spec, Accel::Kvm, "/r/a", 2096013);
  EXPECT_TRUE(hasPair(argv, "-accel", "kvm"));
  EXPECT_TRUE(hasPair(argv, "-cpu", "host"));
  EXPECT_EQ(std::find(argv.begin(), argv.end(), "-netdev"), argv.end());
  EXPECT_EQ(std::find(argv.begin(), argv.end(), "-initrd"), argv.end());
}

struct CmdlineCase {
  std::string name;
  std::string in;
  Accel accel;
  std::string want;
};

class VmmQemuCmdlineTest : public ::testing::TestWithParam<CmdlineCase> {};

TEST_P(VmmQemuCmdlineTest, AppendsOnlyWhatIsMissing) {
  const auto& c = GetParam();
  EXPECT_EQ(QemuDriver::effectiveCmdline(c.in, c.accel, 1000), c.want);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, VmmQemuCmdlineTest,
    ::testing::Values(
        CmdlineCase{"Empty", "", Accel::Tcg, "console=ttyS0 panic=-1 tsc_early_khz=1000"},
        CmdlineCase{"KvmNeedsNoTscHint", "quiet", Accel::Kvm, "quiet console=ttyS0 panic=-1"},
        CmdlineCase{"UserValuesWin", "console=hvc0 panic=5 tsc_early_khz=7", Accel::Tcg,
                    "console=hvc0 panic=5 tsc_early_khz=7"},
        CmdlineCase{"LookalikeIsNotTheParam", "myconsole=x", Accel::Kvm,
                    "myconsole=x console=ttyS0 panic=-1"}),
    [](const ::testing::TestParamInfo<CmdlineCase>& info) { return info.param.name; });

TEST(VmmQemuDriver, OurOwnProcessIsNotAQemuOfARunDir) {
  EXPECT_FALSE(isQemuOfRunDir(::getpid(), "/run/hyper/vm/x/qemu.pid"));
  EXPECT_FALSE(isQemuOfRunDir(999999999, "/run/hyper/vm/x/qemu.pid"));
}

TEST(VmmQemuDriver, BadSpecsAreRefusedBeforeAnythingStarts) {
  std::string root = "/tmp/hyper-vmm-unit-" + std::to_string(::getpid());
  QemuDriver driver({root, "/nonexistent/qemu", {}});
  VmSpec ok;
  ok.name = "vm";
  ok.kernel = "/proc/self/exe";  // any regular file
  struct Bad {
    std::string why;
    VmSpec spec;
  };
  std::vector<Bad> cases;
  cases.push_back({"name", ok});
  cases.back().spec.name = "Not_A_Label";
  cases.push_back({"vcpus", ok});
  cases.back().spec.vcpus = 0;
  cases.push_back({"memoryMiB", ok});
  cases.back().spec.memoryMiB = 16;
  cases.push_back({"kernel", ok});
  cases.back().spec.kernel = "/nonexistent/vmlinuz";
  cases.push_back({"initrd", ok});
  cases.back().spec.initrd = "/nonexistent/initrd";
  cases.push_back({"channel 'x,y' may hold only", ok});
  cases.back().spec.channels = {"x,y"};
  cases.push_back({"channel 'c' is named twice", ok});
  cases.back().spec.channels = {"c", "c"};
  for (const auto& c : cases) {
    auto r = driver.start(c.spec);
    ASSERT_FALSE(r.isOk()) << c.why;
    EXPECT_NE(r.status().message().find(c.why), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(std::filesystem::exists(root)) << "a refused start left " << root;
}

TEST(VmmExitWatcher, ReportsAnExitedProcessOnce) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, pid_t>> seen;
  auto watcher = ExitWatcher::create([&](const std::string& key, pid_t pid) {
    std::lock_guard<std::mutex> lock(mu);
    seen.emplace_back(key, pid);
    cv.notify_all();
  });
  ASSERT_TRUE(watcher.isOk()) << watcher.status().message();
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  pid_t other = ::fork();
  ASSERT_GE(other, 0);
  if (other == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE((*watcher)->watch("vm-a", child).isOk());
  ASSERT_TRUE((*watcher)->watch("vm-b", other).isOk());
  (*watcher)->unwatch("vm-b");
  ::kill(other, SIGKILL);
  ::kill(child, SIGKILL);
  {
    std::unique_lock<std::mutex> lock(mu);
    // A bound against hanging forever, not a timing assertion.
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return !seen.empty(); }));
  }
  ::waitpid(child, nullptr, 0);
  ::waitpid(other, nullptr, 0);
  watcher->reset();  // joins the thread: nothing more can arrive
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].first, "vm-a");
  EXPECT_EQ(seen[0].second, child);
}

TEST(VmmExitWatcher, UnknownPidIsAnError) {
  auto watcher = ExitWatcher::create([](const std::string&, pid_t) {});
  ASSERT_TRUE(watcher.isOk());
  Status s = (*watcher)->watch("x", 999999999);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("999999999"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace hyper::providers::vmm
