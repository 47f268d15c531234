// hyper's build agent (guest/build_agent_main.cc, the real static binary) and the host's side of
// the builder channel (providers/build/builder_session.h) over a socket pair, without a VM: steps
// run in order without a shell, with exactly the job's environment, output relayed; a failing
// step ends the job with its code; cancel and timeout kill the step's whole process group; a
// silent or garbled agent is an error, not a hang.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "guest/build_protocol.h"
#include "providers/build/builder_session.h"
#include "tests/fakes/temp_tree.h"

namespace hyper::providers::build {
namespace {

using Clock = std::chrono::steady_clock;
using guest::BuildJob;
using std::chrono::milliseconds;

class BuildAgentTest : public test::TempTreeTest {
 protected:
  BuildAgentTest() : TempTreeTest("hyper-agent") {}
  void TearDown() override {
    if (agent_ > 0) {
      ::kill(agent_, SIGKILL);
      ::waitpid(agent_, nullptr, 0);
    }
    TempTreeTest::TearDown();
  }
  // The agent on one end of a socket pair (its fd 3); the host's end is returned.
  int startAgent() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    agent_ = ::fork();
    if (agent_ == 0) {
      ::dup2(fds[1], 3);
      ::execl(HYPER_BUILD_AGENT_PATH, HYPER_BUILD_AGENT_PATH, "--channel-fd", "3", nullptr);
      ::_exit(127);
    }
    ::close(fds[1]);
    return fds[0];
  }
  Result<BuilderOutcome> run(const BuildJob& job, BuilderSessionOptions options = {}) {
    options.onOutput = [this](int step, bool err, std::string_view bytes) {
      (err ? stderr_ : stdout_)[step] += std::string(bytes);
    };
    options.onStep = [this](const std::string& line) { steps_.push_back(line); };
    return runBuilderJob(startAgent(), job, options);
  }
  static BuildJob job(std::vector<std::vector<std::string>> steps) {
    BuildJob j;
    j.steps = std::move(steps);
    j.env = {{"PATH", "/usr/bin:/bin"}};
    return j;
  }

  pid_t agent_ = -1;
  std::map<int, std::string> stdout_, stderr_;
  std::vector<std::string> steps_;
};

TEST_F(BuildAgentTest, StepsRunInOrderWithTheJobsEnvironmentOnly) {
  BuildJob j = job(
      {{"sh", "-c", "echo out:$FOO:${HOME-unset}; echo err >&2; pwd"}, {"printf", "%s", "two"}});
  j.env["FOO"] = "bar";
  j.workdir = root_;
  ::setenv("HOME", "/root", 1);  // the agent's own environment does not leak into steps
  auto r = run(j);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->stepsRun, 2);
  EXPECT_EQ(stdout_[0], "out:bar:unset\n" + root_ + "\n");
  EXPECT_EQ(stderr_[0], "err\n");
  EXPECT_EQ(stdout_[1], "two");
  EXPECT_EQ(steps_, (std::vector<std::string>{"step 0 start", "step 0 exit 0", "step 1 start",
                                              "step 1 exit 0"}));
}

TEST_F(BuildAgentTest, AFailingStepEndsTheJobWithItsCode) {
  const std::string marker = root_ + "/ran";
  auto r = run(job({{"true"}, {"sh", "-c", "exit 3"}, {"touch", marker}}));
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->failedStep, 1);
  EXPECT_EQ(r->exitCode, 3);
  EXPECT_EQ(r->stepsRun, 2);
  EXPECT_FALSE(std::filesystem::exists(marker));

  auto missing = run(job({{"/nonexistent/tool", "x"}}));
  ASSERT_TRUE(missing.isOk()) << missing.status().message();
  EXPECT_EQ(missing->exitCode, 127);
  EXPECT_NE(stderr_[0].find("run /nonexistent/tool"), std::string::npos) << stderr_[0];
}

