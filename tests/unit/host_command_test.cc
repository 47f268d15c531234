#include "host/command.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace hyper::host {
namespace {

TEST(CommandTest, CapturesStdoutAndExitCode) {
  auto r = runCommand({"echo", "hello", "world"});
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->exitCode, 0);
  EXPECT_EQ(r->out, "hello world\n");
  EXPECT_EQ(r->err, "");
}

TEST(CommandTest, ArgumentsAreNotInterpretedByAShell) {
  auto r = runCommand({"echo", "$HOME; rm -rf / `x` | y"});
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->out, "$HOME; rm -rf / `x` | y\n");
}

TEST(CommandTest, LargeInputAndOutputDoNotDeadlock) {
  // Far more than a pipe buffer in both directions at once.
  std::string input(4 << 20, 'x');
  for (size_t i = 0; i < input.size(); i += 100) {
    input[i] = '\n';
  }
  auto r = runCommand({"cat"}, input);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->exitCode, 0);
  EXPECT_EQ(r->out.size(), input.size());
  EXPECT_EQ(r->out, input);
}

TEST(CommandTest, CapturesStderrSeparately) {
  auto r = runCommand({"ls", "/nonexistent-hyper-path"});
  ASSERT_TRUE(r.isOk());
  EXPECT_NE(r->exitCode, 0);
  EXPECT_EQ(r->out, "");
  EXPECT_NE(r->err.find("nonexistent-hyper-path"), std::string::npos) << r->err;
}

TEST(CommandTest, ChildThatIgnoresStdinDoesNotKillUs) {
  // `true` exits without reading: our write gets EPIPE, which must not raise SIGPIPE here.
  auto r = runCommand({"true"}, std::string(1 << 20, 'x'));
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->exitCode, 0);
}

TEST(CommandTest, ChildInheritsOnlyStdinStdoutAndStderr) {
  // Descriptors opened without O_CLOEXEC, as cpp-httplib and other libraries do.
  int sock = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(sock, 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(fcntl(sock, F_GETFD) & FD_CLOEXEC, 0);
  // The shell lists its own descriptors: what the command was started with.
  auto r = runCommand({"sh", "-c", "ls /proc/$$/fd"});
  ::close(sock);
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(r->out, "0\n1\n2\n");
}

TEST(CommandTest, SignalBecomes128PlusN) {
  auto r = runCommand({"sh", "-c", "kill -TERM $$"});
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->exitCode, 128 + 15);
}

TEST(CommandTest, MissingProgramIsAnError) {
  auto r = runCommand({"hyper-no-such-program", "x"});
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(), "hyper-no-such-program x <- spawn: No such file or directory");
  EXPECT_FALSE(runCommand({}).isOk());
}

TEST(CommandTest, RunCheckedChainsFirstStderrLine) {
  auto ok = runChecked({"printf", "a\\nb"});
  ASSERT_TRUE(ok.isOk());
  EXPECT_EQ(*ok, "a\nb");

  auto bad = runChecked({"sh", "-c", "echo >&2; echo 'File exists' >&2; echo more >&2; exit 2"});
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().message(),
            "sh -c echo >&2; echo 'File exists' >&2; echo more >&2; exit 2 <- File exists");

  auto silent = runChecked({"false"});
  ASSERT_FALSE(silent.isOk());
  EXPECT_EQ(silent.status().message(), "false <- exited with status 1");
}

TEST(CommandOptionsTest, RunsInCwdWithAddedEnvironment) {
  CommandOptions options;
  options.cwd = "/tmp";
  options.env = {"HYPER_TEST_VALUE=forty two", "TZ=UTC"};
  auto r = runChecked(
      {"sh", "-c", "pwd; echo \"$HYPER_TEST_VALUE\"; echo \"$TZ\"; echo \"${PATH:+path}\""}, "",
      options);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(*r, "/tmp\nforty two\nUTC\npath\n");
}

TEST(CommandOptionsTest, TimeoutKillsTheWholeProcessGroup) {
  // The shell starts a grandchild that would outlive a kill of the shell alone; it writes its pid.
  char dir[] = "/tmp/hyper-cmd-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string pidFile = std::string(dir) + "/pid";
  CommandOptions options;
  options.timeout = std::chrono::milliseconds(300);
  auto started = std::chrono::steady_clock::now();
  auto r = runCommand({"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"}, "", options);
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_TRUE(r->timedOut);
  EXPECT_FALSE(r->cancelled);
  EXPECT_EQ(r->exitCode, 128 + SIGKILL);
  EXPECT_LT(took, std::chrono::seconds(10));
  std::ifstream in(pidFile);
  pid_t grandchild = 0;
  in >> grandchild;
  ASSERT_GT(grandchild, 0);
  // Killed with its group: gone (or a zombie about to be reaped by init) within a moment.
  bool gone = false;
  for (int i = 0; i < 50 && !gone; ++i) {
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string text;
    std::getline(stat, text);
    gone = text.empty() || text.find(") Z") != std::string::npos;
    if (!gone) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  EXPECT_TRUE(gone) << "pid " << grandchild << " outlived the timeout";
  std::filesystem::remove_all(dir);

  auto checked = runChecked({"sleep", "30"}, "", options);
  ASSERT_FALSE(checked.isOk());
  EXPECT_EQ(checked.status().message(),
            "sleep 30 <- timed out after 300 ms (its process group killed)");
}

TEST(CommandOptionsTest, CancelStopsTheCommandSoon) {
  std::atomic<bool> cancel{false};
  CommandOptions options;
  options.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  auto started = std::chrono::steady_clock::now();
  auto r = runChecked({"sleep", "30"}, "", options);
  auto took = std::chrono::steady_clock::now() - started;
  canceller.join();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(), "sleep 30 <- cancelled (its process group killed)");
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(CommandOptionsTest, OutputBeyondTheLimitIsDropped) {
  CommandOptions options;
  options.maxOutputBytes = 1000;
  auto r =
      runCommand({"sh", "-c", "head -c 100000 /dev/zero; head -c 5 /dev/zero >&2"}, "", options);
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->exitCode, 0);
  EXPECT_EQ(r->out.size(), 1000u);
  EXPECT_EQ(r->err.size(), 5u);
}

}  // namespace
}  // namespace hyper::host
