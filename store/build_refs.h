#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "reconciler/managed_record.h"
#include "reconciler/object.h"
#include "reconciler/record_list.h"
#include "store/artifact_store.h"

namespace hyper::store {

// An artifact another object takes from a Build ({build: NAME, artifact: A}): a VM's kernel, an
// initramfs's kernel modules. Which bytes it is comes from the Build's inventory record
// (handles.artifacts.A.digest, as the Build provider writes it) and the content-addressed store;
// whoever reads it never calls the Build provider.

// The Builds of one observe, indexed once (observe runs every reconcile; a scan of the revision
// and the inventory per referring object would be quadratic).
struct BuildIndex {
  std::map<std::string, const ManagedRecord*> records;  // by Build name
  std::map<std::string, const Object*> desired;         // by Build name
  static BuildIndex of(const std::vector<std::shared_ptr<const Object>>* revision,
                       const RecordList* inventory);
};

// In observe, for plan: {"build", "artifact", "digest"?, "pending"?, "error"?}. `digest` is the
// artifact the Build's record names (when it is in the store); `pending` when the Build changes
// in this apply (not built yet, its spec changed, or its artifact is gone from the store), so the
// digest is known only after it; `error` when the Build's record has no such artifact.
Json artifactContext(const std::string& build, const std::string& artifact,
                     const BuildIndex& builds, const ArtifactStore& store);

// In apply: the digest of the artifact from the Build's record as it is now (the engine passes
// the records of what the object references, applied before it), checked to be in the store.
Result<std::string> artifactDigest(const std::string& build, const std::string& artifact,
                                   const std::map<ObjectId, ManagedRecord>& references,
                                   const ArtifactStore& store);

// The record's handles[field] of a Build ("kernelVersion"), or null.
const Json* buildHandle(const ManagedRecord& record, const char* field);

}  // namespace hyper::store
