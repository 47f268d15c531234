// The readiness line is a whole line: exactly the configured text, with or without the "\r" a
// serial console adds. A line that contains it, starts with it, ends with it or is one character
// short of it does not count. Both places that read it are held to the same table: the driver's
// wait after a start (QemuDriver::waitForLine) and the provider's observe (a VM found running is
// "ready" when its log has the line).

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "providers/vmm/qemu_driver.h"
#include "providers/vmm/vm_provider.h"
#include "tests/fakes/fake_vm_driver.h"

namespace hyper::providers::vmm {
namespace {

namespace fs = std::filesystem;

struct ReadyLineCase {
  std::string name;
  std::string log;  // what the guest wrote
  bool ready;
};

// Failures name the case, not its bytes.
void PrintTo(const ReadyLineCase& c, std::ostream* os) { *os << c.name; }

// The configured line is "hyper-ready" in every case.
const auto kReadyLineCases =
    ::testing::Values(ReadyLineCase{"Exact", "booting\nhyper-ready\n", true},
                      ReadyLineCase{"ExactWithCarriageReturn", "booting\r\nhyper-ready\r\n", true},
                      ReadyLineCase{"ExactAmongOthers", "a\nhyper-ready\nb\n", true},
                      ReadyLineCase{"ExactOnTheFirstLine", "hyper-ready\n", true},
                      ReadyLineCase{"Suffixed", "booting\nhyper-ready-not\n", false},
                      ReadyLineCase{"Prefixed", "booting\nxhyper-ready\n", false},
                      ReadyLineCase{"InsideALine", "echo hyper-ready > /dev/null\n", false},
                      ReadyLineCase{"OneCharacterShort", "booting\nhyper-read\n", false},
                      ReadyLineCase{"OtherCase", "booting\nHYPER-READY\n", false},
                      ReadyLineCase{"SplitOverTwoLines", "hyper-\nready\n", false},
                      ReadyLineCase{"CarriageReturnInside", "hyper-re\rady\n", false},
                      ReadyLineCase{"NothingYet", "booting\n", false});

std::string caseName(const ::testing::TestParamInfo<ReadyLineCase>& info) {
  return info.param.name;
}

class ReadyLineTest : public ::testing::TestWithParam<ReadyLineCase> {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-readyline-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    if (child_ > 0) {
      ::waitpid(child_, nullptr, 0);
    }
    fs::remove_all(root_);
  }

