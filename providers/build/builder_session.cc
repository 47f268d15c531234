#include "providers/build/builder_session.h"

#include <algorithm>

#include "base/base64.h"
#include "base/line_channel.h"

namespace hyper::providers::build {

using Clock = LineChannel::Clock;
using guest::AgentLine;

Result<BuilderOutcome> runBuilderJob(int fd, const guest::BuildJob& job,
                                     const BuilderSessionOptions& options) {
  const auto start = Clock::now();
  // The channel's own cancel is not the caller's: a cancel is said to the agent, and its answer
  // waited for a little (kCancelGrace) before giving up.
  LineChannel channel(Fd(fd), start + options.timeout, nullptr, guest::kMaxBuildLine, "");
  constexpr std::chrono::seconds kCancelGrace{5};
  BuilderOutcome out;
  bool jobSent = false;
  bool cancelSent = false;
  Clock::time_point silentSince = Clock::now();
  Clock::time_point cancelBy = Clock::time_point::max();
  auto seconds = [](Clock::duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
  };
  while (true) {
    if (!cancelSent && options.cancel != nullptr && options.cancel->load()) {
      cancelSent = true;
      cancelBy = Clock::now() + kCancelGrace;
      if (jobSent) {
        HYPER_RETURN_IF_ERROR(channel.send("cancel\n"));
      } else {
        return Status::error("cancelled before the builder was ready");
      }
    }
    if (Clock::now() >= cancelBy) {
      return Status::error("cancelled; the builder did not confirm within " +
                           seconds(kCancelGrace));
    }
    const auto until = std::min({silentSince + options.readDeadline, cancelBy,
                                 Clock::now() + std::chrono::milliseconds(100)});
    auto line = channel.readLine(until);
    if (!line.isOk()) {
      return line.status();
    }
    if (!*line) {
      const auto now = Clock::now();
      if (now >= channel.deadline()) {
        return Status::error("the build ran past its timeout of " + seconds(options.timeout) +
                             " (in step " + std::to_string(std::max(out.stepsRun - 1, 0)) + ")");
      }
      if (now - silentSince >= options.readDeadline) {
        return Status::error("the builder said nothing for " + seconds(options.readDeadline) +
                             (jobSent ? "" : " (no hello from its agent)"));
      }
      continue;
    }
    silentSince = Clock::now();
    auto parsed = guest::parseAgentLine(**line);
    if (!parsed.isOk()) {
      return parsed.status().withContext("builder channel");
    }
    const AgentLine& l = *parsed;
    switch (l.kind) {
      case AgentLine::Kind::Hello:
        if (!jobSent) {
          HYPER_RETURN_IF_ERROR(channel.send("job " + encodeBase64(job.toJson().dump()) + "\n"));
          jobSent = true;
        }
        break;
      case AgentLine::Kind::Alive:
        break;
      case AgentLine::Kind::StepStart:
        out.stepsRun = std::max(out.stepsRun, l.step + 1);
        [[fallthrough]];
      case AgentLine::Kind::StepExit:
      case AgentLine::Kind::StepSignal:
        if (options.onStep) {
          options.onStep(**line);
        }
        break;
      case AgentLine::Kind::Out:
      case AgentLine::Kind::Err:
        if (options.onOutput) {
          options.onOutput(l.step, l.kind == AgentLine::Kind::Err, l.data);
        }
        break;
      case AgentLine::Kind::Result:
        out.ok = l.ok;
        if (l.error) {
          out.error = l.data.empty() ? "the agent could not run the job" : l.data;
        } else if (!l.ok) {
          out.failedStep = l.step;
          out.exitCode = l.code;
        }
        return out;
    }
  }
}

}  // namespace hyper::providers::build
