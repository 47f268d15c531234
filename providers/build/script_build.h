#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "providers/build/build_queue.h"
#include "providers/build/build_spec.h"
#include "providers/vmm/secret_channel.h"
#include "providers/vmm/vm_driver.h"

namespace hyper::providers::build {

// The builder's place on a build network (spec.networkPolicy): a tap on the Network's bridge and
// an address the caller claimed for it.
struct BuilderNetwork {
  std::string policy;   // the NetworkPolicy whose rules are the builder's
  std::string network;  // its Network
  std::string bridge;
  uint32_t ip = 0;
  int prefix = 0;
  uint32_t gateway = 0;
};

// What a script build runs with besides its spec: the builder's files (store paths of the
// artifacts its key was made of), where it works, and the values of its secrets.
struct ScriptRun {
  std::string buildName;        // the Build's name: names the builder VM (builderVmName)
  std::string key;              // the build key: the images' filesystem UUIDs come from it
  std::string kernel;           // the builder's vmlinuz
  std::string initrd;           // its initramfs (hyper's init and hyper-build-agent)
  std::string rootfs;           // "" = none (the steps run in the initrd's busybox)
  bool rootfsWritable = false;  // an ext4 rootfs: the builder gets a copy, written in place
  std::string scratch;          // a fresh directory the build works in (the caller removes it)
  std::string gitCacheDir;      // where fetched repositories are kept (one bare repository per URL)
  std::vector<vmm::SecretGrant> secrets;  // by ScriptSecret::id, in the spec's order
  std::optional<BuilderNetwork> network;  // none: no network device at all
  std::shared_ptr<vmm::VmDriver> driver;
  const std::atomic<bool>* cancel = nullptr;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // Told the ids the builder stored (in order) and how the delivery ended, when there are
  // secrets: the caller's audit events and metrics.
  std::function<void(const std::vector<std::string>& stored, const Status& result)>
      onSecretDelivery;
  // At most this much of the steps' output goes to the build's log (the rest is counted).
  size_t maxLogBytes = size_t{1} << 20;
};

// A file the steps left under /out, copied out of the output disk.
struct ScriptArtifact {
  std::string name;
  std::string path;  // in run.scratch
};

// What the run measured (the build metrics and the benchmark).
struct ScriptTimings {
  double sourceSeconds = 0;  // fetch and the source image
  double bootSeconds = 0;    // builder start until the agent said hello
  double stepsSeconds = 0;
  double teardownSeconds = 0;  // the job's end until the builder is gone and the outputs read
};

// A script build: the source fetched at its pinned commit (spec.gitCommit, which the caller
// sets from resolveSourceCommit when the spec follows a ref) by libgit2 (GitSource::exportTree),
// or written from the directory archive of spec.sourceTree (checked again: it may have come from
// a caller), into an ext4 image (read-only in the builder, serial hyper-src), an empty ext4 output
// disk (hyper-out, spec.outputSizeMiB), a builder VM with no network device at all (or, with
// run.network, one on a tap made for it on the build network's bridge as an isolated port, gone
// with the builder), booted from
// run.kernel and run.initrd with run.rootfs as its disk (the steps run chrooted in an overlay of
// it), its secrets delivered over the secrets channel before the agent starts, the steps run by
// hyper-build-agent as uid 1000 in /build with scriptEnvironment(spec), their output relayed to
// `log` line by line, and, when every step succeeded, each output read from the output disk with
// debugfs once the builder powered off. The builder never outlives the call, except a failed
// one with spec.keepFailed, which stays up (builderVmName) for inspection until the next build of
// that name or releaseBuilder. Errors say which step failed with which exit code, or what broke.
Result<std::vector<ScriptArtifact>> runScriptBuild(const BuildSpec& spec, const ScriptRun& run,
                                                   BuildLog& log, ScriptTimings* timings = nullptr);

// The commit a script build's source is at now: spec.gitCommit as it is, or the commit
// spec.gitRef names on the remote (a ref listing, no fetch), read with the bare repository kept
// for the URL under `gitCacheDir`. Errors name the URL (without credentials) and the ref.
Result<std::string> resolveSourceCommit(const BuildSpec& spec, const std::string& gitCacheDir,
                                        std::chrono::milliseconds timeout);

// The builder VM of the Build `buildName`: "build-" and 16 hex of the name's SHA-256 (a VM name
// is a DNS label; a Build's name may be longer).
std::string builderVmName(const std::string& buildName);

// Stops a builder kept by keepFailed (or left by a crash) and removes its tap, if it had one.
// True when one was running.
Result<bool> releaseBuilder(vmm::VmDriver& driver, const std::string& buildName);

// The one line a step's failure is told with: "step 2 [make, install] exited with code 2".
std::string describeStepFailure(const BuildSpec& spec, int step, int code);

}  // namespace hyper::providers::build
