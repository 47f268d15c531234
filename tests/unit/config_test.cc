#include "hyperd/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace hyper::controller {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A temporary directory for secret files; "$DIR" in config text is replaced by its path.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "hyper-config-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& content, mode_t mode) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    ::chmod(p.c_str(), mode);
    return p;
  }
  std::string expand(std::string text) const {
    for (size_t at; (at = text.find("$DIR")) != std::string::npos;) {
      text.replace(at, 4, path_);
    }
    return text;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ConfigTest, ValidConfigWithEveryField) {
  TempDir dir;
  dir.write("github.secret", "gh-secret-value\n", 0600);
  dir.write("gitlab.token", "gl-token-value", 0400);
  dir.write("alert.key", "alert-key-value\r\n", 0600);
  dir.write("ssh.key", "-----BEGIN OPENSSH PRIVATE KEY-----\n", 0400);
  auto cfg = parseConfig(dir.expand(R"(schemaVersion: "1"
source:
  url: https://git.example.com/env.git
  ref: v1.2
  path: envs/host1
  interval: 2m
  timeout: 5s
  caFile: /etc/hyper/git-ca.pem
  sshKeyFile: $DIR/ssh.key
  knownHostsFile: /etc/hyper/git-known-hosts
driftInterval: 90s
driftPolicy: alert
prune: false
parallelism: 8
gc: {interval: 10m, keepRevisions: 3}
stateDir: $DIR/state
providers: {broker: {rules: /etc/hyper/rules.json, socket: /run/b.sock}}
listen: "[::1]:0"
webhook:
  githubSecretFile: $DIR/github.secret
  gitlabTokenFile: $DIR/gitlab.token
alerts:
  - type: log
  - type: webhook
    url: https://alerts.example.com/hook?team=infra
    secretFile: $DIR/alert.key
    maxAttempts: 3
debounce: 250ms
)"),
                         "hyperd.yaml");
  ASSERT_TRUE(cfg) << cfg.status().message();
  EXPECT_EQ(cfg->file, "hyperd.yaml");
  EXPECT_EQ(cfg->source.url, "https://git.example.com/env.git");
  EXPECT_EQ(cfg->source.ref, "v1.2");
  EXPECT_EQ(cfg->source.path, "envs/host1");
  EXPECT_EQ(cfg->source.interval, 2min);
  EXPECT_EQ(cfg->source.timeout, 5s);
  EXPECT_EQ(cfg->source.caFile, "/etc/hyper/git-ca.pem");
  EXPECT_EQ(cfg->source.sshKeyFile, dir.path() + "/ssh.key");
  EXPECT_EQ(cfg->source.knownHostsFile, "/etc/hyper/git-known-hosts");
  EXPECT_EQ(cfg->driftInterval, 90s);
  EXPECT_EQ(cfg->driftPolicy, DriftPolicy::Alert);
  EXPECT_FALSE(cfg->prune);
  EXPECT_EQ(cfg->parallelism, 8);
  EXPECT_EQ(cfg->gc.interval, 10min);
  EXPECT_EQ(cfg->gc.keepRevisions, 3);
  EXPECT_EQ(cfg->stateDir, dir.path() + "/state");
  EXPECT_EQ(cfg->providers["broker"]["rules"], "/etc/hyper/rules.json");
  EXPECT_EQ(cfg->providers["broker"]["socket"], "/run/b.sock");
  EXPECT_EQ(cfg->listen, "[::1]:0");
  EXPECT_EQ(cfg->listenHost, "::1");
  EXPECT_EQ(cfg->listenPort, 0);
  EXPECT_FALSE(cfg->allowNonLoopback);
  EXPECT_EQ(cfg->webhook.githubSecretFile, dir.path() + "/github.secret");
  ASSERT_TRUE(cfg->webhook.githubSecret);
  EXPECT_EQ(cfg->webhook.githubSecret->reveal(), "gh-secret-value");
  ASSERT_TRUE(cfg->webhook.gitlabToken);
  EXPECT_EQ(cfg->webhook.gitlabToken->reveal(), "gl-token-value");
  ASSERT_EQ(cfg->alerts.size(), 2u);
  EXPECT_EQ(cfg->alerts[0].type, AlertSinkConfig::Type::Log);
  EXPECT_EQ(cfg->alerts[1].type, AlertSinkConfig::Type::Webhook);
  EXPECT_EQ(cfg->alerts[1].url, "https://alerts.example.com/hook?team=infra");
  EXPECT_EQ(cfg->alerts[1].maxAttempts, 3);
  ASSERT_TRUE(cfg->alerts[1].secret);
  EXPECT_EQ(cfg->alerts[1].secret->reveal(), "alert-key-value");
  EXPECT_EQ(cfg->debounce, 250ms);
}

