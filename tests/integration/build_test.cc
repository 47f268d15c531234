// The Build kind through the real hyperctl: apply, get, logs, keys, verify, gc, and the same
// digest from two state directories under different umasks and time zones. Needs no network
// namespace (a build touches only the state directory) but runs busybox's and gzip's real bytes.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "tests/integration/hyperctl_util.h"

namespace hyper::test {
namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string initrd(const std::string& motd) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: web-initrd}\nspec:\n"
         "  type: initramfs\n  initramfs:\n    files:\n"
         "      - {path: /init, mode: \"0755\", content: \"#!/bin/sh\\necho hi\\n\"}\n"
         "      - {path: /etc/motd, content: \"" +
         motd + "\"}\n";
}

class BuildCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists("/bin/busybox")) {
      GTEST_SKIP() << "needs Debian's busybox-static (scripts/deps.sh installs it)";
    }
    auto tmp = TempDir::create("build");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    ASSERT_TRUE(tmp_->write("src/builds.yaml", initrd("one")).isOk());
  }
  // hyperctl with a state dir of the test's, optionally under another umask and TZ (through sh,
  // which only sets those and execs it).
  CommandRun hyperctl(const std::string& state, std::vector<std::string> args,
                      const std::string& umask = "", const std::string& tz = "") {
    return runHyperctl(tmp_->path() + "/" + state, args, {umask, tz, {}, {}});
  }
  std::unique_ptr<TempDir> tmp_;
};

TEST_F(BuildCommandTest, ApplyGetLogsVerifyAndGc) {
  const std::string src = tmp_->path() + "/src";
  CommandRun apply = hyperctl("state", {"apply", "-f", src});
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();
  CommandRun get = hyperctl("state", {"get", "builds", "-o", "wide"});
  ASSERT_EQ(get.exitCode, 0) << get.describe();
  for (const char* column : {"TYPE", "KEY", "DIGEST", "CACHED", "SIZE", "initramfs", "false"}) {
    EXPECT_TRUE(contains(get.out, column)) << column << "\n" << get.out;
  }
  CommandRun logs = hyperctl("state", {"logs", "build/web-initrd"});
  EXPECT_EQ(logs.exitCode, 0) << logs.describe();
  EXPECT_TRUE(contains(logs.out, "initrd sha256:")) << logs.out;
  EXPECT_EQ(hyperctl("state", {"diff", "-f", src}).exitCode, 0) << "applied: nothing to do";

  CommandRun keys = hyperctl("state", {"keys"});
  EXPECT_EQ(keys.exitCode, 0) << keys.describe();
  EXPECT_TRUE(contains(keys.out, "ed25519:")) << keys.out;
  CommandRun verify = hyperctl("state", {"verify", "build/web-initrd"});
  EXPECT_EQ(verify.exitCode, 0) << verify.describe();
  EXPECT_TRUE(contains(verify.out, "ok      initrd sha256:")) << verify.out;

  // A new spec: a second artifact. gc keeps both while the last revisions use them, and drops
  // the old one when asked to keep no revision.
  ASSERT_TRUE(tmp_->write("src/builds.yaml", initrd("two")).isOk());
  ASSERT_EQ(hyperctl("state", {"apply", "-f", src}).exitCode, 0);
  const std::string store = tmp_->path() + "/state/store/sha256";
  auto count = [&] {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(store)) {
      ++n;
    }
    return n;
  };
  ASSERT_EQ(count(), 2u);
  CommandRun keep = hyperctl("state", {"gc"});
  EXPECT_EQ(keep.exitCode, 0) << keep.describe();
  EXPECT_EQ(count(), 2u) << keep.out;
  CommandRun drop = hyperctl("state", {"gc", "--keep-revisions", "0"});
  EXPECT_EQ(drop.exitCode, 0) << drop.describe();
  EXPECT_TRUE(contains(drop.out, "Removed 1 artifacts")) << drop.out;
  EXPECT_EQ(count(), 1u);
  EXPECT_EQ(hyperctl("state", {"verify", "build/web-initrd"}).exitCode, 0);

  // The artifact changed on disk: verify says so and fails.
  std::string artifact = std::filesystem::directory_iterator(store)->path().string();
  ::chmod(artifact.c_str(), 0644);
  { std::ofstream(artifact, std::ios::app) << "tampered"; }
  CommandRun tampered = hyperctl("state", {"verify", "build/web-initrd"});
  EXPECT_EQ(tampered.exitCode, 1) << tampered.describe();
  EXPECT_TRUE(contains(tampered.out, "changed on disk")) << tampered.out;
}

