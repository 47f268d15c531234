#include "providers/build/build_provider.h"

#include <sys/stat.h>

#include <chrono>
#include <filesystem>

#include "base/file.h"
#include "host/command.h"
#include "providers/build/build_spec.h"
#include "reconciler/provider_kit.h"

namespace hyper::providers::build {

namespace {

constexpr size_t kMaxBusyboxBytes = 64u << 20;

// The first line of `gzip --version` ("gzip 1.12").
Result<std::string> gzipVersion() {
  HYPER_ASSIGN_OR_RETURN(std::string out, host::runChecked({"gzip", "--version"}));
  std::string line = out.substr(0, out.find('\n'));
  if (line.empty()) {
    return Status::error("gzip --version printed nothing");
  }
  return line;
}

// The artifacts a record names ({"initrd": {"digest", "size"}}), as handles keep them.
const Json& artifactsOf(const Json& handles) {
  static const Json kNone = Json::object();
  auto it = handles.is_object() ? handles.find("artifacts") : handles.end();
  return it != handles.end() && it->is_object() ? *it : kNone;
}

// handles.key: the key the last apply built; "" for none (a create that never completed has no
// handles at all).
std::string keyOf(const Json& handles) {
  return handles.is_object() && handles.contains("key") && handles["key"].is_string()
             ? handles["key"].get<std::string>()
             : "";
}

}  // namespace

std::string buildKey(const Json& spec, const Json& inputs) {
  Json keyed = {{"builder", BuildProvider::kBuilderVersion}, {"spec", spec}, {"inputs", inputs}};
  return store::digestOf(canonicalJson(keyed)).substr(7);  // without "sha256:"
}

BuildProvider::BuildProvider(BuildProviderConfig config)
    : config_(std::move(config)), store_(config_.stateDir + "/store") {}

void BuildProvider::validate(const ValidateRequest& req, ValidateResponse& resp) const {
  for (const Object* o : req.objects) {
    parseBuildSpec(o->id, o->spec, resp.diagnostics, o->files);
  }
}

Result<std::string> BuildProvider::busyboxDigest() {
  struct stat st {};
  if (::stat(config_.busybox.c_str(), &st) != 0) {
    return Status::error("busybox " + config_.busybox +
                         " is missing (Debian's busybox-static has it; providers.build.busybox "
                         "names another)");
  }
  std::string stamp = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
                      std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
                      std::to_string(st.st_mtim.tv_nsec);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stamp == busyboxStamp_) {
      return busyboxDigest_;
    }
  }
  HYPER_ASSIGN_OR_RETURN(std::string bytes, readFile(config_.busybox, kMaxBusyboxBytes));
  std::string digest = store::digestOf(bytes);
  std::lock_guard<std::mutex> lk(mu_);
  busyboxStamp_ = stamp;
  busyboxDigest_ = digest;
  return digest;
}

Result<Json> BuildProvider::resolveInputs(const Object& object,
                                          std::optional<std::string>& busybox) {
  const Json& spec = object.spec;
  Json inputs = Json::object();
  // A file source's bytes can move under an unchanged spec: each is an input by its digest.
  for (const auto& [source, blob] : object.files) {
    inputs["source:" + source] = blob->digest;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (gzipVersion_.empty()) {
      HYPER_ASSIGN_OR_RETURN(gzipVersion_, gzipVersion());
    }
    inputs["gzip"] = gzipVersion_;
  }
  if (spec.value("initramfs", Json::object()).value("busybox", true)) {
    if (!busybox) {
      HYPER_ASSIGN_OR_RETURN(busybox, busyboxDigest());
    }
    inputs["busybox"] = *busybox;
  }
  return inputs;
}

