#include "hyperd/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>

#include "hyperd/config_schema.h"
#include "providers/builtin.h"
#include "reconciler/diagnostic.h"
#include "reconciler/schema.h"
#include "reconciler/yaml_json.h"
#include "source/source.h"

namespace hyper::controller {
namespace {

std::string abbreviate(std::string_view s) {
  return s.size() > 40 ? std::string(s.substr(0, 37)) + "..." : std::string(s);
}

std::string octalMode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

Status failure(const Diagnostics& diags) {
  std::string text = diags.format();
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  return Status::error(text);
}

bool isLoopback(const std::string& host) {
  if (host == "localhost") {
    return true;
  }
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) != 0;
  }
  return false;
}

// Reads one config document after schema validation: types and required fields are known to be
// right, so only what a schema cannot say is checked here.
class ConfigReader {
 public:
  ConfigReader(const YamlDocument& doc, Diagnostics& diags) : doc_(doc), diags_(diags) {}

  void error(const std::string& path, std::string summary) {
    SourceLocation where = doc_.sourceMap.locate(path);
    if (where.line == 0) {
      where = doc_.where;
    }
    diags_.add({Severity::Error, std::move(where), {}, path, std::move(summary)});
  }

  void duration(const Json& parent, const char* key, const std::string& path,
                std::chrono::milliseconds& out, bool positive) {
    auto it = parent.find(key);
    if (it == parent.end()) {
      return;
    }
    auto parsed = parseDuration(it->get<std::string>());
    if (!parsed) {
      error(path, parsed.status().message());
    } else if (positive && parsed->count() == 0) {
      error(path, "a zero interval (expected at least 1ms)");
    } else {
      out = *parsed;
    }
  }

  void listen(HyperdConfig& cfg) {
    size_t colon = cfg.listen.rfind(':');
    std::string host = cfg.listen.substr(0, colon);
    long port = std::strtol(cfg.listen.c_str() + colon + 1, nullptr, 10);
    bool bracketed = !host.empty() && host.front() == '[';
    if (bracketed) {
      host = host.substr(1, host.size() - 2);
    }
    in6_addr v6{};
    in_addr v4{};
    if (bracketed && inet_pton(AF_INET6, host.c_str(), &v6) != 1) {
      error("listen", "\"" + host + "\" is not an IPv6 address (expected e.g. [::1]:7400)");
      return;
    }
    if (!bracketed && host.find_first_not_of("0123456789.") == std::string::npos &&
        inet_pton(AF_INET, host.c_str(), &v4) != 1) {
      error("listen", "\"" + host + "\" is not an IPv4 address (expected e.g. 127.0.0.1:7400)");
      return;
    }
    if (port > 65535) {
      error("listen", "port " + std::to_string(port) + " is out of range (expected 0 to 65535)");
      return;
    }
    if (!cfg.allowNonLoopback && !isLoopback(host)) {
      error("listen", "\"" + cfg.listen +
                          "\" is not a loopback address (expected 127.0.0.1:PORT, [::1]:PORT or "
                          "localhost:PORT; set allowNonLoopback: true to serve the API elsewhere)");
      return;
    }
    cfg.listenHost = host;
    cfg.listenPort = static_cast<int>(port);
  }

  void alert(const Json& item, const std::string& path, AlertSinkConfig& out) {
    const std::string type = item["type"].get<std::string>();
    if (type == "log") {
      out.type = AlertSinkConfig::Type::Log;
      for (const char* field : {"url", "secretFile", "maxAttempts"}) {
        if (item.contains(field)) {
          error(path + "." + field, std::string("field \"") + field +
                                        "\" applies only to type webhook (expected only "
                                        "\"type\" for a log sink)");
        }
      }
      return;
    }
    out.type = AlertSinkConfig::Type::Webhook;
    if (!item.contains("url")) {
      error(path,
            "missing required field \"url\" for type webhook (expected an http:// or "
            "https:// URL)");
    } else {
      out.url = item["url"].get<std::string>();
    }
    out.secretFile = item.value("secretFile", "");
    out.maxAttempts = item.value("maxAttempts", out.maxAttempts);
  }

  std::optional<SecretValue> secret(const std::string& file, const std::string& path) {
    if (file.empty()) {
      return std::nullopt;
    }
    auto value = readSecretFile(file);
    if (!value) {
      error(path, value.status().message());
      return std::nullopt;
    }
    return std::move(value).value();
  }

 private:
  const YamlDocument& doc_;
  Diagnostics& diags_;
};

}  // namespace

