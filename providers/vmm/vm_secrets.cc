#include "providers/vmm/vm_secrets.h"

#include "store/secret_value.h"

namespace hyper::providers::vmm {

namespace {

const Object* findSecret(const std::vector<std::shared_ptr<const Object>>& revision,
                         const std::string& name) {
  for (const auto& o : revision) {
    if (o->id.kind == "Secret" && o->id.name == name) {
      return o.get();
    }
  }
  return nullptr;
}

bool hasValue(const Json& spec, const std::string& key) {
  for (const char* section : {"sealed", "fromFile"}) {
    if (spec.is_object() && spec.contains(section) && spec[section].is_object() &&
        spec[section].contains(key)) {
      return true;
    }
  }
  return false;
}

}  // namespace

Json secretFingerprintsNow(const VmManifest& vm,
                           const std::vector<std::shared_ptr<const Object>>& revision,
                           const store::KeyRing& ring) {
  Json out = Json::object();
  for (const auto& s : vm.secrets) {
    const Object* secret = findSecret(revision, s.secret);
    if (secret == nullptr) {
      out[s.id()] = nullptr;
      continue;
    }
    auto value = store::openSecretValue(ring, s.secret, secret->spec, s.key);
    out[s.id()] =
        value.isOk() ? Json(ring.fingerprint({"Secret", s.secret, s.key}, value->view())) : Json();
  }
  return out;
}

Result<std::vector<SecretGrant>> openGrants(const VmManifest& vm,
                                            const std::map<ObjectId, ManagedRecord>& references,
                                            const store::KeyRing& ring,
                                            const std::set<std::string>* only, Json& fingerprints) {
  std::vector<SecretGrant> out;
  fingerprints = Json::object();
  for (const auto& s : vm.secrets) {
    if (only != nullptr && only->count(s.id()) == 0) {
      continue;
    }
    auto record = references.find(ObjectId{"Secret", s.secret});
    if (record == references.end()) {
      return Status::error("Secret/" + s.secret +
                           " is not applied (expected it applied before the VM that gets " +
                           s.id() + ")");
    }
    HYPER_ASSIGN_OR_RETURN(store::SecretBytes value,
                           store::openSecretValue(ring, s.secret, record->second.spec, s.key));
    fingerprints[s.id()] = ring.fingerprint({"Secret", s.secret, s.key}, value.view());
    out.push_back({s.id(), std::move(value)});
  }
  return out;
}

std::pair<std::string, std::string> checkGrants(
    const VmManifest& vm, const std::vector<std::shared_ptr<const Object>>& revision) {
  for (size_t i = 0; i < vm.secrets.size(); ++i) {
    const SecretMount& s = vm.secrets[i];
    const Object* secret = findSecret(revision, s.secret);
    if (secret == nullptr) {
      continue;  // the reference check says the Secret is missing
    }
    if (!hasValue(secret->spec, s.key)) {
      return {"spec.secrets[" + std::to_string(i) + "].key",
              "Secret " + s.secret + " has no value \"" + s.key +
                  "\": expected a key of its spec.sealed or spec.fromFile"};
    }
  }
  return {"", ""};
}

}  // namespace hyper::providers::vmm
