#include "providers/vmm/vm_provider.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "netmodel/cidr.h"

// The VM provider's pure parts: addresses, validation, and how each change is planned (with its
// disruption class). No QEMU: the run root is an empty temporary directory, so observe finds no
// VM; "running" VMs are given to plan as observed state directly.

namespace hyper::providers::vmm {
namespace {
namespace fs = std::filesystem;

uint32_t ip(const char* s) { return *netmodel::parseIpv4(s); }

netmodel::NetworkSpec lab(const char* cidr = "10.77.0.0/24") {
  return *netmodel::parseNetworkSpec("lab", Json{{"cidr", cidr}});
}

netmodel::VmAddressRequest vm(const std::string& name,
                              std::optional<uint32_t> address = std::nullopt) {
  return {name, "lab", address};
}

TEST(VmPlacementTest, WrittenThenKeptThenLowestFreeInNameOrder) {
  std::map<std::string, netmodel::NetworkSpec> nets = {{"lab", lab()}};
  // a: keeps 10.77.0.9; b: written 10.77.0.2; c and d: lowest free (the gateway .1 and .2 taken).
  auto p = netmodel::placeVms({vm("a"), vm("b", ip("10.77.0.2")), vm("c"), vm("d")}, nets,
                              {{"a", ip("10.77.0.9")}});
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p["a"].ipString(), "10.77.0.9");
  EXPECT_EQ(p["b"].ipString(), "10.77.0.2");
  EXPECT_EQ(p["c"].ipString(), "10.77.0.3");
  EXPECT_EQ(p["d"].ipString(), "10.77.0.4");
  EXPECT_EQ(p["c"].cmdlineArgs(), "hyper.ip=10.77.0.3/24 hyper.gw=10.77.0.1");
  EXPECT_EQ(p["c"].bridge, "hb-lab");
}

TEST(VmPlacementTest, APreviousAddressNowWrittenForAnotherVmIsGivenUp) {
  std::map<std::string, netmodel::NetworkSpec> nets = {{"lab", lab()}};
  auto p = netmodel::placeVms({vm("a"), vm("b", ip("10.77.0.5"))}, nets, {{"a", ip("10.77.0.5")}});
  EXPECT_EQ(p["b"].ipString(), "10.77.0.5");
  EXPECT_EQ(p["a"].ipString(), "10.77.0.2");
}

TEST(VmPlacementTest, AFullNetworkLeavesTheVmWithoutAnAddress) {
  // /30: .0 network, .1 gateway, .2 the only host address, .3 broadcast.
  std::map<std::string, netmodel::NetworkSpec> nets = {{"lab", lab("10.77.0.0/30")}};
  auto p = netmodel::placeVms({vm("a"), vm("b")}, nets, {});
  EXPECT_EQ(p.size(), 1u);
  EXPECT_EQ(p["a"].ipString(), "10.77.0.2");
  EXPECT_EQ(p.count("b"), 0u);
}

TEST(VmSpecTest, DefaultsAndDerivedMac) {
  auto m = parseVmManifest("web-1", Json::parse(R"({"kernel": {"path": "/k"}})"));
  ASSERT_TRUE(m.isOk()) << m.status().message();
  EXPECT_EQ(m->vcpus, 1);
  EXPECT_EQ(m->memoryMiB, 256);
  EXPECT_TRUE(m->running);
  EXPECT_EQ(m->readyLine, "hyper-ready");
  EXPECT_EQ(m->mac, deriveMac("web-1"));
  EXPECT_EQ(m->mac.rfind("52:54:00:", 0), 0u);
  EXPECT_EQ(m->mac.size(), 17u);
  EXPECT_NE(deriveMac("web-1"), deriveMac("web-2"));
}

TEST(VmSpecTest, ReadinessOnAChannel) {
  auto m = parseVmManifest("web-1", Json::parse(R"({"kernel": {"path": "/k"},
      "readiness": {"channel": {"name": "org.hyper.ready", "line": "up"}}})"));
  ASSERT_TRUE(m.isOk()) << m.status().message();
  EXPECT_EQ(m->readyChannel, "org.hyper.ready");
  EXPECT_EQ(m->readyLine, "up");
  EXPECT_EQ(m->bootJson()["readiness"]["channel"], "org.hyper.ready");

  auto plain = parseVmManifest("web-1", Json::parse(R"({"kernel": {"path": "/k"}})"));
  ASSERT_TRUE(plain.isOk());
  EXPECT_FALSE(plain->bootJson().contains("readiness")) << "VMs without a channel changed boot";

  auto both = parseVmManifest("web-1", Json::parse(R"({"kernel": {"path": "/k"},
      "readiness": {"consoleLine": "x", "channel": {"name": "c"}}})"));
  ASSERT_FALSE(both.isOk());
  EXPECT_NE(both.status().message().find("spec.readiness: consoleLine and channel exclude"),
            std::string::npos)
      << both.status().message();

  auto bad = parseVmManifest("web-1", Json::parse(R"({"kernel": {"path": "/k"},
      "readiness": {"channel": {"name": "a,b"}}})"));
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("spec.readiness.channel.name: 'a,b' may hold only"),
            std::string::npos)
      << bad.status().message();
}

class VmProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-vmprov-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    kernel_ = root_ + "/vmlinuz";
    std::ofstream(kernel_) << "not really a kernel";
    VmProviderConfig config;
    config.runRoot = root_ + "/run";
    provider_ = std::make_unique<VmProvider>(config);
    network_ = object("Network", "lab", {{"cidr", "10.77.0.0/24"}});
  }
  void TearDown() override { fs::remove_all(root_); }

  static std::shared_ptr<const Object> object(const std::string& kind, const std::string& name,
                                              Json spec,
                                              std::map<std::string, std::string> labels = {}) {
    auto o = std::make_shared<Object>();
    o->id = {kind, name};
    o->spec = std::move(spec);
    o->labels = std::move(labels);
    return o;
  }

  Json vmSpec(int memory = 256) const {
    return {{"kernel", {{"path", kernel_}}}, {"memoryMiB", memory}, {"network", {{"name", "lab"}}}};
  }

  // observe (for placements) then plan one VM.
  PlanResponse plan(const std::shared_ptr<const Object>& desired, const ManagedRecord* managed,
                    bool runningNow, Json observedFields = Json::object()) {
    std::vector<std::shared_ptr<const Object>> revision = {network_, desired};
    ObserveRequest oreq;
    oreq.desired = {desired.get()};
    oreq.revision = &revision;
    if (managed) {
      oreq.managed = {managed};
    }
    ObserveResponse oresp;
    provider_->observe(oreq, oresp);
    EXPECT_FALSE(oresp.diagnostics.hasErrors()) << oresp.diagnostics.format();
    ObservedState observed;
    observed.exists = runningNow;
    observed.fields = std::move(observedFields);
    if (auto it = oresp.observed.find(desired->id); it != oresp.observed.end()) {
      observed.context = it->second.context;  // the placement observe worked out
    }
    PlanRequest req;
    req.id = desired->id;
    req.desired = desired.get();
    req.observed = &observed;
    req.managed = managed;
    PlanResponse resp;
    provider_->plan(req, resp);
    return resp;
  }

  ManagedRecord managed(const Json& spec, std::map<std::string, std::string> labels = {}) const {
    ManagedRecord r;
    r.id = {"VM", "web"};
    r.provider = "vmm";
    r.spec = spec;
    r.labels = std::move(labels);
    r.handles = {{"ip", "10.77.0.2"}};
    return r;
  }

  std::string root_, kernel_;
  std::unique_ptr<VmProvider> provider_;
  std::shared_ptr<const Object> network_;
};

// Plan is pure: the placement comes from the observed state's context, so a provider that never
// observed plans the same action from the same request; the action carries the placement to
// apply. Without it in the context (no observe with the revision) the VM has no address.
TEST_F(VmProviderTest, PlanReadsThePlacementFromTheContextOnly) {
  auto vm = object("VM", "web", vmSpec());
  std::vector<std::shared_ptr<const Object>> revision = {network_, vm};
  ObserveRequest oreq;
  oreq.desired = {vm.get()};
  oreq.revision = &revision;
  ObserveResponse oresp;
  provider_->observe(oreq, oresp);
  ASSERT_FALSE(oresp.diagnostics.hasErrors()) << oresp.diagnostics.format();
  ASSERT_EQ(oresp.observed.count(vm->id), 1u);
  const ObservedState& observed = oresp.observed[vm->id];
  ASSERT_TRUE(observed.context.contains("placement")) << observed.context.dump();
  auto placed = Placement::fromJson(observed.context["placement"]);
  ASSERT_TRUE(placed.isOk()) << placed.status().message();
  EXPECT_EQ(placed->ipString(), "10.77.0.2");
  EXPECT_EQ(placed->bridge, "hb-lab");

  VmProviderConfig config;
  config.runRoot = root_ + "/other";
  VmProvider neverObserved(config);
  PlanRequest req{vm->id, vm.get(), &observed, nullptr};
  PlanResponse mine, fresh;
  provider_->plan(req, mine);
  neverObserved.plan(req, fresh);
  ASSERT_TRUE(mine.action.has_value()) << mine.diagnostics.format();
  ASSERT_TRUE(fresh.action.has_value()) << fresh.diagnostics.format();
  Plan a, b;
  a.actions = {*mine.action};
  b.actions = {*fresh.action};
  EXPECT_EQ(a.toJson(), b.toJson());
  EXPECT_EQ(fresh.action->privateData, Json({{"placement", placed->toJson()}}));

  // The provider that observed does not fall back on what it saw: no context, no address.
  ObservedState bare = observed;
  bare.context = nullptr;
  PlanRequest withoutContext{vm->id, vm.get(), &bare, nullptr};
  PlanResponse none;
  provider_->plan(withoutContext, none);
  EXPECT_FALSE(none.action.has_value());
  EXPECT_NE(none.diagnostics.format().find("no free address on network lab"), std::string::npos)
      << none.diagnostics.format();
}

