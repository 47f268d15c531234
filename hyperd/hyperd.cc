// hyperd: the GitOps controller. Watches a directory or git source, observes the host (the network
// namespace it starts in), and converges it in a loop; drift is alerted and corrected; an HTTP API
// on loopback serves hyperctl, health checks, metrics and push webhooks.

#include <git2.h>
#include <signal.h>
#include <sodium.h>

#include <csignal>
#include <iostream>
#include <thread>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "base/file.h"
#include "base/memory.h"
#include "controller/client.h"
#include "controller/event_log.h"
#include "hyperd/alerts.h"
#include "hyperd/api.h"
#include "hyperd/config.h"
#include "hyperd/host_events.h"
#include "hyperd/hyperd.h"
#include "hyperd/logging.h"
#include "hyperd/loop.h"
#include "hyperd/metrics.h"
#include "reconciler/state_lock.h"
#include "source/source.h"
#include "store/artifact_store.h"

namespace hyper::controller {
namespace {

// The artifact store's garbage collection, as `hyperctl gc` does it: keep what the records and
// the last revisions reference. Run by the loop's thread, never beside an apply.
void collectGarbage(Inventory& inventory, const std::string& stateDir, int keepRevisions) {
  auto keep = inventory.artifactRoots(static_cast<size_t>(std::max(keepRevisions, 0)));
  if (!keep.isOk()) {
    spdlog::warn("gc: skipped: {}", keep.status().message());
    return;
  }
  store::ArtifactStore artifacts(stateDir + "/store");
  auto report = artifacts.collectGarbage(*keep);
  if (!report.isOk()) {
    spdlog::warn("gc: {}", report.status().message());
  } else if (!report->removed.empty()) {
    spdlog::info("gc: removed {} artifacts ({} bytes); kept {} ({} bytes)", report->removed.size(),
                 report->removedBytes, report->kept, report->keptBytes);
  }
}

LoopOptions loopOptions(const HyperdConfig& c, const KindRegistry& kinds, Inventory& inventory) {
  LoopOptions o;
  o.maintenanceInterval = c.gc.interval;
  o.maintenance = [&inventory, stateDir = c.stateDir, keep = c.gc.keepRevisions] {
    collectGarbage(inventory, stateDir, keep);
  };
  o.prune = c.prune;
  o.hold = c.hold;
  o.hold.running = kinds.runningObjects();
  o.parallelism = c.parallelism;
  o.driftPolicy = c.driftPolicy;
  o.pollInterval = c.source.interval;
  o.driftInterval = c.driftInterval;
  o.debounce = c.debounce;
  return o;
}

Result<std::unique_ptr<AlertFanout>> makeAlerts(const HyperdConfig& c, Metrics& metrics) {
  auto fanout = std::make_unique<AlertFanout>();
  for (const auto& a : c.alerts) {
    if (a.type == AlertSinkConfig::Type::Log) {
      fanout->add(std::make_shared<LogAlertSink>());
      continue;
    }
    WebhookAlertSink::Options o;
    o.retry.maxAttempts = a.maxAttempts;
    o.metrics = &metrics;
    auto sink = WebhookAlertSink::create(
        a.url, a.secret ? std::optional<std::string>(a.secret->reveal()) : std::nullopt, o);
    if (!sink.isOk()) {
      return sink.status().withContext("alert webhook");
    }
    fanout->add(std::shared_ptr<AlertSink>(std::move(*sink)));
  }
  return fanout;
}

// Flags become a config document, validated exactly like a config file.
Result<HyperdConfig> configFromFlags(const nlohmann::json& flags, const KindRegistry& kinds) {
  return parseConfig(flags.dump(2), "(command-line flags)", kinds);
}

// Long on purpose: hyperd's start-up in the order it happens (lock, engine, inventory, source,
// alerts, host events, API, signals), each step a few lines that stop the start on error.
int run(const HyperdConfig& initial, const std::string& configPath, const KindRegistry& kinds) {
  HyperdConfig config = initial;
  // Signals are taken by one thread with sigwait: block them everywhere before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto lock = StateLock::acquire(config.stateDir, "hyperd");
  if (!lock.isOk()) {
    spdlog::critical("{}", lock.status().message());
    return 1;
  }
  auto made = kinds.makeProviders(config.providers, config.stateDir);
  if (!made.isOk()) {
    spdlog::critical("{}", made.status().message());
    return 1;
  }
  Engine engine(std::move(*made), kinds);
  auto inventory = Inventory::open(config.stateDir);
  if (!inventory.isOk()) {
    spdlog::critical("{}", inventory.status().message());
    return 1;
  }
  auto events = EventLog::open(config.stateDir);
  if (!events.isOk()) {
    spdlog::critical("{}", events.status().message());
    return 1;
  }
  SourceSpec spec{config.source.url,           config.source.ref,     config.source.path,
                  config.stateDir + "/source", config.source.timeout, config.source.caFile};
  spec.sshKeyFile = config.source.sshKeyFile;
  spec.knownHostsFile = config.source.knownHostsFile;
  spec.credentialsFile = config.source.credentialsFile;
  spec.poll = config.source.poll;
  auto source = openSource(spec);
  if (!source.isOk()) {
    spdlog::critical("{}", source.status().message());
    return 1;
  }
  Metrics metrics;
  auto alertsOr = makeAlerts(config, metrics);
  if (!alertsOr.isOk()) {
    spdlog::critical("{}", alertsOr.status().message());
    return 1;
  }
  std::unique_ptr<AlertFanout> alerts = std::move(*alertsOr);
  Controller controller(engine, **inventory, **events, **source, *alerts, metrics,
                        loopOptions(config, kinds, **inventory));
  controller.recoverJournal();

  auto host = HostEvents::open();
  if (host.isOk()) {
    int route = (*host)->routeFd();
    controller.addHostEvents("route", route, [route] { return HostEvents::drain(route); });
    if (int nf = (*host)->netfilterFd(); nf >= 0) {
      controller.addHostEvents("nftables", nf, [nf] { return HostEvents::drain(nf); });
    }
  } else {
    spdlog::warn("host events unavailable ({}); drift is found by the periodic check only",
                 host.status().message());
  }
  // Providers that see host changes themselves (a VM process exiting) wake the loop the same way.
  for (const auto& p : engine.providers()) {
    auto* events = dynamic_cast<EventSource*>(p.get());
    if (events == nullptr) {
      continue;
    }
    auto fd = events->startWatching();
    if (!fd.isOk()) {
      spdlog::warn("{}: no events ({}); its drift is found by the periodic check only", p->name(),
                   fd.status().message());
      continue;
    }
    controller.addHostEvents(p->name(), *fd, [events] { return events->drainEvents(); });
  }
  for (const auto& p : engine.providers()) {
    if (auto* progress = dynamic_cast<ProgressSource*>(p.get())) {
      controller.addProgressSource([progress] { return progress->takeProgress(); });
    }
  }

  ApiOptions api;
  api.host = config.listenHost;
  api.port = config.listenPort;
  api.token = newToken();
  api.viewerToken = newToken();
  api.logs = [&kinds, stateDir = config.stateDir](
                 const std::string& kind, const std::string& name) -> std::optional<LogFiles> {
    const KindRecord* record = kinds.find(kind);
    if (record == nullptr || !record->logs) {
      return std::nullopt;
    }
    return record->logs(name, stateDir);
  };
  api.stateDir = config.stateDir;  // its sealing keys: /v1/keys, /v1/secrets/reseal
  if (config.webhook.githubSecret) {
    api.githubSecret = config.webhook.githubSecret->reveal();
  }
  if (config.webhook.gitlabToken) {
    api.gitlabToken = config.webhook.gitlabToken->reveal();
  }
  ApiServer server(controller, **events, metrics, api);
  if (Status s = server.start(); !s.isOk()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  if (Status s = writeEndpoint(config.stateDir, server.url(), api.token); !s.isOk()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  // The status page's read-only token: new at every start, 0600 like the API token.
  const std::string viewerTokenPath = config.stateDir + "/viewer.token";
  if (Status s = writeFileAtomically(viewerTokenPath, api.viewerToken + "\n", 0600); !s.isOk()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  spdlog::info("hyperd: source {}; state {}; api {}; malloc {}", (*source)->describe(),
               config.stateDir, server.url(), allocatorName());
  if (config.listenPort == 0) {
    // Tests and scripts that ask for any port read the address from here.
    std::cout << "hyperd: listening on " << server.url() << std::endl;
  }

  std::thread signalThread([&] {
    while (true) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) {
        continue;
      }
      if (sig == SIGHUP) {
        if (configPath.empty()) {
          spdlog::info("SIGHUP: no config file to re-read (started with flags)");
          controller.trigger("sighup", /*fetch=*/true);
          continue;
        }
        auto next = loadConfig(configPath, kinds);
        if (!next.isOk()) {
          spdlog::error("SIGHUP: config not reloaded: {}", next.status().message());
          continue;
        }
        controller.setOptions(loopOptions(*next, kinds, **inventory));
        if (next->source.url != config.source.url || next->listenPort != config.listenPort ||
            next->stateDir != config.stateDir) {
          spdlog::warn("SIGHUP: source, listen and stateDir changes need a restart");
        }
        spdlog::info("SIGHUP: config re-read from {}", configPath);
        controller.trigger("sighup", /*fetch=*/true);
        continue;
      }
      spdlog::info("{}: finishing the action in flight, then exiting", strsignal(sig));
      controller.stop();
      return;
    }
  });

  controller.run();
  server.stop();
  events.value()->close();
  alerts->flush(std::chrono::seconds(5));
  removeEndpoint(config.stateDir);
  ::unlink(viewerTokenPath.c_str());
  signalThread.join();
  spdlog::info("hyperd: stopped");
  return 0;
}

}  // namespace

int hyperdMain(int argc, char** argv, const KindRegistry& kinds) {
  if (sodium_init() < 0) {
    std::cerr << "error: libsodium failed to initialise\n";
    return 1;
  }
  git_libgit2_init();
  // A peer that goes away (an SSE client, a webhook receiver, a git remote) is an error value from
  // write(), never a process-killing signal.
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"hyperd: the hyper GitOps controller"};
  std::string configPath;
  std::string source, ref = "main", path, interval = "30s", driftInterval = "60s";
  std::string sourceTimeout = "30s", sourceCaFile;
  std::string sourceSshKey, sourceKnownHosts, sourceCredentialsFile;
  std::string webhookSecretFile, gitlabTokenFile, stateDir = "/var/lib/hyper";
  std::string listen = "127.0.0.1:7400", driftPolicy = "correct", debounce = "500ms";
  int parallelism = 4;
  bool noPrune = false;
  bool sourcePoll = false;
  std::string logLevel = "info", logFormat = "text";
  app.add_option("--config", configPath, "config file (YAML, schemaVersion \"1\")");
  app.add_option("--source", source,
                 "a directory, or a git URL (path, file://, http(s)://, ssh://)");
  app.add_option("--ref", ref, "git branch, tag or commit")->capture_default_str();
  app.add_option("--path", path, "sub-path with the manifests");
  app.add_option("--interval", interval, "source poll interval")->capture_default_str();
  app.add_option("--source-timeout", sourceTimeout,
                 "git over http(s): connect deadline and longest silence of the remote")
      ->capture_default_str();
  app.add_option("--source-ca-file", sourceCaFile,
                 "https: PEM CA certificates to trust besides the system's");
  app.add_option("--source-ssh-key", sourceSshKey,
                 "ssh: private key file (0600; KEY.pub beside it is used); default: the ssh agent");
  app.add_option("--source-known-hosts", sourceKnownHosts,
                 "ssh: OpenSSH known_hosts file with the server's host key (required for ssh)");
  app.add_option(
      "--source-credentials-file", sourceCredentialsFile,
      "http(s): file with one line user:token (0600), instead of credentials in the URL");
  app.add_flag(
      "--source-poll", sourcePoll,
      "a directory: read it every --interval instead of watching it (network filesystems)");
  // --<provider>-<setting>, from the providers' settings schemas (the kind registry).
  std::vector<KindRegistry::Setting> settings = kinds.settings();
  std::vector<std::string> settingValues(settings.size());
  for (size_t i = 0; i < settings.size(); ++i) {
    app.add_option(settings[i].flag(), settingValues[i], settings[i].description);
  }
  app.add_option("--drift-interval", driftInterval, "full observe interval")->capture_default_str();
  app.add_option("--drift-policy", driftPolicy, "correct | alert, for objects that do not say")
      ->check(CLI::IsMember({"correct", "alert"}))
      ->capture_default_str();
  app.add_option("--debounce", debounce, "quiet time after directory changes")
      ->capture_default_str();
  app.add_option("--webhook-secret-file", webhookSecretFile, "GitHub push webhook secret (0600)");
  app.add_option("--gitlab-token-file", gitlabTokenFile, "GitLab push webhook token (0600)");
  app.add_option("--state-dir", stateDir, "state directory")->capture_default_str();
  app.add_option("--listen", listen, "API address (loopback)")->capture_default_str();
  app.add_option("--parallelism", parallelism, "actions run at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_flag("--no-prune", noPrune, "keep objects removed from the source");
  app.add_option("--log-level", logLevel, "trace|debug|info|warn|error")->capture_default_str();
  app.add_option("--log-format", logFormat, "text | json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  if (hyper::Status logging = setupLogging(logFormat, logLevel); !logging.isOk()) {
    std::cerr << "error: " << logging.message() << "\n";
    return 1;
  }

  if (configPath.empty() == source.empty()) {
    std::cerr << "error: give exactly one of --config FILE or --source DIR|URL\n";
    return 1;
  }
  nlohmann::json flags = {
      {"schemaVersion", "1"},
      {"source",
       {{"url", source}, {"ref", ref}, {"interval", interval}, {"timeout", sourceTimeout}}},
      {"driftInterval", driftInterval},
      {"driftPolicy", driftPolicy},
      {"prune", !noPrune},
      {"parallelism", parallelism},
      {"stateDir", stateDir},
      {"listen", listen},
      {"debounce", debounce}};
  if (!path.empty()) {
    flags["source"]["path"] = path;
  }
  for (size_t i = 0; i < settings.size(); ++i) {
    if (!settingValues[i].empty()) {
      flags["providers"][settings[i].provider][settings[i].key] = settingValues[i];
    }
  }
  if (!sourceCaFile.empty()) {
    flags["source"]["caFile"] = sourceCaFile;
  }
  if (!sourceSshKey.empty()) {
    flags["source"]["sshKeyFile"] = sourceSshKey;
  }
  if (!sourceKnownHosts.empty()) {
    flags["source"]["knownHostsFile"] = sourceKnownHosts;
  }
  if (!sourceCredentialsFile.empty()) {
    flags["source"]["credentialsFile"] = sourceCredentialsFile;
  }
  if (sourcePoll) {
    flags["source"]["poll"] = true;
  }
  if (!webhookSecretFile.empty()) {
    flags["webhook"]["githubSecretFile"] = webhookSecretFile;
  }
  if (!gitlabTokenFile.empty()) {
    flags["webhook"]["gitlabTokenFile"] = gitlabTokenFile;
  }
  hyper::Result<HyperdConfig> config =
      configPath.empty() ? configFromFlags(flags, kinds) : loadConfig(configPath, kinds);
  if (!config.isOk()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 1;
  }
  return run(*config, configPath, kinds);
}

}  // namespace hyper::controller