TEST(ConfigTest, ARelativeStateDirIsMadeAbsolute) {
  // Builds run tools in other working directories (dpkg-deb -x, mmdebstrap): a relative state
  // dir would point elsewhere for them.
  auto cfg =
      parseConfig("schemaVersion: \"1\"\nsource:\n  url: /srv/env\nstateDir: st/./x\n", "rel.yaml");
  ASSERT_TRUE(cfg) << cfg.status().message();
  EXPECT_EQ(cfg->stateDir, (std::filesystem::current_path() / "st/x").string());
}

TEST(ConfigTest, DefaultsForAMinimalConfig) {
  auto cfg = parseConfig("schemaVersion: \"1\"\nsource:\n  url: /srv/env\n", "min.yaml");
  ASSERT_TRUE(cfg) << cfg.status().message();
  EXPECT_EQ(cfg->source.url, "/srv/env");
  EXPECT_EQ(cfg->source.ref, "main");
  EXPECT_EQ(cfg->source.path, "");
  EXPECT_EQ(cfg->source.interval, 30s);
  EXPECT_EQ(cfg->source.timeout, 30s);
  EXPECT_EQ(cfg->source.caFile, "");
  EXPECT_EQ(cfg->driftInterval, 60s);
  EXPECT_EQ(cfg->driftPolicy, DriftPolicy::Correct);
  EXPECT_TRUE(cfg->prune);
  EXPECT_EQ(cfg->parallelism, 4);
  EXPECT_EQ(cfg->gc.interval, 1h);
  EXPECT_EQ(cfg->gc.keepRevisions, 10);
  EXPECT_EQ(cfg->stateDir, "/var/lib/hyper");
  EXPECT_EQ(cfg->listenHost, "127.0.0.1");
  EXPECT_EQ(cfg->listenPort, 7400);
  EXPECT_FALSE(cfg->webhook.githubSecret);
  EXPECT_FALSE(cfg->webhook.gitlabToken);
  ASSERT_EQ(cfg->alerts.size(), 1u);  // the log, unless the file says otherwise
  EXPECT_EQ(cfg->alerts[0].type, AlertSinkConfig::Type::Log);
  EXPECT_EQ(cfg->debounce, 500ms);
  EXPECT_TRUE(cfg->hold.deleteAll);
  EXPECT_EQ(cfg->hold.maxDeletedPercent, 100);
  EXPECT_EQ(cfg->hold.maxDeletedRunningVmsPercent, 50);

  auto hold = parseConfig(
      "schemaVersion: \"1\"\nsource: {url: /srv/env}\nhold: {deleteAll: false, "
      "maxDeletedPercent: 30}\n",
      "h.yaml");
  ASSERT_TRUE(hold) << hold.status().message();
  EXPECT_FALSE(hold->hold.deleteAll);
  EXPECT_EQ(hold->hold.maxDeletedPercent, 30);
  EXPECT_EQ(hold->hold.maxDeletedRunningVmsPercent, 50);  // not given: the default

  auto none = parseConfig("schemaVersion: \"1\"\nsource: {url: /srv/env}\nalerts: []\n", "m.yaml");
  ASSERT_TRUE(none) << none.status().message();
  EXPECT_TRUE(none->alerts.empty());
}

TEST(ConfigTest, NonLoopbackListenWhenAllowed) {
  auto cfg = parseConfig(
      "schemaVersion: \"1\"\nsource: {url: /srv/env}\nlisten: 0.0.0.0:8080\n"
      "allowNonLoopback: true\n",
      "c.yaml");
  ASSERT_TRUE(cfg) << cfg.status().message();
  EXPECT_EQ(cfg->listenHost, "0.0.0.0");
  EXPECT_EQ(cfg->listenPort, 8080);
  auto local =
      parseConfig("schemaVersion: \"1\"\nsource: {url: /srv/env}\nlisten: 127.3.2.1:1\n", "c.yaml");
  ASSERT_TRUE(local) << local.status().message();
}

struct BadConfigCase {
  std::string name;
  std::string yaml;      // "$DIR" is the test's temporary directory
  std::string location;  // "cfg.yaml:line:column"
  std::string field;     // the field path the message names ("" for the whole document)
  std::string says;      // a fragment of what was found / expected
};

