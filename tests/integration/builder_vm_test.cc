// A builder VM, the mechanism script builds stand on (issue 15): hyper's guest image (its init in
// builder mode, hyper-build-agent inside) boots under real QEMU with a read-only source disk and
// a writable output disk found by their serials, the host sends a job over the builder channel,
// the steps run as the build's user in a copy of the source with cgroup2 mounted and a fixed
// hostname, their output comes back live, a failing step ends the job with its code, and what
// the steps wrote is read from the output image after the VM powered itself off.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "host/command.h"
#include "providers/build/builder_session.h"
#include "providers/build/rootfs_build.h"
#include "providers/vmm/qemu_driver.h"
#include "tests/integration/guest_util.h"
#include "tests/integration/hyperctl_util.h"

namespace hyper {
namespace {

namespace fs = std::filesystem;
using providers::vmm::VmSpec;

int connectUnix(const std::string& path) {
  for (int i = 0; i < 100; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return fd;
    }
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return -1;
}

TEST(BuilderVmTest, AJobRunsInABuilderVmAndItsOutputIsOnTheOutputDisk) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root";
  }
  const auto& image = test::guestImage();
  if (!image.skipReason.empty()) {
    GTEST_SKIP() << image.skipReason;
  }
  auto tmp = test::TempDir::create("builder");
  ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
  const std::string dir = (*tmp)->path();
  ASSERT_TRUE((*tmp)->write("src/hello.txt", "hello from the source\n").isOk());
  fs::create_directories(dir + "/empty");
  host::CommandOptions options;
  Status src = providers::build::makeExt4Image(dir + "/src", dir + "/src.img",
                                               "0b5e1f4e-7c1d-4a57-9d3e-2f1a6c0b9e11", 0, options);
  ASSERT_TRUE(src.isOk()) << src.message();
  Status outImage = providers::build::makeExt4Image(
      dir + "/empty", dir + "/out.img", "7a0c2d9e-3b4f-4e61-8a2d-5c9e1f0b3a77", 32, options);
  ASSERT_TRUE(outImage.isOk()) << outImage.message();

  providers::vmm::QemuDriver driver({dir + "/run"});
  VmSpec spec;
  spec.name = "builder";
  spec.memoryMiB = 256;
  spec.kernel = image.kernel;
  spec.initrd = image.initrd;
  spec.cmdline = "quiet hyper.builder=hyper.build";
  spec.socketChannels = {"hyper.build"};
  spec.extraDisks = {{dir + "/src.img", true, "hyper-src"}, {dir + "/out.img", false, "hyper-out"}};
  auto vm = driver.start(spec);
  ASSERT_TRUE(vm.isOk()) << vm.status().message();
  int fd = connectUnix(providers::vmm::channelSocketPath(vm->runDir, "hyper.build"));
  ASSERT_GE(fd, 0);

  guest::BuildJob job;
  job.steps = {{"sh", "-c",
                "cat hello.txt > /out/result.txt && id -u >> /out/result.txt && "
                "pwd >> /out/result.txt && hostname >> /out/result.txt && "
                "test -e /sys/fs/cgroup/cgroup.controllers && echo cgroup2 >> /out/result.txt && "
                "echo step-output"},
               {"sh", "-c", "echo to-stderr >&2; exit 7"}};
  job.env = {{"PATH", "/bin"}};
  job.workdir = "/build";
  job.uid = 1000;
  job.gid = 1000;
  std::string out, err;
  std::vector<std::string> steps;
  providers::build::BuilderSessionOptions o;
  o.timeout = std::chrono::seconds(120);
  o.onOutput = [&](int, bool isErr, std::string_view bytes) {
    (isErr ? err : out) += std::string(bytes);
  };
  o.onStep = [&](const std::string& line) { steps.push_back(line); };
  auto result = providers::build::runBuilderJob(fd, job, o);
  ASSERT_TRUE(result.isOk()) << result.status().message() << "\n"
                             << providers::vmm::lastLines(vm->consoleLog, 30);
  EXPECT_FALSE(result->ok);
  EXPECT_EQ(result->failedStep, 1);
  EXPECT_EQ(result->exitCode, 7);
  EXPECT_EQ(out, "step-output\n");
  EXPECT_EQ(err, "to-stderr\n");
  EXPECT_EQ(steps, (std::vector<std::string>{"step 0 start", "step 0 exit 0", "step 1 start",
                                             "step 1 exit 7"}));

  // The VM syncs the output disk and powers itself off.
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    auto found = driver.find("builder");
    gone = found.isOk() && !found->has_value();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(gone) << providers::vmm::lastLines(vm->consoleLog, 20);
  auto stopped = driver.stop("builder");
  EXPECT_TRUE(stopped.isOk());
  auto written = host::runChecked({"debugfs", "-R", "cat /result.txt", dir + "/out.img"});
  ASSERT_TRUE(written.isOk()) << written.status().message();
  EXPECT_EQ(*written, "hello from the source\n1000\n/build\nbuilder\ncgroup2\n");
}

}  // namespace
}  // namespace hyper
