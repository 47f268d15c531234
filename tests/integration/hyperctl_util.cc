#include "tests/integration/hyperctl_util.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "host/command.h"

namespace hyper::test {

Result<std::unique_ptr<TempDir>> TempDir::create(const std::string& tag) {
  std::string pattern = "/tmp/hyper-" + tag + ".XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Status::error("mkdtemp " + pattern + ": " + std::strerror(errno));
  }
  return std::unique_ptr<TempDir>(new TempDir(pattern));
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) {
    std::fprintf(stderr, "cleanup: remove %s: %s\n", path_.c_str(), ec.message().c_str());
  }
}

Status TempDir::write(const std::string& relative, const std::string& content) const {
  std::filesystem::path file = std::filesystem::path(path_) / relative;
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) {
    return Status::error("create " + file.parent_path().string() + ": " + ec.message());
  }
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) {
    return Status::error("write " + file.string() + " failed");
  }
  return Status::ok();
}

std::string CommandRun::describe() const {
  return "$ " + command + "\nexit code " + std::to_string(exitCode) + "\n--- stdout ---\n" + out +
         "--- stderr ---\n" + err;
}

CommandRun Hyperctl::run(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"ip",          "netns",       "exec",   netns_,
                                   HYPERCTL_PATH, "--state-dir", stateDir_};
  argv.insert(argv.end(), args.begin(), args.end());
  return runArgv(argv);
}

CommandRun runArgv(const std::vector<std::string>& argv) {
  CommandRun run;
  for (const auto& a : argv) {
    run.command += (run.command.empty() ? "" : " ") + a;
  }
  auto result = host::runCommand(argv);
  if (!result.isOk()) {
    run.err = result.status().message();
    return run;
  }
  run.exitCode = result->exitCode;
  run.out = std::move(result->out);
  run.err = std::move(result->err);
  return run;
}

CommandRun runHyperctl(const std::string& stateDir, const std::vector<std::string>& args,
                       const HyperctlEnv& how) {
  std::vector<std::string> argv = how.prefix;
  if (!how.umask.empty()) {
    argv.insert(argv.end(), {"sh", "-c", "umask " + how.umask + "; exec \"$@\"", "sh"});
  }
  if (!how.tz.empty() || !how.env.empty()) {
    argv.push_back("env");
    if (!how.tz.empty()) {
      argv.push_back("TZ=" + how.tz);
    }
    argv.insert(argv.end(), how.env.begin(), how.env.end());
  }
  argv.insert(argv.end(), {HYPERCTL_PATH, "--state-dir", stateDir});
  argv.insert(argv.end(), args.begin(), args.end());
  return runArgv(argv);
}

}  // namespace hyper::test
