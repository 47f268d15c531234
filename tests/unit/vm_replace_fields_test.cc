// For every field of a VM's spec, what a change of it alone plans for a running VM: a replace
// (the VM is booted with it: stop, start anew), an in-place update (nothing on the host changes),
// a stop, or nothing. One named case per field, so that dropping a field from the boot fields
// (vm_spec.h, VmManifest::bootJson) or adding one by mistake fails here by name.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "providers/vmm/vm_provider.h"

namespace hyper::providers::vmm {
namespace {
namespace fs = std::filesystem;

enum class Want { Replace, InPlace, Stop, Nothing };

struct FieldCase {
  std::string name;
  // JSON merge patches (RFC 7386) on the base spec, before and after; "@" is the test's temp dir.
  std::string before;
  std::string after;
  Want want;
  std::string replacedPath;  // for Replace: the one change, e.g. "spec.vcpus"
  bool runningNow = true;
  std::map<std::string, std::string> labelsAfter = {};
};

// Failures name the case, not its bytes.
void PrintTo(const FieldCase& c, std::ostream* os) { *os << c.name; }

class VmReplaceFieldsTest : public ::testing::TestWithParam<FieldCase> {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-vmfields-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    for (const char* file : {"/vmlinuz", "/vmlinuz-2", "/initrd", "/initrd-2"}) {
      std::ofstream(root_ + file) << "not really a boot file";
    }
    VmProviderConfig config;
    config.runRoot = root_ + "/run";  // empty: observe finds no VM, plan is told what runs
    provider_ = std::make_unique<VmProvider>(config);
  }
  void TearDown() override { fs::remove_all(root_); }

  Json patched(const std::string& patch) const {
    Json spec = {{"kernel", {{"path", root_ + "/vmlinuz"}}},
                 {"memoryMiB", 256},
                 {"network", {{"name", "lab"}}}};
    std::string text = patch;
    for (size_t at; (at = text.find('@')) != std::string::npos;) {
      text.replace(at, 1, root_);
    }
    spec.merge_patch(Json::parse(text));
    return spec;
  }

  static std::shared_ptr<const Object> object(const std::string& kind, const std::string& name,
                                              Json spec,
                                              std::map<std::string, std::string> labels = {}) {
    auto o = std::make_shared<Object>();
    o->id = {kind, name};
    o->spec = std::move(spec);
    o->labels = std::move(labels);
    return o;
  }

  // observe (for the address placement) then plan the VM against its inventory record.
  PlanResponse plan(const FieldCase& c) {
    auto desired = object("VM", "web", patched(c.after), c.labelsAfter);
    std::vector<std::shared_ptr<const Object>> revision = {
        object("Network", "lab", {{"cidr", "10.77.0.0/24"}}),
        object("Network", "dmz", {{"cidr", "10.78.0.0/24"}}), desired};
    ManagedRecord managed;
    managed.id = {"VM", "web"};
    managed.provider = "vmm";
    managed.spec = patched(c.before);
    managed.handles = {{"ip", "10.77.0.2"}};
    ObserveRequest oreq;
    oreq.desired = {desired.get()};
    oreq.managed = {&managed};
    oreq.revision = &revision;
    ObserveResponse oresp;
    provider_->observe(oreq, oresp);
    EXPECT_FALSE(oresp.diagnostics.hasErrors()) << oresp.diagnostics.format();
    ObservedState observed;
    observed.exists = c.runningNow;
    if (auto it = oresp.observed.find(desired->id); it != oresp.observed.end()) {
      observed.context = it->second.context;  // the placement observe worked out
    }
    PlanRequest req;
    req.id = desired->id;
    req.desired = desired.get();
    req.observed = &observed;
    req.managed = &managed;
    PlanResponse resp;
    provider_->plan(req, resp);
    return resp;
  }

