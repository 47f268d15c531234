#include "hyperctl/hyperctl_remote.h"

#include <unistd.h>

#include <ctime>
#include <iostream>

#include "base/text_escape.h"
#include "controller/client.h"
#include "controller/event_log.h"
#include "hyperctl/output.h"
#include "reconciler/inventory.h"
#include "store/sealing.h"

namespace hyper::ctl {

namespace {

using controller::ApiClient;
using controller::Endpoint;

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitChanges = 2;

int fail(const std::string& message) {
  std::cerr << "error: " << message << "\n";
  return kExitError;
}

std::string isoTime(int64_t millis) {
  time_t secs = static_cast<time_t>(millis / 1000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t);
  return buf;
}

std::string str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return "";
  }
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// The running hyperd, or nullopt (printed nothing) when there is none; an error is printed.
std::optional<ApiClient> connect(const RemoteOptions& o, bool* error) {
  auto endpoint = controller::discoverEndpoint(o.stateDir, o.server, o.tokenFile);
  if (!endpoint.isOk()) {
    std::cerr << "error: " << endpoint.status().message() << "\n";
    *error = true;
    return std::nullopt;
  }
  if (!*endpoint) {
    return std::nullopt;
  }
  return ApiClient(**endpoint);
}

// The running hyperd, or nullopt after printing why not (`absent`: the message when none runs).
std::optional<ApiClient> requireHyperd(const RemoteOptions& o, const std::string& absent) {
  bool error = false;
  auto client = connect(o, &error);
  if (!client && !error) {
    fail(absent);
  }
  return client;
}

std::string conditionSummary(const nlohmann::json& object, const char* type) {
  for (const auto& c : object.value("conditions", nlohmann::json::array())) {
    if (c.value("type", "") == type) {
      return c.value("status", "");
    }
  }
  return "-";
}

std::string conditionMessage(const nlohmann::json& object) {
  // The most telling message: Stalled, then Drifted, then not-Ready.
  for (const char* type : {"Stalled", "Drifted", "Ready"}) {
    for (const auto& c : object.value("conditions", nlohmann::json::array())) {
      bool bad = type == std::string("Ready") ? c.value("status", "") == "False"
                                              : c.value("status", "") == "True";
      if (c.value("type", "") == type && bad && !c.value("message", "").empty()) {
        return c.value("message", "");
      }
    }
  }
  return "";
}

// "~ path: before -> after" for each change of a drift; sensitive values are never shown.
void printChanges(const nlohmann::json& drift, const char* indent) {
  for (const auto& c : drift.value("changes", nlohmann::json::array())) {
    std::cout << indent << "~ " << c.value("path", "") << ": "
              << (c.value("sensitive", false) ? "(sensitive)"
                                              : str(c, "before") + " -> " + str(c, "after"))
              << "\n";
  }
}

void printEvent(const nlohmann::json& e) {
  std::cout << isoTime(e.value("at", int64_t{0})) << "  " << e.value("level", "") << "  "
            << e.value("type", "") << "  "
            << (str(e, "object").empty() ? "" : str(e, "object") + ": ") << e.value("message", "")
            << "\n";
  if (e.value("type", "") == "drift" && e.contains("details")) {
    printChanges(e["details"], "      ");
  }
  if (e.value("type", "") == "revision-rejected" && e.contains("details")) {
    for (const auto& p : e["details"].value("problems", nlohmann::json::array())) {
      std::cout << "      " << (p.is_string() ? p.get<std::string>() : p.dump()) << "\n";
    }
  }
}

}  // namespace

