#include "reconciler/kind_registry.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace hyper {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string show(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// The names `type` may take for a kind, lower-cased.
std::vector<std::string> namesOf(const KindRecord& k) {
  std::vector<std::string> out = {lower(k.kind), lower(k.plural)};
  for (const auto& s : k.shortNames) {
    out.push_back(lower(s));
  }
  return out;
}

Status checkSettingsSchema(const ProviderRecord& p, Json& parsed) {
  if (p.settingsSchema.empty()) {
    parsed = Json();
    return Status::ok();
  }
  parsed = Json::parse(p.settingsSchema, nullptr, /*allow_exceptions=*/false);
  const std::string what = "provider " + p.name + ": settings schema";
  if (!parsed.is_object() || parsed.value("type", "") != "object" ||
      !parsed.contains("properties") || !parsed["properties"].is_object()) {
    return Status::error(what + " is not a JSON object schema with properties");
  }
  for (const auto& [key, prop] : parsed["properties"].items()) {
    if (!prop.is_object() || prop.value("type", "") != "string") {
      return Status::error(what + ": property " + key +
                           " is not of type string (every setting is also a flag)");
    }
  }
  return Status::ok();
}

}  // namespace

std::string GetRow::field(const std::string& name) const {
  if (spec.is_object() && spec.contains(name) && !spec[name].is_null()) {
    return show(spec[name]);
  }
  if (record != nullptr && record->handles.is_object() && record->handles.contains(name)) {
    return show(record->handles[name]);
  }
  if (observed != nullptr && observed->fields.is_object() && observed->fields.contains(name)) {
    return show(observed->fields[name]);
  }
  return "-";
}

std::string GetRow::observedField(const std::string& name) const {
  if (observed != nullptr && observed->fields.is_object() && observed->fields.contains(name)) {
    return observed->fields[name].dump();
  }
  return "-";
}

Column fieldColumn(std::string header, std::string name, bool wide) {
  return {std::move(header), [name](const GetRow& row) { return row.field(name); }, wide};
}

Result<std::shared_ptr<const KindRegistry>> KindRegistry::create(
    std::vector<ProviderRecord> records) {
  auto out = std::shared_ptr<KindRegistry>(new KindRegistry());
  std::set<std::string> providerNames;
  std::set<std::string> typeNames;
  std::vector<std::string> schemaTexts;  // kept alive for EmbeddedSchema's pointers
  std::vector<std::string> schemaNames;
  for (const auto& p : records) {
    if (p.name.empty() || !providerNames.insert(p.name).second) {
      return Status::error("provider \"" + p.name + "\" is registered twice or has no name");
    }
    if (!p.make) {
      return Status::error("provider " + p.name + " has no factory");
    }
    Json parsed;
    HYPER_RETURN_IF_ERROR(checkSettingsSchema(p, parsed));
    for (const auto& k : p.kinds) {
      if (k.kind.empty() || k.plural.empty() || k.schema.empty()) {
        return Status::error("provider " + p.name + ": kind \"" + k.kind +
                             "\" needs a name, a plural and a schema");
      }
      // A kind's own names may coincide (kind "VM", short name "vm"); another kind's may not.
      std::vector<std::string> own = namesOf(k);
      std::sort(own.begin(), own.end());
      own.erase(std::unique(own.begin(), own.end()), own.end());
      for (const auto& n : own) {
        if (!typeNames.insert(n).second) {
          return Status::error("kind " + k.kind + ": the name \"" + n +
                               "\" is already another kind's");
        }
      }
      auto secrets = SecretFields::parse(k.secretFields);
      if (!secrets.isOk()) {
        return Status::error("kind " + k.kind + ": " + secrets.status().message());
      }
      if (!secrets->empty()) {
        out->secretFields_[k.kind] = std::move(*secrets);
      }
      auto sources = FileSourceFields::parse(k.fileSources, k.directorySources);
      if (!sources.isOk()) {
        return Status::error("kind " + k.kind + ": " + sources.status().message());
      }
      if (!sources->empty()) {
        out->fileSources_[k.kind] = std::move(*sources);
      }
      schemaNames.push_back(k.kind + " schema");
      schemaTexts.push_back(k.schema);
    }
  }
  std::string envelope = embeddedSchemaText("object.schema.json");
  std::vector<EmbeddedSchema> schemas = {{"object.schema.json", envelope.c_str()}};
  for (size_t i = 0; i < schemaTexts.size(); ++i) {
    schemas.push_back({schemaNames[i].c_str(), schemaTexts[i].c_str()});
  }
  HYPER_ASSIGN_OR_RETURN(out->schemas_, SchemaRegistry::fromSchemas(schemas));
  for (const auto& p : records) {
    for (const auto& k : p.kinds) {
      if (!out->schemas_->knowsKind(k.kind)) {
        return Status::error("kind " + k.kind + ": its schema's x-hyper-kind names another kind");
      }
    }
  }
  out->records_ = std::move(records);
  return std::shared_ptr<const KindRegistry>(std::move(out));
}

