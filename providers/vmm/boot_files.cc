#include "providers/vmm/boot_files.h"

namespace hyper::providers::vmm {

namespace {

// handles.artifacts[artifact].digest of a Build's record; "" when it names none.
std::string digestIn(const ManagedRecord& record, const std::string& artifact,
                     std::string* available) {
  const Json& h = record.handles;
  if (!h.is_object() || !h.contains("artifacts") || !h["artifacts"].is_object()) {
    return "";
  }
  const Json& artifacts = h["artifacts"];
  for (const auto& [name, a] : artifacts.items()) {
    if (available) {
      *available += (available->empty() ? "" : ", ") + name;
    }
  }
  auto it = artifacts.find(artifact);
  if (it == artifacts.end() || !it->is_object() || !it->contains("digest") ||
      !(*it)["digest"].is_string()) {
    return "";
  }
  return (*it)["digest"].get<std::string>();
}

}  // namespace

BuildIndex BuildIndex::of(const std::vector<std::shared_ptr<const Object>>* revision,
                          const std::vector<ManagedRecord>* inventory) {
  BuildIndex index;
  if (revision != nullptr) {
    for (const auto& o : *revision) {
      if (o->id.kind == "Build") {
        index.desired[o->id.name] = o.get();
      }
    }
  }
  if (inventory != nullptr) {
    for (const auto& r : *inventory) {
      if (r.id.kind == "Build") {
        index.records[r.id.name] = &r;
      }
    }
  }
  return index;
}

Json bootContext(const VmManifest& vm, const BuildIndex& builds,
                 const store::ArtifactStore& store) {
  Json out;
  auto one = [&](const char* field, const BuildRef& ref) {
    if (ref.empty()) {
      return;
    }
    Json c = {{"build", ref.build}, {"artifact", ref.artifact}};
    auto r = builds.records.find(ref.build);
    const ManagedRecord* record = r == builds.records.end() ? nullptr : r->second;
    auto d = builds.desired.find(ref.build);
    const Object* desired = d == builds.desired.end() ? nullptr : d->second;
    std::string available;
    std::string digest = record ? digestIn(*record, ref.artifact, &available) : "";
    const bool specMoved = record && desired && record->spec != desired->spec;
    if (record == nullptr || specMoved) {
      c["pending"] = true;
    } else if (digest.empty()) {
      c["error"] = "Build/" + ref.build + " has no artifact \"" + ref.artifact + "\" (it has " +
                   (available.empty() ? std::string("none") : available) + ")";
    } else if (!store.has(digest)) {
      c["pending"] = true;  // gone from the store: the Build provider builds it again first
      c["digest"] = digest;
    } else {
      c["digest"] = digest;
    }
    out[field] = std::move(c);
  };
  one("kernel", vm.kernelBuild);
  one("initrd", vm.initrdBuild);
  return out;
}

Result<std::string> artifactDigest(const BuildRef& ref,
                                   const std::map<ObjectId, ManagedRecord>& references,
                                   const store::ArtifactStore& store) {
  auto it = references.find({"Build", ref.build});
  if (it == references.end()) {
    return Status::error("Build/" + ref.build + " has not been built (no record of it)");
  }
  std::string available;
  std::string digest = digestIn(it->second, ref.artifact, &available);
  if (digest.empty()) {
    return Status::error("Build/" + ref.build + " has no artifact \"" + ref.artifact +
                         "\" (it has " + (available.empty() ? std::string("none") : available) +
                         ")");
  }
  if (!store.has(digest)) {
    return Status::error("artifact " + digest + " of Build/" + ref.build + " is not in the store " +
                         store.root());
  }
  return digest;
}

}  // namespace hyper::providers::vmm
