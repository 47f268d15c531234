// The host command broker end to end: the real hyper-broker on a socket in a temp dir, the real
// hyper-broker-cli run as a throwaway unprivileged user, real make on real Makefiles.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "broker/client.h"
#include "broker/runner.h"
#include "host/command.h"
#include "reconciler/sha256.h"
#include "tests/integration/broker_util.h"
#include "tests/integration/hyperctl_util.h"

namespace hyper::test {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Makefiles of the workspace's project. Recipes use only sh and coreutils.
const char* kMakefile = R"(ok:
	@echo out-line
	@echo err-line >&2
fail:
	@echo before-failure
	@false
whoami:
	@id -u > uid.txt
	@id -G
env:
	@echo "cflags=$$CFLAGS secret=$$HYPER_SECRET"
where:
	@pwd
binary:
	@cat blob.bin
sleeper:
	@sleep 300 & echo $$! > sleeper.pid; echo started; wait
stubborn:
	@trap '' TERM; sleep 300 & echo $$! > stubborn.pid; echo started; wait
killself:
	@echo dying
	@kill -KILL $$PPID; sleep 5
hold:
	@touch a-running; echo started
	@i=0; while [ ! -e release ] && [ $$i -lt 600 ]; do sleep 0.05; i=$$((i+1)); done
	@rm -f a-running; echo A-done >> order.log
probe:
	@if [ -e a-running ]; then echo B-overlapped >> order.log; else echo B-after >> order.log; fi
)";

class BrokerIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      return;
    }
    std::string sfx = randomSuffix();
    auto group = TestGroup::create("hbg" + sfx);
    ASSERT_TRUE(group.isOk()) << group.status().message();
    group_ = std::move(group).value().release();
    auto user = TestUser::create("hba" + sfx, {group_->name()});
    ASSERT_TRUE(user.isOk()) << user.status().message();
    user_ = std::move(user).value().release();
    auto outsider = TestUser::create("hbo" + sfx, {});
    ASSERT_TRUE(outsider.isOk()) << outsider.status().message();
    outsider_ = std::move(outsider).value().release();

    auto tmp = TempDir::create("broker-it");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(tmp).value().release();
    ::chmod(tmp_->path().c_str(), 0755);
    ws_ = tmp_->path() + "/ws/" + user_->name();
    proj_ = ws_ + "/proj";
    ASSERT_TRUE(tmp_->write("ws/" + user_->name() + "/proj/Makefile", kMakefile).isOk());
    std::string blob;
    for (int round = 0; round < 300; ++round) {
      for (int b = 0; b < 256; ++b) {
        blob += static_cast<char>((b * 7 + round) & 0xff);
      }
    }
    ASSERT_TRUE(tmp_->write("ws/" + user_->name() + "/proj/blob.bin", blob).isOk());
    ::chmod((tmp_->path() + "/ws").c_str(), 0755);
    fs::create_directory_symlink("/etc", proj_ + "/etc-link");
    ASSERT_EQ(host::runCommand({"chown", "-R", user_->name() + ":" + user_->name(), ws_})->exitCode,
              0);
    socket_ = tmp_->path() + "/broker.sock";
    rulesPath_ = tmp_->path() + "/rules.json";
    writeRules(rulesText());
    auto broker =
        BrokerProcess::start({"--socket", socket_, "--rules", rulesPath_, "--mode", "0666",
                              "--log-file", tmp_->path() + "/broker-rotating.log"},
                             socket_, tmp_->path() + "/broker.log");
    ASSERT_TRUE(broker.isOk()) << broker.status().message();
    broker_ = std::move(broker).value().release();
  }

  static void TearDownTestSuite() {
    delete broker_;
    broker_ = nullptr;
    delete tmp_;
    tmp_ = nullptr;
    delete outsider_;
    outsider_ = nullptr;
    delete user_;
    user_ = nullptr;
    delete group_;
    group_ = nullptr;
  }

  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: creates users and runs the broker";
    }
    ASSERT_NE(broker_, nullptr) << "suite setup failed";
  }

  // One rule: make for the test group, in /tmp/.../ws/{user}, container paths under /workspace,
  // concurrency 1 so that the ordering test can show the queue.
  static std::string rulesText(const std::string& extraEnv = "") {
    Json rule = {{"name", "make"},
                 {"command", "/usr/bin/make"},
                 {"callers", {{"groups", {group_->name()}}}},
                 {"workspace", tmp_->path() + "/ws/{user}"},
                 {"pathMapping", {{{"from", "/workspace"}, {"to", tmp_->path() + "/ws/{user}"}}}},
                 {"env", {"CFLAGS", "PATH"}},
                 {"timeout", {{"defaultSeconds", 600}, {"maxSeconds", 1800}}},
                 {"concurrency", 1}};
    if (!extraEnv.empty()) {
      rule["env"].push_back(extraEnv);
    }
    return Json{{"schemaVersion", "1"}, {"rules", {rule}}}.dump(2);
  }

  static void writeRules(const std::string& text) {
    std::ofstream(rulesPath_ + ".tmp") << text;
    fs::rename(rulesPath_ + ".tmp", rulesPath_);
  }

  // hyper-broker-cli run as `user` in `cwd`, with only `env` (and the socket) in its environment.
  static CommandRun client(const TestUser& user, const std::string& cwd,
                           const std::vector<std::string>& args,
                           const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {"setpriv",
                                     "--reuid=" + std::to_string(user.uid()),
                                     "--regid=" + std::to_string(user.gid()),
                                     "--init-groups",
                                     "env",
                                     "-i",
                                     "-C",
                                     cwd,
                                     "HYPER_BROKER_SOCKET=" + socket_,
                                     "PATH=/usr/bin:/bin"};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.push_back(HYPER_BROKER_CLI_PATH);
    argv.insert(argv.end(), args.begin(), args.end());
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

  // A raw request line from `user`; returns the frames up to the exit frame.
  static std::vector<Json> rawRequest(const TestUser& user, const std::string& line) {
    auto fd = connectAs(socket_, user.uid(), user.gid());
    EXPECT_TRUE(fd.isOk()) << fd.status().message();
    if (!fd.isOk()) {
      return {};
    }
    EXPECT_TRUE(broker::sendAll(*fd, line));
    auto frames = readFrames(*fd);
    ::close(*fd);
    return frames;
  }

  static std::string runLine(const std::string& cwd, const std::vector<std::string>& args) {
    return Json{{"schemaVersion", "1"}, {"command", "make"}, {"args", args}, {"cwd", cwd}}.dump() +
           "\n";
  }

  static std::string describe(const std::vector<Json>& frames) {
    std::string out;
    for (const auto& f : frames) {
      out += f.dump() + "\n";
    }
    return out + "--- broker log ---\n" + broker_->log();
  }

  // The daemon answers a plain request: it survived whatever the test did before.
  static void expectServing() {
    ASSERT_TRUE(broker_->alive()) << broker_->log();
    auto run = client(*user_, proj_, {"make", "ok"});
    EXPECT_EQ(run.exitCode, 0) << run.describe();
    EXPECT_EQ(run.out, "out-line\n") << run.describe();
  }

  static TestGroup* group_;
  static TestUser* user_;
  static TestUser* outsider_;
  static TempDir* tmp_;
  static BrokerProcess* broker_;
  static std::string ws_, proj_, socket_, rulesPath_;
};

TestGroup* BrokerIntegrationTest::group_ = nullptr;
TestUser* BrokerIntegrationTest::user_ = nullptr;
TestUser* BrokerIntegrationTest::outsider_ = nullptr;
TempDir* BrokerIntegrationTest::tmp_ = nullptr;
BrokerProcess* BrokerIntegrationTest::broker_ = nullptr;
std::string BrokerIntegrationTest::ws_, BrokerIntegrationTest::proj_,
    BrokerIntegrationTest::socket_, BrokerIntegrationTest::rulesPath_;