// Only an action that may start the VM carries its placement.
TEST_F(VmProviderTest, AVmKeptStoppedCarriesNoPlacement) {
  Json spec = vmSpec();
  spec["running"] = false;
  auto resp = plan(object("VM", "web", spec), nullptr, false);
  ASSERT_TRUE(resp.action) << resp.diagnostics.format();
  EXPECT_EQ(resp.action->type, ActionType::Create);
  EXPECT_TRUE(resp.action->privateData.is_null()) << resp.action->privateData.dump();
}

TEST_F(VmProviderTest, ANewVmIsAStart) {
  auto resp = plan(object("VM", "web", vmSpec()), nullptr, false);
  ASSERT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
  ASSERT_TRUE(resp.action);
  EXPECT_EQ(resp.action->type, ActionType::Create);
  EXPECT_EQ(resp.action->disruption, Disruption::Start);
}

TEST_F(VmProviderTest, MemoryChangeIsAReplace) {
  auto rec = managed(vmSpec(256));
  auto resp = plan(object("VM", "web", vmSpec(512)), &rec, true);
  ASSERT_TRUE(resp.action) << resp.diagnostics.format();
  EXPECT_EQ(resp.action->type, ActionType::Replace);
  EXPECT_EQ(resp.action->disruption, Disruption::Replace);
  EXPECT_NE(resp.action->reason.find("memoryMiB"), std::string::npos) << resp.action->reason;
  ASSERT_EQ(resp.action->changes.size(), 1u);
  EXPECT_EQ(resp.action->changes[0].path, "spec.memoryMiB");
  EXPECT_TRUE(resp.action->changes[0].forcesReplace);
}

TEST_F(VmProviderTest, AReadinessChannelIsAReplaceAndItsLineIsNot) {
  Json withChannel = vmSpec();
  withChannel["readiness"] = {{"channel", {{"name", "org.hyper.ready"}}}};
  auto rec = managed(vmSpec());
  auto resp = plan(object("VM", "web", withChannel), &rec, true);
  ASSERT_TRUE(resp.action) << resp.diagnostics.format();
  EXPECT_EQ(resp.action->disruption, Disruption::Replace)
      << "a new virtio-serial port needs a new VM";

  Json otherLine = withChannel;
  otherLine["readiness"]["channel"]["line"] = "up";
  auto recChannel = managed(withChannel);
  auto lineOnly = plan(object("VM", "web", otherLine), &recChannel, true);
  ASSERT_TRUE(lineOnly.action) << lineOnly.diagnostics.format();
  EXPECT_EQ(lineOnly.action->disruption, Disruption::InPlace);
}

TEST_F(VmProviderTest, BadReadinessIsAnErrorOnItsField) {
  Json spec = vmSpec();
  spec["readiness"] = {{"consoleLine", "x"}, {"channel", {{"name", "c"}}}};
  auto vm = object("VM", "web", spec);
  std::vector<std::shared_ptr<const Object>> revision = {network_, vm};
  ValidateRequest req;
  req.objects = {vm.get()};
  req.revision = &revision;
  ValidateResponse resp;
  provider_->validate(req, resp);
  ASSERT_EQ(resp.diagnostics.items().size(), 1u) << resp.diagnostics.format();
  EXPECT_EQ(resp.diagnostics.items()[0].fieldPath, "spec.readiness");
  EXPECT_NE(resp.diagnostics.format().find("exclude each other"), std::string::npos)
      << resp.diagnostics.format();
}

