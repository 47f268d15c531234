#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/secret.h"
#include "base/status.h"
#include "controller/hold.h"
#include "reconciler/kind_registry.h"
#include "reconciler/object.h"

namespace hyper::controller {

// "500ms", "30s", "2m", "1h": digits and one unit. A bare number, a negative or fractional value,
// another unit and an overflow are errors.
Result<std::chrono::milliseconds> parseDuration(std::string_view text);

struct AlertSinkConfig {
  enum class Type { Log, Webhook };
  Type type = Type::Log;
  // Webhook only:
  std::string url;
  std::string secretFile;             // empty: alerts are not signed
  std::optional<SecretValue> secret;  // read from secretFile at load
  int maxAttempts = 5;
};

// hyperd's config file, schemaVersion "1" (the schema is in config_schema.cc). Every field has
// the default shown; paths are used as written (hyperd runs with / as its working directory).
struct HyperdConfig {
  std::string file;  // where it was read from, for messages

  struct SourceConfig {
    std::string url;  // a directory, a git repository path, or a git URL
    std::string ref = "main";
    std::string path;  // sub-path within the source; "" is its root
    std::chrono::milliseconds interval{30000};
    // git over http(s): connect deadline and longest silence of the remote during a fetch
    std::chrono::milliseconds timeout{30000};
    std::string caFile;           // https: extra CA certificates (PEM) to trust
    std::string sshKeyFile;       // ssh: private key (0600/0400), checked at load; "" = ssh agent
    std::string knownHostsFile;   // ssh: OpenSSH known_hosts with the server's host key
    std::string credentialsFile;  // http(s): "user:token" (0600/0400), checked at load
    bool poll = false;            // directory: read every interval, no inotify (NFS)
  } source;

  std::chrono::milliseconds driftInterval{60000};
  DriftPolicy driftPolicy = DriftPolicy::Correct;  // for objects that do not say
  bool prune = true;
  // hold: a revision whose prune deletes this much waits for `hyperctl approve` (hold.h).
  HoldPolicy hold;
  int parallelism = 4;
  // gc: the artifact store's garbage collection (hyperctl gc) on a timer; interval 0: never.
  struct GcConfig {
    std::chrono::milliseconds interval{std::chrono::hours(1)};
    int keepRevisions = 10;
  } gc;
  std::string stateDir = "/var/lib/hyper";
  // providers.<name>: each provider's settings, checked against its settings schema (the kind
  // registry's records); what a provider is not given comes from the environment or defaults.
  Json providers = Json::object();

  std::string listen = "127.0.0.1:7400";  // as written
  std::string listenHost = "127.0.0.1";   // without the brackets of an IPv6 address
  int listenPort = 7400;                  // 0: any free port (hyperd writes its address down)
  bool allowNonLoopback = false;

  struct WebhookConfig {
    std::string githubSecretFile;
    std::string gitlabTokenFile;
    std::optional<SecretValue> githubSecret;  // read at load; absent when the file is not set
    std::optional<SecretValue> gitlabToken;
  } webhook;

  // Absent in the file: one log sink. `alerts: []`: none.
  std::vector<AlertSinkConfig> alerts = {AlertSinkConfig{}};
  std::chrono::milliseconds debounce{500};
};

// Parses and validates a config. Errors are "file:line:column: error: field.path: what was
// found (expected ...)", one per line, all of them at once; secret files are read only when the
// rest is valid. `displayPath` is the file name used in messages.
Result<HyperdConfig> parseConfig(const std::string& text, const std::string& displayPath,
                                 const KindRegistry& kinds);
// With the compiled-in providers (providers/builtin.h).
Result<HyperdConfig> parseConfig(const std::string& text, const std::string& displayPath);
Result<HyperdConfig> loadConfig(const std::string& path);
Result<HyperdConfig> loadConfig(const std::string& path, const KindRegistry& kinds);

}  // namespace hyper::controller
