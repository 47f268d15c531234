// The vmm provider's apply boots a VM with the placement its action carries (PlanAction::
// privateData), not one a previous observe left in the provider: a provider that observed with
// the revision plans, and a fresh one that observed without it applies. A fake driver stands in
// for QEMU; the tap is real, on a bridge in a network namespace the test makes and enters.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "host/command.h"
#include "netmodel/link_state.h"
#include "providers/vmm/tap_device.h"
#include "providers/vmm/vm_provider.h"
#include "tests/fakes/fake_vm_driver.h"
#include "tests/integration/netns_util.h"

namespace hyper::providers::vmm {
namespace {

namespace fs = std::filesystem;

class VmProviderActionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (network namespaces, taps)";
    }
    auto ns = test::EnteredNetns::enter("vmact");
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
    ASSERT_TRUE(ns_->active());
    ASSERT_TRUE(host::runChecked({"ip", "link", "add", "hb-lab", "type", "bridge"}).isOk());
    std::string tmpl = (fs::temp_directory_path() / "hyper-vmact-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    kernel_ = root_ + "/vmlinuz";
    std::ofstream(kernel_) << "not really a kernel";
    auto net = std::make_shared<Object>();
    net->id = {"Network", "lab"};
    net->spec = Json{{"cidr", "10.77.0.0/24"}};
    auto vm = std::make_shared<Object>();
    vm->id = {"VM", "web"};
    vm->spec = {{"kernel", {{"path", kernel_}}}, {"network", {{"name", "lab"}}}};
    network_ = net;
    vm_ = vm;
  }
  void TearDown() override {
    if (!root_.empty()) {
      fs::remove_all(root_);
    }
  }

  // A provider over a fake driver of its own (the run root is shared, as on one host).
  std::unique_ptr<VmProvider> provider(test::FakeVmDriver** driver) const {
    auto owned = std::make_unique<test::FakeVmDriver>(root_ + "/run");
    *driver = owned.get();
    VmProviderConfig config;
    config.runRoot = root_ + "/run";
    return std::make_unique<VmProvider>(config, std::move(owned));
  }

  ObserveResponse observe(VmProvider& p, bool withRevision) const {
    std::vector<std::shared_ptr<const Object>> revision = {network_, vm_};
    ObserveRequest req;
    req.desired = {vm_.get()};
    if (withRevision) {
      req.revision = &revision;
    }
    ObserveResponse resp;
    p.observe(req, resp);
    EXPECT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
    return resp;
  }

  std::unique_ptr<test::EnteredNetns> ns_;
  std::string root_, kernel_;
  std::shared_ptr<const Object> network_, vm_;
};

TEST_F(VmProviderActionTest, AFreshProviderBootsWithThePlacementInTheAction) {
  test::FakeVmDriver* planningDriver = nullptr;
  auto planner = provider(&planningDriver);
  ObserveResponse observed = observe(*planner, true);
  PlanRequest preq{vm_->id, vm_.get(), &observed.observed[vm_->id], nullptr};
  PlanResponse planned;
  planner->plan(preq, planned);
  ASSERT_TRUE(planned.action.has_value()) << planned.diagnostics.format();
  PlanAction action = *planned.action;
  action.id = vm_->id;
  ASSERT_TRUE(action.privateData.contains("placement")) << action.privateData.dump();

  // Observed without the revision: it has no placement of its own to fall back on.
  test::FakeVmDriver* driver = nullptr;
  auto applier = provider(&driver);
  ObserveResponse bare = observe(*applier, false);
  EXPECT_TRUE(bare.observed[vm_->id].context.is_null()) << bare.observed[vm_->id].context.dump();
  ApplyRequest req{&action, vm_.get(), nullptr};
  ApplyResponse resp;
  applier->apply(req, resp);
  ASSERT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();

  VmSpec spec = driver->lastSpec("web");
  EXPECT_EQ(spec.tap, "hv-web");
  EXPECT_NE(spec.cmdline.find("hyper.ip=10.77.0.2/24 hyper.gw=10.77.0.1"), std::string::npos)
      << spec.cmdline;
  EXPECT_EQ(resp.handles["ip"], "10.77.0.2");
  EXPECT_EQ(resp.handles["bridge"], "hb-lab");
  auto links = host::runChecked({"ip", "-d", "-j", "addr", "show"});
  ASSERT_TRUE(links.isOk()) << links.status().message();
  auto table = netmodel::parseLinkTable(*links);
  ASSERT_TRUE(table.isOk()) << table.status().message();
  const netmodel::LinkState* tap = table->find("hv-web");
  ASSERT_NE(tap, nullptr) << "no tap made";
  EXPECT_EQ(tap->master, "hb-lab");
  EXPECT_TRUE(tap->isolated);
}

TEST_F(VmProviderActionTest, AnActionWithoutAPlacementStartsNothing) {
  test::FakeVmDriver* driver = nullptr;
  auto applier = provider(&driver);
  observe(*applier, true);  // it saw the placement, and must not use it
  PlanAction action;
  action.id = vm_->id;
  action.type = ActionType::Create;
  action.disruption = Disruption::Start;
  ApplyRequest req{&action, vm_.get(), nullptr};
  ApplyResponse resp;
  applier->apply(req, resp);
  ASSERT_TRUE(resp.diagnostics.hasErrors());
  EXPECT_NE(resp.diagnostics.format().find("no address on network lab in the planned action"),
            std::string::npos)
      << resp.diagnostics.format();
  EXPECT_TRUE(driver->calls().empty());
  EXPECT_FALSE(interfaceExists("hv-web")) << "a tap was made for a VM that did not start";
}

}  // namespace
}  // namespace hyper::providers::vmm
