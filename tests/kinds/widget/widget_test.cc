// The kind registry's proof (issue 12): Widget, a kind registered by one record in this folder
// and one line in tests/kinds/kinds.cc, works through the real hyperctl and hyperd code —
// validate, diff, apply, get, status and hyperd's loop with drift repair — with no change to
// controller code. hyperctl-test and hyperd-test are those programs built with the test kinds.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "tests/integration/hyperctl_util.h"
#include "tests/integration/netns_util.h"

namespace hyper::test {
namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool eventually(std::chrono::seconds limit, const std::function<bool()>& check) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (check()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return check();
}

std::string widget(const std::string& name, const std::string& spec) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Widget\nmetadata:\n  name: " + name + "\nspec:\n" +
         spec + "---\n";
}

class WidgetKindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      GTEST_SKIP() << "needs root (a network namespace of its own)";
    }
    auto ns = EnteredNetns::enter("widget");
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
    CommandRun lo = runArgv({"ip", "link", "set", "lo", "up"});  // hyperd's API is on loopback
    ASSERT_EQ(lo.exitCode, 0) << lo.describe();
    auto tmp = TempDir::create("widget");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    hostDir_ = tmp_->path() + "/host";
    std::filesystem::create_directories(hostDir_);
  }

  void TearDown() override {
    if (hyperd_ > 0) {
      ::kill(hyperd_, SIGKILL);
      ::waitpid(hyperd_, nullptr, 0);
    }
  }

  CommandRun hyperctl(std::vector<std::string> args, const std::string& stateDir = "") {
    std::vector<std::string> argv = {HYPERCTL_TEST_PATH, "--state-dir",
                                     stateDir.empty() ? tmp_->path() + "/state" : stateDir,
                                     "--widget-dir", hostDir_};
    argv.insert(argv.end(), args.begin(), args.end());
    return runArgv(argv);
  }

  pid_t startHyperd(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {HYPERD_TEST_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = tmp_->path() + "/hyperd.log";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      FILE* out = std::fopen(log.c_str(), "w");
      if (out != nullptr) {
        ::dup2(fileno(out), 1);
        ::dup2(fileno(out), 2);
      }
      std::vector<char*> cargv;
      for (auto& a : argv) {
        cargv.push_back(a.data());
      }
      cargv.push_back(nullptr);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    return pid;
  }

  std::unique_ptr<EnteredNetns> ns_;
  std::unique_ptr<TempDir> tmp_;
  std::string hostDir_;
  pid_t hyperd_ = -1;
};