  std::string root_;
  std::unique_ptr<VmProvider> provider_;
};

TEST_P(VmReplaceFieldsTest, PlansWhatTheFieldNeeds) {
  const FieldCase& c = GetParam();
  PlanResponse resp = plan(c);
  ASSERT_FALSE(resp.diagnostics.hasErrors()) << resp.diagnostics.format();
  if (c.want == Want::Nothing) {
    EXPECT_FALSE(resp.action) << resp.action->reason;
    return;
  }
  ASSERT_TRUE(resp.action) << "no action planned";
  const PlanAction& a = *resp.action;
  switch (c.want) {
    case Want::Replace:
      EXPECT_EQ(a.type, ActionType::Replace) << a.reason;
      EXPECT_EQ(a.disruption, Disruption::Replace) << a.reason;
      ASSERT_EQ(a.changes.size(), 1u) << a.reason;
      EXPECT_EQ(a.changes[0].path, c.replacedPath);
      EXPECT_TRUE(a.changes[0].forcesReplace);
      EXPECT_NE(a.reason.find(c.replacedPath.substr(5)), std::string::npos) << a.reason;
      break;
    case Want::InPlace:
      EXPECT_EQ(a.type, ActionType::Update) << a.reason;
      EXPECT_EQ(a.disruption, Disruption::InPlace) << a.reason;
      EXPECT_FALSE(a.changes.empty());
      for (const auto& change : a.changes) {
        EXPECT_FALSE(change.forcesReplace) << change.path;
      }
      break;
    case Want::Stop:
      EXPECT_EQ(a.type, ActionType::Update) << a.reason;
      EXPECT_EQ(a.disruption, Disruption::Stop) << a.reason;
      break;
    case Want::Nothing:
      break;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fields, VmReplaceFieldsTest,
    ::testing::Values(
        // Boot fields: what QEMU or the guest kernel is started with.
        FieldCase{"Vcpus", "{}", R"({"vcpus": 2})", Want::Replace, "spec.vcpus"},
        FieldCase{"VcpusDown", R"({"vcpus": 4})", R"({"vcpus": 3})", Want::Replace, "spec.vcpus"},
        FieldCase{"Memory", "{}", R"({"memoryMiB": 512})", Want::Replace, "spec.memoryMiB"},
        FieldCase{"KernelPath", "{}", R"({"kernel": {"path": "@/vmlinuz-2"}})", Want::Replace,
                  "spec.kernel"},
        FieldCase{"InitrdAdded", "{}", R"({"initrd": {"path": "@/initrd"}})", Want::Replace,
                  "spec.initrd"},
        FieldCase{"InitrdPath", R"({"initrd": {"path": "@/initrd"}})",
                  R"({"initrd": {"path": "@/initrd-2"}})", Want::Replace, "spec.initrd"},
        FieldCase{"Cmdline", R"({"cmdline": "quiet"})", R"({"cmdline": "quiet "})", Want::Replace,
                  "spec.cmdline"},
        FieldCase{"NetworkName", "{}", R"({"network": {"name": "dmz"}})", Want::Replace,
                  "spec.network"},
        FieldCase{"Address", "{}", R"({"network": {"ip": "10.77.0.9"}})", Want::Replace, "spec.ip"},
        FieldCase{"Mac", "{}", R"({"network": {"mac": "52:54:00:12:34:56"}})", Want::Replace,
                  "spec.mac"},
        FieldCase{"ReadinessChannelAdded", "{}",
                  R"({"readiness": {"channel": {"name": "org.hyper.ready"}}})", Want::Replace,
                  "spec.readiness.channel"},
        FieldCase{"ReadinessChannelRenamed",
                  R"({"readiness": {"channel": {"name": "org.hyper.ready"}}})",
                  R"({"readiness": {"channel": {"name": "org.hyper.ready2"}}})", Want::Replace,
                  "spec.readiness.channel"},
        // Not boot fields: read by hyper, not by the VM.
        FieldCase{"ConsoleLine", "{}", R"({"readiness": {"consoleLine": "up"}})", Want::InPlace},
        FieldCase{"ChannelLine", R"({"readiness": {"channel": {"name": "c", "line": "a"}}})",
                  R"({"readiness": {"channel": {"name": "c", "line": "b"}}})", Want::InPlace},
        FieldCase{"ReadinessTimeout", "{}", R"({"readiness": {"timeoutSeconds": 60}})",
                  Want::InPlace},
        FieldCase{"Labels", "{}", "{}", Want::InPlace, "", true, {{"role", "web"}}},
        // Running and stopped.
        FieldCase{"RunningFalse", "{}", R"({"running": false})", Want::Stop},
        FieldCase{"VcpusOfAStoppedVm", R"({"running": false})", R"({"running": false, "vcpus": 2})",
                  Want::InPlace, "", false},
        FieldCase{"MemoryOfAStoppedVm", R"({"running": false})",
                  R"({"running": false, "memoryMiB": 512})", Want::InPlace, "", false},
        FieldCase{"Unchanged", R"({"vcpus": 2, "cmdline": "quiet"})",
                  R"({"vcpus": 2, "cmdline": "quiet"})", Want::Nothing}),
    [](const ::testing::TestParamInfo<FieldCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::providers::vmm
