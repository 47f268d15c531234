// The host command broker end to end: the real hyper-broker on a socket in a temp dir, the real
// hyper-broker-cli run as a throwaway unprivileged user, real make on real Makefiles.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include "base/sha256.h"
#include "broker/client.h"
#include "broker/daemon.h"
#include "broker/runner.h"
#include "host/command.h"
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
const char* kMakefile = R"MK(ok:
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
nnp:
	@grep NoNewPrivs /proc/self/status
limits:
	@grep NoNewPrivs /proc/self/status
	@cat /proc/self/cgroup
	@while IFS=: read -r n c p; do \
	  case "$$c" in \
	    pids) echo "pids.max $$(cat /sys/fs/cgroup/pids$$p/pids.max 2>&1)";; \
	    memory) echo "memory.limit_in_bytes $$(cat /sys/fs/cgroup/memory$$p/memory.limit_in_bytes 2>&1)";; \
	    "") if [ -f /sys/fs/cgroup$$p/pids.max ]; then \
	          echo "pids.max $$(cat /sys/fs/cgroup$$p/pids.max)"; \
	          echo "memory.max $$(cat /sys/fs/cgroup$$p/memory.max)"; fi;; \
	  esac; \
	done < /proc/self/cgroup
)MK";

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
    auto extra = TestGroup::create("hbx" + sfx);
    ASSERT_TRUE(extra.isOk()) << extra.status().message();
    extra_ = std::move(extra).value().release();
    auto user = TestUser::create("hba" + sfx, {group_->name(), extra_->name()});
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
    delete extra_;
    extra_ = nullptr;
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
    return test::runArgv(argv);
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
  static TestGroup* extra_;  // user_ is in it, the rule does not name it
  static TestUser* user_;
  static TestUser* outsider_;
  static TempDir* tmp_;
  static BrokerProcess* broker_;
  static std::string ws_, proj_, socket_, rulesPath_;
};

TestGroup* BrokerIntegrationTest::group_ = nullptr;
TestGroup* BrokerIntegrationTest::extra_ = nullptr;
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
  // setpriv --init-groups gave the client every group of the user, so the run has them too.
  EXPECT_NE(std::find(ids.begin(), ids.end(), std::to_string(extra_->gid())), ids.end())
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

// ---- Hostile callers (issue 11, section 4) ----

TEST_F(BrokerIntegrationTest, HundredThousandLevelsDeepIsRefusedAndTheDaemonServesOn) {
  std::string deep =
      "{\"schemaVersion\":\"1\",\"command\":\"make\",\"args\":" + std::string(100000, '[') +
      std::string(100000, ']') + "}\n";
  auto frames = rawRequest(*user_, deep);
  ASSERT_EQ(frames.size(), 2u) << describe(frames);
  EXPECT_EQ(frames[0].value("type", ""), "error");
  EXPECT_EQ(frames[0].value("message", ""),
            "request is nested deeper than 8 levels of objects and arrays")
      << describe(frames);
  EXPECT_EQ(frames[1].value("code", -1), 1);
  // Unclosed too: the parse stops at the limit, it does not wait for the end.
  auto unclosed = rawRequest(*user_, std::string(100000, '{') + "\n");
  ASSERT_FALSE(unclosed.empty());
  EXPECT_TRUE(contains(unclosed[0].value("message", ""), "not valid JSON") ||
              contains(unclosed[0].value("message", ""), "nested deeper"))
      << describe(unclosed);
  expectServing();
}

