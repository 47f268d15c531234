// Real QEMU microVMs (TCG unless the host has KVM) in a network namespace the test creates:
// boot, readiness through a virtio-serial channel, ping through a tap on a bridge, adoption by a
// second driver, graceful stop, and exit notification through a pidfd. Two boots in all; each
// takes a few seconds under TCG.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "host/command.h"
#include "providers/vmm/exit_watcher.h"
#include "providers/vmm/qemu_driver.h"
#include "providers/vmm/tap_device.h"
#include "tests/integration/guest_util.h"
#include "tests/integration/netns_util.h"

namespace hyper::providers::vmm {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Generous bounds against hanging forever on a loaded machine; no test asserts a duration.
constexpr milliseconds kBootTimeout = seconds(180);
constexpr milliseconds kPingTimeout = seconds(60);

const char* kBridge = "hb-vmm";

// The guest kernel and image (tests/integration/guest_util.h), shared by every test.
class VmmQemuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto& image = test::guestImage();
    skipReason_ = image.skipReason;
    kernel_ = image.kernel;
    initrd_ = image.initrd;
    tmp_ = fs::temp_directory_path() / ("hyper-vmm-it-" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    if (!tmp_.empty()) {
      fs::remove_all(tmp_, ec);
    }
  }

  void SetUp() override {
    if (!skipReason_.empty()) {
      GTEST_SKIP() << skipReason_;
    }
    auto ns = test::EnteredNetns::enter("vmm");
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
    for (const std::vector<std::string>& argv :
         {std::vector<std::string>{"ip", "link", "set", "lo", "up"},
          {"ip", "link", "add", kBridge, "type", "bridge"},
          {"ip", "addr", "add", "10.77.0.1/24", "dev", kBridge},
          {"ip", "link", "set", kBridge, "up"}}) {
      auto r = host::runChecked(argv);
      ASSERT_TRUE(r.isOk()) << r.status().message();
    }
    runRoot_ = (tmp_ / ("run-" + std::to_string(counter_++))).string();
  }

  // Stops whatever a test left running and removes its taps and run dirs, before the namespace
  // goes (a live QEMU would keep its tap, and the namespace, alive).
  void TearDown() override {
    if (ns_ && ns_->active()) {
      QemuDriver driver({runRoot_});
      auto vms = driver.list();
      if (vms.isOk()) {
        for (const auto& vm : *vms) {
          auto r = driver.stop(vm.name, StopOptions{milliseconds(2000), milliseconds(2000)});
          if (!r.isOk()) {
            std::fprintf(stderr, "cleanup: %s\n", r.status().message().c_str());
          }
        }
      }
      for (const auto& name : names_) {
        Status s = deleteTap(tapNameFor(name), name);
        if (!s.isOk()) {
          std::fprintf(stderr, "cleanup: %s\n", s.message().c_str());
        }
      }
    }
    std::error_code ec;
    fs::remove_all(runRoot_, ec);
    ns_.reset();
  }

  VmSpec specFor(const std::string& name, const std::string& ip) {
    names_.push_back(name);
    VmSpec spec;
    spec.name = name;
    spec.vcpus = 1;
    spec.memoryMiB = 256;
    spec.kernel = kernel_;
    spec.initrd = initrd_;
    spec.cmdline = "quiet hyper.ip=" + ip + "/24 hyper.gw=10.77.0.1 hyper.ping=1";
    spec.tap = tapNameFor(name);
    spec.mac = "52:54:00:77:00:10";
    return spec;
  }

  // QEMU processes on this host that were started with this run dir's pid file.
  static int qemuProcessesOf(const std::string& runDir) {
    int n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
      std::string pid = e.path().filename().string();
      if (pid.find_first_not_of("0123456789") == std::string::npos &&
          isQemuOfRunDir(std::stoi(pid), runDir + "/qemu.pid")) {
        ++n;
      }
    }
    return n;
  }

  static inline std::string skipReason_;
  static inline std::string kernel_;
  static inline std::string initrd_;
  static inline fs::path tmp_;
  static inline int counter_ = 0;
  std::unique_ptr<test::EnteredNetns> ns_;
  std::string runRoot_;
  std::vector<std::string> names_;
};

