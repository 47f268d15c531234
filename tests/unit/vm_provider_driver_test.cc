// The vmm provider against the VmDriver contract alone (a fake driver, no QEMU): what it asks a
// driver for, and in what order, when VMs are created, replaced, found not ready and deleted. A
// Firecracker or Cloud Hypervisor driver plugs in at the same place.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "providers/vmm/vm_provider.h"
#include "reconciler/engine.h"
#include "reconciler/inventory.h"
#include "reconciler/schema.h"
#include "tests/fakes/engine_harness.h"
#include "tests/fakes/fake_vm_driver.h"

namespace hyper::providers::vmm {
namespace {

namespace fs = std::filesystem;

class VmProviderDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-vmdrv-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    kernel_ = root_ + "/vmlinuz";
    std::ofstream(kernel_) << "not really a kernel";
    auto driver = std::make_unique<test::FakeVmDriver>(root_ + "/run");
    driver_ = driver.get();
    VmProviderConfig config;
    config.runRoot = root_ + "/run";
    config.logMaxBytes = kLogCap;
    std::vector<std::unique_ptr<Provider>> providers;
    providers.push_back(std::make_unique<VmProvider>(config, std::move(driver)));
    harness_ = std::make_unique<test::EngineHarness>(std::move(providers), root_ + "/state");
    ASSERT_EQ(harness_->error(), "");
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string vm(const std::string& name, int memory, const std::string& extra = "") const {
    return "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: " + name +
           "}\nspec:\n  memoryMiB: " + std::to_string(memory) + "\n  kernel: {path: " + kernel_ +
           "}\n  cmdline: quiet\n" + extra;
  }

  std::string converge(const std::vector<SourceFile>& files,
                       const ApplyOptions& options = ApplyOptions{}) {
    return harness_->converge(files, options);
  }

