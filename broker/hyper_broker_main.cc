// hyper-broker: the host command broker daemon (runs as root). See docs/broker.md.
#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "broker/daemon.h"

int main(int argc, char** argv) {
  CLI::App app{"hyper-broker: runs allow-listed host commands for local callers, as themselves"};
  std::string configPath, socketPath, rulesPath, group, mode, logFile;
  size_t logMaxBytes = 0, logMaxFiles = 0;
  int maxConnections = 0, maxConnectionsPerUid = 0, maxQueuedPerUid = 0, queueTimeout = 0;
  app.add_option("--config", configPath, "JSON config file (flags given as well override it)");
  app.add_option("--socket", socketPath, "Unix socket to listen on");
  app.add_option("--rules", rulesPath, "rule file (JSON) to load, and reload on SIGHUP");
  app.add_option("--group", group, "group of the socket");
  app.add_option("--mode", mode, "mode of the socket (octal, default 0660)");
  app.add_option("--log-file", logFile, "log file, rotated by size (besides stderr)");
  app.add_option("--log-max-bytes", logMaxBytes, "rotate the log file at this size");
  app.add_option("--log-max-files", logMaxFiles, "rotated log files to keep");
  auto limit = [&](const char* name, int& value, const char* what) {
    app.add_option(name, value, what)->check(CLI::Range(1, 1000000));
  };
  limit("--max-connections", maxConnections, "open connections of all callers (default 512)");
  limit("--max-connections-per-uid", maxConnectionsPerUid,
        "open connections of one uid (default 64)");
  limit("--max-queued-per-uid", maxQueuedPerUid,
        "requests of one uid waiting for a rule's slot (default 32)");
  limit("--queue-timeout", queueTimeout,
        "seconds a request may wait for a slot before it is refused (default 600)");
  CLI11_PARSE(app, argc, argv);

  hyper::broker::BrokerConfig config;
  if (!configPath.empty()) {
    auto loaded = hyper::broker::loadBrokerConfig(configPath, config);
    if (!loaded.isOk()) {
      std::fprintf(stderr, "hyper-broker: %s\n", loaded.status().message().c_str());
      return 1;
    }
    config = *loaded;
  } else if (socketPath.empty() || rulesPath.empty()) {
    std::fprintf(stderr, "hyper-broker: --socket and --rules are required (or --config FILE)\n");
    return 1;
  }
  if (!socketPath.empty()) {
    config.socketPath = socketPath;
  }
  if (!rulesPath.empty()) {
    config.rulesPath = rulesPath;
  }
  if (!group.empty()) {
    config.group = group;
  }
  if (!mode.empty()) {
    auto parsed = hyper::broker::parseMode(mode);
    if (!parsed.isOk()) {
      std::fprintf(stderr, "hyper-broker: --mode: %s\n", parsed.status().message().c_str());
      return 1;
    }
    config.mode = *parsed;
  }
  if (!logFile.empty()) {
    config.logFile = logFile;
  }
  if (logMaxBytes > 0) {
    config.logMaxBytes = logMaxBytes;
  }
  if (logMaxFiles > 0) {
    config.logMaxFiles = logMaxFiles;
  }
  for (auto [flag, field] : {std::pair{maxConnections, &config.limits.maxConnections},
                             std::pair{maxConnectionsPerUid, &config.limits.maxConnectionsPerUid},
                             std::pair{maxQueuedPerUid, &config.limits.maxQueuedPerUid},
                             std::pair{queueTimeout, &config.limits.queueTimeoutSec}}) {
    if (flag > 0) {
      *field = flag;
    }
  }

  // Signals are taken by one thread with sigwait; every other thread (connections, runs) has
  // them blocked, and the runs' children unblock them before exec.
  sigset_t handled;
  sigemptyset(&handled);
  sigaddset(&handled, SIGHUP);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  signal(SIGPIPE, SIG_IGN);

  hyper::broker::BrokerDaemon daemon(config);
  hyper::Status started = daemon.start();
  if (!started.isOk()) {
    std::fprintf(stderr, "hyper-broker: %s\n", started.message().c_str());
    return 1;
  }
  std::thread signals([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&handled, &sig) != 0) {
        continue;
      }
      if (sig == SIGHUP) {
        (void)daemon.reload();  // logged; the rules in force stay on error
      } else {
        daemon.stop();
        return;
      }
    }
  });
  daemon.run();
  if (signals.joinable()) {
    // run() ends only after stop(), which the signal thread called before returning.
    signals.join();
  }
  return 0;
}