TEST_F(BrokerIntegrationTest, OutputAndExitCodePassThrough) {
  auto ok = client(*user_, proj_, {"make", "ok"});
  EXPECT_EQ(ok.exitCode, 0) << ok.describe();
  EXPECT_EQ(ok.out, "out-line\n") << ok.describe();
  EXPECT_EQ(ok.err, "err-line\n") << ok.describe();

  auto fail = client(*user_, proj_, {"make", "fail"});
  EXPECT_EQ(fail.exitCode, 2) << fail.describe();  // make's own code for a failed recipe
  EXPECT_EQ(fail.out, "before-failure\n") << fail.describe();
  EXPECT_TRUE(contains(fail.err, "make: *** [Makefile:")) << fail.describe();

  // One line at start and one at end; a non-zero exit at error level.
  std::string log = broker_->log();
  EXPECT_TRUE(contains(log, "info start id=")) << log;
  EXPECT_TRUE(contains(log, "user=" + user_->name())) << log;
  EXPECT_TRUE(contains(log, "args=[\"make\",\"fail\"]")) << log;
  EXPECT_TRUE(contains(log, "error end id=")) << log;
  EXPECT_TRUE(contains(log, "exit=2")) << log;
  // The rotating file sink writes the same lines.
  EXPECT_TRUE(contains(readFile(tmp_->path() + "/broker-rotating.log"), "exit=2"));
}