// hyperctl rebuild: the Builds made again without the cache, compared with what the revision
// recorded; a moved input is named. A Secret beside them (sealed to the host's key, which the
// scratch state dir has not) is no obstacle: only reproducible kinds are planned.
TEST_F(BuildCommandTest, RebuildProvesTheDigestsOrNamesTheInputThatMoved) {
  const std::string src = tmp_->path() + "/src";
  CommandRun seal = runArgv({"sh", "-c", "printf %s \"$0\" | \"$@\"", "a-value", HYPERCTL_PATH,
                             "--state-dir", tmp_->path() + "/state", "secret", "seal", "--name",
                             "db", "--key", "password", "-f", src + "/db.yaml"});
  ASSERT_EQ(seal.exitCode, 0) << seal.describe();
  ASSERT_EQ(hyperctl("state", {"apply", "-f", src}).exitCode, 0);
  CommandRun same = hyperctl("state", {"rebuild", "-f", src});
  EXPECT_EQ(same.exitCode, 0) << same.describe();
  EXPECT_TRUE(contains(same.out, "same       Build/web-initrd initrd sha256:")) << same.out;

  // Another busybox (the provider's setting, here as a flag): the input moved, the bytes differ.
  std::filesystem::copy_file("/bin/busybox", tmp_->path() + "/busybox");
  { std::ofstream(tmp_->path() + "/busybox", std::ios::app) << "another build"; }
  CommandRun moved =
      hyperctl("state", {"--build-busybox", tmp_->path() + "/busybox", "rebuild", "-f", src});
  EXPECT_EQ(moved.exitCode, 2) << moved.describe();
  EXPECT_TRUE(contains(moved.out, "different  Build/web-initrd initrd: recorded sha256:"))
      << moved.out;
  EXPECT_TRUE(contains(moved.out, "input busybox moved")) << moved.out;

  CommandRun unknown = hyperctl("state", {"rebuild", "-f", src, "--revision", "dir:nope"});
  EXPECT_EQ(unknown.exitCode, 1) << unknown.describe();
  EXPECT_TRUE(contains(unknown.err, "no such revision")) << unknown.err;
  EXPECT_EQ(hyperctl("state", {"diff", "-f", src}).exitCode, 0) << "the state was not touched";
}

