// reconciler/crash_point: the test-only switch that kills a process at its Nth crash point.
#include "base/crash_point.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace hyper {
namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs three points in a child process whose environment is `at`/`log` (the switch is read once
// per process) and returns its wait status.
int runChild(const char* at, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (at != nullptr) {
      ::setenv("HYPER_TEST_CRASH_AT", at, 1);
    }
    if (!log.empty()) {
      ::setenv("HYPER_TEST_CRASH_LOG", log.c_str(), 1);
    }
    crashPoint("first VM/a");
    crashPoint("second VM/a");
    crashPoint("third VM/a");
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

class CrashPointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/hyper-crash-point-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    std::remove((dir_ + "/log").c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(CrashPointTest, TheNthPointKillsWithSigkillAfterLoggingIt) {
  int status = runChild("2", dir_ + "/log");
  ASSERT_TRUE(WIFSIGNALED(status)) << "exited normally with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_EQ(readFile(dir_ + "/log"), "1 first VM/a\nkilled 2 second VM/a\n");
}

TEST_F(CrashPointTest, ALogAloneListsEveryPointAndKillsNothing) {
  int status = runChild(nullptr, dir_ + "/log");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(readFile(dir_ + "/log"), "1 first VM/a\n2 second VM/a\n3 third VM/a\n");
}

TEST_F(CrashPointTest, NoSwitchOrANonsenseValueChangesNothing) {
  for (const char* at : {static_cast<const char*>(nullptr), "0", "-3", "2x", ""}) {
    int status = runChild(at, "");
    ASSERT_TRUE(WIFEXITED(status)) << (at ? at : "(unset)");
    EXPECT_EQ(WEXITSTATUS(status), 0) << (at ? at : "(unset)");
  }
}

TEST_F(CrashPointTest, APointBeyondTheLastIsNeverReached) {
  int status = runChild("4", dir_ + "/log");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(readFile(dir_ + "/log"), "1 first VM/a\n2 second VM/a\n3 third VM/a\n");
}

}  // namespace
}  // namespace hyper
