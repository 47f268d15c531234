#include "providers/broker/broker_provider.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/crash_point.h"
#include "base/file.h"
#include "base/sha256.h"
#include "base/strings.h"
#include "broker/client.h"
#include "broker/rules.h"
#include "reconciler/provider_kit.h"

namespace hyper::providers::broker {

namespace {

namespace hb = hyper::broker;

struct RuleFile {
  bool exists = false;
  std::string bytes;
  Json doc;  // parsed, {"schemaVersion":"1","rules":[...]}; null when absent or unreadable
  std::string error;
};

RuleFile readRuleFile(const std::string& path) {
  RuleFile f;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno != ENOENT) {
      f.error = "read " + path + " <- " + std::strerror(errno);
    }
    return f;
  }
  f.exists = true;
  std::stringstream buf;
  buf << in.rdbuf();
  f.bytes = buf.str();
  auto parsed = hb::parseRules(f.bytes, path);
  if (!parsed.isOk()) {
    f.error = parsed.status().message();
    return f;
  }
  f.doc = hb::rulesToJson(parsed->rules);
  return f;
}

const Json* findRule(const Json& rules, const std::string& name) {
  if (!rules.is_array()) {
    return nullptr;
  }
  for (const auto& r : rules) {
    if (r.is_object() && r.value("name", "") == name) {
      return &r;
    }
  }
  return nullptr;
}

// The rule without its name: shaped like the BrokerRule spec.
Json specShape(const Json& rule) {
  Json out = rule;
  out.erase("name");
  return out;
}

}  // namespace

BrokerProviderConfig BrokerProviderConfig::fromEnvironment() {
  BrokerProviderConfig c;
  if (const char* rules = std::getenv("HYPER_BROKER_RULES"); rules != nullptr && *rules != '\0') {
    c.rulesPath = rules;
  }
  if (const char* socket = std::getenv("HYPER_BROKER_SOCKET"); socket != nullptr && *socket) {
    c.socketPath = socket;
  }
  return c;
}

Result<Json> ruleFromObject(const std::string& name, const Json& spec) {
  Json rule = spec.is_object() ? spec : Json::object();
  rule["name"] = name;
  Json file = {{"schemaVersion", "1"}, {"rules", Json::array({rule})}};
  auto parsed = hb::parseRules(file.dump(), "BrokerRule/" + name);
  if (!parsed.isOk()) {
    return parsed.status();
  }
  return hb::ruleToJson(parsed->rules[0]);
}

void BrokerProvider::validate(const ValidateRequest& req, ValidateResponse& resp) const {
  guarded(resp.diagnostics, {}, "validate", [&] {
    for (const Object* o : req.objects) {
      auto rule = ruleFromObject(o->id.name, o->spec);
      if (!rule.isOk()) {
        // "BrokerRule/x: rules[0].workspace: ..." -> the spec field path.
        std::string message = rule.status().message();
        std::string field = "spec";
        size_t at = message.find("rules[0].");
        if (at != std::string::npos) {
          size_t end = message.find(':', at);
          field = "spec." + message.substr(at + 9, end - at - 9);
          message = message.substr(end + 2);
        }
        resp.diagnostics.error(o->id, field, message);
      }
    }
  });
}

std::vector<Reference> BrokerProvider::references(const Object&) const { return {}; }

void BrokerProvider::observe(const ObserveRequest& req, ObserveResponse& resp) {
  guarded(resp.diagnostics, {}, "observe", [&] {
    if (req.desired.empty() && req.managed.empty()) {
      return;  // no BrokerRules: nothing to ask the broker
    }
    RuleFile file = readRuleFile(config_.rulesPath);
    auto loaded = hb::adminRequest(config_.socketPath, "rules");
    std::string loadedHash;
    Json loadedRules = Json::array();
    std::string brokerNote;
    if (loaded.isOk()) {
      loadedHash = (*loaded).value("hash", "");
      loadedRules = (*loaded).value("rules", Json::array());
    } else {
      brokerNote = "broker not reachable: " + loaded.status().message();
    }
    std::string fileHash = file.exists ? sha256Hex(file.bytes) : "";
    auto observeOne = [&](const ObjectId& id) {
      ObservedState s;
      const Json* inFile = file.doc.is_object() ? findRule(file.doc["rules"], id.name) : nullptr;
      const Json* inBroker = findRule(loadedRules, id.name);
      s.exists = inFile != nullptr || inBroker != nullptr;
      s.fields = Json::object();
      s.fields["file"] = inFile ? specShape(*inFile) : Json();
      s.fields["loaded"] = loaded.isOk() ? (inBroker ? specShape(*inBroker) : Json()) : Json();
      s.fields["brokerReachable"] = loaded.isOk();
      s.fields["fileLoaded"] = loaded.isOk() && file.exists && loadedHash == fileHash;
      s.fingerprint = inBroker ? sha256Hex(canonicalJson(*inBroker)) : "";
      std::vector<std::string> notes;
      if (!file.error.empty()) {
        notes.push_back(file.error);
      }
      if (!brokerNote.empty()) {
        notes.push_back(brokerNote);
      }
      for (size_t i = 0; i < notes.size(); ++i) {
        s.note += (i ? "; " : "") + notes[i];
      }
      resp.observed[id] = std::move(s);
    };
    for (const Object* o : req.desired) {
      observeOne(o->id);
    }
    for (const ManagedRecord* m : req.managed) {
      if (resp.observed.count(m->id) == 0) {
        observeOne(m->id);
      }
    }
  });
}