TEST_F(BuildAgentTest, ACancelKillsTheStepsWholeGroup) {
  const std::string pidFile = root_ + "/pid";
  std::atomic<bool> cancel{false};
  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(500));
    cancel = true;
  });
  BuilderSessionOptions o;
  o.cancel = &cancel;
  auto t0 = Clock::now();
  // The sleep is a grandchild: killed with the group.
  auto r = run(job({{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"}}), o);
  t.join();
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->error, "cancelled");
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  std::ifstream in(pidFile);
  pid_t sleeper = 0;
  ASSERT_TRUE(in >> sleeper);
  // Gone, or a zombie left to whoever reaps orphans here.
  auto alive = [&] {
    std::ifstream stat("/proc/" + std::to_string(sleeper) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
  };
  for (int i = 0; i < 20 && alive(); ++i) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_FALSE(alive()) << "the step's background process survived";
}

TEST_F(BuildAgentTest, PastItsTimeoutTheJobIsAnError) {
  BuilderSessionOptions o;
  o.timeout = milliseconds(700);
  auto t0 = Clock::now();
  auto r = run(job({{"sleep", "30"}}), o);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("ran past its timeout"), std::string::npos)
      << r.status().message();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
}

TEST_F(BuildAgentTest, RunsAsTheJobsUser) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to change user";
  }
  BuildJob j = job({{"sh", "-c", "id -u; id -g; id -G"}});
  j.uid = 65534;
  j.gid = 65534;
  auto r = run(j);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_TRUE(r->ok) << stderr_[0];
  EXPECT_EQ(stdout_[0], "65534\n65534\n65534\n");  // no supplementary groups left
}

// The host's side against agents that are not hyper's.
TEST(BuilderSessionTest, ASilentOrGarbledAgentIsAnErrorNotAHang) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  BuilderSessionOptions o;
  o.readDeadline = milliseconds(300);
  auto t0 = Clock::now();
  auto silent = runBuilderJob(fds[0], BuildJob{}, o);
  ASSERT_FALSE(silent.isOk());
  EXPECT_NE(silent.status().message().find("said nothing for 0 s (no hello from its agent)"),
            std::string::npos)
      << silent.status().message();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  ::close(fds[1]);

  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  const std::string garbage = "hello x\nstep 0 start\nout 0 !!notbase64\n";
  ASSERT_EQ(::write(fds[1], garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  auto garbled = runBuilderJob(fds[0], BuildJob{}, o);
  ASSERT_FALSE(garbled.isOk());
  EXPECT_NE(garbled.status().message().find("builder channel <- expected out <step> <base64"),
            std::string::npos)
      << garbled.status().message();
  ::close(fds[1]);
}

TEST(BuildProtocolTest, AgentLinesParseOrSayWhatWasExpected) {
  auto out = guest::parseAgentLine(guest::outputLine(true, 2, "bytes\n"));
  ASSERT_TRUE(out.isOk());
  EXPECT_EQ(out->kind, guest::AgentLine::Kind::Err);
  EXPECT_EQ(out->step, 2);
  EXPECT_EQ(out->data, "bytes\n");
  auto failed = guest::parseAgentLine("result failed 3 127");
  ASSERT_TRUE(failed.isOk());
  EXPECT_FALSE(failed->ok);
  EXPECT_EQ(failed->step, 3);
  EXPECT_EQ(failed->code, 127);
  for (const char* bad : {"step -1 start", "step 1 exit", "result maybe", "out 1 " /* empty ok */,
                          "whatever", "step 99999999999 start"}) {
    auto r = guest::parseAgentLine(bad);
    if (std::string(bad) == "out 1 ") {
      EXPECT_TRUE(r.isOk()) << bad;  // an empty chunk decodes to nothing
      continue;
    }
    EXPECT_FALSE(r.isOk()) << bad;
  }
  EXPECT_FALSE(guest::parseAgentLine(std::string(guest::kMaxBuildLine + 1, 'a')).isOk());
  EXPECT_FALSE(BuildJob::fromJson(nlohmann::json::parse(R"({"steps": [[]]})")).isOk());
  EXPECT_FALSE(
      BuildJob::fromJson(nlohmann::json::parse(R"({"steps": [["a"]], "workdir": "rel"})")).isOk());
}

}  // namespace
}  // namespace hyper::providers::build
