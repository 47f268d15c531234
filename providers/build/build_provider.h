#pragma once

#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "base/fd.h"
#include "providers/build/build_queue.h"
#include "providers/build/debian_package.h"
#include "providers/build/rootfs_build.h"
#include "providers/vmm/vm_driver.h"
#include "reconciler/provider.h"
#include "store/artifact_store.h"
#include "store/build_refs.h"
#include "store/provenance.h"
#include "store/secret_value.h"

namespace hyper::providers::build {

struct BuildProviderConfig {
  std::string stateDir;                  // the store is <stateDir>/store, logs <stateDir>/builds
  std::string busybox = "/bin/busybox";  // a static busybox (Debian's busybox-static)
  // hyper-build-agent (static), put at /bin/hyper-build-agent in images with hyperInit so that
  // they can boot builder VMs; its digest is then an input. "" = images without it.
  std::string buildAgent;
  std::string debCache = "/var/cache/hyper/debs";  // downloaded .debs, checked by their SHA256
  std::chrono::milliseconds buildTimeout{std::chrono::minutes(20)};  // per build
  size_t concurrency = 2;  // builds at once (the queue's threads)
  // Script builds' builder VMs: the driver, or, when null, QEMU with its run dirs under
  // builderRunRoot (keep it short: Unix socket paths are limited to 107 bytes).
  std::shared_ptr<vmm::VmDriver> builderDriver;
  std::string builderRunRoot = "/run/hyper/builders";
};

// The `Build` kind: artifacts hyper builds, content-addressed in the store (store/). Types:
//   initramfs      a gzipped newc cpio: busybox, hyper's guest init, kernel modules taken from a
//                  debian-kernel Build (resolved with their dependencies), files -> "initrd"
//   debian-kernel  Debian's kernel package, downloaded by apt and checked against the archive's
//                  SHA256 -> "vmlinuz" and "modules" (lib/modules/<version> with modules.dep)
//   rootfs         a Debian root filesystem (mmdebstrap from the host's apt lists of a suite)
//                  as an erofs (read-only) or ext4 image -> "rootfs"
//   script         steps run from a git commit's source inside an ephemeral builder VM booted
//                  from other Builds (script_build.h) -> each of spec.script.outputs
// A build's key is the SHA-256 of its canonical spec, every input (the busybox binary's digest,
// the versions of gzip, tar and depmod, the exact package version and .deb digest a package name
// resolves to today, the digest of a referenced Build's artifact) and the builder's version; a
// key the store already has is a cache hit that does no work. Observe resolves the inputs
// (hashing busybox once per change of the file, asking apt once per change of its lists) and puts
// the key in ObservedState::context; plan compares it with the key the last apply built; apply
// builds (or takes the store's result) and records {key, type, inputs, artifacts, cached} in the
// handles. What an artifact is made of is deterministic (build_spec.h, kernel_build.h), so the
// same key gives the same digest on any host.
//
// Content applied before keeps its key (ObserveRequest::keptKeys, keepKey): its Builds take the
// artifacts they were applied with, not what moving inputs resolve to now, while the store has
// them; a rollback (a revert, an old commit) gets back what ran then, with no build.
//
// An initramfs whose kernel Build changes in the same apply has no key until that Build is built:
// plan says it waits for it, and apply works the key out from the kernel's record as it is then
// (ApplyRequest::references).
//
// Every artifact gets an in-toto Statement with a SLSA provenance v1 predicate (the spec, each
// input's digest or version, the builder, the key), signed with the host's ed25519 key in a DSSE
// envelope and kept beside it in the store (store/provenance.h); `hyperctl verify` checks it.
//
// Builds run on the provider's queue (build_queue.h), beside the reconcile: apply submits the key
// (a key already building is joined, never built twice at once) and, when the engine allows it
// (ApplyRequest::mayDefer, hyperd), answers "in progress" at once; the queue's EventSource wakes
// hyperd's loop when the build is done, and the next apply records it. hyperctl waits for it
// instead. A build has the build timeout (its process group killed past it); a Build whose spec
// moves on while its old key builds cancels that job. What happens goes out as progress events
// with the build metrics.
class BuildProvider : public Provider, public EventSource, public ProgressSource {
 public:
  explicit BuildProvider(BuildProviderConfig config);

  std::string name() const override { return "build"; }
  std::vector<std::string> kinds() const override { return {"Build"}; }