void PrintTo(const BadConfigCase& c, std::ostream* os) { *os << c.name; }

class BadConfigTest : public testing::TestWithParam<BadConfigCase> {};

TEST_P(BadConfigTest, NamesLocationFieldAndExpectation) {
  const BadConfigCase& c = GetParam();
  TempDir dir;
  dir.write("open.secret", "super-secret-0644\n", 0644);
  dir.write("group.secret", "super-secret-0640\n", 0640);
  dir.write("empty.secret", "\n", 0600);
  dir.write("good.secret", "super-secret-good\n", 0600);
  auto cfg = parseConfig(dir.expand(c.yaml), "cfg.yaml");
  ASSERT_FALSE(cfg) << "accepted:\n" << c.yaml;
  std::string message = cfg.status().message();
  std::string prefix = c.location + ": error: " + (c.field.empty() ? "" : c.field + ": ");
  EXPECT_NE(message.find(prefix), std::string::npos) << "expected \"" << prefix << "\" in:\n"
                                                     << message;
  EXPECT_NE(dir.expand(message).find(dir.expand(c.says)), std::string::npos)
      << "expected \"" << dir.expand(c.says) << "\" in:\n"
      << message;
  EXPECT_EQ(message.find("super-secret"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one error expected:\n" << message;
}

const char* const kHead = "schemaVersion: \"1\"\nsource:\n  url: /srv/env\n";

INSTANTIATE_TEST_SUITE_P(
    ConfigTest, BadConfigTest,
    testing::Values(
        BadConfigCase{"UnknownTopLevelField", std::string(kHead) + "colour: blue\n", "cfg.yaml:4:1",
                      "colour", "unknown field \"colour\""},
        BadConfigCase{"GcKeepRevisionsNegative", std::string(kHead) + "gc:\n  keepRevisions: -1\n",
                      "cfg.yaml:5:3", "gc.keepRevisions", "an integer from 0 to 10000"},
        BadConfigCase{"GcIntervalNotADuration", std::string(kHead) + "gc:\n  interval: hourly\n",
                      "cfg.yaml:5:3", "gc.interval", "hourly"},
        BadConfigCase{"UnknownNestedField", std::string(kHead) + "  branch: main\n", "cfg.yaml:4:3",
                      "source.branch", "unknown field \"branch\" (expected one of"},
        BadConfigCase{"UnknownAlertField",
                      std::string(kHead) + "alerts:\n  - type: log\n    to: x\n", "cfg.yaml:6:5",
                      "alerts[0].to", "unknown field \"to\""},
        BadConfigCase{"WrongTypeParallelism", std::string(kHead) + "parallelism: four\n",
                      "cfg.yaml:4:1", "parallelism", "wrong type: found a string \"four\""},
        BadConfigCase{"ParallelismOutOfRange", std::string(kHead) + "parallelism: 65\n",
                      "cfg.yaml:4:1", "parallelism", "found 65, which is out of range"},
        BadConfigCase{"HoldPercentOver100",
                      std::string(kHead) + "hold:\n  maxDeletedPercent: 101\n", "cfg.yaml:5:3",
                      "hold.maxDeletedPercent", "found 101, which is out of range"},
        BadConfigCase{"HoldUnknownField", std::string(kHead) + "hold:\n  allowEmpty: true\n",
                      "cfg.yaml:5:3", "hold.allowEmpty", "unknown field \"allowEmpty\""},
        BadConfigCase{"WrongTypePrune", std::string(kHead) + "prune: \"yes\"\n", "cfg.yaml:4:1",
                      "prune", "wrong type: found a string"},
        BadConfigCase{"DurationWithoutUnit", std::string(kHead) + "driftInterval: 30\n",
                      "cfg.yaml:4:1", "driftInterval",
                      "found an integer 30 (expected a duration with a unit"},
        BadConfigCase{"DurationBadUnit", std::string(kHead) + "  interval: 5d\n", "cfg.yaml:4:3",
                      "source.interval", "invalid value \"5d\" (expected a duration with a unit"},
        BadConfigCase{"DurationOverflow", std::string(kHead) + "debounce: 99999999999999999h\n",
                      "cfg.yaml:4:1", "debounce", "is too long"},
        BadConfigCase{"ZeroInterval", std::string(kHead) + "driftInterval: 0s\n", "cfg.yaml:4:1",
                      "driftInterval", "a zero interval"},
        BadConfigCase{"SchemaVersion2", "schemaVersion: \"2\"\nsource: {url: /srv/env}\n",
                      "cfg.yaml:1:1", "schemaVersion", "invalid value \"2\" (expected \"1\""},
        BadConfigCase{"SchemaVersionUnquoted", "schemaVersion: 1\nsource: {url: /srv/env}\n",
                      "cfg.yaml:1:1", "schemaVersion", "invalid value 1 (expected \"1\", quoted"},
        BadConfigCase{"SchemaVersionMissing", "source: {url: /srv/env}\n", "cfg.yaml:1:1",
                      "schemaVersion", "missing required field \"schemaVersion\""},
        BadConfigCase{"SourceUrlMissing", "schemaVersion: \"1\"\nsource:\n  ref: main\n",
                      "cfg.yaml:2:1", "source.url", "missing required field \"url\""},
        BadConfigCase{"BadDriftPolicy", std::string(kHead) + "driftPolicy: ignore\n",
                      "cfg.yaml:4:1", "driftPolicy",
                      "invalid value \"ignore\" (expected correct or"},
        BadConfigCase{"DriftPolicyNotAString", std::string(kHead) + "driftPolicy: [alert]\n",
                      "cfg.yaml:4:1", "driftPolicy", "invalid value [\"alert\"] (expected correct"},
        BadConfigCase{"SourceNotAMapping", "schemaVersion: \"1\"\nsource: /srv/env\n",
                      "cfg.yaml:2:1", "source", "wrong type: found a string \"/srv/env\""},
        BadConfigCase{"NonLoopbackListen", std::string(kHead) + "listen: 0.0.0.0:7400\n",
                      "cfg.yaml:4:1", "listen", "\"0.0.0.0:7400\" is not a loopback address"},
        BadConfigCase{"HostnameListen", std::string(kHead) + "listen: example.com:7400\n",
                      "cfg.yaml:4:1", "listen", "is not a loopback address"},
        BadConfigCase{"ListenWithoutPort", std::string(kHead) + "listen: 127.0.0.1\n",
                      "cfg.yaml:4:1", "listen", "expected HOST:PORT"},
        BadConfigCase{"ListenPortOutOfRange", std::string(kHead) + "listen: 127.0.0.1:70000\n",
                      "cfg.yaml:4:1", "listen", "port 70000 is out of range"},
        BadConfigCase{"ListenBadIpv4", std::string(kHead) + "listen: 127.0.0.300:80\n",
                      "cfg.yaml:4:1", "listen", "is not an IPv4 address"},
        BadConfigCase{"SecretFileMode0644",
                      std::string(kHead) + "webhook:\n  githubSecretFile: $DIR/open.secret\n",
                      "cfg.yaml:5:3", "webhook.githubSecretFile",
                      "read secret file $DIR/open.secret <- it has mode 0644"},
        BadConfigCase{"SecretFileMode0640",
                      std::string(kHead) + "webhook:\n  gitlabTokenFile: $DIR/group.secret\n",
                      "cfg.yaml:5:3", "webhook.gitlabTokenFile", "it has mode 0640"},
        BadConfigCase{"SecretFileMissing",
                      std::string(kHead) + "webhook:\n  githubSecretFile: $DIR/nope\n",
                      "cfg.yaml:5:3", "webhook.githubSecretFile",
                      "read secret file $DIR/nope <- No such file or directory"},
        BadConfigCase{"SecretFileEmpty",
                      std::string(kHead) + "webhook:\n  githubSecretFile: $DIR/empty.secret\n",
                      "cfg.yaml:5:3", "webhook.githubSecretFile", "it is empty"},
        BadConfigCase{"AlertSecretFileMode",
                      std::string(kHead) +
                          "alerts:\n  - type: webhook\n    url: http://127.0.0.1:9/x\n"
                          "    secretFile: $DIR/open.secret\n",
                      "cfg.yaml:7:5", "alerts[0].secretFile", "it has mode 0644"},
        BadConfigCase{"SshKeyFileMode", std::string(kHead) + "  sshKeyFile: $DIR/open.secret\n",
                      "cfg.yaml:4:3", "source.sshKeyFile",
                      "read secret file $DIR/open.secret <- it has mode 0644"},
        BadConfigCase{"WebhookAlertWithoutUrl", std::string(kHead) + "alerts:\n  - type: webhook\n",
                      "cfg.yaml:5:5", "alerts[0]",
                      "missing required field \"url\" for type webhook"},
        BadConfigCase{"LogAlertWithUrl",
                      std::string(kHead) + "alerts:\n  - type: log\n    url: http://x/\n",
                      "cfg.yaml:6:5", "alerts[0].url", "applies only to type webhook"},
        BadConfigCase{"UnknownAlertType", std::string(kHead) + "alerts:\n  - type: email\n",
                      "cfg.yaml:5:5", "alerts[0].type", "invalid value \"email\" (expected log or"},
        BadConfigCase{"AlertUrlWithUserinfo",
                      std::string(kHead) + "alerts:\n  - type: webhook\n    url: https://u:p@h/\n",
                      "cfg.yaml:6:5", "alerts[0].url", "without user information"},
        BadConfigCase{"DuplicateKey", std::string(kHead) + "prune: true\nprune: false\n",
                      "cfg.yaml:5:1", "prune", "duplicate key \"prune\""},
        BadConfigCase{"YamlSyntaxError", std::string(kHead) + "listen: [unclosed\n", "cfg.yaml:5:1",
                      "", "YAML syntax error"},
        BadConfigCase{"TwoDocuments", std::string(kHead) + "---\nprune: true\n", "cfg.yaml:5:1", "",
                      "a second YAML document"},
        BadConfigCase{"NotAMapping", "- schemaVersion\n", "cfg.yaml:1:1", "",
                      "the config is not a mapping"},
        BadConfigCase{"Empty", "# nothing here\n", "cfg.yaml:1:1", "", "the config is empty"}),
    [](const testing::TestParamInfo<BadConfigCase>& info) { return info.param.name; });

TEST(ConfigTest, ReportsEveryErrorAtOnce) {
  auto cfg =
      parseConfig(std::string(kHead) + "parallelism: 0\nprune: maybe\ncolour: red\n", "cfg.yaml");
  ASSERT_FALSE(cfg);
  const std::string& m = cfg.status().message();
  EXPECT_NE(m.find("cfg.yaml:4:1: error: parallelism:"), std::string::npos) << m;
  EXPECT_NE(m.find("cfg.yaml:5:1: error: prune:"), std::string::npos) << m;
  EXPECT_NE(m.find("cfg.yaml:6:1: error: colour:"), std::string::npos) << m;
  EXPECT_LT(m.find("parallelism"), m.find("colour"));  // in file order
}

TEST(ConfigTest, LoadConfigReadsTheFileAndNamesIt) {
  TempDir dir;
  std::string path = dir.write("hyperd.yaml", "schemaVersion: \"1\"\nsource: {url: /srv}\n", 0644);
  auto cfg = loadConfig(path);
  ASSERT_TRUE(cfg) << cfg.status().message();
  EXPECT_EQ(cfg->file, path);
  EXPECT_EQ(cfg->source.url, "/srv");

  dir.write("bad.yaml", "schemaVersion: \"1\"\nsource: {url: /srv}\nprune: 3\n", 0644);
  auto bad = loadConfig(dir.path() + "/bad.yaml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find(dir.path() + "/bad.yaml:3:1: error: prune:"),
            std::string::npos)
      << bad.status().message();

  auto missing = loadConfig(dir.path() + "/absent.yaml");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.status().message(),
            "read config " + dir.path() + "/absent.yaml <- No such file or directory");
}

// A config that holds a secret itself (a token in source.url) must be owner-only like any secret
// file; the same config without the token, or with a user name alone, may be 0644.
TEST(ConfigTest, AConfigHoldingASecretMustBeOwnerOnly) {
  TempDir dir;
  const std::string withToken =
      "schemaVersion: \"1\"\nsource: {url: \"https://hyper:tok3n@git.example/env.git\"}\n";
  std::string path = dir.write("secret.yaml", withToken, 0644);
  auto open = loadConfig(path);
  ASSERT_FALSE(open) << "a 0644 config with a token in source.url was accepted";
  EXPECT_EQ(open.status().message(),
            "load config " + path +
                " <- it holds a secret (credentials in source.url) and has mode 0644, readable or "
                "writable by group or others (expected 0600 or 0400: chmod 600 " +
                path + "; or move them to source.credentialsFile)");
  EXPECT_EQ(open.status().message().find("tok3n"), std::string::npos);
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  EXPECT_FALSE(loadConfig(path)) << "group-readable";
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto ok = loadConfig(path);
  EXPECT_TRUE(ok) << ok.status().message();

  std::string userOnly =
      dir.write("user.yaml",
                "schemaVersion: \"1\"\nsource: {url: \"ssh://git@git.example/env.git\"}\n", 0644);
  auto plain = loadConfig(userOnly);
  EXPECT_TRUE(plain || plain.status().message().find("holds a secret") == std::string::npos)
      << plain.status().message();
}

// source.credentialsFile: owner-only, one line user:token.
TEST(ConfigTest, SourceCredentialsFile) {
  TempDir dir;
  std::string creds = dir.write("creds", "hyper:tok3n\n", 0644);
  const std::string text = dir.expand(
      "schemaVersion: \"1\"\nsource:\n  url: https://git.example/env.git\n  credentialsFile: "
      "$DIR/creds\n");
  auto cfg = parseConfig(text, "hyperd.yaml");
  ASSERT_FALSE(cfg) << "a 0644 credentials file was accepted";
  EXPECT_NE(cfg.status().message().find("hyperd.yaml:4:"), std::string::npos)
      << cfg.status().message();
  EXPECT_NE(cfg.status().message().find("read git credentials <- read secret file " + creds +
                                        " <- it has mode 0644"),
            std::string::npos)
      << cfg.status().message();
  ASSERT_EQ(::chmod(creds.c_str(), 0600), 0);
  cfg = parseConfig(text, "hyperd.yaml");
  ASSERT_TRUE(cfg) << cfg.status().message();
  EXPECT_EQ(cfg->source.credentialsFile, creds);
}

TEST(ConfigTest, ReadSecretFile) {
  TempDir dir;
  auto ok = readSecretFile(dir.write("a", "value-with-newline\n", 0600));
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_EQ(ok->reveal(), "value-with-newline");
  auto inner = readSecretFile(dir.write("b", "two\nlines\n\n", 0400));
  ASSERT_TRUE(inner);
  EXPECT_EQ(inner->reveal(), "two\nlines\n");  // only one trailing newline goes
  auto world = readSecretFile(dir.write("c", "leaky-secret", 0604));
  ASSERT_FALSE(world);
  EXPECT_EQ(world.status().message(),
            "read secret file " + dir.path() +
                "/c <- it has mode 0604, readable or writable by group or others (expected 0600 "
                "or 0400: chmod 600 " +
                dir.path() + "/c)");
  auto notFile = readSecretFile(dir.path());
  ASSERT_FALSE(notFile);
  EXPECT_NE(notFile.status().message().find("not a regular file"), std::string::npos);
  auto big = readSecretFile(dir.write("d", std::string(70 * 1024, 'x'), 0600));
  ASSERT_FALSE(big);
  EXPECT_NE(big.status().message().find("larger than 64 KiB"), std::string::npos);
}

struct DurationCase {
  std::string name;
  std::string text;
  int64_t ms;  // -1: an error
};

void PrintTo(const DurationCase& c, std::ostream* os) { *os << c.name << " \"" << c.text << "\""; }

class ParseDurationTest : public testing::TestWithParam<DurationCase> {};

TEST_P(ParseDurationTest, Parses) {
  const DurationCase& c = GetParam();
  auto d = parseDuration(c.text);
  if (c.ms < 0) {
    ASSERT_FALSE(d) << c.text << " gave " << d->count();
    EXPECT_NE(d.status().message().find("expected digits and a unit"), std::string::npos)
        << d.status().message();
  } else {
    ASSERT_TRUE(d) << d.status().message();
    EXPECT_EQ(d->count(), c.ms);
  }
}

INSTANTIATE_TEST_SUITE_P(
    ConfigTest, ParseDurationTest,
    testing::Values(DurationCase{"Millis", "500ms", 500}, DurationCase{"Seconds", "30s", 30000},
                    DurationCase{"Minutes", "2m", 120000}, DurationCase{"Hours", "1h", 3600000},
                    DurationCase{"Zero", "0s", 0}, DurationCase{"LeadingZero", "007s", 7000},
                    DurationCase{"BareNumber", "30", -1}, DurationCase{"Empty", "", -1},
                    DurationCase{"UnitOnly", "s", -1}, DurationCase{"Negative", "-5s", -1},
                    DurationCase{"Fraction", "1.5s", -1}, DurationCase{"Days", "5d", -1},
                    DurationCase{"Space", "30 s", -1}, DurationCase{"LeadingSpace", " 30s", -1},
                    DurationCase{"UpperCase", "30S", -1}, DurationCase{"Compound", "1m30s", -1},
                    DurationCase{"Overflow", "9999999999999999h", -1},
                    DurationCase{"OverflowDigits", "99999999999999999999ms", -1}),
    [](const testing::TestParamInfo<DurationCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::controller
