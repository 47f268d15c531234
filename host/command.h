#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "base/status.h"

namespace hyper::host {

struct CommandResult {
  int exitCode = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
  bool timedOut = false;   // killed because CommandOptions::timeout passed
  bool cancelled = false;  // killed because CommandOptions::cancel became true
};

// How a long command runs (a build step): where, with what added to the environment, for how
// long. A command with a timeout or a cancel flag runs in its own process group, and the whole
// group is killed (SIGKILL) when either fires, so nothing it started lives on.
struct CommandOptions {
  std::string cwd;                       // "" = ours
  std::vector<std::string> env;          // "NAME=value" added to (or replacing in) our environment
  std::chrono::milliseconds timeout{0};  // 0 = none
  const std::atomic<bool>* cancel = nullptr;
  size_t maxOutputBytes = 0;  // stdout/stderr kept beyond this are dropped (0 = all)
};

// Runs argv[0] (looked up in PATH) directly, never through a shell, with `input` on stdin. The
// child inherits no descriptor but its stdin, stdout and stderr.
// Returns an error only when the command could not be started; a non-zero exit is a result.
Result<CommandResult> runCommand(const std::vector<std::string>& argv,
                                 const std::string& input = "");
Result<CommandResult> runCommand(const std::vector<std::string>& argv, const std::string& input,
                                 const CommandOptions& options);

// Runs the command and turns a non-zero exit into an error "argv... <- <stderr first line>".
Result<std::string> runChecked(const std::vector<std::string>& argv, const std::string& input = "");
// The same with options; a timeout or a cancel is an error that says so.
Result<std::string> runChecked(const std::vector<std::string>& argv, const std::string& input,
                               const CommandOptions& options);

}  // namespace hyper::host
