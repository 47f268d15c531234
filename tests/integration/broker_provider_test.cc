// BrokerRule end to end: hyperctl applies a BrokerRule, the real hyper-broker enforces it, and a
// hand edit of the rule file is reported as drift and repaired by the next apply.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/sha256.h"
#include "broker/client.h"
#include "host/command.h"
#include "tests/integration/broker_util.h"
#include "tests/integration/hyperctl_util.h"

namespace hyper::test {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

class BrokerProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: creates users and runs the broker";
    }
    std::string sfx = randomSuffix();
    auto group = TestGroup::create("hpg" + sfx);
    ASSERT_TRUE(group.isOk()) << group.status().message();
    group_ = std::move(*group);
    auto user = TestUser::create("hpa" + sfx, {group_->name()});
    ASSERT_TRUE(user.isOk()) << user.status().message();
    user_ = std::move(*user);
    auto outsider = TestUser::create("hpo" + sfx, {});
    ASSERT_TRUE(outsider.isOk()) << outsider.status().message();
    outsider_ = std::move(*outsider);
    auto tmp = TempDir::create("broker-provider");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    ::chmod(tmp_->path().c_str(), 0755);
    for (const TestUser* u : {user_.get(), outsider_.get()}) {
      ASSERT_TRUE(tmp_->write("ws/" + u->name() + "/Makefile", "all:\n\t@echo built\n").isOk());
      ASSERT_EQ(host::runCommand(
                    {"chown", "-R", u->name() + ":" + u->name(), tmp_->path() + "/ws/" + u->name()})
                    ->exitCode,
                0);
    }
    ::chmod((tmp_->path() + "/ws").c_str(), 0755);
    socket_ = tmp_->path() + "/broker.sock";
    rules_ = tmp_->path() + "/etc/broker-rules.json";
    fs::create_directories(tmp_->path() + "/etc");
    // No rule file yet: the broker starts with no rules and hyperctl writes them.
    auto broker = BrokerProcess::start({"--socket", socket_, "--rules", rules_, "--mode", "0666"},
                                       socket_, tmp_->path() + "/broker.log");
    ASSERT_TRUE(broker.isOk()) << broker.status().message();
    broker_ = std::move(*broker);
    ASSERT_TRUE(tmp_->write("manifests/broker.yaml", manifest()).isOk());
  }

  std::string manifest() const {
    return "apiVersion: hyper.dev/v1alpha1\n"
           "kind: BrokerRule\n"
           "metadata:\n"
           "  name: make\n"
           "spec:\n"
           "  command: /usr/bin/make\n"
           "  callers:\n"
           "    groups: [" +
           group_->name() +
           "]\n"
           "  workspace: " +
           tmp_->path() +
           "/ws/{user}\n"
           "  env: [CFLAGS]\n"
           "  timeout: {defaultSeconds: 60, maxSeconds: 120}\n"
           "  concurrency: 2\n";
  }

  CommandRun hyperctl(const std::vector<std::string>& args) const {
    // The broker's files are named with hyperctl's flags (not the environment).
    std::vector<std::string> argv = {HYPERCTL_PATH,    "--state-dir", tmp_->path() + "/state",
                                     "--broker-rules", rules_,        "--broker-socket",
                                     socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::runArgv(argv);
  }

  CommandRun make(const TestUser& u) const {
    std::vector<std::string> argv = {"setpriv",
                                     "--reuid=" + std::to_string(u.uid()),
                                     "--regid=" + std::to_string(u.gid()),
                                     "--init-groups",
                                     "env",
                                     "-i",
                                     "-C",
                                     tmp_->path() + "/ws/" + u.name(),
                                     "HYPER_BROKER_SOCKET=" + socket_,
                                     HYPER_BROKER_CLI_PATH,
                                     "make"};
    CommandRun run;
    auto result = host::runCommand(argv);
    if (result.isOk()) {
      run.exitCode = result->exitCode;
      run.out = result->out;
      run.err = result->err;
    }
    return run;
  }

  std::string loadedHash() const {
    auto report = broker::adminRequest(socket_, "rules");
    EXPECT_TRUE(report.isOk()) << report.status().message();
    return report.isOk() ? (*report).value("hash", "") : "";
  }

  std::unique_ptr<TestGroup> group_;
  std::unique_ptr<TestUser> user_, outsider_;
  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<BrokerProcess> broker_;
  std::string socket_, rules_;
};

TEST_F(BrokerProviderTest, AppliedRuleIsEnforcedAndHandEditsAreRepaired) {
  auto before = make(*user_);
  EXPECT_EQ(before.exitCode, 1) << "no rules yet, yet: " << before.out << before.err;

  std::string manifests = tmp_->path() + "/manifests";
  auto apply = hyperctl({"apply", "-f", manifests});
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();
  ASSERT_TRUE(fs::exists(rules_));
  EXPECT_EQ(loadedHash(), sha256Hex(slurp(rules_))) << broker_->log();

  auto allowed = make(*user_);
  EXPECT_EQ(allowed.exitCode, 0) << allowed.err;
  EXPECT_EQ(allowed.out, "built\n");
  auto refused = make(*outsider_);
  EXPECT_EQ(refused.exitCode, 1);
  EXPECT_NE(refused.err.find("is not allowed to run make"), std::string::npos) << refused.err;

  auto clean = hyperctl({"diff", "-f", manifests});
  EXPECT_EQ(clean.exitCode, 0) << clean.describe();

  // By hand: let the outsider in, and reload the broker.
  std::string edited = slurp(rules_);
  size_t at = edited.find(group_->name());
  ASSERT_NE(at, std::string::npos) << edited;
  edited.replace(at, group_->name().size(), outsider_->name());
  std::ofstream(rules_) << edited;
  ASSERT_EQ(::kill(broker_->pid(), SIGHUP), 0);
  for (int i = 0; i < 100 && loadedHash() != sha256Hex(edited); ++i) {
    usleep(50000);
  }
  ASSERT_EQ(loadedHash(), sha256Hex(edited));
  EXPECT_EQ(make(*outsider_).exitCode, 0) << "the hand edit should be in force before repair";

  auto drift = hyperctl({"diff", "-f", manifests});
  EXPECT_EQ(drift.exitCode, 2) << drift.describe();
  EXPECT_NE(drift.out.find("by hand"), std::string::npos) << drift.describe();

  auto repair = hyperctl({"apply", "-f", manifests});
  ASSERT_EQ(repair.exitCode, 0) << repair.describe();
  EXPECT_EQ(loadedHash(), sha256Hex(slurp(rules_)));
  EXPECT_EQ(make(*outsider_).exitCode, 1);
  EXPECT_EQ(make(*user_).exitCode, 0);
  EXPECT_EQ(hyperctl({"diff", "-f", manifests}).exitCode, 0);
}

}  // namespace
}  // namespace hyper::test
