// Widget: the extra kind of the kind-registry test (issue 12). A fake provider whose "host" is a
// directory of files, one per widget (`<dir>/<name>`, the spec as JSON), so that two processes
// (hyperctl and hyperd) see the same host and a test can change it by hand. The directory is the
// provider's one setting: `providers.widget.dir`, flag --widget-dir.
//
// All of it is this folder plus one line in tests/kinds/kinds.cc: no controller code knows the
// kind.

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/file.h"
#include "reconciler/kind_registry.h"

namespace hyper::providers {

namespace {

constexpr const char* kWidgetSchema = R"json({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "x-hyper-kind": "Widget",
  "title": "Widget: a test kind kept as a file",
  "type": "object",
  "additionalProperties": false,
  "required": ["color"],
  "properties": {
    "color": {"type": "string", "enum": ["red", "green", "blue"], "description": "red, green or blue"},
    "size": {"type": "integer", "minimum": 1, "maximum": 100, "description": "an integer from 1 to 100 (default 1)"},
    "serial": {"type": "string", "description": "a secret string"}
  }
})json";

class WidgetProvider : public Provider {
 public:
  explicit WidgetProvider(std::string dir) : dir_(std::move(dir)) {}

  std::string name() const override { return "widget"; }
  std::vector<std::string> kinds() const override { return {"Widget"}; }

  void validate(const ValidateRequest& req, ValidateResponse& resp) const override {
    for (const Object* o : req.objects) {
      if (o->spec->value("color", "") == "blue" && o->spec->value("size", 1) > 50) {
        resp.diagnostics.error(o->id, "spec.size", "a blue widget is at most 50");
      }
    }
  }

  std::vector<Reference> references(const Object&) const override { return {}; }

  void observe(const ObserveRequest& req, ObserveResponse& resp) override {
    auto one = [&](const ObjectId& id) {
      ObservedState s;
      auto text = readFile(dir_ + "/" + id.name, 64 * 1024);
      if (text.isOk()) {
        s.exists = true;
        s.fields = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
        s.fingerprint = *text;
      }
      resp.observed[id] = s;
    };
    for (const Object* o : req.desired) {
      one(o->id);
    }
    for (const ManagedRecord* r : req.managed) {
      one(r->id);
    }
  }

  void plan(const PlanRequest& req, PlanResponse& resp) const override {
    const bool onHost = req.observed != nullptr && req.observed->exists;
    PlanAction a;
    a.id = req.id;
    a.provider = name();
    if (req.desired == nullptr) {
      if (!onHost) {
        return;
      }
      a.type = ActionType::Delete;
      a.reason = "not in the source";
    } else if (!onHost) {
      a.type = ActionType::Create;
      a.reason = "not on the host";
    } else if (req.observed->fields != normal(req.desired->spec)) {
      a.type = ActionType::Update;
      a.reason = "the file differs";
      a.drift = req.managed != nullptr && req.managed->spec == req.desired->spec;
      a.changes.push_back({"spec", req.observed->fields, normal(req.desired->spec)});
    } else {
      return;
    }
    resp.action = a;
  }

  void apply(const ApplyRequest& req, ApplyResponse& resp) override {
    const std::string path = dir_ + "/" + req.action->id.name;
    if (req.action->type == ActionType::Delete) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
      return;
    }
    std::string text = normal(req.desired->spec).dump();
    if (Status s = writeFileAtomically(path, text); !s.isOk()) {
      resp.diagnostics.error(req.action->id, "", s.message());
      return;
    }
    resp.fingerprint = text;
  }

 private:
  // The spec with its default filled in, as the file holds it.
  static Json normal(const Json& spec) {
    Json out = spec;
    if (!out.contains("size")) {
      out["size"] = 1;
    }
    return out;
  }

  std::string dir_;
};

}  // namespace

ProviderRecord provider_widget() {
  KindRecord widget;
  widget.kind = "Widget";
  widget.plural = "widgets";
  widget.shortNames = {"wg"};
  widget.schema = kWidgetSchema;
  widget.columns = {fieldColumn("COLOR", "color"), fieldColumn("SIZE", "size", /*wide=*/true)};
  widget.secretFields = {"serial"};  // kept on the "host" in clear, shown nowhere else

  ProviderRecord record;
  record.name = "widget";
  record.kinds = {std::move(widget)};
  record.settingsSchema = R"json({
    "type": "object",
    "additionalProperties": false,
    "properties": {
      "dir": {"type": "string", "minLength": 1, "description": "the directory the widgets are kept in"}
    }
  })json";
  record.make = [](const Json& settings, const std::string&) -> Result<std::unique_ptr<Provider>> {
    std::string dir = settings.value("dir", "");
    if (dir.empty()) {
      return Status::error("no widget directory (providers.widget.dir, --widget-dir)");
    }
    return std::unique_ptr<Provider>(std::make_unique<WidgetProvider>(dir));
  };
  return record;
}

}  // namespace hyper::providers