TEST_F(BrokerIntegrationTest, MalformedFramesAreAnsweredWithoutTheCallersValue) {
  const std::string marker = "HB-MARKER-91c2";
  const std::vector<std::string> lines = {
      "{\"schemaVersion\":\"1\",\"command\":\"" + marker,
      "[\"" + marker + "\"]",
      "\"" + marker + "\"",
      "{\"admin\":\"" + marker + "\"}",
      "{\"schemaVersion\":\"" + marker + "\",\"command\":\"make\",\"cwd\":\"/\"}",
      "{\"schemaVersion\":\"1\",\"command\":\"make\",\"cwd\":\"/\",\"args\":[{\"" + marker +
          "\":1}]}",
      "{\"schemaVersion\":\"1\",\"command\":\"make\",\"cwd\":\"/\",\"env\":{\"A\":[\"" + marker +
          "\"]}}",
      "{\"schemaVersion\":\"1\",\"command\":\"make\",\"cwd\":\"/\",\"timeoutSec\":\"" + marker +
          "\"}",
      "{\"schemaVersion\":\"1\",\"command\":\"make\",\"cwd\":\"" + marker + "\"}",
  };
  for (const auto& line : lines) {
    auto frames = rawRequest(*user_, line + "\n");
    ASSERT_EQ(frames.size(), 2u) << line << "\n" << describe(frames);
    EXPECT_EQ(frames[0].value("type", ""), "error") << line;
    EXPECT_FALSE(contains(frames[0].value("message", ""), marker))
        << line << " -> " << frames[0].value("message", "");
    EXPECT_TRUE(contains(frames[0].value("message", ""), "request")) << frames[0].dump();
  }
  EXPECT_FALSE(contains(broker_->log(), marker)) << broker_->log();
  expectServing();
}

TEST_F(BrokerIntegrationTest, CallerSuppliedStringsAreEscapedInTheLog) {
  auto frames = rawRequest(*user_, Json{{"schemaVersion", "1"},
                                        {"requestId", "rid\nFORGED-ID warn refused"},
                                        {"command", "make"},
                                        {"args", {"ok", "x\nFORGED-ARG info start"}},
                                        {"cwd", proj_}}
                                           .dump() +
                                       "\n");
  ASSERT_FALSE(frames.empty()) << describe(frames);
  auto refused = rawRequest(*user_, Json{{"schemaVersion", "1"},
                                         {"command", "make"},
                                         {"cwd", proj_ + "\nFORGED-CWD error end\x1b[2J"}}
                                            .dump() +
                                        "\n");
  ASSERT_FALSE(refused.empty());
  EXPECT_EQ(refused[0].value("type", ""), "error") << describe(refused);
  auto unknown = rawRequest(
      *user_,
      Json{{"schemaVersion", "1"}, {"command", "mak\nFORGED-CMD"}, {"cwd", proj_}}.dump() + "\n");
  ASSERT_FALSE(unknown.empty());
  std::string log = broker_->log();
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    EXPECT_NE(line.rfind("FORGED", 0), 0u) << "a forged log line: " << line;
    EXPECT_FALSE(contains(line, "\x1b")) << "an escape sequence reached the log: " << line;
  }
  EXPECT_TRUE(contains(log, "id=rid\\nFORGED-ID")) << log;
  EXPECT_TRUE(contains(log, "x\\nFORGED-ARG")) << log;
  EXPECT_TRUE(contains(log, "proj\\nFORGED-CWD error end\\x1b[2J")) << log;
  EXPECT_TRUE(contains(log, "mak\\nFORGED-CMD")) << log;
}