Result<std::chrono::milliseconds> parseDuration(std::string_view text) {
  const std::string expected = " (expected digits and a unit: 500ms, 30s, 2m or 1h)";
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  if (digits == 0) {
    return Status::error("invalid duration \"" + abbreviate(text) + "\"" + expected);
  }
  std::string_view unit = text.substr(digits);
  int64_t factor = 0;
  if (unit == "ms") {
    factor = 1;
  } else if (unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60 * 1000;
  } else if (unit == "h") {
    factor = 60 * 60 * 1000;
  } else if (unit.empty()) {
    return Status::error("duration \"" + abbreviate(text) + "\" has no unit" + expected);
  } else {
    return Status::error("invalid duration \"" + abbreviate(text) + "\"" + expected);
  }
  const int64_t limit = std::numeric_limits<int64_t>::max() / factor;
  int64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    int d = text[i] - '0';
    if (value > (limit - d) / 10) {
      return Status::error("duration \"" + abbreviate(text) + "\" is too long" + expected);
    }
    value = value * 10 + d;
  }
  return std::chrono::milliseconds(value * factor);
}

Result<HyperdConfig> parseConfig(const std::string& text, const std::string& displayPath) {
  HYPER_ASSIGN_OR_RETURN(auto kinds, providers::builtinKinds());
  return parseConfig(text, displayPath, *kinds);
}

Result<HyperdConfig> parseConfig(const std::string& text, const std::string& displayPath,
                                 const KindRegistry& kinds) {
  Diagnostics diags;
  auto fileName = std::make_shared<const std::string>(displayPath);
  std::vector<YamlDocument> docs = parseYamlDocuments(text, fileName, diags);
  if (diags.hasErrors()) {
    return failure(diags);
  }
  if (docs.empty()) {
    diags.add({Severity::Error,
               {displayPath, 1, 1},
               {},
               "",
               "the config is empty (expected a mapping with schemaVersion and source)"});
    return failure(diags);
  }
  if (docs.size() > 1) {
    diags.add({Severity::Error,
               docs[1].where,
               {},
               "",
               "a second YAML document (expected one config document per file)"});
    return failure(diags);
  }
  const YamlDocument& doc = docs[0];
  if (!doc.value.is_object()) {
    diags.add({Severity::Error,
               doc.where,
               {},
               "",
               "the config is not a mapping (expected a mapping with schemaVersion and source)"});
    return failure(diags);
  }
  Status schemaStatus =
      validateWithSchema(hyperdConfigSchema(kinds), doc.value, doc.sourceMap, diags);
  if (!schemaStatus) {
    return schemaStatus.withContext("load config " + displayPath);  // a bug in config_schema.cc
  }
  for (auto& d : diags.items()) {
    if (d.where.line == 0) {
      d.where = doc.where;
    }
  }
  if (diags.hasErrors()) {
    return failure(diags);
  }

  const Json& v = doc.value;
  ConfigReader reader(doc, diags);
  HyperdConfig cfg;
  cfg.file = displayPath;

  const Json& source = v["source"];
  cfg.source.url = source["url"].get<std::string>();
  cfg.source.ref = source.value("ref", cfg.source.ref);
  cfg.source.path = source.value("path", cfg.source.path);
  reader.duration(source, "interval", "source.interval", cfg.source.interval, true);
  reader.duration(source, "timeout", "source.timeout", cfg.source.timeout, true);
  cfg.source.caFile = source.value("caFile", cfg.source.caFile);
  cfg.source.sshKeyFile = source.value("sshKeyFile", cfg.source.sshKeyFile);
  cfg.source.knownHostsFile = source.value("knownHostsFile", cfg.source.knownHostsFile);
  cfg.source.credentialsFile = source.value("credentialsFile", cfg.source.credentialsFile);
  cfg.source.poll = source.value("poll", cfg.source.poll);
  reader.duration(v, "driftInterval", "driftInterval", cfg.driftInterval, true);
  reader.duration(v, "debounce", "debounce", cfg.debounce, false);
  if (v.value("driftPolicy", "correct") == "alert") {
    cfg.driftPolicy = DriftPolicy::Alert;
  }
  cfg.prune = v.value("prune", cfg.prune);
  if (v.contains("hold")) {
    const Json& hold = v["hold"];
    cfg.hold.deleteAll = hold.value("deleteAll", cfg.hold.deleteAll);
    cfg.hold.maxDeletedPercent = hold.value("maxDeletedPercent", cfg.hold.maxDeletedPercent);
    cfg.hold.maxDeletedRunningVmsPercent =
        hold.value("maxDeletedRunningVmsPercent", cfg.hold.maxDeletedRunningVmsPercent);
  }
  cfg.parallelism = v.value("parallelism", cfg.parallelism);
  if (v.contains("gc")) {
    const Json& gc = v["gc"];
    reader.duration(gc, "interval", "gc.interval", cfg.gc.interval, false);
    cfg.gc.keepRevisions = gc.value("keepRevisions", cfg.gc.keepRevisions);
  }
  cfg.stateDir = v.value("stateDir", cfg.stateDir);
  if (!cfg.stateDir.empty()) {
    // Absolute: builds run tools (dpkg-deb, mmdebstrap) in other directories than hyperd's.
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(cfg.stateDir, ec);
    if (!ec) {
      cfg.stateDir = abs.lexically_normal().string();
    }
  }
  if (v.contains("providers")) {
    cfg.providers = v["providers"];
  }
  cfg.allowNonLoopback = v.value("allowNonLoopback", cfg.allowNonLoopback);
  cfg.listen = v.value("listen", cfg.listen);
  reader.listen(cfg);

  if (v.contains("webhook")) {
    const Json& webhook = v["webhook"];
    cfg.webhook.githubSecretFile = webhook.value("githubSecretFile", "");
    cfg.webhook.gitlabTokenFile = webhook.value("gitlabTokenFile", "");
  }
  if (v.contains("alerts")) {
    cfg.alerts.clear();
    const Json& alerts = v["alerts"];
    for (size_t i = 0; i < alerts.size(); ++i) {
      cfg.alerts.emplace_back();
      reader.alert(alerts[i], appendIndex("alerts", i), cfg.alerts.back());
    }
  }
  if (diags.hasErrors()) {
    return failure(diags);
  }

  // Secrets last: a config that is wrong anyway does not need them read.
  cfg.webhook.githubSecret =
      reader.secret(cfg.webhook.githubSecretFile, "webhook.githubSecretFile");
  cfg.webhook.gitlabToken = reader.secret(cfg.webhook.gitlabTokenFile, "webhook.gitlabTokenFile");
  // Only its mode and readability are checked here: libssh2 reads the key itself at each connect.
  (void)reader.secret(cfg.source.sshKeyFile, "source.sshKeyFile");
  // Format and mode; the git source reads it again at every connection.
  if (!cfg.source.credentialsFile.empty()) {
    if (auto creds = readGitCredentialsFile(cfg.source.credentialsFile); !creds.isOk()) {
      reader.error("source.credentialsFile", creds.status().message());
    }
  }
  for (size_t i = 0; i < cfg.alerts.size(); ++i) {
    AlertSinkConfig& a = cfg.alerts[i];
    if (a.type == AlertSinkConfig::Type::Webhook) {
      a.secret = reader.secret(a.secretFile, appendIndex("alerts", i) + ".secretFile");
    }
  }
  if (diags.hasErrors()) {
    return failure(diags);
  }
  return cfg;
}

