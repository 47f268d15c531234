#include "reconciler/schema.h"

#include <algorithm>

#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

namespace hyper {
namespace {

struct KindSchema {
  Json source;  // kept to explain errors: descriptions and property lists
  valijson::Schema compiled;
};

std::string abbreviate(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 60) {
    text = text.substr(0, 57) + "...";
  }
  return text;
}

const char* typeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::object:
      return "a mapping";
    default:
      return "a value";
  }
}

// Follows "#/definitions/x" references inside one schema document.
const Json* resolve(const Json& root, const Json* node) {
  for (int hops = 0; node && node->is_object() && node->contains("$ref") && hops < 8; ++hops) {
    const std::string ref = (*node)["$ref"].get<std::string>();
    if (ref.rfind("#/", 0) != 0) {
      return node;
    }
    try {
      node = &root.at(Json::json_pointer(ref.substr(1)));
    } catch (const std::exception&) {
      return nullptr;
    }
  }
  return node;
}

// One step down the schema, following the shape of the document.
const Json* schemaChild(const Json& root, const Json* node, const std::string& key, bool index) {
  node = resolve(root, node);
  if (!node || !node->is_object()) {
    return nullptr;
  }
  if (index) {
    auto it = node->find("items");
    return it == node->end() ? nullptr : resolve(root, &*it);
  }
  auto props = node->find("properties");
  if (props != node->end() && props->contains(key)) {
    return resolve(root, &(*props)[key]);
  }
  auto extra = node->find("additionalProperties");
  if (extra != node->end() && extra->is_object()) {
    return resolve(root, &*extra);
  }
  return nullptr;
}

struct Located {
  std::string path;              // "spec.egress.allow[0].cidr"
  const Json* value = nullptr;   // the document value there
  const Json* schema = nullptr;  // the schema node there
};

// Turns valijson's context (["<root>", "[spec]", "[allow]", "[0]"]) into a field path, walking
// the document to tell list indices from keys that look like numbers.
Located locate(const std::vector<std::string>& context, const Json& doc, const std::string& prefix,
               const Json& schemaRoot) {
  Located out{prefix, &doc, &schemaRoot};
  for (size_t i = 1; i < context.size(); ++i) {
    const std::string& seg = context[i];
    std::string key = seg.size() >= 2 && seg.front() == '[' && seg.back() == ']'
                          ? seg.substr(1, seg.size() - 2)
                          : seg;
    bool index = out.value && out.value->is_array();
    if (index) {
      size_t n = std::strtoul(key.c_str(), nullptr, 10);
      out.path = appendIndex(out.path, n);
      out.value = n < out.value->size() ? &(*out.value)[n] : nullptr;
    } else {
      out.path = appendKey(out.path, key);
      out.value = out.value && out.value->is_object() && out.value->contains(key)
                      ? &(*out.value)[key]
                      : nullptr;
    }
    out.schema = out.schema ? schemaChild(schemaRoot, out.schema, key, index) : nullptr;
  }
  return out;
}

std::string expected(const Json* schema) {
  if (schema && schema->is_object() && schema->contains("description") &&
      (*schema)["description"].is_string()) {
    return " (expected " + (*schema)["description"].get<std::string>() + ")";
  }
  return "";
}

std::string quotedBetween(const std::string& text, char open, char close) {
  size_t a = text.find(open);
  if (a == std::string::npos) {
    return "";
  }
  size_t b = text.find(close, a + 1);
  return b == std::string::npos ? "" : text.substr(a + 1, b - a - 1);
}

std::string knownFields(const Json* schema) {
  if (!schema || !schema->contains("properties")) {
    return "";
  }
  std::string out;
  for (const auto& [name, _] : (*schema)["properties"].items()) {
    out += out.empty() ? name : ", " + name;
  }
  return " (expected one of: " + out + ")";
}