TEST_F(VmmQemuTest, BootsPingsIsAdoptedAndStopsGracefully) {
  // The longest DNS label: its tap name must still fit.
  std::string name = "web-" + std::string(55, 'a') + "-one";
  ASSERT_EQ(name.size(), 63u);
  VmSpec spec = specFor(name, "10.77.0.10");
  // Readiness on a virtio-serial channel: the guest writes its line there, not on the console.
  spec.channels = {"org.hyper.ready"};
  spec.cmdline += " hyper.channel=org.hyper.ready";
  ASSERT_TRUE(ns_->active());
  Status tap = createTap(spec.tap, kBridge, name);
  ASSERT_TRUE(tap.isOk()) << tap.message();
  ASSERT_TRUE(createTap(spec.tap, kBridge, name).isOk()) << "createTap is not idempotent";

  QemuDriver driver({runRoot_});
  auto started = std::chrono::steady_clock::now();
  auto vm = driver.start(spec);
  ASSERT_TRUE(vm.isOk()) << vm.status().message();
  Status ready = driver.waitForLine(*vm, "org.hyper.ready", "hyper-ready", kBootTimeout);
  ASSERT_TRUE(ready.isOk()) << ready.message();
  auto bootMs =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - started);
  std::printf("[ info     ] start to hyper-ready: %lld ms (accel %s)\n",
              static_cast<long long>(bootMs.count()), std::string(accelName(vm->accel)).c_str());

  // The guest reaches its gateway, the bridge's address, through the tap.
  Status ping = driver.waitForLine(*vm, "", "hyper-ping-ok", kPingTimeout);
  ASSERT_TRUE(ping.isOk()) << ping.message();
  // The line came through the channel: the console only says where it went.
  std::string console = lastLines(vm->consoleLog, 1000);
  EXPECT_NE(console.find("readiness sent on channel org.hyper.ready"), std::string::npos)
      << console;
  EXPECT_EQ(console.find("\nhyper-ready\n"), std::string::npos) << console;
  EXPECT_EQ(lastLines(channelLogPath(vm->runDir, "org.hyper.ready"), 10), "hyper-ready\n");
  Status otherChannel = driver.waitForLine(*vm, "org.other", "hyper-ready", milliseconds(500));
  ASSERT_FALSE(otherChannel.isOk());
  EXPECT_NE(otherChannel.message().find("not started with that channel"), std::string::npos)
      << otherChannel.message();

  auto st = driver.status(*vm);
  ASSERT_TRUE(st.isOk()) << st.status().message();
  EXPECT_EQ(st->state, VmRunState::Running) << st->detail;

  // A readiness line that never comes: the error carries the console's last lines.
  Status never = driver.waitForLine(*vm, "", "no-such-line", milliseconds(1500));
  ASSERT_FALSE(never.isOk());
  EXPECT_NE(never.message().find("timed out"), std::string::npos) << never.message();
  EXPECT_NE(never.message().find("hyper-ping-ok"), std::string::npos) << never.message();

  // A second driver (a restarted hyperd) adopts the running VM instead of starting another.
  QemuDriver restarted({runRoot_});
  auto found = restarted.find(name);
  ASSERT_TRUE(found.isOk()) << found.status().message();
  ASSERT_TRUE(found->has_value()) << "the running VM was not found from its run dir";
  EXPECT_EQ((*found)->pid, vm->pid);
  EXPECT_EQ((*found)->spec.memoryMiB, 256);
  EXPECT_EQ((*found)->spec.tap, spec.tap);
  auto again = restarted.start(spec);
  ASSERT_TRUE(again.isOk()) << again.status().message();
  EXPECT_EQ(again->pid, vm->pid) << "start() of a running VM started another";
  EXPECT_EQ(qemuProcessesOf(vm->runDir), 1);
  auto all = restarted.list();
  ASSERT_TRUE(all.isOk()) << all.status().message();
  ASSERT_EQ(all->size(), 1u);

  // Graceful: the guest sees the power button and powers off by itself.
  auto stopped = restarted.stop(name);
  ASSERT_TRUE(stopped.isOk()) << stopped.status().message();
  EXPECT_EQ(*stopped, StopOutcome::Powerdown);
  EXPECT_FALSE(fs::exists(vm->runDir)) << "run dir left behind";
  EXPECT_EQ(qemuProcessesOf(vm->runDir), 0);
  auto gone = driver.find(name);
  ASSERT_TRUE(gone.isOk());
  EXPECT_FALSE(gone->has_value());
  auto twice = driver.stop(name);
  ASSERT_TRUE(twice.isOk()) << twice.status().message();
  EXPECT_EQ(*twice, StopOutcome::AlreadyStopped);

  Status del = deleteTap(spec.tap, name);
  ASSERT_TRUE(del.isOk()) << del.message();
  EXPECT_FALSE(interfaceExists(spec.tap));
}