namespace {

// "https://user:token@host/..." (a password or token in the userinfo); a user alone is a name.
bool urlHasPassword(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) {
    return false;
  }
  size_t start = scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority = url.substr(start, end == std::string::npos ? end : end - start);
  size_t at = authority.rfind('@');
  return at != std::string::npos && authority.substr(0, at).find(':') != std::string::npos;
}

}  // namespace

Result<HyperdConfig> loadConfig(const std::string& path) {
  HYPER_ASSIGN_OR_RETURN(auto kinds, providers::builtinKinds());
  return loadConfig(path, *kinds);
}

Result<HyperdConfig> loadConfig(const std::string& path, const KindRegistry& kinds) {
  const std::string op = "read config " + path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return Status::error(op + " <- " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::error(op + " <- " + std::strerror(err));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      ::close(fd);
      return Status::error(op + " <- I/O error");
    }
    if (n == 0) {
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  HYPER_ASSIGN_OR_RETURN(HyperdConfig cfg, parseConfig(text, path, kinds));
  // A config that holds a secret itself (credentials in source.url) is a secret file: the
  // same mode rule as every other one (checked on the file read, not the path).
  if (urlHasPassword(cfg.source.url) && (st.st_mode & 077) != 0) {
    return Status::error("load config " + path + " <- it holds a secret (credentials in " +
                         "source.url) and has mode " + octalMode(st.st_mode) +
                         ", readable or writable by group or others (expected 0600 or 0400: "
                         "chmod 600 " +
                         path + "; or move them to source.credentialsFile)");
  }
  return cfg;
}

}  // namespace hyper::controller
