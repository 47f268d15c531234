#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace hyper::host {

struct CommandResult {
  int exitCode = -1;  // 128+N when killed by signal N
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) directly, never through a shell, with `input` on stdin. The
// child inherits no descriptor but its stdin, stdout and stderr.
// Returns an error only when the command could not be started; a non-zero exit is a result.
Result<CommandResult> runCommand(const std::vector<std::string>& argv,
                                 const std::string& input = "");

// Runs the command and turns a non-zero exit into an error "argv... <- <stderr first line>".
Result<std::string> runChecked(const std::vector<std::string>& argv, const std::string& input = "");

}  // namespace hyper::host