TEST_F(WidgetKindTest, HyperctlValidatesDiffsAppliesAndGetsTheExtraKind) {
  ASSERT_TRUE(tmp_->write("src/widgets.yaml", widget("a", "  color: red\n") +
                                                  widget("b", "  color: green\n  size: 7\n"))
                  .isOk());
  const std::string src = tmp_->path() + "/src";

  CommandRun validate = hyperctl({"validate", "-f", src});
  EXPECT_EQ(validate.exitCode, 0) << validate.describe();

  // The kind's schema and its provider's validate, with file:line:column and the field path.
  ASSERT_TRUE(tmp_->write("bad/w.yaml", widget("c", "  color: purple\n") +
                                            widget("d", "  color: blue\n  size: 60\n"))
                  .isOk());
  CommandRun bad = hyperctl({"validate", "-f", tmp_->path() + "/bad"});
  EXPECT_EQ(bad.exitCode, 1) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "w.yaml:6:3")) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "spec.color")) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "red, green or blue")) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "spec.size")) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "a blue widget is at most 50")) << bad.describe();

  CommandRun diff = hyperctl({"diff", "-f", src});
  EXPECT_EQ(diff.exitCode, 2) << diff.describe();
  EXPECT_TRUE(contains(diff.out, "Widget/a")) << diff.describe();
  EXPECT_TRUE(contains(diff.out, "Widget/b")) << diff.describe();

  CommandRun apply = hyperctl({"apply", "-f", src});
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();
  EXPECT_EQ(slurp(hostDir_ + "/a"), R"({"color":"red","size":1})");
  EXPECT_EQ(slurp(hostDir_ + "/b"), R"({"color":"green","size":7})");
  EXPECT_EQ(hyperctl({"diff", "-f", src}).exitCode, 0);

  // get: the record's columns, its wide ones with -o wide, its plural and short name.
  CommandRun get = hyperctl({"get", "widgets"});
  ASSERT_EQ(get.exitCode, 0) << get.describe();
  EXPECT_TRUE(contains(get.out, "NAME")) << get.out;
  EXPECT_TRUE(contains(get.out, "COLOR")) << get.out;
  EXPECT_FALSE(contains(get.out, "SIZE")) << get.out;
  EXPECT_TRUE(contains(get.out, "green")) << get.out;
  EXPECT_TRUE(contains(get.out, "InSync")) << get.out;
  CommandRun wide = hyperctl({"get", "wg", "b", "-o", "wide"});
  ASSERT_EQ(wide.exitCode, 0) << wide.describe();
  EXPECT_TRUE(contains(wide.out, "SIZE")) << wide.out;
  EXPECT_TRUE(contains(wide.out, "7")) << wide.out;
  EXPECT_FALSE(contains(wide.out, "red")) << wide.out;

  // A secret field (KindRecord::secretFields): diff says it changed, and never shows it.
  ASSERT_TRUE(tmp_->write("src/widgets.yaml", widget("a", "  color: red\n  serial: hush-1111\n") +
                                                  widget("b", "  color: green\n  size: 7\n"))
                  .isOk());
  CommandRun secretCreate = hyperctl({"diff", "-f", src});
  EXPECT_EQ(secretCreate.exitCode, 2) << secretCreate.describe();
  EXPECT_FALSE(contains(secretCreate.out + secretCreate.err, "hush")) << secretCreate.describe();
  ASSERT_EQ(hyperctl({"apply", "-f", src}).exitCode, 0);
  EXPECT_TRUE(contains(slurp(hostDir_ + "/a"), "hush-1111")) << "the host has it";
  ASSERT_TRUE(tmp_->write("src/widgets.yaml", widget("a", "  color: red\n  serial: hush-2222\n") +
                                                  widget("b", "  color: green\n  size: 7\n"))
                  .isOk());
  for (const char* output : {"text", "json"}) {
    CommandRun secretDiff = hyperctl({"diff", "-f", src, "-o", output});
    EXPECT_EQ(secretDiff.exitCode, 2) << secretDiff.describe();
    EXPECT_TRUE(contains(secretDiff.out, "Widget/a")) << secretDiff.describe();
    EXPECT_TRUE(contains(secretDiff.out, "sensitive")) << secretDiff.describe();
    EXPECT_FALSE(contains(secretDiff.out + secretDiff.err, "hush")) << secretDiff.describe();
  }
  ASSERT_EQ(hyperctl({"apply", "-f", src}).exitCode, 0);
  EXPECT_TRUE(contains(slurp(hostDir_ + "/a"), "hush-2222"));
  CommandRun secretGet = hyperctl({"get", "widgets", "-o", "json"});
  EXPECT_EQ(secretGet.exitCode, 0) << secretGet.describe();
  EXPECT_TRUE(contains(secretGet.out, "(sensitive value)")) << secretGet.out;
  EXPECT_FALSE(contains(secretGet.out, "hush")) << secretGet.out;

  // Changed by hand: get says Drifted.
  { std::ofstream(hostDir_ + "/a") << R"({"color":"blue","size":1})"; }
  CommandRun drifted = hyperctl({"get", "widget", "a"});
  EXPECT_TRUE(contains(drifted.out, "Drifted")) << drifted.describe();

  // An unknown type lists the known ones, the extra kind among them.
  CommandRun unknown = hyperctl({"get", "gadgets"});
  EXPECT_EQ(unknown.exitCode, 1);
  EXPECT_TRUE(contains(unknown.err,
                       "networks, networkpolicies, vms, brokerrules, builds, secrets or widgets"))
      << unknown.describe();

  // Pruned: gone from the source, deleted from the host.
  ASSERT_TRUE(tmp_->write("src/widgets.yaml", widget("b", "  color: green\n  size: 7\n")).isOk());
  CommandRun prune = hyperctl({"apply", "--prune", "--yes", "-f", src});
  ASSERT_EQ(prune.exitCode, 0) << prune.describe();
  EXPECT_FALSE(std::filesystem::exists(hostDir_ + "/a"));
  EXPECT_TRUE(std::filesystem::exists(hostDir_ + "/b"));
}