  std::string root_;
  pid_t child_ = -1;
};

// waitForLine against a VM whose process has already exited (a zombie child of the test): it
// reads the whole log, then sees the exit and reads once more, so the answer never depends on a
// timeout.
using WaitForLineTest = ReadyLineTest;

TEST_P(WaitForLineTest, MatchesTheWholeLineOnly) {
  const ReadyLineCase& c = GetParam();
  child_ = ::fork();
  ASSERT_GE(child_, 0);
  if (child_ == 0) {
    ::_exit(0);
  }
  VmHandle vm;
  vm.name = "web";
  vm.pid = child_;
  vm.runDir = root_;
  vm.consoleLog = root_ + "/console.log";
  std::ofstream(vm.consoleLog, std::ios::binary) << c.log;
  QemuDriverOptions options;
  options.runRoot = root_;
  QemuDriver driver(options);
  Status s = driver.waitForLine(vm, "", "hyper-ready", std::chrono::seconds(60));
  if (c.ready) {
    EXPECT_TRUE(s.isOk()) << s.message();
  } else {
    ASSERT_FALSE(s.isOk()) << "took " << testing::PrintToString(c.log) << " as ready";
    EXPECT_NE(s.message().find("QEMU exited first"), std::string::npos) << s.message();
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, WaitForLineTest, kReadyLineCases, caseName);

TEST_F(ReadyLineTest, WaitForLineReadsTheChannelNotTheConsole) {
  child_ = ::fork();
  ASSERT_GE(child_, 0);
  if (child_ == 0) {
    ::_exit(0);
  }
  VmHandle vm;
  vm.name = "web";
  vm.pid = child_;
  vm.runDir = root_;
  vm.consoleLog = root_ + "/console.log";
  std::ofstream(vm.consoleLog) << "hyper-ready\n";
  std::ofstream(channelLogPath(root_, "org.hyper.ready")) << "hyper-ready-not\n";
  QemuDriverOptions options;
  options.runRoot = root_;
  QemuDriver driver(options);
  EXPECT_FALSE(
      driver.waitForLine(vm, "org.hyper.ready", "hyper-ready", std::chrono::seconds(60)).isOk());
  std::ofstream(channelLogPath(root_, "org.hyper.ready"), std::ios::app) << "hyper-ready\n";
  Status s = driver.waitForLine(vm, "org.hyper.ready", "hyper-ready", std::chrono::seconds(60));
  EXPECT_TRUE(s.isOk()) << s.message();
}

// A wait that would last 60 s for a VM that runs and stays silent (a `sleep 30` child stands in
// for QEMU) returns soon after the cancel flag is set from another thread, saying why; nothing
// signals the flag, so this holds only because the wait looks at it between polls.
TEST_F(ReadyLineTest, WaitForLineReturnsSoonAfterCancel) {
  child_ = ::fork();
  ASSERT_GE(child_, 0);
  if (child_ == 0) {
    ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  VmHandle vm;
  vm.name = "web";
  vm.pid = child_;
  vm.runDir = root_;
  vm.consoleLog = root_ + "/console.log";
  std::ofstream(vm.consoleLog) << "booting\n";
  QemuDriverOptions options;
  options.runRoot = root_;
  QemuDriver driver(options);
  std::atomic<bool> stopping{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stopping = true;
  });
  auto began = std::chrono::steady_clock::now();
  Status s = driver.waitForLine(vm, "", "hyper-ready", std::chrono::seconds(60), &stopping);
  auto took = std::chrono::steady_clock::now() - began;
  stopper.join();
  EXPECT_EQ(::waitpid(child_, nullptr, WNOHANG), 0) << "stopping the VM is not the wait's job";
  ::kill(child_, SIGKILL);
  EXPECT_LT(took, std::chrono::seconds(10)) << "the wait ran on after the cancel flag was set";
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("stopped waiting for VM web to be ready: hyperd is stopping"),
            std::string::npos)
      << s.message();
}

// Observe: a VM that runs (a fake driver's) with that console is ready, or not.
using ObserveReadyLineTest = ReadyLineTest;

TEST_P(ObserveReadyLineTest, MatchesTheWholeLineOnly) {
  const ReadyLineCase& c = GetParam();
  auto owned = std::make_unique<test::FakeVmDriver>(root_ + "/run");
  test::FakeVmDriver* driver = owned.get();
  driver->guestSilent = true;
  VmProviderConfig config;
  config.runRoot = root_ + "/run";
  VmProvider provider(config, std::move(owned));

  VmSpec spec;
  spec.name = "web";
  auto started = driver->start(spec);
  ASSERT_TRUE(started.isOk()) << started.status().message();
  std::ofstream(started->consoleLog, std::ios::binary | std::ios::trunc) << c.log;

  Object vm;
  vm.id = {"VM", "web"};
  vm.spec = Json{{"kernel", {{"path", root_ + "/vmlinuz"}}}};
  ObserveRequest req;
  req.desired = {&vm};
  ObserveResponse resp;
  provider.observe(req, resp);
  ASSERT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
  ASSERT_EQ(resp.observed.count(vm.id), 1u);
  const ObservedState& s = resp.observed[vm.id];
  EXPECT_TRUE(s.exists);
  EXPECT_EQ(s.fields.value("ready", !c.ready), c.ready) << s.fields.dump();
}

INSTANTIATE_TEST_SUITE_P(Cases, ObserveReadyLineTest, kReadyLineCases, caseName);

}  // namespace
}  // namespace hyper::providers::vmm