int runStatus(const RemoteOptions& o) {
  bool error = false;
  auto client = connect(o, &error);
  if (error) {
    return kExitError;
  }
  if (!client) {
    // No hyperd: what the state database says.
    if (access((o.stateDir + "/state.db").c_str(), F_OK) != 0) {
      return fail("no hyperd is running and there is no state in " + o.stateDir);
    }
    auto inventory = Inventory::open(o.stateDir);
    if (!inventory.isOk()) {
      return fail(inventory.status().message());
    }
    auto last = (*inventory)->lastRevision();
    auto records = (*inventory)->list();
    if (!last.isOk() || !records.isOk()) {
      return fail(!last.isOk() ? last.status().message() : records.status().message());
    }
    nlohmann::json j = {{"hyperd", "not running"},
                        {"revision", *last ? (*last)->revision : ""},
                        {"result", *last ? (*last)->result : ""},
                        {"objects", records->size()}};
    if (o.output == "json") {
      std::cout << j.dump(2) << "\n";
      return kExitOk;
    }
    std::cout << "hyperd:    not running (state dir " << o.stateDir << ")\n";
    if (*last) {
      std::cout << "revision:  " << (*last)->revision << " (" << (*last)->result << ", "
                << isoTime((*last)->at * 1000) << ")\n";
    }
    std::cout << "objects:   " << records->size() << " managed\n";
    return kExitOk;
  }
  auto status = client->get("/v1/status");
  auto objects = client->get("/v1/objects");
  if (!status.isOk() || !objects.isOk()) {
    return fail(!status.isOk() ? status.status().message() : objects.status().message());
  }
  if (o.output == "json") {
    nlohmann::json j = *status;
    j["objectStatus"] = *objects;
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  const auto& s = *status;
  std::cout << "source:    " << str(s, "source") << "\n";
  std::cout << "revision:  "
            << (str(s, "revision").empty() ? "(none applied yet)" : str(s, "revision"));
  if (!str(s, "message").empty()) {
    std::cout << "  \"" << str(s, "message") << "\"";
  }
  std::cout << "\n";
  if (!str(s, "rejectedRevision").empty()) {
    std::cout << "rejected:  " << str(s, "rejectedRevision") << " (invalid; see hyperctl events)\n";
  }
  if (s.contains("held") && s["held"].is_object()) {
    const auto& h = s["held"];
    std::cout << "held:      " << str(h, "revision") << " " << str(h, "reason")
              << "; approve with: hyperctl approve " << str(h, "revision") << "\n";
    const auto& c = h.value("counts", nlohmann::json::object());
    std::cout << "           " << c.value("deleted", 0) << " of " << c.value("managed", 0)
              << " managed objects and " << c.value("deletedRunningVms", 0) << " of "
              << c.value("runningVms", 0) << " running VMs would be deleted\n";
  }
  if (!str(s, "sourceError").empty()) {
    std::cout << "source error: " << str(s, "sourceError") << "\n";
  }
  std::cout << "applying:  " << (s.value("suspended", false) ? "suspended" : "active") << "\n";
  if (s.contains("lastReconcile") && s["lastReconcile"].is_object()) {
    const auto& r = s["lastReconcile"];
    std::cout << "last reconcile: " << isoTime(r.value("finishedAt", int64_t{0})) << " ("
              << str(r, "trigger") << ") " << r.value("planned", 0) << " planned, "
              << r.value("succeeded", 0) << " succeeded, " << r.value("failed", 0) << " failed, "
              << r.value("deferred", 0) << " deferred\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& obj : *objects) {
    rows.push_back({str(obj, "kind") + "/" + str(obj, "name"), conditionSummary(obj, "Ready"),
                    conditionSummary(obj, "Drifted"), conditionSummary(obj, "Stalled"),
                    str(obj, "revision"), conditionMessage(obj)});
  }
  if (!rows.empty()) {
    std::cout << "\n"
              << renderTable({"OBJECT", "READY", "DRIFTED", "STALLED", "REVISION", "MESSAGE"},
                             rows);
  }
  return kExitOk;
}

int runEvents(const RemoteOptions& o, bool follow, int limit) {
  bool error = false;
  auto client = connect(o, &error);
  if (error) {
    return kExitError;
  }
  auto print = [&](const nlohmann::json& e) {
    if (o.output == "json") {
      std::cout << e.dump() << "\n" << std::flush;
    } else {
      printEvent(e);
      std::cout << std::flush;
    }
    return true;
  };
  if (client && follow) {
    Status s = client->follow(-1, static_cast<size_t>(limit), print);
    return s.isOk() ? kExitOk : fail(s.message());
  }
  if (client) {
    auto events = client->get("/v1/events?limit=" + std::to_string(limit));
    if (!events.isOk()) {
      return fail(events.status().message());
    }
    for (const auto& e : *events) {
      print(e);
    }
    return kExitOk;
  }
  if (follow) {
    return fail("no hyperd is running for state dir " + o.stateDir + "; nothing to follow");
  }
  if (access((o.stateDir + "/state.db").c_str(), F_OK) != 0) {
    return fail("no hyperd is running and there is no state in " + o.stateDir);
  }
  auto log = controller::EventLog::open(o.stateDir);
  if (!log.isOk()) {
    return fail(log.status().message());
  }
  auto events = (*log)->latest(static_cast<size_t>(limit));
  if (!events.isOk()) {
    return fail(events.status().message());
  }
  for (const auto& e : *events) {
    print(e.toJson());
  }
  return kExitOk;
}

int runDrift(const RemoteOptions& o) {
  auto client =
      requireHyperd(o, "no hyperd is running for state dir " + o.stateDir +
                           "; `hyperctl diff -f DIR` compares the host with manifests without it");
  if (!client) {
    return kExitError;
  }
  auto drift = client->get("/v1/drift");
  if (!drift.isOk()) {
    return fail(drift.status().message());
  }
  if (o.output == "json") {
    std::cout << drift->dump(2) << "\n";
  } else if (drift->empty()) {
    std::cout << "No drift: the host matches the applied revision.\n";
  } else {
    for (const auto& d : *drift) {
      std::cout << str(d, "kind") << "/" << str(d, "name") << ": " << str(d["drift"], "reason")
                << "\n";
      printChanges(d["drift"], "    ");
    }
  }
  return drift->empty() ? kExitOk : kExitChanges;
}

int runReconcile(const RemoteOptions& o, int waitSeconds) {
  auto client = requireHyperd(o, "no hyperd is running for state dir " + o.stateDir +
                                     "; use `hyperctl apply -f DIR` to converge without it");
  if (!client) {
    return kExitError;
  }
  auto r = client->post("/v1/reconcile?wait=" + std::to_string(waitSeconds), waitSeconds + 5);
  if (!r.isOk()) {
    return fail(r.status().message());
  }
  if (o.output == "json" || waitSeconds == 0) {
    std::cout << r->dump(2) << "\n";
    return kExitOk;
  }
  if (r->contains("error") && !r->contains("reconcileId")) {
    return fail(str(*r, "error"));
  }
  std::cout << "reconcile " << str(*r, "reconcileId") << " at revision " << str(*r, "revision")
            << ": " << r->value("planned", 0) << " planned, " << r->value("succeeded", 0)
            << " succeeded, " << r->value("failed", 0) << " failed, " << r->value("deferred", 0)
            << " deferred\n";
  if (!str(*r, "error").empty()) {
    std::cerr << "error: " << str(*r, "error") << "\n";
  }
  return r->value("failed", 0) > 0 || !str(*r, "error").empty() ? kExitError : kExitOk;
}

int runSuspend(const RemoteOptions& o, bool suspend) {
  auto client = requireHyperd(o, "no hyperd is running for state dir " + o.stateDir);
  if (!client) {
    return kExitError;
  }
  auto r = client->post(suspend ? "/v1/suspend" : "/v1/resume");
  if (!r.isOk()) {
    return fail(r.status().message());
  }
  std::cout << (suspend ? "suspended: hyperd observes and alerts but applies nothing\n"
                        : "resumed: hyperd applies again\n");
  return kExitOk;
}

int runApprove(const RemoteOptions& o, const std::string& revision, int waitSeconds) {
  auto client = requireHyperd(o, "no hyperd is running for state dir " + o.stateDir +
                                     "; a held revision is hyperd's (hyperctl apply --prune "
                                     "asks with --yes instead)");
  if (!client) {
    return kExitError;
  }
  auto r = client->post("/v1/approve?wait=" + std::to_string(waitSeconds), waitSeconds + 5,
                        {{"revision", revision}});
  if (!r.isOk()) {
    return fail(r.status().message());
  }
  if (o.output == "json") {
    std::cout << r->dump(2) << "\n";
    return kExitOk;
  }
  if (!r->contains("reconcileId")) {
    std::cout << "approved " << revision << "; hyperd applies it with its next reconcile\n";
    return kExitOk;
  }
  std::cout << "approved " << revision << ": reconcile " << str(*r, "reconcileId")
            << " at revision " << str(*r, "revision") << ": " << r->value("planned", 0)
            << " planned, " << r->value("succeeded", 0) << " succeeded, " << r->value("failed", 0)
            << " failed, " << r->value("deferred", 0) << " deferred\n";
  if (!str(*r, "error").empty()) {
    std::cerr << "error: " << str(*r, "error") << "\n";
  }
  return r->value("failed", 0) > 0 || !str(*r, "error").empty() ? kExitError : kExitOk;
}

std::optional<int> runRemoteDiff(
    const RemoteOptions& o, const std::vector<SourceFile>& files,
    const std::function<std::map<std::string, SourceTree::File>()>& sources, bool prune) {
  bool error = false;
  auto client = connect(o, &error);
  if (error) {
    return kExitError;
  }
  if (!client) {
    return std::nullopt;
  }
  nlohmann::json body = {{"files", nlohmann::json::array()},
                         {"prune", prune},
                         {"color", o.output != "json" && isatty(STDOUT_FILENO) != 0}};
  for (const auto& f : files) {
    body["files"].push_back({{"path", f.path}, {"content", f.content}});
  }
  for (const auto& [path, read] : sources()) {
    body["sources"].push_back(sourceReadToJson(path, read));
  }
  // hyperd reads no plan request past its limit: big file sources are planned here instead,
  // against the state dir (what `--local` does), saying so.
  if (const size_t size = body.dump().size(); size > controller::kPlanBodyMax) {
    std::cerr << "hyper: the manifests and their file sources make a " << (size >> 20)
              << " MiB plan request, over hyperd's " << (controller::kPlanBodyMax >> 20)
              << " MiB limit: planning here against the state dir (as --local)\n";
    return std::nullopt;
  }
  // A reconcile in flight is waited for: allow for a slow apply.
  auto answer = client->post("/v1/plan", 600, body);
  if (!answer.isOk()) {
    return fail(answer.status().message());
  }
  std::cerr << answer->value("diagnostics", "");
  if (!answer->value("ok", false)) {
    int errors = answer->value("errors", 0);
    return fail(std::to_string(errors) + (errors == 1 ? " problem" : " problems") +
                " found by hyperd; nothing to compare");
  }
  const nlohmann::json& plan = (*answer)["plan"];
  if (o.output == "json") {
    std::cout << plan.dump(2) << "\n";
  } else {
    std::cout << answer->value("text", "");
  }
  return plan.value("actions", nlohmann::json::array()).empty() ? kExitOk : kExitChanges;
}

namespace {

// {"active": ID, "keys": [{"id", "publicKey"}]} of the hyperd `client` talks to.
Result<std::pair<std::string, std::string>> activeKeyOf(const ApiClient& client) {
  auto keys = client.get("/v1/keys");
  if (!keys.isOk()) {
    return keys.status();
  }
  const std::string active = str(*keys, "active");
  for (const auto& k : keys->value("keys", nlohmann::json::array())) {
    if (k.is_object() && str(k, "id") == active) {
      return std::pair<std::string, std::string>{active, str(k, "publicKey")};
    }
  }
  return Status::error("GET /v1/keys: no active sealing key in hyperd's answer");
}

}  // namespace

std::optional<Result<Resealed>> resealThroughHyperd(
    const RemoteOptions& o, size_t count,
    const std::function<std::tuple<std::string, std::string, std::string>(size_t)>& value) {
  bool error = false;
  auto client = connect(o, &error);
  if (error) {
    return Result<Resealed>(Status::error("cannot reach hyperd"));
  }
  if (!client) {
    return std::nullopt;
  }
  auto active = activeKeyOf(*client);
  if (!active.isOk()) {
    return Result<Resealed>(active.status());
  }
  Resealed out;
  out.active = active->first;
  nlohmann::json body = {{"values", nlohmann::json::array()}};
  std::vector<size_t> sent;
  for (size_t i = 0; i < count; ++i) {
    auto [name, key, text] = value(i);
    out.texts.push_back(text);
    auto parsed = store::parseSealed(text);
    if (parsed.isOk() && parsed->keyId == out.active) {
      continue;
    }
    body["values"].push_back({{"name", name}, {"key", key}, {"sealed", text}});
    sent.push_back(i);
  }
  if (sent.empty()) {
    return Result<Resealed>(std::move(out));
  }
  auto answer = client->post("/v1/secrets/reseal", 60, body);
  if (!answer.isOk()) {
    return Result<Resealed>(answer.status());
  }
  const nlohmann::json list = answer->value("values", nlohmann::json::array());
  if (!list.is_array() || list.size() != sent.size()) {
    return Result<Resealed>(Status::error("POST /v1/secrets/reseal: expected " +
                                          std::to_string(sent.size()) + " values back"));
  }
  for (size_t j = 0; j < sent.size(); ++j) {
    out.texts[sent[j]] = str(list[j], "sealed");
  }
  return Result<Resealed>(std::move(out));
}

Result<std::string> fetchSealingKey(const RemoteOptions& o) {
  bool error = false;
  auto client = connect(o, &error);
  if (error || !client) {
    return Status::error("no hyperd at " + (o.server.empty() ? o.stateDir : o.server));
  }
  auto active = activeKeyOf(*client);
  if (!active.isOk()) {
    return active.status();
  }
  return active->second;
}

std::string buildEventLine(const nlohmann::json& e) {
  const std::string type = e.value("type", "");
  if (type == "step") {
    const std::string phase = e.value("phase", "");
    return "step " + std::to_string(e.value("step", 0)) + " " + phase +
           (phase == "start" ? "" : " " + std::to_string(e.value("code", 0)));
  }
  if (type == "log" && e.contains("step")) {
    return "[" + std::to_string(e.value("step", 0)) + (e.value("stream", "") == "err" ? "!" : "") +
           "] " + e.value("text", "");
  }
  if (type == "status" && e.value("state", "") == "restarted") {
    return "(a new build started)";
  }
  return e.value("text", "");
}

std::optional<int> runBuildLogsRemote(const RemoteOptions& o, const std::string& name,
                                      bool follow) {
  bool error = false;
  auto client = connect(o, &error);
  if (error) {
    return kExitError;
  }
  if (!client) {
    return std::nullopt;
  }
  bool failed = false;
  Status s = client->followStream(
      "/v1/builds/" + name + "/events" + (follow ? "?follow=1" : ""), [&](const nlohmann::json& e) {
        if (e.value("type", "") == "heartbeat") {
          return true;
        }
        if (o.output == "json") {
          std::cout << e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
        } else {
          // The text is the build log's: the provider escaped what the guest wrote.
          std::cout << escapeControl(buildEventLine(e)) << "\n";
        }
        std::cout << std::flush;
        if (e.value("type", "") == "status" && e.value("state", "") == "restarted") {
          failed = false;
        }
        failed = failed || (e.value("type", "") == "status" && e.value("state", "") == "failed");
        return true;
      });
  if (!s.isOk()) {
    return fail(s.message());
  }
  return failed && follow ? kExitError : kExitOk;
}

}  // namespace hyper::ctl
