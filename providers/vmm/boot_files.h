#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "providers/vmm/vm_spec.h"
#include "reconciler/managed_record.h"
#include "store/artifact_store.h"

namespace hyper::providers::vmm {

// A VM's kernel and initrd that a Build makes ({build: NAME, artifact: A}): which bytes they are.
// The Build's inventory record says (handles.artifacts.A.digest, as the Build provider writes
// it), and the content-addressed store (store/) holds them; the VM provider reads both and never
// the Build provider.

// The Builds of one observe, indexed once (observe runs every reconcile; a scan of the revision
// and the inventory per VM would be quadratic).
struct BuildIndex {
  std::map<std::string, const ManagedRecord*> records;  // by Build name
  std::map<std::string, const Object*> desired;         // by Build name
  static BuildIndex of(const std::vector<std::shared_ptr<const Object>>* revision,
                       const std::vector<ManagedRecord>* inventory);
};

// In observe, for plan: {"kernel"|"initrd": {"build", "artifact", "digest"?, "pending"?,
// "error"?}} for each boot file from a build. `digest` is the artifact the Build's record names
// (when it is in the store); `pending` when the Build changes in this apply (not built yet, its
// spec changed, or its artifact is gone from the store), so the digest is known after it;
// `error` when the Build's record has no such artifact. Null when the VM boots no build's file.
Json bootContext(const VmManifest& vm, const BuildIndex& builds, const store::ArtifactStore& store);

// In apply: the digest of `ref`'s artifact from the Build's record as it is now (the engine
// passes the records of what the VM references, applied before it), checked to be in the store.
Result<std::string> artifactDigest(const BuildRef& ref,
                                   const std::map<ObjectId, ManagedRecord>& references,
                                   const store::ArtifactStore& store);

}  // namespace hyper::providers::vmm
