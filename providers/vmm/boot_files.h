#pragma once

#include <map>
#include <string>

#include "base/status.h"
#include "providers/vmm/vm_spec.h"
#include "store/build_refs.h"

namespace hyper::providers::vmm {

// A VM's kernel and initrd that a Build makes ({build: NAME, artifact: A}): which bytes they are
// (store/build_refs.h reads the Build's record and the store).
using store::BuildIndex;

// In observe, for plan: {"kernel"|"initrd"|"disk": store::artifactContext(...)} for each file from
// a build. Null when the VM boots no build's file.
Json bootContext(const VmManifest& vm, const BuildIndex& builds, const store::ArtifactStore& store);

// In apply: the digest of `ref`'s artifact from the Build's record as it is now.
Result<std::string> artifactDigest(const BuildRef& ref,
                                   const std::map<ObjectId, ManagedRecord>& references,
                                   const store::ArtifactStore& store);

}  // namespace hyper::providers::vmm