TEST_F(VmmQemuTest, KillIsSeenThroughThePidfdAndCleanedUp) {
  VmSpec spec = specFor("victim", "10.77.0.11");
  ASSERT_TRUE(ns_->active());
  Status tap = createTap(spec.tap, kBridge, spec.name);
  ASSERT_TRUE(tap.isOk()) << tap.message();
  QemuDriver driver({runRoot_});
  auto vm = driver.start(spec);
  ASSERT_TRUE(vm.isOk()) << vm.status().message();

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, pid_t>> exits;
  auto watcher = ExitWatcher::create([&](const std::string& key, pid_t pid) {
    std::lock_guard<std::mutex> lock(mu);
    exits.emplace_back(key, pid);
    cv.notify_all();
  });
  ASSERT_TRUE(watcher.isOk()) << watcher.status().message();
  Status watched = (*watcher)->watch(spec.name, vm->pid);
  ASSERT_TRUE(watched.isOk()) << watched.message();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(exits.empty()) << "an exit was reported for a running VM";
  }

  ASSERT_EQ(::kill(vm->pid, SIGKILL), 0);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, seconds(60), [&] { return !exits.empty(); }))
        << "the exit of QEMU pid " << vm->pid << " was not reported";
    EXPECT_EQ(exits[0], std::make_pair(spec.name, vm->pid));
  }

  auto found = driver.find(spec.name);
  ASSERT_TRUE(found.isOk());
  EXPECT_FALSE(found->has_value()) << "a killed VM is still reported as running";
  auto stopped = driver.stop(spec.name);
  ASSERT_TRUE(stopped.isOk()) << stopped.status().message();
  EXPECT_EQ(*stopped, StopOutcome::AlreadyStopped);
  EXPECT_FALSE(fs::exists(vm->runDir));
}

TEST_F(VmmQemuTest, MissingTapIsRefusedAndLeavesNothing) {
  VmSpec spec = specFor("no-tap", "10.77.0.12");
  QemuDriver driver({runRoot_});
  auto vm = driver.start(spec);
  ASSERT_FALSE(vm.isOk()) << "started without its tap";
  EXPECT_NE(vm.status().message().find("tap '" + spec.tap + "' does not exist"), std::string::npos)
      << vm.status().message();
  EXPECT_FALSE(fs::exists(driver.runDirFor(spec.name)));
}

TEST_F(VmmQemuTest, ForeignInterfaceIsNotTakenOverAsATap) {
  ASSERT_TRUE(ns_->active());
  auto r = host::runChecked({"ip", "tuntap", "add", "dev", "hv-foreign", "mode", "tap"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  Status s = createTap("hv-foreign", kBridge, "foreign");
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("is not hyper's"), std::string::npos) << s.message();
  Status d = deleteTap("hv-foreign", "foreign");
  EXPECT_FALSE(d.isOk()) << "deleted an interface hyper did not create";
  EXPECT_TRUE(interfaceExists("hv-foreign"));
}

}  // namespace
}  // namespace hyper::providers::vmm
