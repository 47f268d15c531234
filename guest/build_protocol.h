#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hyper::guest {

// What hyper's build agent (guest/build_agent_main.cc, in a builder VM) and the host say to each
// other on the builder's virtio-serial channel: lines of text, at most kMaxBuildLine bytes.
//
//   agent: hello hyper-build-agent/1        once it has opened the channel (what the host sends
//                                           before that is lost: the host waits for it)
//   host:  job <base64 of the job's JSON>   (BuildJob)
//   agent: step <n> start
//          out <n> <base64> | err <n> <base64>   a step's output, at most kOutputChunk bytes each
//          step <n> exit <code> | step <n> signal <number>
//          alive                            every kAgentHeartbeat while a step runs: the host's
//                                           read deadline is a few of these
//          result ok | result failed <n> <code> | result error <reason>
//   host:  cancel                           the running step's process group is killed
// The agent sends its result by itself when the job ends (never waiting to be asked: a lesson
// of seeds 000-002, where waiting deadlocked). The guest is not trusted: the host parses every
// line with parseAgentLine, bounded.
inline constexpr size_t kMaxBuildLine = 16 * 1024;
inline constexpr size_t kOutputChunk = 4096;
inline constexpr std::chrono::seconds kAgentHeartbeat{10};
inline constexpr const char* kAgentHello = "hyper-build-agent/1";

// A build's steps, each an argv run without a shell, one after the other, as `uid`/`gid` (when
// the agent runs as root), in `workdir`, with exactly `env` as the environment.
struct BuildJob {
  std::vector<std::vector<std::string>> steps;
  std::map<std::string, std::string> env;
  std::string workdir = "/";
  int uid = -1;  // -1: the agent's own
  int gid = -1;

  nlohmann::json toJson() const;
  // Bounded: at most 64 steps of at most 256 arguments of at most 4096 bytes, 128 variables.
  static Result<BuildJob> fromJson(const nlohmann::json& j);
};

struct AgentLine {
  enum class Kind { Hello, StepStart, Out, Err, StepExit, StepSignal, Alive, Result };
  Kind kind = Kind::Alive;
  int step = -1;
  int code = 0;        // exit code or signal; for a failed result, the step's exit code
  std::string data;    // Out/Err: the decoded bytes; Hello: the version; Result error: reason
  bool ok = false;     // Result
  bool error = false;  // Result: the agent could not run the job at all
};

// One line from the agent (without its newline). Errors say what was expected and quote at most
// a short, escaped excerpt.
Result<AgentLine> parseAgentLine(std::string_view line);

// The agent's lines, for the agent (and tests).
std::string outputLine(bool err, int step, std::string_view bytes);

}  // namespace hyper::guest