  static constexpr uint64_t kLogCap = 4096;
  std::string root_, kernel_;
  test::FakeVmDriver* driver_ = nullptr;
  std::unique_ptr<test::EngineHarness> harness_;
};

TEST_F(VmProviderDriverTest, ChannelReadinessIsAskedOfTheDriver) {
  const std::string channel = "  readiness: {channel: {name: org.hyper.ready, line: up}}\n";
  driver_->readyLine = "up";
  std::string out = converge({{"web.yaml", vm("web", 128, channel)}});
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_EQ(driver_->calls(),
            (std::vector<std::string>{"start web", "wait web org.hyper.ready up"}));
  VmSpec spec = driver_->lastSpec("web");
  EXPECT_EQ(spec.channels, std::vector<std::string>{"org.hyper.ready"});
  EXPECT_EQ(spec.cmdline, "quiet hyper.channel=org.hyper.ready");
  EXPECT_EQ(spec.memoryMiB, 128);

  // A second converge asks nothing of the driver; observe sees it ready through the channel's
  // log, from the inventory alone (as `hyperctl get` does).
  out = converge({{"web.yaml", vm("web", 128, channel)}});
  EXPECT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_EQ(driver_->calls().size(), 2u) << out;
  auto managed = harness_->inventory().list();
  ASSERT_TRUE(managed.isOk());
  Diagnostics diags;
  auto observed = harness_->engine().observeManaged(*managed, *managed, diags);
  ASSERT_FALSE(diags.hasErrors()) << diags.format();
  ObjectId id{"VM", "web"};
  ASSERT_EQ(observed.count(id), 1u);
  EXPECT_EQ(observed[id].fields["ready"], true) << observed[id].fields.dump();
}

// A guest that writes past the cap: observe rotates its console and its channel logs, keeps the
// newest cap bytes in LOG.1, and a log at the cap (one byte short of rotation) is left alone.
TEST_F(VmProviderDriverTest, ObserveRotatesGuestLogsPastTheirCap) {
  const std::string channel = "  readiness: {channel: {name: org.hyper.ready, line: up}}\n";
  driver_->readyLine = "up";
  ASSERT_EQ(converge({{"web.yaml", vm("web", 128, channel)}}).rfind("error", 0), std::string::npos);
  auto found = driver_->find("web");
  ASSERT_TRUE(found.isOk() && found->has_value());
  const std::string console = (*found)->consoleLog;
  const std::string chan = channelLogPath((*found)->runDir, "org.hyper.ready");
  std::ofstream(console, std::ios::binary) << std::string(kLogCap, 'a') << "TAIL";  // cap + 4
  std::ofstream(chan, std::ios::binary) << std::string(kLogCap, 'b');               // at the cap
  auto managed = harness_->inventory().list();
  ASSERT_TRUE(managed.isOk());
  Diagnostics diags;
  auto observed = harness_->engine().observeManaged(*managed, *managed, diags);
  ASSERT_FALSE(diags.hasErrors()) << diags.format();
  EXPECT_EQ(fs::file_size(console), 0u) << "a console past its cap was not truncated";
  ASSERT_TRUE(fs::exists(console + ".1"));
  EXPECT_EQ(fs::file_size(console + ".1"), kLogCap);
  std::ifstream old(console + ".1", std::ios::binary);
  std::string kept((std::istreambuf_iterator<char>(old)), std::istreambuf_iterator<char>());
  EXPECT_EQ(kept.substr(kept.size() - 4), "TAIL") << "the newest bytes were not the ones kept";
  EXPECT_EQ(fs::file_size(chan), kLogCap) << "a log at its cap was rotated";
  EXPECT_FALSE(fs::exists(chan + ".1"));

  // Past the cap the channel rotates too; the readiness line, now only in LOG.1, is still found
  // (as a whole line: a prefix of it is not).
  std::ofstream(chan, std::ios::binary) << "x\nup\n" << std::string(kLogCap - 3, 'b');
  observed = harness_->engine().observeManaged(*managed, *managed, diags);
  EXPECT_EQ(fs::file_size(chan), 0u);
  EXPECT_TRUE(logHasLine(chan, "up"));
  EXPECT_FALSE(logHasLine(chan, "u"));
  EXPECT_FALSE(logHasLine(chan, "x")) << "bytes older than the cap were kept";
}

TEST_F(VmProviderDriverTest, AReplaceStopsBeforeItStarts) {
  ASSERT_EQ(converge({{"web.yaml", vm("web", 128)}}).rfind("error", 0), std::string::npos);
  std::string out = converge({{"web.yaml", vm("web", 256)}});
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_EQ(driver_->calls(),
            (std::vector<std::string>{"start web", "wait web console hyper-ready", "stop web",
                                      "start web", "wait web console hyper-ready"}));
  EXPECT_EQ(driver_->lastSpec("web").memoryMiB, 256);
}

TEST_F(VmProviderDriverTest, AGuestThatNeverSaysReadyIsStoppedAgain) {
  driver_->guestSilent = true;
  std::string out = converge({{"web.yaml", vm("web", 128)}});
  EXPECT_NE(out.find("VM web did not become ready (console line \"hyper-ready\")"),
            std::string::npos)
      << out;
  EXPECT_EQ(driver_->calls(),
            (std::vector<std::string>{"start web", "wait web console hyper-ready", "stop web"}));
  auto found = driver_->find("web");
  ASSERT_TRUE(found.isOk());
  EXPECT_FALSE(found->has_value()) << "a VM that never became ready was left running";
  auto managed = harness_->inventory().list();
  ASSERT_TRUE(managed.isOk());
  EXPECT_TRUE(managed->empty()) << "a failed start was recorded";
}

// A start waits for readiness no longer than the apply may take: hyperd stopping (the cancel
// flag, set here from another thread while the wait would last 60 s) or the apply's deadline ends
// the wait soon, the VM is stopped again, nothing is recorded, and the failure is an ordinary
// one (retried), not a terminal one. Bounds are loose: "well under the 60 s" is the point.
class VmStartWaitTest : public VmProviderDriverTest {
 protected:
  const std::string readiness_ = "  readiness: {timeoutSeconds: 60}\n";

