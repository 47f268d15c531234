// The VM provider's registration (providers/builtin.cc lists it).

#include "providers/vmm/vm_provider.h"
#include "providers/vmm/vm_spec.h"
#include "reconciler/kind_registry.h"

namespace hyper::providers {

ProviderRecord provider_vmm() {
  KindRecord vm;
  vm.kind = "VM";
  vm.plural = "vms";
  vm.schema = embeddedSchemaText("vm.schema.json");
  // Boot fields from the spec; address and pid from what the last apply recorded; running and
  // ready from the host now (ready: the guest's line was seen on its console or channel).
  auto fromManifest = [](auto show) {
    return [show](const GetRow& row) {
      auto parsed = vmm::parseVmManifest(row.record->id.name, row.record->spec);
      return parsed.isOk() ? show(*parsed) : std::string("-");
    };
  };
  auto observed = [](std::string name) {
    return [name](const GetRow& row) { return row.observedField(name); };
  };
  vm.columns = {
      {"NETWORK", fromManifest([](const vmm::VmManifest& m) {
         return m.network.empty() ? std::string("-") : m.network;
       })},
      fieldColumn("IP", "ip"),  // handles.ip: the address the last apply booted it with
      {"VCPUS", fromManifest([](const vmm::VmManifest& m) { return std::to_string(m.vcpus); })},
      {"MEMORY",
       fromManifest([](const vmm::VmManifest& m) { return std::to_string(m.memoryMiB) + "Mi"; })},
      {"RUNNING", observed("running")},
      {"READY", observed("ready")},
      {"PID", observed("pid")},
      fieldColumn("TAP", "tap", /*wide=*/true),
      fieldColumn("ACCEL", "accel", /*wide=*/true),
  };

  vm.logs = [](const std::string& name, const std::string&) {
    const std::string dir = vmm::VmProviderConfig::fromEnvironment().runRoot + "/" + name;
    return LogFiles{{dir + "/console.log.1", dir + "/console.log"},
                    "it is kept while the VM runs; HYPER_VM_RUN_DIR sets the run dir"};
  };
  // Running unless its spec says `running: false` (a spec that does not parse counts as running:
  // the hold errs on the side of keeping it).
  vm.running = [](const Json& spec) {
    auto it = spec.is_object() ? spec.find("running") : spec.end();
    return !spec.is_object() || it == spec.end() || !it->is_boolean() || it->get<bool>();
  };

  ProviderRecord record;
  record.name = "vmm";
  record.kinds = {std::move(vm)};
  record.make = [](const Json&, const std::string& stateDir) -> Result<std::unique_ptr<Provider>> {
    vmm::VmProviderConfig config = vmm::VmProviderConfig::fromEnvironment();
    config.storeRoot = stateDir + "/store";
    config.stateDir = stateDir;  // its key ring opens the Secrets VMs get
    return std::unique_ptr<Provider>(std::make_unique<vmm::VmProvider>(config));
  };
  return record;
}

}  // namespace hyper::providers
