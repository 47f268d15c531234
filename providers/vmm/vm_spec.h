#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "netmodel/net_spec.h"
#include "netmodel/placement.h"
#include "reconciler/object.h"

namespace hyper::providers::vmm {

// A kernel or initrd that a Build makes: {build: NAME, artifact: ARTIFACT}. The VM boots the
// artifact's bytes from the content-addressed store; which digest is resolved from the Build's
// inventory record (observe for plan, ApplyRequest::references for apply).
struct BuildRef {
  std::string build;     // "" = not from a build (a path)
  std::string artifact;  // "vmlinuz", "initrd", "rootfs"
  bool empty() const { return build.empty(); }
};

// A Secret's value the VM gets (spec.secrets[i]): over its secrets channel, at `path` in the
// guest (tmpfs, mode 0400).
struct SecretMount {
  std::string secret;            // a Secret's name
  std::string key;               // one of its values
  std::string path;              // under /run/secrets/ (default /run/secrets/SECRET/KEY)
  bool restartOnChange = false;  // onChange: restart (default live: delivered to the running VM)
  std::string id() const { return secret + "/" + key; }  // "db/password", the channel's id
};

// At most this much of the kernel command line goes to secret grants (hyper.secret=ID:PATH each;
// x86 allows 2048 bytes in all).
constexpr size_t kMaxSecretGrantBytes = 1024;

// A VM manifest's spec, typed and with its defaults (schemas/vm.schema.json checked the shape).
struct VmManifest {
  std::string name;
  int vcpus = 1;
  int memoryMiB = 256;
  std::string kernel;  // a path; "" when kernelBuild is set
  std::string initrd;  // a path; "" = none, or initrdBuild is set
  BuildRef kernelBuild;
  BuildRef initrdBuild;
  std::string disk;  // a path; "" = none, or diskBuild is set
  BuildRef diskBuild;
  bool diskReadOnly = true;
  std::string cmdline;  // as written; hyper appends the console and the address
  std::string network;  // "" = no network
  std::optional<uint32_t> ip;
  std::string mac;  // as written, or derived from the name (deriveMac)
  bool running = true;
  // Ready when the guest writes readyLine: on the serial console, or, when readyChannel is set,
  // on that virtio-serial channel (the console is then free for anything).
  std::string readyLine = "hyper-ready";
  std::string readyChannel;
  int readyTimeoutSeconds = 120;
  std::vector<SecretMount> secrets;

  // The kernel command line arguments that tell hyper's guest init its secrets channel and what
  // to ask on it: "hyper.secrets=hyper.secrets hyper.secret=db/password:/run/secrets/db/password".
  std::string secretArgs() const;

  // What the VM is booted with: a change of any of these needs a new VM (stop, then start).
  Json bootJson() const;
  // The files it boots from Builds: {"kernel", &kernelBuild}, {"initrd", ...}, {"disk", ...}.
  std::vector<std::pair<const char*, const BuildRef*>> builtFiles() const {
    return {{"kernel", &kernelBuild}, {"initrd", &initrdBuild}, {"disk", &diskBuild}};
  }
  bool bootsBuilds() const {
    return !kernelBuild.empty() || !initrdBuild.empty() || !diskBuild.empty();
  }
};

Result<VmManifest> parseVmManifest(const std::string& name, const Json& spec);

// "52:54:00:xx:xx:xx" (QEMU's locally administered prefix) from a hash of the VM's name: the same
// on every host and after every restart.
std::string deriveMac(const std::string& vmName);

using netmodel::Placement;

}  // namespace hyper::providers::vmm