TEST_F(BrokerIntegrationTest, BuildRunsAsTheCallerWithItsGroups) {
  fs::remove(proj_ + "/uid.txt");
  auto run = client(*user_, proj_, {"make", "whoami"});
  ASSERT_EQ(run.exitCode, 0) << run.describe();
  EXPECT_EQ(readFile(proj_ + "/uid.txt"), std::to_string(user_->uid()) + "\n");
  struct stat st;
  ASSERT_EQ(::stat((proj_ + "/uid.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, user_->uid());
  // Supplementary groups come from the system, as initgroups would set them.
  std::istringstream groups(run.out);
  std::vector<std::string> ids{std::istream_iterator<std::string>(groups), {}};
  EXPECT_NE(std::find(ids.begin(), ids.end(), std::to_string(group_->gid())), ids.end())
      << run.describe();
  EXPECT_EQ(std::find(ids.begin(), ids.end(), "0"), ids.end()) << run.describe();
}

TEST_F(BrokerIntegrationTest, CallerOutsideTheRuleIsRefused) {
  auto run = client(*outsider_, "/tmp", {"make", "ok"});
  EXPECT_EQ(run.exitCode, 1) << run.describe();
  EXPECT_EQ(run.out, "");
  EXPECT_TRUE(contains(run.err, "hyper-broker-cli: rejected: user " + outsider_->name()))
      << run.describe();
  EXPECT_TRUE(contains(run.err, "is not allowed to run make")) << run.describe();

  auto unknown = client(*user_, proj_, {"cmake", "."});
  EXPECT_EQ(unknown.exitCode, 1) << unknown.describe();
  EXPECT_TRUE(contains(unknown.err, "no rule allows the command \"cmake\"")) << unknown.describe();
}

struct EscapeCase {
  std::string name;
  std::string cwd;  // relative to the project, or absolute
  std::vector<std::string> args;
};

class BrokerEscapeTest : public BrokerIntegrationTest,
                         public ::testing::WithParamInterface<EscapeCase> {};

TEST_P(BrokerEscapeTest, IsRefusedBeforeAnythingRuns) {
  const auto& c = GetParam();
  std::string cwd = c.cwd.empty() ? proj_ : (c.cwd[0] == '/' ? c.cwd : proj_ + "/" + c.cwd);
  std::vector<std::string> args = {"make"};
  args.insert(args.end(), c.args.begin(), c.args.end());
  auto run = client(*user_, cwd, args);
  EXPECT_EQ(run.exitCode, 1) << run.describe();
  EXPECT_EQ(run.out, "") << run.describe();
  EXPECT_TRUE(contains(run.err, "hyper-broker-cli: rejected: ")) << run.describe();
  EXPECT_TRUE(contains(run.err, "outside the workspace")) << run.describe();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerEscapeTest,
    ::testing::Values(EscapeCase{"CwdOutside", "/tmp", {"ok"}},
                      EscapeCase{"DashCEtc", "", {"-C", "/etc", "ok"}},
                      EscapeCase{"DashCAttached", "", {"-C/etc", "ok"}},
                      EscapeCase{"LongDirectory", "", {"--directory=/etc", "ok"}},
                      EscapeCase{"DotDot", "", {"-C", "../../..", "ok"}},
                      EscapeCase{"SymlinkOut", "", {"-C", "etc-link", "ok"}},
                      EscapeCase{"FileThroughSymlink", "", {"-f", "etc-link/passwd"}},
                      EscapeCase{"CwdThroughSymlink", "etc-link", {"ok"}}),
    [](const ::testing::TestParamInfo<EscapeCase>& info) { return info.param.name; });

TEST_F(BrokerIntegrationTest, DotDotInARequestCwdIsRefused) {
  auto frames = rawRequest(*user_, runLine(proj_ + "/../../../..", {"ok"}));
  ASSERT_GE(frames.size(), 2u) << describe(frames);
  EXPECT_EQ(frames[0].value("type", ""), "error") << describe(frames);
  EXPECT_TRUE(contains(frames[0].value("message", ""), "outside the workspace"))
      << describe(frames);
  EXPECT_EQ(frames.back(), Json::parse(R"({"type":"exit","code":1,"timedOut":false})"));
}

TEST_F(BrokerIntegrationTest, ContainerPathsAreMapped) {
  auto frames = rawRequest(*user_, runLine("/workspace/proj", {"where"}));
  EXPECT_EQ(stdoutOf(frames), proj_ + "\n") << describe(frames);
  EXPECT_EQ(frames.back().value("code", -1), 0) << describe(frames);
}

TEST_F(BrokerIntegrationTest, OnlyAllowListedEnvironmentReachesMake) {
  auto run =
      client(*user_, proj_, {"make", "env"}, {"CFLAGS=-DALLOWED", "HYPER_SECRET=do-not-pass"});
  ASSERT_EQ(run.exitCode, 0) << run.describe();
  EXPECT_EQ(run.out, "cflags=-DALLOWED secret=\n") << run.describe();
}

TEST_F(BrokerIntegrationTest, TimeoutKillsTheWholeProcessGroup) {
  fs::remove(proj_ + "/sleeper.pid");
  auto run = client(*user_, proj_, {"--timeout", "1", "make", "sleeper"});
  EXPECT_EQ(run.exitCode, 124) << run.describe();
  EXPECT_TRUE(contains(run.err, "timed out")) << run.describe();
  pid_t child = std::atoi(readFile(proj_ + "/sleeper.pid").c_str());
  ASSERT_GT(child, 0) << "the Makefile did not record its child";
  EXPECT_TRUE(waitGone(child, 10)) << "the sleeping child " << child << " survived the timeout";
  EXPECT_TRUE(contains(broker_->log(), "timedOut=true"));
}

TEST_F(BrokerIntegrationTest, TimeoutKillsChildrenThatIgnoreSigterm) {
  fs::remove(proj_ + "/stubborn.pid");
  auto run = client(*user_, proj_, {"--timeout", "1", "make", "stubborn"});
  EXPECT_EQ(run.exitCode, 124) << run.describe();
  pid_t child = std::atoi(readFile(proj_ + "/stubborn.pid").c_str());
  ASSERT_GT(child, 0);
  EXPECT_TRUE(waitGone(child, 10)) << "the child ignoring SIGTERM survived";
}

// The runner on its own: a command that ignores SIGTERM gets SIGKILL after the grace period; one
// that does not is ended by SIGTERM alone.
TEST_F(BrokerIntegrationTest, RunnerEscalatesToSigkillOnlyWhenSigtermIsIgnored) {
  for (bool ignoreTerm : {true, false}) {
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    broker::RunSpec spec;
    spec.command = "/bin/sh";
    spec.argv = {"sh", "-c", std::string(ignoreTerm ? "trap '' TERM; " : "") + "sleep 300"};
    spec.env = {"PATH=/usr/bin:/bin"};
    spec.cwd = proj_;
    spec.workspace = ws_;
    spec.uid = user_->uid();
    spec.gid = user_->gid();
    spec.groups = {user_->gid()};
    spec.timeoutSec = 1;
    spec.killGraceSec = 1;
    auto outcome = broker::runStreaming(spec, pair[0], -1);
    ::close(pair[0]);
    ::close(pair[1]);
    ASSERT_TRUE(outcome.isOk()) << outcome.status().message();
    EXPECT_EQ(outcome->exitCode, 124);
    EXPECT_TRUE(outcome->timedOut);
    EXPECT_EQ(outcome->escalated, ignoreTerm) << "ignoreTerm=" << ignoreTerm;
  }
}

TEST_F(BrokerIntegrationTest, RunnerReportsAFailedStepBeforeExec) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  broker::RunSpec spec;
  spec.command = "/nonexistent/make";
  spec.argv = {"make"};
  spec.cwd = proj_;
  spec.workspace = ws_;
  spec.uid = user_->uid();
  spec.gid = user_->gid();
  auto outcome = broker::runStreaming(spec, pair[0], -1);
  ::close(pair[0]);
  ::close(pair[1]);
  ASSERT_FALSE(outcome.isOk());
  EXPECT_TRUE(contains(outcome.status().message(), "execve: No such file or directory"))
      << outcome.status().message();
}

TEST_F(BrokerIntegrationTest, DeathBySigkillIs137) {
  auto run = client(*user_, proj_, {"make", "killself"});
  EXPECT_EQ(run.exitCode, 137) << run.describe();
  EXPECT_EQ(run.out, "dying\n") << run.describe();
}

TEST_F(BrokerIntegrationTest, BinaryOutputArrivesByteForByte) {
  auto run = client(*user_, proj_, {"make", "binary"});
  ASSERT_EQ(run.exitCode, 0) << run.err;
  std::string blob = readFile(proj_ + "/blob.bin");
  ASSERT_EQ(run.out.size(), blob.size());
  EXPECT_TRUE(run.out == blob) << "stdout differs from blob.bin";
}

TEST_F(BrokerIntegrationTest, ConcurrencyOneRunsRequestsOneAfterTheOther) {
  fs::remove(proj_ + "/order.log");
  fs::remove(proj_ + "/release");
  fs::remove(proj_ + "/a-running");
  auto a = connectAs(socket_, user_->uid(), user_->gid());
  ASSERT_TRUE(a.isOk()) << a.status().message();
  ASSERT_TRUE(broker::sendAll(*a, runLine(proj_, {"hold"})));
  auto aStarted = readFrames(*a, [](const Json& f) {
    return f.value("type", "") == "stdout" && contains(f.value("data", ""), "started");
  });
  ASSERT_TRUE(contains(stdoutOf(aStarted), "started")) << describe(aStarted);

  // A holds the rule's only slot: B is told it waits, and runs only after A ended.
  auto b = connectAs(socket_, user_->uid(), user_->gid());
  ASSERT_TRUE(b.isOk()) << b.status().message();
  ASSERT_TRUE(broker::sendAll(*b, runLine(proj_, {"probe"})));
  auto bFirst = readFrames(*b, [](const Json&) { return true; });
  ASSERT_EQ(bFirst.size(), 1u);
  EXPECT_EQ(bFirst[0].value("type", ""), "queued") << describe(bFirst);

  std::ofstream(proj_ + "/release") << "go\n";
  auto aRest = readFrames(*a);
  auto bRest = readFrames(*b);
  ::close(*a);
  ::close(*b);
  ASSERT_FALSE(aRest.empty());
  ASSERT_FALSE(bRest.empty());
  EXPECT_EQ(aRest.back().value("code", -1), 0) << describe(aRest);
  EXPECT_EQ(bRest.back().value("code", -1), 0) << describe(bRest);
  EXPECT_EQ(readFile(proj_ + "/order.log"), "A-done\nB-after\n");
}

TEST_F(BrokerIntegrationTest, MalformedJsonIsAnsweredAndTheDaemonServesOn) {
  auto frames = rawRequest(*user_, "{\"schemaVersion\":\"1\",\"command\":\n");
  ASSERT_EQ(frames.size(), 2u) << describe(frames);
  EXPECT_EQ(frames[0].value("type", ""), "error");
  EXPECT_TRUE(contains(frames[0].value("message", ""), "not valid JSON")) << describe(frames);
  EXPECT_EQ(frames[1].value("code", -1), 1);
  expectServing();
}

TEST_F(BrokerIntegrationTest, OversizedRequestLineIsAnsweredAndTheDaemonServesOn) {
  auto fd = connectAs(socket_, user_->uid(), user_->gid());
  ASSERT_TRUE(fd.isOk()) << fd.status().message();
  std::string huge(1024 * 1024, 'x');
  broker::sendAll(*fd, huge);  // the broker may stop reading (and close) before the end
  auto frames = readFrames(*fd);
  ::close(*fd);
  ASSERT_FALSE(frames.empty()) << broker_->log();
  EXPECT_EQ(frames[0].value("type", ""), "error");
  EXPECT_TRUE(contains(frames[0].value("message", ""), "request line longer than"))
      << describe(frames);
  expectServing();
}

TEST_F(BrokerIntegrationTest, ClientDisconnectingMidBuildKillsTheBuild) {
  fs::remove(proj_ + "/sleeper.pid");
  auto fd = connectAs(socket_, user_->uid(), user_->gid());
  ASSERT_TRUE(fd.isOk()) << fd.status().message();
  ASSERT_TRUE(broker::sendAll(*fd, runLine(proj_, {"sleeper"})));
  auto started = readFrames(*fd, [](const Json& f) {
    return f.value("type", "") == "stdout" && contains(f.value("data", ""), "started");
  });
  ASSERT_TRUE(contains(stdoutOf(started), "started")) << describe(started);
  ::close(*fd);
  pid_t child = std::atoi(readFile(proj_ + "/sleeper.pid").c_str());
  ASSERT_GT(child, 0);
  EXPECT_TRUE(waitGone(child, 15)) << "the build kept running after its client left\n"
                                   << broker_->log();
  expectServing();
  EXPECT_TRUE(contains(broker_->log(), "client hung up"));
}

TEST_F(BrokerIntegrationTest, RulesReloadOnSighupAndTheHashIsReported) {
  auto before = broker::adminRequest(socket_, "rules");
  ASSERT_TRUE(before.isOk()) << before.status().message();
  EXPECT_EQ((*before)["hash"], sha256Hex(readFile(rulesPath_)));

  // Let HYPER_SECRET through, reload, and see it reach make.
  std::string widened = rulesText("HYPER_SECRET");
  writeRules(widened);
  ASSERT_EQ(::kill(broker_->pid(), SIGHUP), 0);
  std::string hash;
  for (int i = 0; i < 100 && hash != sha256Hex(widened); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto report = broker::adminRequest(socket_, "rules");
    ASSERT_TRUE(report.isOk()) << report.status().message();
    hash = (*report)["hash"];
  }
  ASSERT_EQ(hash, sha256Hex(widened)) << broker_->log();
  auto run = client(*user_, proj_, {"make", "env"}, {"HYPER_SECRET=now-allowed"});
  EXPECT_EQ(run.out, "cflags= secret=now-allowed\n") << run.describe();

  // An invalid file is refused and the rules in force stay.
  writeRules("{\"schemaVersion\":\"1\",\"rules\":[{\"name\":\"make\"}]}");
  auto reload = broker::adminRequest(socket_, "reload");
  ASSERT_FALSE(reload.isOk());
  EXPECT_TRUE(contains(reload.status().message(), "rules[0].command")) << reload.status().message();
  auto after = broker::adminRequest(socket_, "rules");
  ASSERT_TRUE(after.isOk());
  EXPECT_EQ((*after)["hash"], sha256Hex(widened));
  EXPECT_TRUE(contains((*after).value("error", ""), "rules[0].command"));

  // Only root may ask.
  auto fd = connectAs(socket_, user_->uid(), user_->gid());
  ASSERT_TRUE(fd.isOk());
  broker::sendAll(*fd, "{\"admin\":\"rules\"}\n");
  auto frames = readFrames(*fd);
  ::close(*fd);
  ASSERT_FALSE(frames.empty());
  EXPECT_TRUE(contains(frames[0].value("message", ""), "root only")) << describe(frames);

  writeRules(rulesText());
  ASSERT_TRUE(broker::adminRequest(socket_, "reload").isOk());
}

TEST_F(BrokerIntegrationTest, SocketGroupModeAndClientConnectionErrors) {
  std::string sock2 = tmp_->path() + "/grouped.sock";
  auto second = BrokerProcess::start(
      {"--socket", sock2, "--rules", rulesPath_, "--group", group_->name(), "--mode", "0660"},
      sock2, tmp_->path() + "/grouped.log");
  ASSERT_TRUE(second.isOk()) << second.status().message();
  struct stat st;
  ASSERT_EQ(::stat(sock2.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, group_->gid());
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_uid, 0u);

  auto denied = client(*outsider_, "/tmp", {"--socket", sock2, "make", "ok"});
  EXPECT_EQ(denied.exitCode, 1) << denied.describe();
  EXPECT_TRUE(contains(denied.err, "permission denied")) << denied.describe();
  auto allowed = client(*user_, proj_, {"--socket", sock2, "make", "ok"});
  EXPECT_EQ(allowed.exitCode, 0) << allowed.describe();

  auto missing = client(*user_, proj_, {"--socket", tmp_->path() + "/nope.sock", "make"});
  EXPECT_EQ(missing.exitCode, 1);
  EXPECT_EQ(missing.err, "hyper-broker-cli: broker socket not found at " + tmp_->path() +
                             "/nope.sock (is hyper-broker running? see --socket and "
                             "HYPER_BROKER_SOCKET)\n");

  // A socket nobody listens on: connection refused.
  std::string dead = tmp_->path() + "/dead.sock";
  int deadFd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, dead.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(deadFd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr), 0);
  ::chmod(dead.c_str(), 0666);
  auto refused = client(*user_, proj_, {"--socket", dead, "make"});
  EXPECT_EQ(refused.exitCode, 1) << refused.describe();
  EXPECT_TRUE(contains(refused.err, "connection refused")) << refused.describe();
  ::close(deadFd);

  // A server that answers garbage: invalid response.
  std::string bogus = tmp_->path() + "/bogus.sock";
  int bogusFd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  std::strncpy(addr.sun_path, bogus.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(bogusFd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr), 0);
  ::chmod(bogus.c_str(), 0666);
  ASSERT_EQ(::listen(bogusFd, 1), 0);
  std::thread server([bogusFd] {
    int c = ::accept(bogusFd, nullptr, nullptr);
    if (c >= 0) {
      std::string buffer, request;
      broker::readFrameLine(c, buffer, request);
      broker::sendAll(c, "this is not json\n");
      ::close(c);
    }
  });
  auto invalid = client(*user_, proj_, {"--socket", bogus, "make"});
  server.join();
  ::close(bogusFd);
  EXPECT_EQ(invalid.exitCode, 1) << invalid.describe();
  EXPECT_TRUE(contains(invalid.err, "hyper-broker-cli: invalid response from the broker"))
      << invalid.describe();
}

TEST_F(BrokerIntegrationTest, MakeWrapperExecsTheClient) {
  // contrib/broker/make, with the client found through HYPER_BROKER_CLI.
  std::vector<std::string> argv = {"setpriv",
                                   "--reuid=" + std::to_string(user_->uid()),
                                   "--regid=" + std::to_string(user_->gid()),
                                   "--init-groups",
                                   "env",
                                   "-i",
                                   "-C",
                                   proj_,
                                   "HYPER_BROKER_SOCKET=" + socket_,
                                   "HYPER_BROKER_CLI=" HYPER_BROKER_CLI_PATH,
                                   "PATH=/usr/bin:/bin",
                                   "/bin/sh",
                                   HYPER_SOURCE_DIR "/contrib/broker/make",
                                   "fail"};
  auto result = host::runCommand(argv);
  ASSERT_TRUE(result.isOk()) << result.status().message();
  EXPECT_EQ(result->exitCode, 2) << result->err;
  EXPECT_EQ(result->out, "before-failure\n");
}

}  // namespace
}  // namespace hyper::test
