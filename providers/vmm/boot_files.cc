#include "providers/vmm/boot_files.h"

namespace hyper::providers::vmm {

Json bootContext(const VmManifest& vm, const BuildIndex& builds,
                 const store::ArtifactStore& store) {
  Json out;
  if (!vm.kernelBuild.empty()) {
    out["kernel"] =
        store::artifactContext(vm.kernelBuild.build, vm.kernelBuild.artifact, builds, store);
  }
  if (!vm.initrdBuild.empty()) {
    out["initrd"] =
        store::artifactContext(vm.initrdBuild.build, vm.initrdBuild.artifact, builds, store);
  }
  if (!vm.diskBuild.empty()) {
    out["disk"] = store::artifactContext(vm.diskBuild.build, vm.diskBuild.artifact, builds, store);
  }
  return out;
}

Result<std::string> artifactDigest(const BuildRef& ref,
                                   const std::map<ObjectId, ManagedRecord>& references,
                                   const store::ArtifactStore& store) {
  return store::artifactDigest(ref.build, ref.artifact, references, store);
}

}  // namespace hyper::providers::vmm