TEST_F(WidgetKindTest, HyperdConvergesRepairsDriftAndReportsStatusForTheExtraKind) {
  ASSERT_TRUE(
      tmp_->write("src/widgets.yaml", widget("a", "  color: red\n  serial: hush-3333\n")).isOk());
  const std::string state = tmp_->path() + "/hyperd-state";
  // The provider's setting reaches it through hyperd's config (providers.widget.dir).
  ASSERT_TRUE(tmp_->write("hyperd.yaml", "schemaVersion: \"1\"\nsource:\n  url: " + tmp_->path() +
                                             "/src\ndriftInterval: 1s\nstateDir: " + state +
                                             "\nlisten: 127.0.0.1:0\nproviders:\n  widget:\n"
                                             "    dir: " +
                                             hostDir_ + "\n")
                  .isOk());
  hyperd_ = startHyperd({"--config", tmp_->path() + "/hyperd.yaml"});
  ASSERT_GT(hyperd_, 0);
  ASSERT_TRUE(eventually(std::chrono::seconds(30), [&] {
    return slurp(hostDir_ + "/a") == R"({"color":"red","serial":"hush-3333","size":1})";
  })) << slurp(tmp_->path() + "/hyperd.log");

  CommandRun status;
  ASSERT_TRUE(eventually(std::chrono::seconds(30), [&] {
    status = hyperctl({"status"}, state);
    return status.exitCode == 0 && contains(status.out, "Widget/a");
  })) << status.describe();
  // Its row: OBJECT READY DRIFTED ...
  std::istringstream row(status.out.substr(status.out.find("\nWidget/a") + 1));
  std::string object, ready, drifted;
  row >> object >> ready >> drifted;
  EXPECT_EQ(object + " " + ready + " " + drifted, "Widget/a True False") << status.out;

  // Changed by hand: hyperd finds the drift and repairs it.
  { std::ofstream(hostDir_ + "/a") << R"({"color":"blue","serial":"hush-4444","size":1})"; }
  EXPECT_TRUE(eventually(std::chrono::seconds(30), [&] {
    return slurp(hostDir_ + "/a") == R"({"color":"red","serial":"hush-3333","size":1})";
  })) << slurp(tmp_->path() + "/hyperd.log");
  CommandRun events = hyperctl({"events"}, state);
  EXPECT_TRUE(contains(events.out, "drift")) << events.describe();
  EXPECT_TRUE(contains(events.out, "Widget/a")) << events.describe();
  // The secret field, on the host and in the source, reaches no event, status or log.
  CommandRun jsonEvents = hyperctl({"events", "-o", "json"}, state);
  CommandRun jsonStatus = hyperctl({"status", "-o", "json"}, state);
  EXPECT_TRUE(contains(jsonEvents.out, "blue")) << "the drift's other values are shown";
  for (const std::string& text :
       {jsonEvents.out, jsonStatus.out, slurp(tmp_->path() + "/hyperd.log")}) {
    EXPECT_FALSE(contains(text, "hush")) << text;
  }

  // A bad setting is refused with the field path, like any config field.
  ASSERT_TRUE(tmp_->write("bad.yaml",
                          "schemaVersion: \"1\"\nsource:\n  url: /x\nproviders:\n"
                          "  widget:\n    colour: red\n")
                  .isOk());
  CommandRun refused = runArgv({HYPERD_TEST_PATH, "--config", tmp_->path() + "/bad.yaml"});
  EXPECT_EQ(refused.exitCode, 1) << refused.describe();
  EXPECT_TRUE(contains(refused.err, "bad.yaml:6:5")) << refused.describe();
  EXPECT_TRUE(contains(refused.err, "providers.widget")) << refused.describe();
}

}  // namespace
}  // namespace hyper::test