  void validate(const ValidateRequest& req, ValidateResponse& resp) const override;
  // An initramfs's kernel Build (spec.initramfs.kernel.build); a script's builder Builds and its
  // Secrets.
  std::vector<Reference> references(const Object& object) const override;
  // ObservedState for a Build: exists when the inventory's artifacts are all in the store;
  // fields {key, artifacts} as last built; context {key, inputs, cached} for the spec now.
  void observe(const ObserveRequest& req, ObserveResponse& resp) override;
  // Pure. No record -> Create; the key changed (spec or an input) -> Update, the changes naming
  // what moved; an artifact gone from the store -> Update (drift). Not in the source -> Delete
  // (the artifacts stay in the store for whoever else uses them).
  void plan(const PlanRequest& req, PlanResponse& resp) const override;
  void apply(const ApplyRequest& req, ApplyResponse& resp) override;

  // EventSource: readable when a queued build finished (hyperd's loop then records it).
  Result<int> startWatching() override;
  bool drainEvents() override;
  // ProgressSource: queued, started, each log line, finished or failed, cached; with the build
  // metrics (duration by type and result, queue wait, cache hits and misses).
  std::vector<ProgressEvent> takeProgress() override;

  // `hyperctl build release NAME`: stops the builder a failed script build kept (keepFailed).
  // True when one was running.
  Result<bool> releaseBuilder(const std::string& buildName);

  // The version of hyper's builders, part of every key: bump it when a builder's output changes.
  static constexpr const char* kBuilderVersion = "hyper-build/1";

 private:
  struct ObserveScope;
  // The inputs of `object`'s build as they are now: flat {name: digest or version}, only what
  // its type and spec use ({"busybox": "sha256:...", "gzip": "gzip 1.12", "kernel":
  // "sha256:...", "source:web/init.sh": "sha256:..."}; a file source's digest from
  // Object::files). A referenced Build that changes in this apply leaves `pending` naming it.
  // Errors go to `diags` with the field they come from.
  std::optional<Json> resolveInputs(const Object& object, ObserveScope& scope, Diagnostics& diags,
                                    std::string& pending);
  Result<std::string> busyboxDigest();
  // The digest of config_.buildAgent ("" when none is configured).
  Result<std::string> buildAgentDigest() const;
  // ObserveRequest::keptKeys: when this revision's content was applied before, the first key it
  // was applied with that is still good (its artifacts in the store, made from this spec and, for
  // an initramfs, from the kernel its kernel Build has now) goes in `s.context` as the key, with
  // no input resolved. False: none is (or none was kept); resolve the inputs as usual.
  bool keepKey(const Object& object, const ManagedRecord* record, ObservedState& s,
               ObserveScope& scope);
  // The store's record of `key` when it is such a key; `kernelDigest` "" for no kernel.
  std::optional<Json> keptRecord(const Object& object, const std::string& key,
                                 const std::string& kernelDigest) const;
  // buildKey, remembered per Build name while its spec and inputs stay the same.
  std::string cachedKey(const std::string& name, const Json& spec, const Json& inputs);
  Result<std::string> toolVersion(const std::string& tool);
  // `cache[key]`, computed (outside the lock) when absent and kept. With a `stamp` (apt's lists),
  // the caches read from apt's lists are emptied when it moved.
  template <typename T, typename Compute>
  Result<T> remembered(std::map<std::string, T>& cache, const std::string& key,
                       const std::string& stamp, Compute compute);
  // modules.dep of a modules artifact, kept per digest (observe checks module names with it).
  Result<std::string> modulesDep(const std::string& digest);