  void expectStoppedAndNothingLeft(const std::string& out) {
    EXPECT_EQ(driver_->calls(),
              (std::vector<std::string>{"start web", "wait web console hyper-ready", "stop web"}))
        << out;
    auto found = driver_->find("web");
    ASSERT_TRUE(found.isOk());
    EXPECT_FALSE(found->has_value()) << "a VM whose wait was cut short was left running";
    auto managed = harness_->inventory().list();
    ASSERT_TRUE(managed.isOk());
    EXPECT_TRUE(managed->empty()) << "a failed start was recorded";
    ASSERT_EQ(harness_->lastReport().outcomes.size(), 1u);
    EXPECT_FALSE(harness_->lastReport().outcomes[0].terminal);
    EXPECT_FALSE(harness_->lastReport().outcomes[0].retryAfter.has_value());
  }
};

TEST_F(VmStartWaitTest, HyperdStoppingEndsTheWaitAndStopsTheVm) {
  driver_->guestSilent = true;
  driver_->waitsOutTimeout = true;
  std::atomic<bool> stopping{false};
  ApplyOptions options;
  options.cancel = &stopping;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stopping = true;
  });
  auto began = std::chrono::steady_clock::now();
  std::string out = converge({{"web.yaml", vm("web", 128, readiness_)}}, options);
  auto took = std::chrono::steady_clock::now() - began;
  stopper.join();
  EXPECT_LT(took, std::chrono::seconds(10)) << "the wait ran on after the cancel flag was set";
  EXPECT_NE(out.find("stopped waiting for VM web to be ready: hyperd is stopping"),
            std::string::npos)
      << out;
  ASSERT_EQ(driver_->waitTimeouts().size(), 1u);
  EXPECT_EQ(driver_->waitTimeouts()[0], std::chrono::seconds(60));
  expectStoppedAndNothingLeft(out);
}

TEST_F(VmStartWaitTest, TheApplyDeadlineCutsTheReadinessTimeoutShort) {
  driver_->guestSilent = true;
  driver_->waitsOutTimeout = true;
  ApplyOptions options;
  options.actionTimeout = std::chrono::milliseconds(300);
  auto began = std::chrono::steady_clock::now();
  std::string out = converge({{"web.yaml", vm("web", 128, readiness_)}}, options);
  auto took = std::chrono::steady_clock::now() - began;
  EXPECT_LT(took, std::chrono::seconds(10)) << "the wait ran past the apply's deadline";
  ASSERT_EQ(driver_->waitTimeouts().size(), 1u);
  EXPECT_LE(driver_->waitTimeouts()[0], std::chrono::milliseconds(300));
  EXPECT_NE(out.find("VM web did not become ready (console line \"hyper-ready\") before the "
                     "apply's deadline"),
            std::string::npos)
      << out;
  expectStoppedAndNothingLeft(out);
}

// A guest that is ready in time is not disturbed by a deadline it does not reach.
TEST_F(VmStartWaitTest, AReadyGuestWithinTheDeadlineStarts) {
  driver_->waitsOutTimeout = true;
  ApplyOptions options;
  options.actionTimeout = std::chrono::seconds(30);
  std::string out = converge({{"web.yaml", vm("web", 128, readiness_)}}, options);
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  ASSERT_EQ(driver_->waitTimeouts().size(), 1u);
  EXPECT_GT(driver_->waitTimeouts()[0], std::chrono::seconds(20));
  EXPECT_LE(driver_->waitTimeouts()[0], std::chrono::seconds(30));
}

TEST_F(VmProviderDriverTest, PruneStopsIt) {
  ASSERT_EQ(converge({{"web.yaml", vm("web", 128)}}).rfind("error", 0), std::string::npos);
  std::string out = converge({});
  ASSERT_EQ(out.rfind("error", 0), std::string::npos) << out;
  EXPECT_EQ(driver_->calls().back(), "stop web");
  auto found = driver_->find("web");
  ASSERT_TRUE(found.isOk());
  EXPECT_FALSE(found->has_value());
}

}  // namespace
}  // namespace hyper::providers::vmm
