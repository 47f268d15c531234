#include "providers/vmm/vm_spec.h"

#include "netmodel/cidr.h"
#include "providers/vmm/vm_driver.h"

namespace hyper::providers::vmm {

Json VmManifest::bootJson() const {
  // A Build's artifact as "build:NAME/ARTIFACT"; which bytes that is (the digest) the provider
  // compares on its own, from the Build's record.
  auto file = [](const std::string& path, const BuildRef& ref) {
    return ref.empty() ? path : "build:" + ref.build + "/" + ref.artifact;
  };
  Json j = {{"vcpus", vcpus},
            {"memoryMiB", memoryMiB},
            {"kernel", file(kernel, kernelBuild)},
            {"initrd", file(initrd, initrdBuild)},
            {"cmdline", cmdline},
            {"network", network},
            {"mac", mac}};
  j["ip"] = ip ? Json(netmodel::formatIpv4(*ip)) : Json("auto");
  // Only when set, like the channel below: VMs without a disk keep their recorded boot fields.
  if (!disk.empty() || !diskBuild.empty()) {
    j["disk"] = file(disk, diskBuild) + (diskReadOnly ? " (read-only)" : " (writable copy)");
  }
  // Only when set: a channel is a device the VM boots with, and VMs without one keep the boot
  // fields they were recorded with.
  if (!readyChannel.empty()) {
    j["readiness"] = {{"channel", readyChannel}};
  }
  return j;
}

Result<VmManifest> parseVmManifest(const std::string& name, const Json& spec) {
  VmManifest m;
  m.name = name;
  if (!spec.is_object()) {
    return Status::error("spec: expected a mapping");
  }
  m.vcpus = spec.value("vcpus", m.vcpus);
  m.memoryMiB = spec.value("memoryMiB", m.memoryMiB);
  // {path} or {build, artifact}: exactly one of path and build.
  auto bootFile = [](const Json& spec, const char* field, const char* defaultArtifact,
                     std::string& path, BuildRef& ref) -> Status {
    if (!spec.contains(field)) {
      return Status::ok();
    }
    const Json& f = spec[field];
    path = f.value("path", "");
    ref.build = f.value("build", "");
    ref.artifact = f.value("artifact", ref.build.empty() ? "" : defaultArtifact);
    const std::string where = std::string("spec.") + field;
    if (path.empty() == ref.build.empty()) {
      return Status::error(where + ": give either path (a file on the host) or build (a Build's " +
                           "artifact), " + (path.empty() ? "not neither" : "not both"));
    }
    if (!path.empty() && f.contains("artifact")) {
      return Status::error(where + ".artifact: only with build");
    }
    return Status::ok();
  };
  HYPER_RETURN_IF_ERROR(bootFile(spec, "kernel", "vmlinuz", m.kernel, m.kernelBuild));
  HYPER_RETURN_IF_ERROR(bootFile(spec, "initrd", "initrd", m.initrd, m.initrdBuild));
  HYPER_RETURN_IF_ERROR(bootFile(spec, "disk", "rootfs", m.disk, m.diskBuild));
  if (spec.contains("disk")) {
    m.diskReadOnly = spec["disk"].value("readOnly", true);
  }
  m.cmdline = spec.value("cmdline", "");
  if (spec.contains("network")) {
    const Json& n = spec["network"];
    m.network = n.value("name", "");
    if (n.contains("ip")) {
      auto ip = netmodel::parseIpv4(n["ip"].get<std::string>());
      if (!ip.isOk()) {
        return Status::error("spec.network.ip: " + ip.status().message());
      }
      m.ip = *ip;
    }
    m.mac = n.value("mac", "");
  }
  if (m.mac.empty()) {
    m.mac = deriveMac(name);
  }
  m.running = spec.value("running", m.running);
  if (spec.contains("readiness")) {
    const Json& r = spec["readiness"];
    m.readyLine = r.value("consoleLine", m.readyLine);
    m.readyTimeoutSeconds = r.value("timeoutSeconds", m.readyTimeoutSeconds);
    if (r.contains("channel")) {
      if (r.contains("consoleLine")) {
        return Status::error(
            "spec.readiness: consoleLine and channel exclude each other (readiness comes from "
            "the console or from the channel)");
      }
      const Json& c = r["channel"];
      m.readyChannel = c.value("name", "");
      if (std::string why = checkChannelName(m.readyChannel); !why.empty()) {
        return Status::error("spec.readiness.channel.name: '" + m.readyChannel + "' " + why);
      }
      m.readyLine = c.value("line", m.readyLine);
    }
  }
  return m;
}

std::string deriveMac(const std::string& vmName) { return netmodel::vmDefaultMac(vmName); }

}  // namespace hyper::providers::vmm