TEST_F(VmProviderTest, ATapDeletedByHandIsARestart) {
  auto rec = managed(vmSpec());
  auto resp = plan(object("VM", "web", vmSpec()), &rec, true, {{"tapGone", "hv-web"}});
  ASSERT_TRUE(resp.action) << resp.diagnostics.format();
  EXPECT_EQ(resp.action->type, ActionType::Update);
  EXPECT_EQ(resp.action->disruption, Disruption::Restart);
  EXPECT_TRUE(resp.action->drift);
  EXPECT_NE(resp.action->reason.find("tap hv-web was deleted"), std::string::npos)
      << resp.action->reason;
}

TEST_F(VmProviderTest, LabelsAreInPlace) {
  auto rec = managed(vmSpec(), {{"role", "web"}});
  auto resp = plan(object("VM", "web", vmSpec(), {{"role", "db"}}), &rec, true);
  ASSERT_TRUE(resp.action) << resp.diagnostics.format();
  EXPECT_EQ(resp.action->type, ActionType::Update);
  EXPECT_EQ(resp.action->disruption, Disruption::InPlace);
}

TEST_F(VmProviderTest, NothingChangedIsNoAction) {
  auto rec = managed(vmSpec());
  auto resp = plan(object("VM", "web", vmSpec()), &rec, true);
  EXPECT_FALSE(resp.action) << resp.action->reason;
  EXPECT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
}

TEST_F(VmProviderTest, AVanishedProcessIsDriftThatStartsIt) {
  auto rec = managed(vmSpec());
  auto resp = plan(object("VM", "web", vmSpec()), &rec, false);
  ASSERT_TRUE(resp.action);
  EXPECT_TRUE(resp.action->drift);
  EXPECT_EQ(resp.action->disruption, Disruption::Start);
}

TEST_F(VmProviderTest, RunningFalseStopsIt) {
  auto rec = managed(vmSpec());
  Json spec = vmSpec();
  spec["running"] = false;
  auto resp = plan(object("VM", "web", spec), &rec, true);
  ASSERT_TRUE(resp.action);
  EXPECT_FALSE(resp.action->drift);
  EXPECT_EQ(resp.action->disruption, Disruption::Stop);
}

TEST_F(VmProviderTest, AMissingKernelIsAnErrorOnItsField) {
  Json spec = vmSpec();
  spec["kernel"]["path"] = root_ + "/no-such-kernel";
  auto resp = plan(object("VM", "web", spec), nullptr, false);
  ASSERT_TRUE(resp.diagnostics.hasErrors());
  EXPECT_FALSE(resp.action);
  EXPECT_EQ(resp.diagnostics.items()[0].fieldPath, "spec.kernel.path");
  EXPECT_NE(resp.diagnostics.format().find("no-such-kernel does not exist"), std::string::npos)
      << resp.diagnostics.format();
}

TEST_F(VmProviderTest, ValidateChecksAddressesAgainstTheNetwork) {
  auto spec = [&](const char* address) {
    Json s = vmSpec();
    s["network"]["ip"] = address;
    return s;
  };
  auto outside = object("VM", "a", spec("10.78.0.5"));
  auto gateway = object("VM", "b", spec("10.77.0.1"));
  auto first = object("VM", "c", spec("10.77.0.7"));
  auto second = object("VM", "d", spec("10.77.0.7"));
  std::vector<std::shared_ptr<const Object>> revision = {network_, outside, gateway, first, second};
  ValidateRequest req;
  req.objects = {outside.get(), gateway.get(), first.get(), second.get()};
  req.revision = &revision;
  ValidateResponse resp;
  provider_->validate(req, resp);
  std::string text = resp.diagnostics.format();
  ASSERT_EQ(resp.diagnostics.items().size(), 3u) << text;
  EXPECT_EQ(resp.diagnostics.items()[0].object.str(), "VM/a");
  EXPECT_NE(text.find("10.78.0.5 is not a host address of network lab (10.77.0.0/24)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("10.77.0.1 is the gateway of network lab"), std::string::npos) << text;
  EXPECT_NE(text.find("10.77.0.7 is already taken by VM c"), std::string::npos) << text;
  EXPECT_EQ(resp.diagnostics.items()[2].object.str(), "VM/d");
}

}  // namespace
}  // namespace hyper::providers::vmm
