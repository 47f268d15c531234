#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "tests/integration/hyperctl_util.h"

namespace hyper::test {

// A throwaway local user with its own group (useradd -U), optionally in extra groups; removed
// with its group on destruction.
class TestUser {
 public:
  static Result<std::unique_ptr<TestUser>> create(const std::string& name,
                                                  const std::vector<std::string>& groups);
  ~TestUser();
  TestUser(const TestUser&) = delete;
  TestUser& operator=(const TestUser&) = delete;

  const std::string& name() const { return name_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }

 private:
  TestUser(std::string name, uid_t uid, gid_t gid) : name_(std::move(name)), uid_(uid), gid_(gid) {}
  std::string name_;
  uid_t uid_;
  gid_t gid_;
};

// A throwaway group (groupadd), removed on destruction.
class TestGroup {
 public:
  static Result<std::unique_ptr<TestGroup>> create(const std::string& name);
  ~TestGroup();
  const std::string& name() const { return name_; }
  gid_t gid() const { return gid_; }

 private:
  TestGroup(std::string name, gid_t gid) : name_(std::move(name)), gid_(gid) {}
  std::string name_;
  gid_t gid_;
};

// A short random suffix for names that must not collide with a previous, crashed run.
std::string randomSuffix();

// A real hyper-broker (HYPER_BROKER_PATH) started with `args`, its stderr in `logPath`; stopped
// with SIGTERM on destruction.
class BrokerProcess {
 public:
  static Result<std::unique_ptr<BrokerProcess>> start(const std::vector<std::string>& args,
                                                      const std::string& socketPath,
                                                      const std::string& logPath);
  ~BrokerProcess();
  pid_t pid() const { return pid_; }
  bool alive() const;
  std::string log() const;

 private:
  BrokerProcess(pid_t pid, std::string logPath) : pid_(pid), logPath_(std::move(logPath)) {}
  pid_t pid_;
  std::string logPath_;
};

// Connects to `socketPath` with the credentials of uid/gid and the user's groups (getgrouplist):
// a child process drops to them and calls connect() on a socket the parent keeps, so the broker's
// SO_PEERCRED and SO_PEERGROUPS name that user and those groups.
Result<int> connectAs(const std::string& socketPath, uid_t uid, gid_t gid);

// The same with exactly `groups` as the connecting process's supplementary groups.
Result<int> connectAsWithGroups(const std::string& socketPath, uid_t uid, gid_t gid,
                                const std::vector<gid_t>& groups);

// Reads NDJSON frames from `fd` until an exit frame or end of stream (or `until` returns true
// for a frame).
std::vector<nlohmann::json> readFrames(
    int fd, const std::function<bool(const nlohmann::json&)>& until = nullptr);

// Concatenated stdout data of frames (base64 decoded).
std::string stdoutOf(const std::vector<nlohmann::json>& frames);

// Whether a process is gone (or a zombie nobody reaped yet), waiting up to `seconds` for it.
bool waitGone(pid_t pid, int seconds);

}  // namespace hyper::test