void explain(const valijson::ValidationResults::Error& error, const Json& doc,
             const std::string& prefix, const KindSchema& kind, const SourceMap& sourceMap,
             const std::string& objectLabel, Diagnostics& out) {
  Located at = locate(error.context, doc, prefix, kind.source);
  const std::string& d = error.description;
  Diagnostic diag;
  diag.object = objectLabel;
  if (d.find("could not be validated using 'properties'") != std::string::npos) {
    std::string field = quotedBetween(d.substr(d.rfind(':')), '\'', '\'');
    diag.fieldPath = appendKey(at.path, field);
    diag.summary = "unknown field \"" + field + "\"" + knownFields(resolve(kind.source, at.schema));
  } else if (d.rfind("Missing required property", 0) == 0) {
    std::string field = quotedBetween(d, '\'', '\'');
    diag.fieldPath = appendKey(at.path, field);
    const Json* fieldSchema = schemaChild(kind.source, at.schema, field, false);
    diag.summary = "missing required field \"" + field + "\"" + expected(fieldSchema);
    diag.where = sourceMap.locate(at.path);
  } else {
    diag.fieldPath = at.path;
    std::string found = at.value ? abbreviate(*at.value) : "nothing";
    if (d.find("'type' constraint") != std::string::npos) {
      diag.summary = "wrong type: found " +
                     std::string(at.value ? typeName(*at.value) : "nothing") +
                     (at.value && !at.value->is_structured() ? " " + found : "");
    } else if (d.find("regex") != std::string::npos || d.find("enum") != std::string::npos) {
      diag.summary = "invalid value " + found;
    } else if (d.find("greater than") != std::string::npos ||
               d.find("less than") != std::string::npos) {
      diag.summary = "found " + found + ", which is out of range";
    } else {
      diag.summary = "invalid value " + found + ": " + d;
    }
    diag.summary += expected(at.schema);
  }
  if (!diag.where.known() || diag.where.line == 0) {
    diag.where = sourceMap.locate(diag.fieldPath);
  }
  out.add(std::move(diag));
}

// valijson reports a failure at every level above the one that failed ("Failed to validate
// against schema associated with property name 'spec'"); keep only the deepest.
std::vector<valijson::ValidationResults::Error> leafErrors(valijson::ValidationResults& results) {
  std::vector<valijson::ValidationResults::Error> all;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) {
    all.push_back(e);
  }
  std::vector<valijson::ValidationResults::Error> leaves;
  for (size_t i = 0; i < all.size(); ++i) {
    bool generic = all[i].description.rfind("Failed to validate", 0) == 0;
    bool hasDeeper = std::any_of(all.begin(), all.end(), [&](const auto& other) {
      return other.context.size() > all[i].context.size() &&
             std::equal(all[i].context.begin(), all[i].context.end(), other.context.begin());
    });
    if (!(generic && hasDeeper)) {
      leaves.push_back(all[i]);
    }
  }
  return leaves;
}

}  // namespace

struct SchemaRegistry::Impl {
  std::unique_ptr<KindSchema> envelope;
  std::map<std::string, std::unique_ptr<KindSchema>> kinds;
  mutable std::mutex mu;  // valijson's Validator caches compiled regexes
  mutable valijson::Validator validator;
};

SchemaRegistry::SchemaRegistry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SchemaRegistry::~SchemaRegistry() = default;

Result<std::shared_ptr<const SchemaRegistry>> SchemaRegistry::builtin() {
  static Result<std::shared_ptr<const SchemaRegistry>> registry = fromSchemas(embeddedSchemas());
  return registry;
}

