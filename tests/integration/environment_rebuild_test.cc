// The whole environment rebuilds the same: one revision (networks, policies, Builds and a VM
// booting from them) applied from scratch twice - two state directories, two network namespaces,
// two umasks and time zones - gives the same artifact digests, the same QEMU command line (once
// the two state and run directories are named alike) and the same nftables ruleset.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "tests/integration/guest_util.h"
#include "tests/integration/hyperctl_util.h"
#include "tests/integration/netns_util.h"

namespace hyper::test {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kBuilds = R"(apiVersion: hyper.dev/v1alpha1
kind: Build
metadata: {name: guest-kernel}
spec:
  type: debian-kernel
---
apiVersion: hyper.dev/v1alpha1
kind: Build
metadata: {name: guest-initrd}
spec:
  type: initramfs
  initramfs:
    kernel: {build: guest-kernel}
    hyperInit: true
    files:
      - {path: /etc/motd, content: "the same everywhere\n"}
)";

constexpr const char* kVm = R"(apiVersion: hyper.dev/v1alpha1
kind: VM
metadata: {name: web-1}
spec:
  memoryMiB: 256
  kernel: {build: guest-kernel}
  initrd: {build: guest-initrd}
  cmdline: "quiet hyper.ping=0"
  network: {name: lab}
)";

// Replaces every occurrence of `from` in `text` with `to`.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

class EnvironmentRebuildTest : public ::testing::Test {
 protected:
  struct Side {
    std::unique_ptr<NamedNetns> ns;
    std::string state;
    std::string run;
    std::string umask;
    std::string tz;
  };

  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (network namespaces)";
    }
    // The kernel's .deb in the host's cache: the Builds below run in the host's namespace, but
    // a fresh machine fetches it once.
    if (const GuestImage& guest = guestImage(); !guest.skipReason.empty()) {
      GTEST_SKIP() << guest.skipReason;
    }
    auto tmp = TempDir::create("env-rebuild");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    const std::string examples = std::string(HYPER_SOURCE_DIR) + "/manifests/examples/";
    for (const char* file : {"networks.yaml", "policies.yaml"}) {
      auto text = readFile(examples + file);
      ASSERT_TRUE(text.isOk()) << text.status().message();
      ASSERT_TRUE(tmp_->write(std::string("src/") + file, *text).isOk());
    }
    ASSERT_TRUE(tmp_->write("src/builds.yaml", kBuilds).isOk());
    ASSERT_TRUE(tmp_->write("src/vm.yaml", kVm).isOk());
    for (auto [name, umask, tz] :
         {std::tuple{"a", "022", "UTC"}, std::tuple{"b", "077", "Pacific/Kiritimati"}}) {
      Side side;
      auto ns = NamedNetns::create(uniqueNetnsName(std::string("env") + name));
      ASSERT_TRUE(ns.isOk()) << ns.status().message();
      side.ns = std::move(*ns);
      ASSERT_TRUE(side.ns->run({"ip", "link", "set", "lo", "up"}).isOk());
      side.state = tmp_->path() + "/" + name + "/state";
      side.run = tmp_->path() + "/" + name + "/run";
      fs::create_directories(side.run);
      ::chmod(side.run.c_str(), 0700);
      side.umask = umask;
      side.tz = tz;
      sides_.push_back(std::move(side));
    }
  }
  void TearDown() override {
    for (auto& side : sides_) {
      killQemusUnder(side.run);  // before its namespace goes
      side.ns.reset();
    }
  }

  // hyperctl for `side`, under its umask and TZ, in its namespace or the host's.
  CommandRun hyperctl(const Side& side, bool inNamespace, std::vector<std::string> args) {
    HyperctlEnv how{side.umask, side.tz, {"HYPER_VM_RUN_DIR=" + side.run}, {}};
    if (inNamespace) {
      how.prefix = {"ip", "netns", "exec", side.ns->name()};
    }
    return runHyperctl(side.state, args, how);
  }

  std::unique_ptr<TempDir> tmp_;
  std::vector<Side> sides_;
};

TEST_F(EnvironmentRebuildTest, OneRevisionAppliedTwiceFromScratchIsTheSame) {
  std::vector<Json> artifacts;
  std::vector<std::string> argvs;
  std::vector<std::string> rulesets;
  for (const Side& side : sides_) {
    // The Builds fetch from the Debian mirror, which a namespace cannot reach: built in the
    // host's namespace first (they write only the state dir), then everything in the namespace.
    CommandRun builds = hyperctl(side, false, {"apply", "-f", tmp_->path() + "/src/builds.yaml"});
    ASSERT_EQ(builds.exitCode, 0) << builds.describe();
    CommandRun all = hyperctl(side, true, {"apply", "-f", tmp_->path() + "/src"});
    ASSERT_EQ(all.exitCode, 0) << all.describe();

    CommandRun get = hyperctl(side, false, {"get", "builds", "-o", "json"});
    Json list = Json::parse(get.out, nullptr, false);
    ASSERT_TRUE(list.is_object()) << get.describe();
    Json byName = Json::object();
    for (const auto& item : list["items"]) {
      byName[item["metadata"]["name"].get<std::string>()] = item["status"]["observed"]["artifacts"];
    }
    artifacts.push_back(byName);

    auto vm = readFile(side.run + "/web-1/vm.json");
    ASSERT_TRUE(vm.isOk()) << vm.status().message();
    Json meta = Json::parse(*vm, nullptr, false);
    ASSERT_TRUE(meta.contains("argv")) << *vm;
    std::string argv;
    for (const auto& a : meta["argv"]) {
      argv += a.get<std::string>() + "\n";
    }
    argvs.push_back(replaced(replaced(argv, side.state, "<state>"), side.run, "<run>"));

    auto ruleset = side.ns->run({"nft", "list", "ruleset"});
    ASSERT_TRUE(ruleset.isOk()) << ruleset.status().message();
    rulesets.push_back(*ruleset);
  }
  ASSERT_EQ(artifacts.size(), 2u);
  EXPECT_EQ(artifacts[0].size(), 2u) << artifacts[0].dump(1);
  EXPECT_EQ(artifacts[0], artifacts[1]) << "artifact digests";
  EXPECT_EQ(argvs[0], argvs[1]) << "the VM's QEMU command line";
  EXPECT_NE(argvs[0].find("hyper.ip=10.77.0."), std::string::npos) << argvs[0];
  EXPECT_NE(argvs[0].find("<state>/store/sha256/"), std::string::npos) << argvs[0];
  EXPECT_EQ(rulesets[0], rulesets[1]) << "the nftables ruleset";
  EXPECT_NE(rulesets[0].find("table inet hyper"), std::string::npos) << rulesets[0];
  EXPECT_NE(rulesets[0].find("table bridge hyper"), std::string::npos) << rulesets[0];
}

}  // namespace
}  // namespace hyper::test
