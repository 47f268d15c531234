#include "reconciler/schema.h"

#include <algorithm>
#include <map>

#include <re2/re2.h>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

namespace hyper {
namespace {

// JSON Schema `pattern` constraints are checked here with RE2 and never by valijson: valijson 1.0
// hard-codes std::regex, whose matcher recurses once per input character and overflows an 8 MiB
// stack at a few tens of thousands of characters (a 200000-character label key crashed hyperd).
// RE2 matches in linear time without recursing on the input. Every string with a pattern also
// has a maxLength (a test holds every schema to it), so the error a person reads is about length.
struct KindSchema {
  Json source;                // kept to explain errors and to walk for patterns
  valijson::Schema compiled;  // from `source` without its `pattern` keywords
  std::map<std::string, std::unique_ptr<RE2>> patterns;  // by pattern text
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

// Keywords whose value is a schema, or a map or list of schemas, in the JSON Schema drafts our
// schemas use. A pattern is followed only where checkPatterns walks (properties,
// additionalProperties, items, propertyNames, definitions through $ref); elsewhere it is refused
// when the schema loads, so no pattern is ever silently unchecked.
enum class SchemaSlot { Walked, NotWalked };

Status collectPatterns(Json& node, SchemaSlot slot, const std::string& where, KindSchema& into) {
  if (!node.is_object()) {
    return Status::ok();
  }
  auto pattern = node.find("pattern");
  if (pattern != node.end() && pattern->is_string()) {
    if (slot == SchemaSlot::NotWalked) {
      return Status::error("pattern at " + where + " is where hyper's pattern check does not walk");
    }
    std::string text = pattern->get<std::string>();
    RE2::Options options;
    options.set_encoding(RE2::Options::EncodingLatin1);  // bytes: any input is well-formed
    options.set_log_errors(false);
    auto re = std::make_unique<RE2>(text, options);
    if (!re->ok()) {
      return Status::error("pattern at " + where + " <- " + re->error());
    }
    into.patterns[text] = std::move(re);
    node.erase(pattern);
  }
  // The caller keeps `source` whole; this copy loses what checkPatterns checks instead.
  struct EraseAfter {
    Json& node;
    ~EraseAfter() { node.erase("propertyNames"); }
  } eraseNames{node};
  for (auto& [key, child] : node.items()) {
    std::string at = where + "/" + key;
    if (key == "properties" || key == "definitions" || key == "$defs") {
      if (child.is_object()) {
        for (auto& [name, sub] : child.items()) {
          HYPER_RETURN_IF_ERROR(collectPatterns(sub, slot, at + "/" + name, into));
        }
      }
    } else if (key == "additionalProperties" || key == "items") {
      HYPER_RETURN_IF_ERROR(collectPatterns(child, slot, at, into));
    } else if (key == "propertyNames") {
      // Checked by checkPatterns alone: valijson reports a bad key only as a failure of the
      // whole mapping, without naming the key.
      if (slot == SchemaSlot::NotWalked) {
        return Status::error("propertyNames at " + at + " is where hyper's check does not walk");
      }
      HYPER_RETURN_IF_ERROR(collectPatterns(child, slot, at, into));
    } else if (key == "patternProperties" || key == "dependencies") {
      if (child.is_object()) {
        for (auto& [name, sub] : child.items()) {
          HYPER_RETURN_IF_ERROR(collectPatterns(sub, SchemaSlot::NotWalked, at + "/" + name, into));
        }
      }
    } else if (key == "allOf" || key == "anyOf" || key == "oneOf") {
      if (child.is_array()) {
        for (size_t i = 0; i < child.size(); ++i) {
          HYPER_RETURN_IF_ERROR(
              collectPatterns(child[i], SchemaSlot::NotWalked, at + "/" + std::to_string(i), into));
        }
      }
    } else if (key == "not" || key == "if" || key == "then" || key == "else" || key == "contains") {
      HYPER_RETURN_IF_ERROR(collectPatterns(child, SchemaSlot::NotWalked, at, into));
    }
  }
  return Status::ok();
}

// Loads a schema document: its patterns into RE2, the rest into valijson.
Status loadSchema(const std::string& text, KindSchema& out) {
  try {
    out.source = Json::parse(text);
    Json withoutPatterns = out.source;
    HYPER_RETURN_IF_ERROR(collectPatterns(withoutPatterns, SchemaSlot::Walked, "#", out));
    valijson::SchemaParser parser;
    valijson::adapters::NlohmannJsonAdapter adapter(withoutPatterns);
    parser.populateSchema(adapter, out.compiled);
  } catch (const std::exception& e) {
    return Status::error(e.what());
  }
  return Status::ok();
}

struct PatternFailure {
  std::string path;  // of the value, or of the key that failed propertyNames
  bool isKey = false;
  std::string found;             // the value or key, abbreviated
  const Json* schema = nullptr;  // the schema node with the pattern (for its description)
};

bool matches(const KindSchema& kind, const Json& schema, const std::string& text) {
  auto pattern = schema.find("pattern");
  if (pattern == schema.end() || !pattern->is_string()) {
    return true;
  }
  auto re = kind.patterns.find(pattern->get<std::string>());
  return re == kind.patterns.end() || RE2::PartialMatch(text, *re->second);
}

bool keyAllowed(const KindSchema& kind, const Json& names, const std::string& key) {
  auto max = names.find("maxLength");
  if (max != names.end() && max->is_number_unsigned() && key.size() > max->get<size_t>()) {
    return false;
  }
  auto min = names.find("minLength");
  if (min != names.end() && min->is_number_unsigned() && key.size() < min->get<size_t>()) {
    return false;
  }
  return matches(kind, names, key);
}

// Walks `value` with its schema and reports every string and key that fails its pattern. The
// walk recurses with the document, whose depth the loader bounds (YamlLimits::maxDepth); the
// depth check here only guards documents built elsewhere.
void checkPatterns(const KindSchema& kind, const Json* schema, const Json& value,
                   const std::string& path, int depth, std::vector<PatternFailure>& out) {
  schema = resolve(kind.source, schema);
  if (!schema || !schema->is_object() || depth > 256) {
    return;
  }
  if (value.is_string()) {
    if (!matches(kind, *schema, value.get_ref<const std::string&>())) {
      out.push_back({path, false, abbreviate(value), schema});
    }
  } else if (value.is_object()) {
    auto names = schema->find("propertyNames");
    const Json* namesSchema = names == schema->end() ? nullptr : resolve(kind.source, &*names);
    for (const auto& [key, child] : value.items()) {
      std::string childPath = appendKey(path, key);
      if (namesSchema && namesSchema->is_object() && !keyAllowed(kind, *namesSchema, key)) {
        out.push_back({childPath, true, abbreviate(Json(key)), namesSchema});
      }
      checkPatterns(kind, schemaChild(kind.source, schema, key, false), child, childPath, depth + 1,
                    out);
    }
  } else if (value.is_array()) {
    const Json* items = schemaChild(kind.source, schema, "", true);
    for (size_t i = 0; i < value.size(); ++i) {
      checkPatterns(kind, items, value[i], appendIndex(path, i), depth + 1, out);
    }
  }
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
             const ObjectId& objectLabel, Diagnostics& out) {
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

// Reports the strings and keys of `target` that fail their schema's patterns; true if none.
bool explainPatterns(const KindSchema& kind, const Json& target, const std::string& prefix,
                     const SourceMap& sourceMap, const ObjectId& objectLabel, Diagnostics& out) {
  std::vector<PatternFailure> failures;
  checkPatterns(kind, &kind.source, target, prefix, 0, failures);
  for (const auto& f : failures) {
    Diagnostic diag;
    diag.object = objectLabel;
    diag.fieldPath = f.path;
    diag.summary = (f.isKey ? "invalid key " : "invalid value ") + f.found + expected(f.schema);
    diag.where = sourceMap.locate(f.path);
    out.add(std::move(diag));
  }
  return failures.empty();
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
    Status loaded = loadSchema(s.text, *kind);
    if (!loaded.isOk()) {
      return Status::error(std::string("load schema ") + s.fileName + " <- " + loaded.message());
    }
    if (kind->source.is_object() && kind->source.contains("x-hyper-kind") &&
        kind->source["x-hyper-kind"].is_string()) {
      kindName = kind->source["x-hyper-kind"].get<std::string>();
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
                              const ObjectId& objectLabel, Diagnostics& out) const {
  auto runValijson = [&](const KindSchema& schema, const Json& target, const std::string& prefix) {
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
  auto run = [&](const KindSchema& schema, const Json& target, const std::string& prefix) {
    bool ok = runValijson(schema, target, prefix);
    return explainPatterns(schema, target, prefix, sourceMap, objectLabel, out) && ok;
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
    // The envelope's part of spec (driftPolicy, object.schema.json) is not the kind's: its
    // schema checks the rest.
    if (spec->contains(kEnvelopeSpecField)) {
      Json own = *spec;
      own.erase(kEnvelopeSpecField);
      run(*kind->second, own, "spec");
    } else {
      run(*kind->second, *spec, "spec");
    }
  }
  (void)envelopeOk;
}

Status validateWithSchema(const std::string& schemaText, const Json& document,
                          const SourceMap& sourceMap, Diagnostics& out) {
  KindSchema schema;
  Status loaded = loadSchema(schemaText, schema);
  if (!loaded.isOk()) {
    return Status::error("load schema <- " + loaded.message());
  }
  valijson::Validator validator;
  valijson::adapters::NlohmannJsonAdapter adapter(document);
  valijson::ValidationResults results;
  if (!validator.validate(schema.compiled, adapter, &results)) {
    for (const auto& error : leafErrors(results)) {
      explain(error, document, "", schema, sourceMap, ObjectId{}, out);
    }
  }
  explainPatterns(schema, document, "", sourceMap, ObjectId{}, out);
  return Status::ok();
}

}  // namespace hyper
