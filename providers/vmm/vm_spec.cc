#include "providers/vmm/vm_spec.h"

#include <cctype>
#include "netmodel/cidr.h"

#include "providers/vmm/secret_channel.h"
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
  // The grants are on the command line (which ids, where); their values and onChange are not
  // boot fields.
  if (!secrets.empty()) {
    Json list = Json::array();
    for (const auto& s : secrets) {
      list.push_back(s.id() + " at " + s.path);
    }
    j["secrets"] = std::move(list);
  }
  return j;
}

std::string VmManifest::secretArgs() const {
  if (secrets.empty()) {
    return "";
  }
  std::string out = std::string("hyper.secrets=") + kSecretsChannel;
  for (const auto& s : secrets) {
    out += " hyper.secret=" + s.id() + ":" + s.path;
  }
  return out;
}

namespace {

// "" when `path` is one the guest keeps a secret at: under /run/secrets/, components of
// A-Z a-z 0-9 . _ - (no "." or ".."), no empty component.
std::string checkSecretPath(const std::string& path) {
  const std::string root = "/run/secrets/";
  if (path.rfind(root, 0) != 0 || path.size() == root.size()) {
    return "expected a path under /run/secrets/ (a tmpfs in the guest)";
  }
  size_t at = root.size();
  while (at <= path.size()) {
    size_t slash = path.find('/', at);
    std::string part = path.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (part.empty() || part == "." || part == "..") {
      return "expected components of A-Z a-z 0-9 . _ - between single slashes, not \"" + part +
             "\"";
    }
    for (char c : part) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
        return std::string("expected only A-Z a-z 0-9 . _ - / in the path, not '") + c + "'";
      }
    }
    if (slash == std::string::npos) {
      break;
    }
    at = slash + 1;
  }
  return "";
}

Status parseSecrets(const Json& spec, VmManifest& m) {
  if (!spec.contains("secrets")) {
    return Status::ok();
  }
  const Json& list = spec["secrets"];
  if (!list.is_array()) {
    return Status::error("spec.secrets: expected a list");
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = "spec.secrets[" + std::to_string(i) + "]";
    const Json& e = list[i];
    if (!e.is_object()) {
      return Status::error(where + ": expected a mapping {secret, key, path}");
    }
    SecretMount s;
    s.secret = e.value("secret", "");
    s.key = e.value("key", "");
    if (s.secret.empty() || s.key.empty()) {
      return Status::error(where + ": expected secret and key");
    }
    s.path = e.value("path", "/run/secrets/" + s.secret + "/" + s.key);
    if (std::string why = checkSecretPath(s.path); !why.empty()) {
      return Status::error(where + ".path: " + why);
    }
    const std::string onChange = e.value("onChange", "live");
    if (onChange != "live" && onChange != "restart") {
      return Status::error(where + ".onChange: expected live or restart, not \"" + onChange + "\"");
    }
    s.restartOnChange = onChange == "restart";
    for (size_t j = 0; j < m.secrets.size(); ++j) {
      const SecretMount& o = m.secrets[j];
      const std::string other = "spec.secrets[" + std::to_string(j) + "]";
      if (o.id() == s.id()) {
        return Status::error(where + ": " + s.id() + " is already given by " + other +
                             " (expected each value once)");
      }
      auto under = [](const std::string& a, const std::string& b) {
        return a == b || a.rfind(b + "/", 0) == 0;
      };
      if (under(s.path, o.path) || under(o.path, s.path)) {
        return Status::error(where + ".path: " + s.path + " collides with " + o.path + " of " +
                             other + " (expected a file of its own)");
      }
    }
    m.secrets.push_back(std::move(s));
  }
  if (size_t bytes = m.secretArgs().size(); bytes > kMaxSecretGrantBytes) {
    return Status::error("spec.secrets: the grants take " + std::to_string(bytes) +
                         " bytes of the kernel command line: expected at most " +
                         std::to_string(kMaxSecretGrantBytes) + " (fewer values or shorter paths)");
  }
  return Status::ok();
}

}  // namespace

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
  HYPER_RETURN_IF_ERROR(parseSecrets(spec, m));
  return m;
}

std::string deriveMac(const std::string& vmName) { return netmodel::vmDefaultMac(vmName); }

}  // namespace hyper::providers::vmm