void BrokerProvider::plan(const PlanRequest& req, PlanResponse& resp) const {
  guarded(resp.diagnostics, req.id, "plan", [&] {
    const ObservedState* obs = req.observed;
    if (planPrune(req, resp)) {
      return;
    }
    auto rule = ruleFromObject(req.id.name, req.desired->spec);
    if (!rule.isOk()) {
      resp.diagnostics.error(req.id, "spec", rule.status().message());
      return;
    }
    Json want = specShape(*rule);
    PlanAction action;
    if (!req.managed) {
      action.type = ActionType::Create;
      action.reason = obs && obs->exists ? "a rule of this name is in the broker's rule file but "
                                           "not in the inventory"
                                         : "not in the broker's rules";
      diffJson("spec", nullptr, want, action.changes);
      resp.action = std::move(action);
      return;
    }
    auto previous = ruleFromObject(req.id.name, req.managed->spec);
    Json applied = previous.isOk() ? specShape(*previous) : want;
    std::vector<FieldChange> specChanges;
    diffJson("spec", applied, want, specChanges);

    std::vector<FieldChange> drift;
    std::vector<std::string> why;
    static const Json kNone = Json::object();
    const Json& f = obs && obs->fields.is_object() ? obs->fields : kNone;
    Json inFile = f.value("file", Json());
    Json inBroker = f.value("loaded", Json());
    bool reachable = f.value("brokerReachable", false);
    if (inFile != applied) {
      std::vector<FieldChange> d;
      diffJson("spec", inFile.is_null() ? Json(nullptr) : inFile, applied, d);
      drift.insert(drift.end(), d.begin(), d.end());
      why.push_back(inFile.is_null() ? "rule removed from the rule file by hand"
                                     : "rule file edited by hand");
    }
    if (reachable && inBroker != applied && inBroker != inFile) {
      drift.push_back({"status.loaded", inBroker, applied});
      why.push_back("the broker runs other rules than the file holds");
    } else if (reachable && !f.value("fileLoaded", false) && inFile == applied) {
      drift.push_back({"status.fileLoaded", false, true});
      why.push_back("the broker has not loaded the rule file");
    }
    if (specChanges.empty() && drift.empty()) {
      return;
    }
    action.type = ActionType::Update;
    if (!specChanges.empty()) {
      why.insert(why.begin(), "spec changed");
    }
    action.reason = join(why, "; ");
    mergeDrift(action, std::move(specChanges), std::move(drift));
    resp.action = std::move(action);
  });
}

void BrokerProvider::apply(const ApplyRequest& req, ApplyResponse& resp) {
  const ObjectId object = req.action ? req.action->id : ObjectId{};
  guarded(resp.diagnostics, object, "apply", [&] {
    if (!req.action) {
      resp.diagnostics.error({}, "", "apply without an action");
      return;
    }
    const ObjectId& id = req.action->id;
    std::lock_guard<std::mutex> lock(fileMu_);
    RuleFile file = readRuleFile(config_.rulesPath);
    Json rules = Json::array();
    if (file.doc.is_object()) {
      rules = file.doc["rules"];
    } else if (file.exists) {
      // A file that does not parse is rebuilt from what hyper manages; what else was in it is
      // lost, which the error says.
      resp.diagnostics.add(
          {Severity::Warning,
           {},
           object,
           "",
           "rule file " + config_.rulesPath + " did not parse (" + file.error + "); rewriting it"});
    }
    Json kept = Json::array();
    for (const auto& r : rules) {
      if (r.value("name", "") != id.name) {
        kept.push_back(r);
      }
    }
    Json rule;
    if (req.action->type != ActionType::Delete) {
      if (!req.desired) {
        resp.diagnostics.error(object, "", "apply " + std::string("without a desired object"));
        return;
      }
      auto built = ruleFromObject(id.name, req.desired->spec);
      if (!built.isOk()) {
        resp.diagnostics.error(object, "spec", built.status().message());
        return;
      }
      rule = *built;
      kept.push_back(rule);
    }
    std::sort(kept.begin(), kept.end(), [](const Json& a, const Json& b) {
      return a.value("name", "") < b.value("name", "");
    });
    std::string bytes = Json{{"schemaVersion", "1"}, {"rules", kept}}.dump(2) + "\n";
    Status written = writeFileAtomically(config_.rulesPath, bytes, 0644,
                                         [&] { crashPoint("rules-staged " + object.str()); });
    if (!written.isOk()) {
      resp.diagnostics.error(object, "", "write broker rules <- " + written.message());
      return;
    }
    crashPoint("rules-written " + object.str());
    auto reloaded = hb::adminRequest(config_.socketPath, "reload");
    if (!reloaded.isOk()) {
      resp.diagnostics.error(
          object, "",
          "reload broker rules " + config_.rulesPath + " <- " + reloaded.status().message());
      return;
    }
    if ((*reloaded).value("hash", "") != sha256Hex(bytes)) {
      resp.diagnostics.error(object, "",
                             "the broker loaded rules with hash " + (*reloaded).value("hash", "") +
                                 ", not the file just written (" + sha256Hex(bytes) +
                                 "): another writer?");
      return;
    }
    resp.handles = {{"rulesFile", config_.rulesPath}, {"rule", id.name}};
    resp.fingerprint = rule.is_null() ? "" : sha256Hex(canonicalJson(rule));
  });
}

}  // namespace hyper::providers::broker