void BuildProvider::observe(const ObserveRequest& req, ObserveResponse& resp) {
  auto fromRecord = [&](const ManagedRecord* r, ObservedState& s) {
    if (r == nullptr) {
      return;
    }
    const Json& artifacts = artifactsOf(r->handles);
    s.exists = !artifacts.empty();
    for (const auto& [name, a] : artifacts.items()) {
      std::string digest = a.value("digest", "");
      if (!store_.has(digest)) {
        s.exists = false;
        s.note = "artifact " + name + " (" + digest + ") is gone from the store";
      }
    }
    s.fields = {{"key", keyOf(r->handles)}, {"artifacts", artifacts}};
    s.fingerprint = s.exists ? r->fingerprint : "";
  };
  std::map<ObjectId, const ManagedRecord*> records;
  for (const ManagedRecord* r : req.managed) {
    records[r->id] = r;
  }
  // Inputs are resolved once per observe, not once per Build: busybox is one file for all.
  std::optional<std::string> busybox;
  for (const Object* o : req.desired) {
    ObservedState& s = resp.observed[o->id];
    auto rec = records.find(o->id);
    fromRecord(rec == records.end() ? nullptr : rec->second, s);
    guarded(resp.diagnostics, o->id, "observe", [&] {
      auto inputs = resolveInputs(*o, busybox);
      if (!inputs.isOk()) {
        resp.diagnostics.error(o->id, "", inputs.status().message());
        return;
      }
      std::string key = buildKey(o->spec, *inputs);
      s.context = {{"key", key}, {"inputs", *inputs}};
      // Whether the store already has this key's artifacts matters only when there is something
      // to build (plan says "no work"): a built object whose key is unchanged, the common case of
      // a no-op reconcile, is not looked up (hyper_build_bench: the lookups were 40% of it).
      const bool built = rec != records.end() && s.exists && keyOf(rec->second->handles) == key;
      if (!built) {
        s.context["cached"] = store_.lookupKey(key).has_value();
      }
    });
  }
  for (const ManagedRecord* r : req.managed) {
    if (resp.observed.count(r->id) == 0) {
      fromRecord(r, resp.observed[r->id]);
    }
  }
}

void BuildProvider::plan(const PlanRequest& req, PlanResponse& resp) const {
  if (planPrune(req, resp)) {
    return;
  }
  guarded(resp.diagnostics, req.id, "plan", [&] {
    if (req.observed == nullptr || !req.observed->context.contains("key")) {
      return;  // observe said why
    }
    const Json& context = req.observed->context;
    const std::string key = context["key"];
    const bool cached = context.value("cached", false);
    PlanAction a;
    a.privateData = {{"key", key}, {"inputs", context["inputs"]}};
    if (req.managed == nullptr) {
      a.type = ActionType::Create;
      a.reason = cached ? "not built here yet (its key is in the store: no work)" : "not built";
      diffJson("spec", Json(), req.desired->spec, a.changes);
      a.changes.push_back({"key", Json(), key});
    } else {
      const Json& handles = req.managed->handles;
      const std::string oldKey = keyOf(handles);
      if (oldKey == key && req.observed->exists) {
        return;  // built, and its artifacts are in the store
      }
      a.type = ActionType::Update;
      if (oldKey == key) {
        a.drift = true;
        a.reason =
            req.observed->note.empty() ? "artifacts gone from the store" : req.observed->note;
      } else {
        std::vector<FieldChange> changes;
        diffJson("spec", req.managed->spec, req.desired->spec, changes);
        const Json inputsThen =
            handles.is_object() && handles.contains("inputs") ? handles["inputs"] : Json::object();
        diffJson("inputs", inputsThen, context["inputs"], changes);
        a.reason = changes.empty() ? "the builder changed"
                   : changes.front().path.rfind("inputs", 0) == 0
                       ? "an input changed (" + changes.front().path + ")"
                       : "spec changed";
        a.changes = std::move(changes);
      }
      a.changes.push_back({"key", oldKey, key});
    }
    resp.action = std::move(a);
  });
}

void BuildProvider::writeLog(const std::string& name, const std::string& text) const {
  std::string dir = config_.stateDir + "/builds";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  (void)writeFileAtomically(dir + "/" + name + ".log", text, 0644);
}