TEST_F(BrokerIntegrationTest, LogFilesAreNotWorldReadable) {
  struct stat st;
  ASSERT_EQ(::stat((tmp_->path() + "/broker-rotating.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);

  // A log file that exists with a wider mode is narrowed; rotated files are created 0640 too.
  std::string logFile = tmp_->path() + "/rotatelog";  // no extension: rotated as rotatelog.1
  std::ofstream(logFile) << "old line\n";
  ASSERT_EQ(::chmod(logFile.c_str(), 0644), 0);
  std::string sock = tmp_->path() + "/rotate.sock";
  auto broker =
      BrokerProcess::start({"--socket", sock, "--rules", rulesPath_, "--mode", "0666", "--log-file",
                            logFile, "--log-max-bytes", "2000", "--log-max-files", "2"},
                           sock, tmp_->path() + "/rotate-stderr.log");
  ASSERT_TRUE(broker.isOk()) << broker.status().message();
  for (int i = 0; i < 40 && !fs::exists(logFile + ".1"); ++i) {
    auto fd = connectAs(sock, user_->uid(), user_->gid());
    ASSERT_TRUE(fd.isOk()) << fd.status().message();
    broker::sendAll(*fd, "{\"not\":\"a request\"}\n");
    readFrames(*fd);
    ::close(*fd);
  }
  ASSERT_TRUE(fs::exists(logFile + ".1")) << "the log never rotated";
  for (const auto& f : {logFile, logFile + ".1"}) {
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0007, 0u) << f << " is readable by others";
    EXPECT_EQ(st.st_mode & 07777, 0640u) << f;
  }
}

TEST_F(BrokerIntegrationTest, ConnectionsPerUidAreCappedAndOtherUidsAreNot) {
  std::string sock = tmp_->path() + "/capped.sock";
  auto broker = BrokerProcess::start(
      {"--socket", sock, "--rules", rulesPath_, "--mode", "0666", "--max-connections-per-uid", "2"},
      sock, tmp_->path() + "/capped.log");
  ASSERT_TRUE(broker.isOk()) << broker.status().message();
  // Two idle connections of the user: the broker waits for their request lines.
  auto a = connectAs(sock, user_->uid(), user_->gid());
  auto b = connectAs(sock, user_->uid(), user_->gid());
  ASSERT_TRUE(a.isOk() && b.isOk());
  // The third is refused at once.
  auto c = connectAs(sock, user_->uid(), user_->gid());
  ASSERT_TRUE(c.isOk());
  auto refused = readFrames(*c);
  ::close(*c);
  ASSERT_EQ(refused.size(), 2u) << (*broker)->log();
  EXPECT_EQ(refused[0].value("message", ""),
            "uid " + std::to_string(user_->uid()) +
                " already has 2 connections to the broker (the limit per uid); try again later");
  EXPECT_EQ(refused[1].value("code", -1), 1);
  // Another uid is not affected: root's admin request and the outsider's (refused by the rule,
  // not by the limit).
  auto report = broker::adminRequest(sock, "rules");
  EXPECT_TRUE(report.isOk()) << report.status().message();
  auto other = connectAs(sock, outsider_->uid(), outsider_->gid());
  ASSERT_TRUE(other.isOk());
  broker::sendAll(*other, runLine("/tmp", {"ok"}));
  auto otherFrames = readFrames(*other);
  ::close(*other);
  ASSERT_FALSE(otherFrames.empty());
  EXPECT_TRUE(contains(otherFrames[0].value("message", ""), "is not allowed to run make"))
      << describe(otherFrames);
  // One connection closed: the user gets one again, and it is served.
  ::close(*a);
  std::vector<Json> served;
  for (int i = 0; i < 100; ++i) {
    auto d = connectAs(sock, user_->uid(), user_->gid());
    ASSERT_TRUE(d.isOk());
    broker::sendAll(*d, runLine(proj_, {"ok"}));
    served = readFrames(*d);
    ::close(*d);
    if (!served.empty() && !contains(served[0].value("message", ""), "the limit per uid")) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(served.empty());
  EXPECT_EQ(stdoutOf(served), "out-line\n") << describe(served);
  EXPECT_EQ(served.back().value("code", -1), 0) << describe(served);
  ::close(*b);
}

TEST_F(BrokerIntegrationTest, QueuedRequestsPerUidAreCappedAndWaitNoLongerThanTheDeadline) {
  fs::remove(proj_ + "/order.log");
  fs::remove(proj_ + "/release");
  fs::remove(proj_ + "/a-running");
  std::string sock = tmp_->path() + "/queue.sock";
  auto broker = BrokerProcess::start({"--socket", sock, "--rules", rulesPath_, "--mode", "0666",
                                      "--max-queued-per-uid", "1", "--queue-timeout", "3"},
                                     sock, tmp_->path() + "/queue.log");
  ASSERT_TRUE(broker.isOk()) << broker.status().message();
  // A holds the rule's only slot.
  auto a = connectAs(sock, user_->uid(), user_->gid());
  ASSERT_TRUE(a.isOk());
  ASSERT_TRUE(broker::sendAll(*a, runLine(proj_, {"hold"})));
  auto aStarted = readFrames(*a, [](const Json& f) {
    return f.value("type", "") == "stdout" && contains(f.value("data", ""), "started");
  });
  ASSERT_TRUE(contains(stdoutOf(aStarted), "started")) << describe(aStarted);
  // B waits: the one queued request the user may have.
  auto b = connectAs(sock, user_->uid(), user_->gid());
  ASSERT_TRUE(b.isOk());
  ASSERT_TRUE(broker::sendAll(*b, runLine(proj_, {"probe"})));
  auto bFirst = readFrames(*b, [](const Json&) { return true; });
  ASSERT_EQ(bFirst.size(), 1u);
  EXPECT_EQ(bFirst[0].value("type", ""), "queued") << describe(bFirst);
  // C would be the second: refused at once, never queued.
  auto c = connectAs(sock, user_->uid(), user_->gid());
  ASSERT_TRUE(c.isOk());
  ASSERT_TRUE(broker::sendAll(*c, runLine(proj_, {"probe"})));
  auto cFrames = readFrames(*c);
  ::close(*c);
  ASSERT_EQ(cFrames.size(), 2u) << describe(cFrames);
  EXPECT_EQ(cFrames[0].value("message", ""),
            "uid " + std::to_string(user_->uid()) +
                " already has 1 requests waiting for a slot (the limit per uid); try again later");
  // B's wait ends at the queue deadline with a clear error.
  auto bRest = readFrames(*b);
  ::close(*b);
  ASSERT_EQ(bRest.size(), 2u) << describe(bRest);
  EXPECT_EQ(bRest[0].value("message", ""),
            "waited 3 s for a slot of rule make (1 run(s) at once) without getting one; try again "
            "later");
  EXPECT_EQ(bRest[1].value("code", -1), 1);
  std::ofstream(proj_ + "/release") << "go\n";
  auto aRest = readFrames(*a);
  ::close(*a);
  ASSERT_FALSE(aRest.empty());
  EXPECT_EQ(aRest.back().value("code", -1), 0) << describe(aRest);
  EXPECT_EQ(readFile(proj_ + "/order.log"), "A-done\n") << "B or C ran";
}

TEST_F(BrokerIntegrationTest, FailedThreadCreationIsAnsweredAndTheDaemonServesOn) {
  std::atomic<int> failures{1};
  broker::BrokerConfig config;
  config.socketPath = tmp_->path() + "/threads.sock";
  config.rulesPath = rulesPath_;
  config.mode = 0666;
  broker::BrokerDaemon daemon(config, [&](std::function<void()> fn) {
    if (failures.fetch_sub(1) > 0) {
      throw std::system_error(EAGAIN, std::generic_category(), "pthread_create");
    }
    std::thread(std::move(fn)).detach();
  });
  ASSERT_TRUE(daemon.start().isOk());
  std::thread loop([&] { daemon.run(); });
  auto first = connectAs(config.socketPath, user_->uid(), user_->gid());
  ASSERT_TRUE(first.isOk());
  broker::sendAll(*first, runLine(proj_, {"ok"}));
  auto refused = readFrames(*first);
  ::close(*first);
  auto second = connectAs(config.socketPath, user_->uid(), user_->gid());
  ASSERT_TRUE(second.isOk());
  broker::sendAll(*second, runLine(proj_, {"ok"}));
  auto served = readFrames(*second);
  ::close(*second);
  daemon.stop();
  loop.join();
  ASSERT_EQ(refused.size(), 2u) << describe(refused);
  EXPECT_TRUE(contains(refused[0].value("message", ""),
                       "the broker cannot serve the request now <- start a thread: "
                       "pthread_create: Resource temporarily unavailable"))
      << describe(refused);
  EXPECT_EQ(refused[1].value("code", -1), 1);
  EXPECT_EQ(stdoutOf(served), "out-line\n") << describe(served);
  EXPECT_EQ(served.back().value("code", -1), 0) << describe(served);
}

std::set<std::string> words(const std::string& text) {
  std::istringstream in(text);
  return {std::istream_iterator<std::string>(in), {}};
}

TEST_F(BrokerIntegrationTest, RunGetsTheGroupsOfTheCallingProcessNotAllOfTheUsers) {
  // The client process holds its primary group, the rule's group and root's group 0 (which the
  // user is not in), and has dropped extra_ (which the user is in).
  auto fd =
      connectAsWithGroups(socket_, user_->uid(), user_->gid(), {user_->gid(), group_->gid(), 0});
  ASSERT_TRUE(fd.isOk()) << fd.status().message();
  broker::sendAll(*fd, runLine(proj_, {"whoami"}));
  auto frames = readFrames(*fd);
  ::close(*fd);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back().value("code", -1), 0) << describe(frames);
  EXPECT_EQ(words(stdoutOf(frames)),
            (std::set<std::string>{std::to_string(user_->gid()), std::to_string(group_->gid())}))
      << describe(frames);

  // A process that dropped the rule's group is not admitted through it.
  auto dropped = connectAsWithGroups(socket_, user_->uid(), user_->gid(), {extra_->gid()});
  ASSERT_TRUE(dropped.isOk());
  broker::sendAll(*dropped, runLine(proj_, {"whoami"}));
  auto refused = readFrames(*dropped);
  ::close(*dropped);
  ASSERT_FALSE(refused.empty());
  EXPECT_TRUE(contains(refused[0].value("message", ""), "is not allowed to run make"))
      << describe(refused);
}

TEST_F(BrokerIntegrationTest, RunHasNoNewPrivsByDefault) {
  auto run = client(*user_, proj_, {"make", "nnp"});
  EXPECT_EQ(run.exitCode, 0) << run.describe();
  EXPECT_EQ(run.out, "NoNewPrivs:\t1\n") << run.describe();
}

// The runner on its own: the flag is what sets it (the same command without it has none).
TEST_F(BrokerIntegrationTest, RunnerSetsNoNewPrivsOnlyWhenAsked) {
  for (bool nnp : {true, false}) {
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    broker::RunSpec spec;
    spec.command = "/bin/grep";
    spec.argv = {"grep", "NoNewPrivs", "/proc/self/status"};
    spec.cwd = proj_;
    spec.workspace = ws_;
    spec.uid = user_->uid();
    spec.gid = user_->gid();
    spec.groups = {user_->gid()};
    spec.noNewPrivs = nnp;
    auto outcome = broker::runStreaming(spec, pair[0], -1);
    ::close(pair[0]);
    auto frames = readFrames(pair[1]);
    ::close(pair[1]);
    ASSERT_TRUE(outcome.isOk()) << outcome.status().message();
    EXPECT_EQ(stdoutOf(frames), nnp ? "NoNewPrivs:\t1\n" : "NoNewPrivs:\t0\n");
  }
}

TEST_F(BrokerIntegrationTest, ChildStoppedBeforeExecIsKilledAtTheDeadline) {
  for (bool stop : {true, false}) {
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    auto spec = std::make_shared<broker::RunSpec>();
    spec->command = "/bin/true";
    spec->argv = {"true"};
    spec->cwd = proj_;
    spec->workspace = ws_;
    spec->uid = user_->uid();
    spec->gid = user_->gid();
    spec->groups = {user_->gid()};
    spec->timeoutSec = 1;
    spec->stopBeforeExec = stop;
    // In a thread of its own, so that a run held forever fails the test instead of hanging it.
    auto task = std::make_shared<std::packaged_task<Result<broker::RunOutcome>()>>(
        [spec, fd = pair[0]] { return broker::runStreaming(*spec, fd, -1); });
    auto result = task->get_future();
    std::thread([task] { (*task)(); }).detach();
    ASSERT_EQ(result.wait_for(std::chrono::seconds(60)), std::future_status::ready)
        << "a child stopped before exec held the run past its deadline";
    auto outcome = result.get();
    ::close(pair[0]);
    ::close(pair[1]);
    ASSERT_TRUE(outcome.isOk()) << outcome.status().message();
    EXPECT_EQ(outcome->timedOut, stop);
    EXPECT_EQ(outcome->exitCode, stop ? 124 : 0);
  }
}

TEST_F(BrokerIntegrationTest, RuleLimitsGiveTheRunItsOwnCgroup) {
  // A broker whose rule asks for limits and lets setuid work again (noNewPrivs: false).
  Json rules = Json::parse(rulesText());
  rules["rules"][0]["pidsMax"] = 32;
  rules["rules"][0]["memoryMaxBytes"] = 64 * 1024 * 1024;
  rules["rules"][0]["noNewPrivs"] = false;
  std::string limitedRules = tmp_->path() + "/limited-rules.json";
  std::ofstream(limitedRules) << rules.dump(2);
  std::string sock = tmp_->path() + "/limited.sock";
  auto broker = BrokerProcess::start({"--socket", sock, "--rules", limitedRules, "--mode", "0666"},
                                     sock, tmp_->path() + "/limited.log");
  ASSERT_TRUE(broker.isOk()) << broker.status().message();
  auto run = client(*user_, proj_, {"--socket", sock, "make", "limits"});
  ASSERT_EQ(run.exitCode, 0) << run.describe();
  EXPECT_TRUE(contains(run.out, "NoNewPrivs:\t0\n")) << run.describe();

  // What this host lets the broker do, as the broker said at start.
  std::string log = (*broker)->log();
  if (contains(log, "cgroups: cannot apply")) {
    GTEST_SKIP() << "this host has no writable cgroup v2 with pids and memory, nor v1 pids and "
                    "memory hierarchies; the broker said so:\n"
                 << log;
  }
  ASSERT_TRUE(contains(log, "cgroups: runs with pidsMax or memoryMaxBytes get their own")) << log;
  EXPECT_TRUE(contains(run.out, "/hyper-broker/run-")) << run.describe();
  bool v2 = contains(log, "get their own group under");
  if (v2) {
    EXPECT_TRUE(contains(run.out, "pids.max 32\n")) << run.describe();
    EXPECT_TRUE(contains(run.out, "memory.max 67108864\n")) << run.describe();
  } else {
    EXPECT_TRUE(contains(run.out, "pids.max 32\n")) << run.describe();
    EXPECT_TRUE(contains(run.out, "memory.limit_in_bytes 67108864\n")) << run.describe();
  }
  // The group is gone after the run.
  std::istringstream lines(run.out);
  std::string line;
  int groups = 0;
  while (std::getline(lines, line)) {
    auto at = line.find("/hyper-broker/run-");
    if (at == std::string::npos || line.find(':') == std::string::npos) {
      continue;
    }
    std::string controller = line.substr(line.find(':') + 1);
    controller = controller.substr(0, controller.find(':'));
    std::string path = line.substr(line.rfind(':') + 1);
    std::string dir = "/sys/fs/cgroup" + (controller.empty() ? "" : "/" + controller) + path;
    ++groups;
    EXPECT_FALSE(fs::exists(dir)) << dir << " is left behind";
  }
  EXPECT_GT(groups, 0) << run.describe();

  // The shared broker's rule sets no limits: its runs get no group of their own.
  auto plain = client(*user_, proj_, {"make", "limits"});
  ASSERT_EQ(plain.exitCode, 0) << plain.describe();
  EXPECT_FALSE(contains(plain.out, "/hyper-broker/run-")) << plain.describe();
  EXPECT_TRUE(contains(plain.out, "NoNewPrivs:\t1\n")) << plain.describe();
}

}  // namespace
}  // namespace hyper::test
