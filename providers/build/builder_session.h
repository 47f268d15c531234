#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "guest/build_protocol.h"

namespace hyper::providers::build {

// How a builder's job ended (guest/build_protocol.h).
struct BuilderOutcome {
  bool ok = false;
  int failedStep = -1;  // the step that failed, when one did
  int exitCode = 0;     // its exit code (128 + signal when killed)
  std::string error;    // the agent could not run the job ("cancelled", a bad job)
  int stepsRun = 0;
};

struct BuilderSessionOptions {
  std::chrono::milliseconds timeout{900000};  // the whole job
  // No line from the agent for this long is an error: it says `alive` every kAgentHeartbeat.
  std::chrono::milliseconds readDeadline = 3 * std::chrono::milliseconds(guest::kAgentHeartbeat);
  const std::atomic<bool>* cancel = nullptr;  // sends `cancel`, then waits a little for the result
  // Each output chunk, each step boundary ("step 0 start", "step 0 exit 2"): the build's log.
  std::function<void(int step, bool err, std::string_view bytes)> onOutput;
  std::function<void(const std::string& line)> onStep;
};

// One job on a connected channel `fd` (taken): waits for the agent's hello, sends the job,
// relays its output and step boundaries, returns its result. An error (not an outcome) when the
// agent breaks the protocol, goes silent past the read deadline, the channel closes, or the job
// runs past its timeout: the caller then stops the builder VM.
Result<BuilderOutcome> runBuilderJob(int fd, const guest::BuildJob& job,
                                     const BuilderSessionOptions& options);

}  // namespace hyper::providers::build