std::function<bool(const ManagedRecord&)> KindRegistry::runningObjects() const {
  std::map<std::string, std::function<bool(const Json&)>> byKind;
  for (const auto& p : records_) {
    for (const auto& k : p.kinds) {
      if (k.running) {
        byKind[k.kind] = k.running;
      }
    }
  }
  return [byKind = std::move(byKind)](const ManagedRecord& r) {
    auto it = byKind.find(r.id.kind);
    return it != byKind.end() && it->second(r.spec);
  };
}

const SecretFields& KindRegistry::secretFieldsOf(const std::string& kind) const {
  static const SecretFields kNone;
  auto it = secretFields_.find(kind);
  return it == secretFields_.end() ? kNone : it->second;
}

const KindRecord* KindRegistry::find(std::string_view type) const {
  const std::string wanted = lower(type);
  for (const auto& p : records_) {
    for (const auto& k : p.kinds) {
      for (const auto& n : namesOf(k)) {
        if (n == wanted) {
          return &k;
        }
      }
    }
  }
  return nullptr;
}

std::string KindRegistry::pluralsText(const std::function<bool(const KindRecord&)>& only) const {
  std::vector<std::string> plurals;
  for (const auto& p : records_) {
    for (const auto& k : p.kinds) {
      if (!only || only(k)) {
        plurals.push_back(k.plural);
      }
    }
  }
  std::string out;
  for (size_t i = 0; i < plurals.size(); ++i) {
    out += i == 0 ? "" : (i + 1 == plurals.size() ? " or " : ", ");
    out += plurals[i];
  }
  return out;
}

std::vector<KindRegistry::Setting> KindRegistry::settings() const {
  std::vector<Setting> out;
  for (const auto& p : records_) {
    if (p.settingsSchema.empty()) {
      continue;
    }
    Json schema = Json::parse(p.settingsSchema);  // checked in create()
    for (const auto& [key, prop] : schema["properties"].items()) {
      out.push_back({p.name, key, prop.value("description", "")});
    }
  }
  return out;
}

Json KindRegistry::settingsSchema() const {
  Json properties = Json::object();
  std::vector<std::string> names;
  for (const auto& p : records_) {
    if (!p.settingsSchema.empty()) {
      properties[p.name] = Json::parse(p.settingsSchema);
      names.push_back(p.name);
    }
  }
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) {
    list += (i == 0 ? "" : ", ") + names[i];
  }
  return {{"type", "object"},
          {"additionalProperties", false},
          {"description", "a mapping of provider settings, by provider: " + list},
          {"properties", properties}};
}

Result<std::vector<std::unique_ptr<Provider>>> KindRegistry::makeProviders(
    const Json& settings, const std::string& stateDir) const {
  std::vector<std::unique_ptr<Provider>> out;
  for (const auto& p : records_) {
    Json mine = Json::object();
    if (settings.is_object() && settings.contains(p.name) && settings[p.name].is_object()) {
      mine = settings[p.name];
    }
    auto made = p.make(mine, stateDir);
    if (!made.isOk()) {
      return Status::error("provider " + p.name + " <- " + made.status().message());
    }
    std::vector<std::string> kinds = (*made)->kinds();
    std::vector<std::string> recorded;
    for (const auto& k : p.kinds) {
      recorded.push_back(k.kind);
    }
    std::sort(kinds.begin(), kinds.end());
    std::sort(recorded.begin(), recorded.end());
    if (kinds != recorded) {
      return Status::error("provider " + p.name +
                           ": its kinds() differ from the kinds of its registration");
    }
    out.push_back(std::move(*made));
  }
  return out;
}

std::string embeddedSchemaText(std::string_view fileName) {
  for (const auto& s : embeddedSchemas()) {
    if (fileName == s.fileName) {
      return s.text;
    }
  }
  return "";
}

}  // namespace hyper
