#include "providers/secret/secret_provider.h"

#include "reconciler/provider_kit.h"

namespace hyper::providers::secret {

namespace {

const Json& section(const Json& spec, const char* name) {
  static const Json empty = Json::object();
  auto it = spec.find(name);
  return it != spec.end() && it->is_object() ? *it : empty;
}

std::string field(const char* sectionName, const std::string& key) {
  return std::string("spec.") + sectionName + "." + key;
}

}  // namespace

void SecretProvider::validate(const ValidateRequest& req, ValidateResponse& resp) const {
  for (const Object* o : req.objects) {
    guarded(resp.diagnostics, o->id, "validate", [&] {
      const Json& sealed = section(o->spec, "sealed");
      const Json& fromFile = section(o->spec, "fromFile");
      for (const auto& [key, value] : sealed.items()) {
        if (!value.is_string()) {
          continue;  // the schema says so
        }
        if (auto parsed = store::parseSealed(value.get<std::string>()); !parsed.isOk()) {
          resp.diagnostics.error(o->id, field("sealed", key), parsed.status().message());
        }
        if (fromFile.contains(key)) {
          resp.diagnostics.error(
              o->id, field("fromFile", key),
              "key \"" + key + "\" is also in spec.sealed: expected each key once");
        }
      }
    });
  }
}

std::optional<Json> SecretProvider::fingerprints(const Object& object, Diagnostics& diags) {
  auto keys = ring_.get();
  if (!keys.isOk()) {
    diags.error(object.id, "", keys.status().message());
    return std::nullopt;
  }
  Json values = Json::object();
  Json keyIds = Json::object();
  bool ok = true;
  for (const char* name : {"sealed", "fromFile"}) {
    for (const auto& [key, value] : section(object.spec, name).items()) {
      if (!value.is_string()) {
        continue;
      }
      SealScope scope{"Secret", object.id.name, key};
      Result<SecretBytes> opened = std::string(name) == "sealed"
                                       ? (*keys)->open(value.get<std::string>(), scope)
                                       : store::readHostSecretFile(value.get<std::string>());
      if (!opened.isOk()) {
        diags.error(object.id, field(name, key), opened.status().message());
        ok = false;
        continue;
      }
      values[key] = (*keys)->fingerprint(scope, opened->view());
      if (std::string(name) == "sealed") {
        keyIds[key] = value.get<std::string>().substr(9, 16);  // after "hyper:v1:"
      }
    }
  }
  if (!ok) {
    return std::nullopt;
  }
  return Json{{"values", values}, {"keyIds", keyIds}};
}

Result<SecretBytes> SecretProvider::openValue(const Object& secret, const std::string& key) {
  auto lock = ring_.lock();
  HYPER_ASSIGN_OR_RETURN(const KeyRing* keys, ring_.get());
  return store::openSecretValue(*keys, secret.id.name, secret.spec, key);
}

void SecretProvider::observe(const ObserveRequest& req, ObserveResponse& resp) {
  auto lock = ring_.lock();
  for (const Object* o : req.desired) {
    ObservedState& s = resp.observed[o->id];
    guarded(resp.diagnostics, o->id, "observe", [&] {
      if (auto f = fingerprints(*o, resp.diagnostics)) {
        s.context = std::move(*f);
      }
    });
  }
  for (const ManagedRecord* r : req.managed) {
    ObservedState& s = resp.observed[r->id];
    // Nothing of a Secret is on the host: it exists once applied.
    s.exists = true;
    s.fingerprint = r->fingerprint;
  }
}

void SecretProvider::plan(const PlanRequest& req, PlanResponse& resp) const {
  if (planPrune(req, resp)) {
    return;
  }
  guarded(resp.diagnostics, req.id, "plan", [&] {
    if (req.observed == nullptr || !req.observed->context.contains("values")) {
      return;  // observe said why
    }
    const Json& now = req.observed->context["values"];
    const Json then = req.managed != nullptr && req.managed->handles.is_object()
                          ? req.managed->handles.value("values", Json::object())
                          : Json();
    PlanAction a;
    a.privateData = req.observed->context;
    auto sectionOf = [&](const std::string& key) {
      return section(req.desired->spec, "sealed").contains(key) ? "sealed" : "fromFile";
    };
    if (req.managed == nullptr) {
      a.type = ActionType::Create;
      a.reason = "not applied yet";
      for (const auto& [key, fp] : now.items()) {
        a.changes.push_back({field(sectionOf(key), key), Json(), "(sealed)"});
      }
    } else {
      for (const auto& [key, fp] : now.items()) {
        if (!then.contains(key)) {
          a.changes.push_back({field(sectionOf(key), key), Json(), "(sealed)"});
        } else if (then[key] != fp) {
          a.changes.push_back({field(sectionOf(key), key), "(sealed)",
                               std::string(sectionOf(key)) == "sealed" ? "(sealed value changed)"
                                                                       : "(file's value changed)"});
        }
      }
      const Json keyIdsThen = req.managed->handles.is_object()
                                  ? req.managed->handles.value("keyIds", Json::object())
                                  : Json::object();
      // The same value sealed to another key (a reseal after a rotation): recorded, so that the
      // old key is seen unused and may be retired.
      const Json& keyIdsNow = req.observed->context.value("keyIds", Json::object());
      for (const auto& [key, id] : keyIdsNow.items()) {
        if (then.contains(key) && then[key] == now[key] && keyIdsThen.contains(key) &&
            keyIdsThen[key] != id) {
          a.changes.push_back({field("sealed", key),
                               "(sealed to key " + keyIdsThen[key].get<std::string>() + ")",
                               "(sealed to key " + id.get<std::string>() + ")"});
        }
      }
      for (const auto& [key, fp] : then.items()) {
        if (!now.contains(key)) {
          a.changes.push_back(
              {field(keyIdsThen.contains(key) ? "sealed" : "fromFile", key), "(sealed)", Json()});
        }
      }
      if (a.changes.empty()) {
        return;
      }
      a.type = ActionType::Update;
      size_t resealed = 0;
      for (const auto& c : a.changes) {
        resealed +=
            c.after.is_string() && c.after.get<std::string>().rfind("(sealed to key ", 0) == 0 ? 1
                                                                                               : 0;
      }
      const size_t changed = a.changes.size() - resealed;
      a.reason = changed == 0 ? "resealed to another key (the values are the same)"
                              : std::to_string(changed) +
                                    (changed == 1 ? " value changed" : " values changed");
    }
    // What the changes show are words, never a value, a fingerprint or the sealed text.
    resp.action = std::move(a);
  });
}

void SecretProvider::apply(const ApplyRequest& req, ApplyResponse& resp) {
  const PlanAction& action = *req.action;
  if (action.type == ActionType::Delete) {
    return;  // nothing on the host
  }
  guarded(resp.diagnostics, action.id, "apply", [&] {
    if (!action.privateData.is_object() || !action.privateData.contains("values")) {
      resp.diagnostics.error(action.id, "", "planned without the values' fingerprints");
      return;
    }
    resp.handles = action.privateData;
    std::string fingerprint;
    for (const auto& [key, fp] : action.privateData["values"].items()) {
      fingerprint += key + "=" + fp.get<std::string>() + ";";
    }
    resp.fingerprint = fingerprint;
  });
}

}  // namespace hyper::providers::secret
