#pragma once

#include <sys/types.h>

#include <mutex>
#include <optional>
#include <string>

#include "reconciler/provider.h"
#include "store/artifact_store.h"
#include "store/provenance.h"

namespace hyper::providers::build {

struct BuildProviderConfig {
  std::string stateDir;                  // the store is <stateDir>/store, logs <stateDir>/builds
  std::string busybox = "/bin/busybox";  // a static busybox (Debian's busybox-static)
};

// The `Build` kind: artifacts hyper builds, content-addressed in the store (store/). A build's
// key is the SHA-256 of its canonical spec, the digest of every input (the busybox binary, the
// gzip that compresses) and the builder's version; a key the store already has is a cache hit that
// does no work. Observe resolves the inputs (hashing busybox once per change of the file) and
// puts the key in ObservedState::context; plan compares it with the key the last apply built;
// apply builds (or takes the store's result) and records {key, type, inputs, artifacts, cached}
// in the handles. What an artifact is made of is deterministic (build_spec.h), so the same key
// gives the same digest on any host.
//
// Every artifact gets an in-toto Statement with a SLSA provenance v1 predicate (the spec, each
// input's digest or version, the builder, the key), signed with the host's ed25519 key in a DSSE
// envelope and kept beside it in the store (store/provenance.h); `hyperctl verify` checks it.
//
// Builds run inside apply, one at a time per object; an initramfs takes well under a second.
class BuildProvider : public Provider {
 public:
  explicit BuildProvider(BuildProviderConfig config);

  std::string name() const override { return "build"; }
  std::vector<std::string> kinds() const override { return {"Build"}; }

  void validate(const ValidateRequest& req, ValidateResponse& resp) const override;
  std::vector<Reference> references(const Object&) const override { return {}; }
  // ObservedState for a Build: exists when the inventory's artifacts are all in the store;
  // fields {key, artifacts} as last built; context {key, inputs, cached} for the spec now.
  void observe(const ObserveRequest& req, ObserveResponse& resp) override;
  // Pure. No record -> Create; the key changed (spec or an input) -> Update, the changes naming
  // what moved; an artifact gone from the store -> Update (drift). Not in the source -> Delete
  // (the artifacts stay in the store for whoever else uses them).
  void plan(const PlanRequest& req, PlanResponse& resp) const override;
  void apply(const ApplyRequest& req, ApplyResponse& resp) override;

  // The version of hyper's builders, part of every key: bump it when a builder's output changes.
  static constexpr const char* kBuilderVersion = "hyper-build/1";

 private:
  // {"busybox": "sha256:...", "gzip": "gzip 1.12", "source:web/init.sh": "sha256:..."}; only
  // what the spec uses (a file source's digest from Object::files). `busybox` carries busybox's
  // digest from one Build to the next of the same observe.
  Result<Json> resolveInputs(const Object& object, std::optional<std::string>& busybox);
  Result<std::string> busyboxDigest();
  void writeLog(const std::string& name, const std::string& text) const;
  // Signs and stores the provenance of `record`'s artifacts (when missing, or `always`).
  Status writeProvenance(const std::string& key, const Json& spec, const Json& record, bool always);

  BuildProviderConfig config_;
  store::ArtifactStore store_;
  std::mutex mu_;  // the caches below
  // busybox's digest, kept while the file's identity (device, inode, size, mtime) is unchanged.
  std::string busyboxStamp_;
  std::string busyboxDigest_;
  std::string gzipVersion_;
  std::optional<store::HostKey> hostKey_;  // loaded (or made) by the first build that signs
};

// The key of a build: sha256 of {builder, spec, inputs} as canonical JSON (64 hex).
std::string buildKey(const Json& spec, const Json& inputs);

}  // namespace hyper::providers::build