// A revision's content applied again (a revert, an old commit, a directory put back) takes the
// artifacts it was applied with, though an input (busybox here; Debian's lists in life) moved
// since: no build, the same digest. New content resolves the inputs afresh.
TEST_F(BuildCommandTest, ContentAppliedAgainTakesItsArtifactsThoughAnInputMoved) {
  const std::string busybox = tmp_->path() + "/busybox";
  std::filesystem::copy_file("/bin/busybox", busybox);
  ASSERT_TRUE(tmp_->write("v2/builds.yaml", initrd("two")).isOk());
  const std::string v1 = tmp_->path() + "/src";
  const std::string v2 = tmp_->path() + "/v2";
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--build-busybox", busybox});
    return hyperctl("state", args);
  };
  auto digest = [&] {
    CommandRun verify = hyperctl("state", {"verify", "build/web-initrd"});
    size_t at = verify.out.find("sha256:");
    return at == std::string::npos ? verify.describe() : verify.out.substr(at, 71);
  };
  ASSERT_EQ(run({"apply", "-f", v1}).exitCode, 0);
  const std::string first = digest();
  ASSERT_EQ(run({"apply", "-f", v2}).exitCode, 0);
  const std::string second = digest();
  ASSERT_NE(first, second);

  std::ofstream(busybox, std::ios::app) << "a newer busybox";
  CommandRun steady = run({"diff", "-f", v2});
  EXPECT_TRUE(contains(steady.out, "No changes")) << "v2 keeps its artifacts\n"
                                                  << steady.describe();

  CommandRun back = run({"apply", "-f", v1});
  ASSERT_EQ(back.exitCode, 0) << back.describe();
  EXPECT_TRUE(contains(back.out, "this content was applied before with key ")) << back.out;
  EXPECT_EQ(digest(), first);
  CommandRun log = hyperctl("state", {"logs", "build/web-initrd"});
  EXPECT_TRUE(contains(log.out, "apply: cached")) << log.out;

  // New content (v1 with a label) builds with the busybox it finds now.
  ASSERT_TRUE(tmp_->write("v3/builds.yaml",
                          std::string(initrd("one"))
                              .replace(initrd("one").find("metadata: {name: web-initrd}"),
                                       std::string("metadata: {name: web-initrd}").size(),
                                       "metadata: {name: web-initrd, labels: {tier: web}}"))
                  .isOk());
  CommandRun fresh = run({"apply", "-f", tmp_->path() + "/v3"});
  ASSERT_EQ(fresh.exitCode, 0) << fresh.describe();
  EXPECT_TRUE(contains(fresh.out, "an input changed (inputs.busybox)")) << fresh.out;
  EXPECT_NE(digest(), first);
}

TEST_F(BuildCommandTest, TheSameDigestFromAnotherStateDirUmaskAndTimeZone) {
  const std::string src = tmp_->path() + "/src";
  ASSERT_EQ(hyperctl("a", {"apply", "-f", src}, "022", "UTC").exitCode, 0);
  CommandRun b = hyperctl("b", {"apply", "-f", src}, "077", "Pacific/Kiritimati");
  ASSERT_EQ(b.exitCode, 0) << b.describe();
  auto digests = [&](const std::string& state) {
    std::vector<std::string> out;
    for (auto& e :
         std::filesystem::directory_iterator(tmp_->path() + "/" + state + "/store/sha256")) {
      out.push_back(e.path().filename().string());
    }
    return out;
  };
  ASSERT_EQ(digests("a").size(), 1u);
  EXPECT_EQ(digests("a"), digests("b"));
}

// While hyperctl apply waits for a build it prints the build's steps, on a terminal only.
TEST_F(BuildCommandTest, ApplyPrintsBuildStepsOnATerminalOnly) {
  const std::string src = tmp_->path() + "/src";
  CommandRun plain = hyperctl("plain", {"apply", "-f", src});
  ASSERT_EQ(plain.exitCode, 0) << plain.describe();
  EXPECT_FALSE(contains(plain.err, "Build/web-initrd: ")) << plain.err;
  // script(1) gives hyperctl a pseudo-terminal; what it printed is in script's output.
  const std::string command =
      std::string(HYPERCTL_PATH) + " --state-dir " + tmp_->path() + "/tty apply -f " + src;
  CommandRun tty = runArgv({"script", "-qec", command, "/dev/null"});
  ASSERT_EQ(tty.exitCode, 0) << tty.describe();
  EXPECT_TRUE(contains(tty.out, "Build/web-initrd: build web-initrd (initramfs) key ")) << tty.out;
  EXPECT_TRUE(contains(tty.out, "Build/web-initrd: initrd sha256:")) << tty.out;
  EXPECT_TRUE(contains(tty.out, "Build/web-initrd: built in ")) << tty.out;
}

}  // namespace
}  // namespace hyper::test