  // What a build runs with, on the queue's thread (nothing of the ApplyRequest, which is gone).
  struct BuildContext {
    ObjectId id;
    Json spec;
    Json inputs;
    std::string key;
    std::map<std::string, std::shared_ptr<const SourceBlob>> files;  // Object::files
    std::map<std::string, Json> secretSpecs;    // script: each Secret's spec, by name (sealed text)
    const std::atomic<bool>* cancel = nullptr;  // the job's: its owners left, or shutdown
    BuildJob::Clock::time_point deadline = BuildJob::Clock::time_point::max();
  };
  // A queued job: builds, signs and records the key. The log goes to the log file and out as
  // progress line by line.
  Status runBuild(const BuildContext& ctx, BuildJob& job);
  // The build itself: the artifacts it made ({name: {digest, size}}) and extra record fields.
  Result<Json> buildInitramfs(const BuildContext& ctx, BuildLog& log);
  Result<Json> buildDebianKernel(const BuildContext& ctx, BuildLog& log);
  Result<Json> buildRootfs(const BuildContext& ctx, BuildLog& log);
  Result<Json> buildScript(const BuildContext& ctx, BuildLog& log);
  // A script's builder inputs ({"builderKernel": digest, ...}) with `digestOf(build, artifact)`
  // giving each referenced artifact's digest; pending names a Build not applied yet.
  Status scriptInputs(const Object& object, Json& inputs, std::string& pending,
                      const std::function<Json(const std::string&, const std::string&)>& digestOf,
                      Diagnostics& diags, bool inApply);
  // The commit a followed branch or tag of `url` is at, from a ref listing kept for
  // kRefCommitTtl (an observe per loop wake would otherwise ask the remote each time).
  Result<std::string> refCommit(const std::string& url, const std::string& ref);
  static constexpr std::chrono::seconds kRefCommitTtl{15};
  // An address for Build `name`'s builder on `network`: the highest host address of `cidr` that
  // is not the gateway and not another builder's (VMs take the lowest; the network is for
  // builders only). Errors when every one is taken.
  Result<uint32_t> claimBuilderAddress(const std::string& name, const std::string& network,
                                       uint32_t networkAddress, int prefix, uint32_t gateway);
  void releaseBuilderAddress(const std::string& name);
  void reportCached(const ObjectId& id, const std::string& type, const std::string& key);
  void report(ProgressEvent event);
  void appendLog(const std::string& name, const std::string& text) const;
  // The suite's index in the host's apt lists, and which packages they lack: kept until the
  // lists change (apt-cache takes ~1 s).
  Result<SuiteIndex> suiteIndex(const std::string& mirror, const std::string& suite);
  Result<std::vector<std::string>> missingPackages(const std::vector<std::string>& packages);
  host::CommandOptions commandOptions(const BuildContext& ctx) const;

  void writeLog(const std::string& name, const std::string& text) const;
  // Signs and stores the provenance of `record`'s artifacts (when missing, or `always`).
  Status writeProvenance(const std::string& key, const Json& spec, const Json& record, bool always);

  BuildProviderConfig config_;
  store::ArtifactStore store_;
  Apt apt_;
  mutable std::mutex mu_;  // the caches below
  // busybox's digest, kept while the file's identity (device, inode, size, mtime) is unchanged.
  std::string busyboxStamp_;
  std::string busyboxDigest_;
  mutable std::string agentStamp_;  // under mu_
  mutable std::string agentDigest_;
  std::map<std::string, std::string> toolVersions_;  // "gzip" -> "gzip 1.12"
  std::map<std::string, std::string> modulesDeps_;   // modules digest -> modules.dep
  struct KnownKey {
    Json spec;
    Json inputs;
    std::string key;
  };
  std::map<std::string, KnownKey> keys_;  // by Build name
  // "url\nref" -> the commit it named and when that was read
  std::map<std::string, std::pair<std::string, std::chrono::steady_clock::time_point>> refCommits_;
  // Builders' addresses on build networks, by Build name: (network, address). A name keeps its
  // address while its builder is kept (keepFailed); the next build of the name takes it again.
  std::map<std::string, std::pair<std::string, uint32_t>> builderAddresses_;
  std::string listsStamp_;                                   // apt's lists the two below are for
  std::map<std::string, SuiteIndex> suites_;                 // "mirror suite" -> index
  std::map<std::string, std::vector<std::string>> missing_;  // packages -> unknown ones
  std::optional<store::HostKey> hostKey_;    // loaded (or made) by the first build that signs
  std::shared_ptr<vmm::VmDriver> builders_;  // config_.builderDriver, or QEMU's
  store::KeyRingCache keyRing_;              // opens a script build's secrets

  static constexpr size_t kMaxProgress = 5000;
  std::mutex progressMu_;
  std::deque<ProgressEvent> progress_;  // untaken, oldest first
  Fd doneFd_;                           // eventfd: a job finished
  // Last: destroyed first, so its threads are joined while everything they use still exists.
  BuildQueue queue_;
};

// The key of a build: sha256 of {builder, spec, inputs} as canonical JSON (64 hex).
std::string buildKey(const Json& spec, const Json& inputs);

}  // namespace hyper::providers::build
