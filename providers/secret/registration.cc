// The Secret provider's registration (providers/builtin.cc lists it).

#include <set>

#include "providers/secret/secret_provider.h"
#include "reconciler/kind_registry.h"

namespace hyper::providers {

ProviderRecord provider_secret() {
  KindRecord s;
  s.kind = "Secret";
  s.plural = "secrets";
  s.schema = embeddedSchemaText("secret.schema.json");
  // How many values, and the key ids the sealed ones were sealed to (what `hyperctl keys`
  // lists): never a value or a fingerprint.
  s.columns = {
      {"VALUES",
       [](const GetRow& row) {
         const Json& h = row.record ? row.record->handles : Json();
         return h.is_object() && h.contains("values") && h["values"].is_object()
                    ? std::to_string(h["values"].size())
                    : std::string("-");
       }},
      {"KEYS",
       [](const GetRow& row) {
         const Json& h = row.record ? row.record->handles : Json();
         if (!h.is_object() || !h.contains("keyIds") || !h["keyIds"].is_object()) {
           return std::string("-");
         }
         std::set<std::string> ids;
         for (const auto& [key, id] : h["keyIds"].items()) {
           ids.insert(id.is_string() ? id.get<std::string>() : "?");
         }
         std::string out;
         for (const auto& id : ids) {
           out += (out.empty() ? "" : ",") + id;
         }
         return out.empty() ? std::string("-") : out;
       }},
  };

  ProviderRecord record;
  record.name = "secret";
  record.kinds = {std::move(s)};
  record.make = [](const Json&, const std::string& stateDir) -> Result<std::unique_ptr<Provider>> {
    return std::unique_ptr<Provider>(
        std::make_unique<secret::SecretProvider>(secret::SecretProviderConfig{stateDir}));
  };
  return record;
}

}  // namespace hyper::providers
