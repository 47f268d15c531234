#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "broker/cgroup.h"
#include "broker/limits.h"
#include "broker/peer.h"
#include "broker/request.h"
#include "broker/rules.h"
#include "broker/slots.h"

namespace spdlog {
class logger;
}

namespace hyper::broker {

struct BrokerConfig {
  std::string socketPath = "/run/hyper/broker.sock";
  std::string rulesPath = "/etc/hyper/broker-rules.json";
  std::string group;    // the socket's group; empty: root's
  mode_t mode = 0660;   // the socket's mode
  std::string logFile;  // empty: stderr only
  size_t logMaxBytes = 10 * 1024 * 1024;
  size_t logMaxFiles = 5;
  int killGraceSec = 5;  // between SIGTERM and SIGKILL when a run is cut short
  CallerLimits limits;
  // Each run whose rule sets pidsMax or memoryMaxBytes gets a cgroup under this parent group of
  // the cgroup mounts the broker can write (see broker/cgroup.h).
  std::string cgroupParent = "hyper-broker";
};

// Reads a JSON config file: {"socket":..., "rules":..., "group":..., "mode":"0660",
// "logFile":..., "logMaxBytes":N, "logMaxFiles":N, "maxConnections":N,
// "maxConnectionsPerUid":N, "maxQueuedPerUid":N, "queueTimeoutSec":N}. Fields left out keep
// `defaults`.
Result<BrokerConfig> loadBrokerConfig(const std::string& path, BrokerConfig defaults);

// "0660" -> 0660; an error unless 1-4 octal digits.
Result<mode_t> parseMode(const std::string& text);

// The host command broker: one thread per connection, runs as root, answers one request per
// connection (see broker/request.h for the protocol and docs/broker.md for the whole picture).
class BrokerDaemon {
 public:
  // Starts `fn` on a thread of its own, detached; throws std::system_error when no thread can be
  // created (what std::thread does). A seam for tests, which make it fail.
  using ThreadStarter = std::function<void(std::function<void()> fn)>;

  explicit BrokerDaemon(BrokerConfig config, ThreadStarter startThread = nullptr);
  ~BrokerDaemon();
  BrokerDaemon(const BrokerDaemon&) = delete;
  BrokerDaemon& operator=(const BrokerDaemon&) = delete;

  // Loads the rules (a missing file means no rules, with a warning; an invalid one is an error)
  // and creates the socket: bound under umask 0177, then chgrp and chmod to the configured group
  // and mode. Refuses to replace a socket that another broker still answers on.
  Status start();

  // Serves until stop(); then waits for the runs in flight to be cut short and answered.
  void run();

  // Thread-safe, callable from a signal-handling thread.
  void stop();

  // Re-reads the rule file. On error the rules in force stay, and the error is logged and kept
  // for {"admin":"rules"} to report.
  Status reload();

  // What {"admin":"rules"} answers: {"type":"rules","rulesFile":...,"hash":...,"rules":[...],
  // "error":...}. The hash is sha256 of the rule file's bytes as last loaded successfully ("" when
  // none was).
  nlohmann::json rulesReport() const;

 private:
  void accepted(int fd);
  void serve(int fd);
  void handleRun(int fd, const Caller& caller, const RunRequest& req);
  Status bindSocket();

  BrokerConfig config_;
  ThreadStarter startThread_;
  std::shared_ptr<spdlog::logger> log_;
  CgroupSupport cgroups_;
  int listenFd_ = -1;
  int stopFd_ = -1;  // eventfd, readable once stop() was called
  std::atomic<bool> stopping_{false};

  mutable std::mutex rulesMu_;
  std::shared_ptr<const RuleSet> rules_;
  std::string rulesError_;
  SlotTable slots_;

  std::mutex connMu_;
  std::condition_variable connCv_;
  int connections_ = 0;
  UidCounter connectionsPerUid_;
  UidCounter queuedPerUid_;
  std::atomic<uint64_t> serial_{0};
};

}  // namespace hyper::broker
