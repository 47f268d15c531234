#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::broker {

// The longest request line the broker reads; a longer one is answered with an error.
constexpr size_t kMaxRequestLine = 256 * 1024;
// The deepest nesting of objects and arrays a request may have (a valid one has 2); a deeper one
// is refused before it is built.
constexpr int kMaxRequestDepth = 8;

// One run request, as the client sends it on one line:
//   {"schemaVersion":"1","requestId":"...","command":"make","args":["-j4"],"cwd":"/...",
//    "timeoutSec":600,"env":{"CC":"gcc"}}
// The env carries the caller's environment; the rule decides which of it passes.
struct RunRequest {
  std::string requestId;
  std::string command;
  std::vector<std::string> args;
  std::string cwd;
  std::optional<int> timeoutSec;
  std::map<std::string, std::string> env;
};

// An administrative request, accepted from uid 0 only: {"admin":"rules"} answers with the loaded
// rules and their hash; {"admin":"reload"} re-reads the rule file first.
struct AdminRequest {
  std::string action;  // "rules" or "reload"
};

struct Request {
  std::optional<RunRequest> run;
  std::optional<AdminRequest> admin;
};

// Parses and validates one request line. Errors say which field is wrong and what was expected,
// and never quote the caller's values (only their kind and size). No global state: a plain
// function of the line (the fuzz target's entry point).
Result<Request> parseRequest(const std::string& line);

// The JSON line a client sends for `req` (without the newline).
nlohmann::json runRequestToJson(const RunRequest& req);

}  // namespace hyper::broker