Status BuildProvider::writeProvenance(const std::string& key, const Json& spec, const Json& record,
                                      bool always) {
  std::vector<store::ProvenanceSubject> subjects;
  bool missing = always;
  for (const auto& [name, a] : record["artifacts"].items()) {
    subjects.push_back({name, a.value("digest", "")});
    missing = missing || !store_.provenanceOf(subjects.back().digest).isOk();
  }
  if (!missing) {
    return Status::ok();
  }
  std::lock_guard<std::mutex> lk(mu_);
  if (!hostKey_) {
    HYPER_ASSIGN_OR_RETURN(hostKey_, store::HostKey::loadOrCreate(config_.stateDir));
  }
  const std::string type = record.value("type", "");
  Json statement =
      store::provenanceStatement(subjects, "https://hyper.dev/build/" + type + "/v1", spec,
                                 record.value("inputs", Json::object()), kBuilderVersion, key);
  HYPER_ASSIGN_OR_RETURN(Json envelope, store::signEnvelope(statement, *hostKey_));
  for (const auto& s : subjects) {
    HYPER_RETURN_IF_ERROR(store_.putProvenance(s.digest, envelope));
  }
  return Status::ok();
}

void BuildProvider::apply(const ApplyRequest& req, ApplyResponse& resp) {
  const PlanAction& action = *req.action;
  guarded(resp.diagnostics, action.id, "apply", [&] {
    if (action.type == ActionType::Delete) {
      // The artifacts stay: other builds may share them, and gc decides.
      std::error_code ec;
      std::filesystem::remove(config_.stateDir + "/builds/" + action.id.name + ".log", ec);
      return;
    }
    const std::string key = action.privateData.value("key", "");
    const Json inputs = action.privateData.value("inputs", Json::object());
    auto started = std::chrono::steady_clock::now();
    std::string log = "build " + action.id.name + " key " + key + "\n";
    bool cached = false;
    std::optional<Json> record = store_.lookupKey(key);
    if (record) {
      cached = true;
      log += "cached: the store has this key's artifacts; nothing built\n";
    } else {
      Diagnostics diags;
      BuildSpec spec = parseBuildSpec(action.id, req.desired->spec, diags, req.desired->files);
      if (diags.hasErrors()) {
        resp.diagnostics.append(diags);
        return;
      }
      std::string busybox;
      if (spec.busybox) {
        auto bytes = readFile(config_.busybox, kMaxBusyboxBytes);
        if (!bytes.isOk()) {
          resp.diagnostics.error(action.id, "", bytes.status().message());
          return;
        }
        if (store::digestOf(*bytes) != inputs.value("busybox", "")) {
          // Planned with other bytes: the key would lie. The next plan sees the new input.
          resp.diagnostics.error(action.id, "",
                                 "busybox " + config_.busybox + " changed since the plan");
          resp.retryAfter = std::chrono::milliseconds(1000);
          return;
        }
        busybox = std::move(*bytes);
      }
      log += "initramfs: " + std::to_string(spec.files.size()) + " files" +
             (spec.busybox ? ", busybox " + inputs.value("busybox", "") : "") + "\n";
      auto image = buildInitramfsImage(spec, busybox);
      if (!image.isOk()) {
        writeLog(action.id.name, log + "failed: " + image.status().message() + "\n");
        resp.diagnostics.error(action.id, "", image.status().message());
        return;
      }
      auto digest = store_.put(*image);
      if (!digest.isOk()) {
        resp.diagnostics.error(action.id, "", digest.status().message());
        return;
      }
      Json artifacts = {{"initrd", {{"digest", *digest}, {"size", image->size()}}}};
      record = Json{{"type", spec.type}, {"inputs", inputs}, {"artifacts", artifacts}};
      if (Status s = store_.recordKey(key, *record); !s.isOk()) {
        resp.diagnostics.error(action.id, "", s.message());
        return;
      }
      log += "initrd " + *digest + " (" + std::to_string(image->size()) + " bytes)\n";
    }
    if (Status s = writeProvenance(key, req.desired->spec, *record, /*always=*/!cached);
        !s.isOk()) {
      resp.diagnostics.error(action.id, "", "provenance <- " + s.message());
      return;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    log += std::string(cached ? "done (cached)" : "built") + " in " + std::to_string(ms) + " ms\n";
    writeLog(action.id.name, log);
    resp.handles = {{"key", key},
                    {"type", (*record).value("type", "")},
                    {"inputs", inputs},
                    {"artifacts", (*record)["artifacts"]},
                    {"cached", cached}};
    std::string fingerprint;
    for (const auto& [name, a] : (*record)["artifacts"].items()) {
      fingerprint += name + "=" + a.value("digest", "") + ";";
    }
    resp.fingerprint = fingerprint;
  });
}

}  // namespace hyper::providers::build
