#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace hyper::providers::build {

// A build's log (<stateDir>/builds/NAME.log, written by the Build provider line by line, started
// afresh by each build) read as typed events, for `GET /v1/builds/NAME/events` and
// `hyperctl logs build/NAME -f`:
//   step    {"type": "step", "step": 2, "phase": "start" | "exit" | "signal", "code": 0}
//   log     {"type": "log", "text": "...", "step": 2, "stream": "out" | "err"} (a step's output;
//           "step" and "stream" absent for the provider's own lines)
//   status  {"type": "status", "text": "...", "state": "started" | "succeeded" | "failed" |
//           "cached"}
// Each carries "line": its line number in the log (from 1), the cursor a follower resumes at.
nlohmann::json buildLogEvent(std::string_view line, int64_t number);

// True for a line that ends a build's log ("built in ...", "failed: ...", "apply: cached ...").
bool isFinalBuildLine(std::string_view line);

}  // namespace hyper::providers::build