Result<std::shared_ptr<const SchemaRegistry>> SchemaRegistry::fromSchemas(
    const std::vector<EmbeddedSchema>& schemas) {
  auto impl = std::make_unique<Impl>();
  for (const auto& s : schemas) {
    auto kind = std::make_unique<KindSchema>();
    std::string kindName;
    try {
      kind->source = Json::parse(s.text);
      kindName = kind->source.value("x-hyper-kind", "");
      valijson::SchemaParser parser;
      valijson::adapters::NlohmannJsonAdapter adapter(kind->source);
      parser.populateSchema(adapter, kind->compiled);
    } catch (const std::exception& e) {
      return Status::error(std::string("load schema ") + s.fileName + " <- " + e.what());
    }
    if (kindName.empty()) {
      return Status::error(std::string("load schema ") + s.fileName +
                           " <- no \"x-hyper-kind\" naming the kind it checks");
    }
    if (kindName == "*") {
      impl->envelope = std::move(kind);
    } else {
      impl->kinds[kindName] = std::move(kind);
    }
  }
  if (!impl->envelope) {
    return Status::error("load schemas <- no envelope schema (x-hyper-kind \"*\")");
  }
  return std::shared_ptr<const SchemaRegistry>(new SchemaRegistry(std::move(impl)));
}

bool SchemaRegistry::knowsKind(const std::string& kind) const {
  return impl_->kinds.count(kind) > 0;
}

std::vector<std::string> SchemaRegistry::kinds() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : impl_->kinds) {
    out.push_back(name);
  }
  return out;
}

void SchemaRegistry::validate(const Json& document, const SourceMap& sourceMap,
                              const std::string& objectLabel, Diagnostics& out) const {
  auto run = [&](const KindSchema& schema, const Json& target, const std::string& prefix) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    valijson::adapters::NlohmannJsonAdapter adapter(target);
    // Fast path: most documents are valid, and validating without collecting results stops at
    // the first failure. Only a failing document pays for the full explanation.
    if (impl_->validator.validate(schema.compiled, adapter, nullptr)) {
      return true;
    }
    valijson::ValidationResults results;
    impl_->validator.validate(schema.compiled, adapter, &results);
    for (const auto& error : leafErrors(results)) {
      explain(error, target, prefix, schema, sourceMap, objectLabel, out);
    }
    return false;
  };

  if (!document.is_object()) {
    out.add({Severity::Error, sourceMap.locate(""), objectLabel, "",
             std::string("the document is ") + typeName(document) +
                 " (expected a mapping with apiVersion, kind, metadata and spec)"});
    return;
  }
  bool envelopeOk = run(*impl_->envelope, document, "");
  auto kindIt = document.find("kind");
  if (kindIt == document.end() || !kindIt->is_string()) {
    return;  // reported by the envelope schema
  }
  auto kind = impl_->kinds.find(kindIt->get<std::string>());
  if (kind == impl_->kinds.end()) {
    std::string known;
    for (const auto& [name, _] : impl_->kinds) {
      known += known.empty() ? name : ", " + name;
    }
    out.add(
        {Severity::Error, sourceMap.locate("kind"), objectLabel, "kind",
         "unknown kind \"" + kindIt->get<std::string>() + "\" (expected one of: " + known + ")"});
    return;
  }
  auto spec = document.find("spec");
  if (spec != document.end() && spec->is_object()) {
    run(*kind->second, *spec, "spec");
  }
  (void)envelopeOk;
}

Status validateWithSchema(const std::string& schemaText, const Json& document,
                          const SourceMap& sourceMap, Diagnostics& out) {
  KindSchema schema;
  try {
    schema.source = Json::parse(schemaText);
    valijson::SchemaParser parser;
    valijson::adapters::NlohmannJsonAdapter schemaAdapter(schema.source);
    parser.populateSchema(schemaAdapter, schema.compiled);
  } catch (const std::exception& e) {
    return Status::error(std::string("load schema <- ") + e.what());
  }
  valijson::Validator validator;
  valijson::adapters::NlohmannJsonAdapter adapter(document);
  valijson::ValidationResults results;
  if (!validator.validate(schema.compiled, adapter, &results)) {
    for (const auto& error : leafErrors(results)) {
      explain(error, document, "", schema, sourceMap, "", out);
    }
  }
  return Status::ok();
}

}  // namespace hyper
