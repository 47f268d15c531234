#include "broker/request.h"

#include <set>

#include "broker/bounded_json.h"
#include "broker/log_text.h"

namespace hyper::broker {

using Json = nlohmann::json;

namespace {

// What was found, by kind only: a request's values are the caller's, and an error (which is
// logged and sent back) never quotes or serialises them.
std::string found(const Json& j) {
  if (j.is_string()) {
    return "a string of " + std::to_string(j.get_ref<const std::string&>().size()) + " bytes";
  }
  if (j.is_array()) {
    return "an array of " + std::to_string(j.size()) + " elements";
  }
  if (j.is_object()) {
    return "an object of " + std::to_string(j.size()) + " fields";
  }
  if (j.is_null()) {
    return "null";
  }
  return std::string("a ") + j.type_name();  // "a number", "a boolean"
}

// A field name the caller chose, for an error message: escaped and cut short.
std::string keyName(const std::string& key) {
  std::string k = escapeForLog(key.size() > 40 ? key.substr(0, 40) : key);
  return key.size() > 40 ? k + "..." : k;
}

Status fieldError(const std::string& field, const std::string& expected, const Json& got) {
  return Status::error("request." + field + ": expected " + expected + ", got " + found(got));
}

}  // namespace

Result<Request> parseRequest(const std::string& line) {
  // A request is an object holding at most arrays and objects of strings: depth 2.
  auto parsed = parseBoundedJson(line, JsonLimits{kMaxRequestLine, kMaxRequestDepth});
  if (!parsed.isOk()) {
    return Status::error("request is " + parsed.status().message());
  }
  Json doc = std::move(parsed).value();
  if (!doc.is_object()) {
    return Status::error("request: expected a JSON object, got " + found(doc));
  }
  Request out;
  if (auto admin = doc.find("admin"); admin != doc.end()) {
    if (doc.size() != 1 || !admin->is_string() || (*admin != "rules" && *admin != "reload")) {
      return Status::error(
          "request.admin: expected {\"admin\":\"rules\"} or "
          "{\"admin\":\"reload\"}, got " +
          (doc.size() != 1 ? "other fields beside admin" : found(*admin)));
    }
    out.admin = AdminRequest{admin->get<std::string>()};
    return out;
  }
  static const std::set<std::string> known = {"schemaVersion", "requestId",  "command", "args",
                                              "cwd",           "timeoutSec", "env"};
  for (const auto& [key, value] : doc.items()) {
    if (known.count(key) == 0) {
      return Status::error("request." + keyName(key) +
                           ": unknown field; expected schemaVersion, requestId, command, args, "
                           "cwd, timeoutSec or env");
    }
  }
  auto version = doc.find("schemaVersion");
  if (version == doc.end() || *version != "1") {
    return fieldError("schemaVersion", "\"1\"", version == doc.end() ? Json() : *version);
  }
  RunRequest r;
  if (auto id = doc.find("requestId"); id != doc.end()) {
    if (!id->is_string() || id->get<std::string>().size() > 128) {
      return fieldError("requestId", "a string of at most 128 characters", *id);
    }
    r.requestId = id->get<std::string>();
  }
  auto command = doc.find("command");
  if (command == doc.end() || !command->is_string() || command->get<std::string>().empty()) {
    return fieldError("command", "a command name such as \"make\"",
                      command == doc.end() ? Json() : *command);
  }
  r.command = command->get<std::string>();
  if (auto args = doc.find("args"); args != doc.end()) {
    if (!args->is_array()) {
      return fieldError("args", "a list of strings", *args);
    }
    for (size_t i = 0; i < args->size(); ++i) {
      const Json& a = (*args)[i];
      if (!a.is_string() || a.get<std::string>().find('\0') != std::string::npos) {
        return fieldError("args[" + std::to_string(i) + "]", "a string without NUL bytes", a);
      }
      r.args.push_back(a.get<std::string>());
    }
  }
  auto cwd = doc.find("cwd");
  if (cwd == doc.end() || !cwd->is_string() || cwd->get<std::string>().empty() ||
      cwd->get<std::string>()[0] != '/') {
    return fieldError("cwd", "an absolute path", cwd == doc.end() ? Json() : *cwd);
  }
  r.cwd = cwd->get<std::string>();
  if (auto timeout = doc.find("timeoutSec"); timeout != doc.end() && !timeout->is_null()) {
    if (!timeout->is_number_integer() || timeout->get<long long>() < 1 ||
        timeout->get<long long>() > 1000000) {
      return fieldError("timeoutSec", "an integer number of seconds from 1 to 1000000", *timeout);
    }
    r.timeoutSec = static_cast<int>(timeout->get<long long>());
  }
  if (auto env = doc.find("env"); env != doc.end()) {
    if (!env->is_object()) {
      return fieldError("env", "an object of strings", *env);
    }
    for (const auto& [key, value] : env->items()) {
      if (!value.is_string()) {
        return fieldError("env." + keyName(key), "a string", value);
      }
      r.env[key] = value.get<std::string>();
    }
  }
  out.run = std::move(r);
  return out;
}

Json runRequestToJson(const RunRequest& req) {
  Json j = {{"schemaVersion", "1"},   {"requestId", req.requestId},
            {"command", req.command}, {"args", req.args},
            {"cwd", req.cwd},         {"env", req.env}};
  if (req.timeoutSec) {
    j["timeoutSec"] = *req.timeoutSec;
  }
  return j;
}

}  // namespace hyper::broker
