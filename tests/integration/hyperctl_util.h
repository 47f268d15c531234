#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace hyper::test {

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  static Result<std::unique_ptr<TempDir>> create(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `content` to path()/relative, creating missing parent directories.
  Status write(const std::string& relative, const std::string& content) const;

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// What one run of a command printed and how it ended.
struct CommandRun {
  std::string command;  // argv joined by spaces, for failure messages
  int exitCode = -1;    // -1: it could not be started (the reason is in `err`)
  std::string out;
  std::string err;

  // Command, exit code, stdout and stderr: the message of a failed assertion on this run.
  std::string describe() const;
};

// Runs argv (never through a shell, stdin empty) and says how it went; `exitCode` -1 with the
// reason in `err` when it could not be started.
CommandRun runArgv(const std::vector<std::string>& argv);

// How the reproducibility tests vary hyperctl's surroundings: its umask and TZ (through sh, which
// only sets the umask and execs it; none when `umask` is empty) and variables added to its
// environment ("HYPER_VM_RUN_DIR=..."). `prefix` goes before it all (`ip netns exec NETNS`).
struct HyperctlEnv {
  std::string umask;
  std::string tz;
  std::vector<std::string> env;
  std::vector<std::string> prefix;
};
// The real hyperctl (HYPERCTL_PATH) against `stateDir`, in `how`'s surroundings.
CommandRun runHyperctl(const std::string& stateDir, const std::vector<std::string>& args,
                       const HyperctlEnv& how = {});

// The real hyperctl binary (HYPERCTL_PATH) run inside a named network namespace against one
// state directory: `ip netns exec NETNS hyperctl --state-dir STATE_DIR args...`, never through a
// shell, with stdin empty.
class Hyperctl {
 public:
  Hyperctl(std::string netns, std::string stateDir)
      : netns_(std::move(netns)), stateDir_(std::move(stateDir)) {}

  CommandRun run(const std::vector<std::string>& args) const;
  const std::string& stateDir() const { return stateDir_; }

 private:
  std::string netns_;
  std::string stateDir_;
};

}  // namespace hyper::test
