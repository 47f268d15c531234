#include "store/build_refs.h"

namespace hyper::store {

namespace {

// handles.artifacts[artifact].digest of a Build's record; "" when it names none. `available`
// collects the names it has, for the error.
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

std::string noSuchArtifact(const std::string& build, const std::string& artifact,
                           const std::string& available) {
  return "Build/" + build + " has no artifact \"" + artifact + "\" (it has " +
         (available.empty() ? std::string("none") : available) + ")";
}

}  // namespace

BuildIndex BuildIndex::of(const std::vector<std::shared_ptr<const Object>>* revision,
                          const RecordList* inventory) {
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

Json artifactContext(const std::string& build, const std::string& artifact,
                     const BuildIndex& builds, const ArtifactStore& store) {
  Json c = {{"build", build}, {"artifact", artifact}};
  auto r = builds.records.find(build);
  const ManagedRecord* record = r == builds.records.end() ? nullptr : r->second;
  auto d = builds.desired.find(build);
  const Object* desired = d == builds.desired.end() ? nullptr : d->second;
  std::string available;
  std::string digest = record ? digestIn(*record, artifact, &available) : "";
  const bool specMoved = record && desired && record->spec != desired->spec;
  if (record == nullptr || specMoved) {
    c["pending"] = true;
  } else if (digest.empty()) {
    c["error"] = noSuchArtifact(build, artifact, available);
  } else if (!store.has(digest)) {
    c["pending"] = true;  // gone from the store: the Build provider builds it again first
    c["digest"] = digest;
  } else {
    c["digest"] = digest;
  }
  return c;
}

Result<std::string> artifactDigest(const std::string& build, const std::string& artifact,
                                   const std::map<ObjectId, ManagedRecord>& references,
                                   const ArtifactStore& store) {
  auto it = references.find({"Build", build});
  if (it == references.end()) {
    return Status::error("Build/" + build + " has not been built (no record of it)");
  }
  std::string available;
  std::string digest = digestIn(it->second, artifact, &available);
  if (digest.empty()) {
    return Status::error(noSuchArtifact(build, artifact, available));
  }
  if (!store.has(digest)) {
    return Status::error("artifact " + digest + " of Build/" + build + " is not in the store " +
                         store.root());
  }
  return digest;
}

const Json* buildHandle(const ManagedRecord& record, const char* field) {
  const Json& h = record.handles;
  auto it = h.is_object() ? h.find(field) : h.end();
  return it == h.end() ? nullptr : &*it;
}

}  // namespace hyper::store
