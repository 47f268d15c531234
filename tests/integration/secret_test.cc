// The Secret kind through the real hyperctl: keys made on first use, a value sealed from standard
// input (locally and with the public key alone), applied, changed (named, never shown), a key
// rotation that keeps old values opening, a value moved to another Secret refused at its line,
// and a canary value found nowhere in the state directory or in anything hyperctl printed.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/integration/hyperctl_util.h"

namespace hyper::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCanary = "canary-5b1d0e77-secret-value";

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class SecretCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = TempDir::create("secret");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    state_ = tmp_->path() + "/state";
  }
  CommandRun hyperctl(const std::vector<std::string>& args) {
    CommandRun r = runHyperctl(state_, args);
    printed_ += r.out + r.err;
    return r;
  }
  // `printf %s VALUE | hyperctl --state-dir STATE args...`
  CommandRun sealed(const std::string& value, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        "sh", "-c", "printf %s \"$0\" | \"$@\"", value, HYPERCTL_PATH, "--state-dir", state_};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandRun r = runArgv(argv);
    printed_ += r.err;  // stdout is the sealed manifest
    return r;
  }
  // Every file under the state directory that holds `needle`.
  std::vector<std::string> filesHolding(const std::string& needle) {
    std::vector<std::string> hits;
    for (const auto& e : fs::recursive_directory_iterator(state_)) {
      if (!e.is_regular_file()) {
        continue;
      }
      std::ifstream in(e.path(), std::ios::binary);
      std::stringstream bytes;
      bytes << in.rdbuf();
      if (contains(bytes.str(), needle)) {
        hits.push_back(e.path().string());
      }
    }
    return hits;
  }
  std::unique_ptr<TempDir> tmp_;
  std::string state_;
  std::string printed_;
};

TEST_F(SecretCommandTest, SealApplyChangeRotateAndTheValueIsNowhere) {
  CommandRun keys = hyperctl({"keys"});
  ASSERT_EQ(keys.exitCode, 0) << keys.describe();
  ASSERT_TRUE(contains(keys.out, ", active)")) << keys.out;
  // The public key alone seals (what someone without access to the host does).
  std::string pub = keys.out.substr(keys.out.find("x25519:"));
  pub = pub.substr(0, pub.find(' '));
  ASSERT_TRUE(tmp_->write("seal.pub", pub + "\n").isOk());

  CommandRun first =
      sealed(std::string(kCanary) + "\n", {"secret", "seal", "--name", "db", "--key", "password"});
  ASSERT_EQ(first.exitCode, 0) << first.describe();
  EXPECT_TRUE(contains(first.out,
                       "kind: Secret\nmetadata: {name: db}\nspec:\n  sealed:\n"
                       "    password: \"hyper:v1:"))
      << first.out;
  EXPECT_FALSE(contains(first.out, kCanary));
  ASSERT_TRUE(tmp_->write("v1/db.yaml", first.out).isOk());
  CommandRun apply = hyperctl({"apply", "-f", tmp_->path() + "/v1"});
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();
  CommandRun get = hyperctl({"get", "secrets"});
  EXPECT_TRUE(contains(get.out, "db     1        ")) << get.out;
  EXPECT_EQ(hyperctl({"diff", "-f", tmp_->path() + "/v1"}).exitCode, 0);

  // Sealed again with the public key file: the same value, another text, no change; a new value
  // is named and not shown.
  CommandRun again = sealed(kCanary, {"secret", "seal", "--name", "db", "--key", "password",
                                      "--pubkey", tmp_->path() + "/seal.pub"});
  ASSERT_EQ(again.exitCode, 0) << again.describe();
  ASSERT_NE(again.out, first.out);
  ASSERT_TRUE(tmp_->write("v2/db.yaml", again.out).isOk());
  EXPECT_EQ(hyperctl({"diff", "-f", tmp_->path() + "/v2"}).exitCode, 0) << "a reseal is no change";
  CommandRun next = sealed(std::string(kCanary) + "-next",
                           {"secret", "seal", "--name", "db", "--key", "password"});
  ASSERT_TRUE(tmp_->write("v3/db.yaml", next.out).isOk());
  CommandRun diff = hyperctl({"diff", "-f", tmp_->path() + "/v3", "-o", "json"});
  EXPECT_EQ(diff.exitCode, 2) << diff.describe();
  EXPECT_TRUE(contains(diff.out, "(sealed value changed)")) << diff.out;
  ASSERT_EQ(hyperctl({"apply", "-f", tmp_->path() + "/v3"}).exitCode, 0);

  // A rotation: new values go to the new key, the applied ones still open.
  CommandRun rotate = hyperctl({"keys", "rotate"});
  ASSERT_EQ(rotate.exitCode, 0) << rotate.describe();
  EXPECT_TRUE(contains(rotate.out, "new active sealing key ")) << rotate.out;
  EXPECT_EQ(hyperctl({"diff", "-f", tmp_->path() + "/v3"}).exitCode, 0);

  // Moved to another Secret: refused with its file, line and field; nothing applied.
  std::string moved = next.out;
  moved.replace(moved.find("name: db"), 8, "name: cache");
  ASSERT_TRUE(tmp_->write("moved/cache.yaml", moved).isOk());
  CommandRun refused = hyperctl({"apply", "-f", tmp_->path() + "/moved"});
  EXPECT_EQ(refused.exitCode, 1);
  EXPECT_TRUE(contains(refused.err, tmp_->path() + "/moved/cache.yaml:6:5: error: Secret/cache: "
                                                   "spec.sealed.password: does not open as "
                                                   "Secret/cache/password"))
      << refused.err;
  EXPECT_EQ(hyperctl({"get", "secrets", "cache"}).exitCode, 1) << "nothing applied";

  // The old key cannot be retired while the applied value is sealed to it; resealed (the file
  // rewritten in place, the value the same) and applied, it can.
  const std::string oldId = next.out.substr(next.out.find("hyper:v1:") + 9, 16);
  CommandRun inUse = hyperctl({"keys", "retire", oldId});
  EXPECT_EQ(inUse.exitCode, 1);
  EXPECT_TRUE(contains(inUse.err, "still opens 1 applied value(s) (Secret/db password)"))
      << inUse.err;
  CommandRun reseal = hyperctl({"secret", "reseal", "-f", tmp_->path() + "/v3"});
  ASSERT_EQ(reseal.exitCode, 0) << reseal.describe();
  EXPECT_TRUE(contains(reseal.out, "resealed Secret/db password: key " + oldId + " -> "))
      << reseal.out;
  std::ifstream in(tmp_->path() + "/v3/db.yaml");
  std::stringstream resealedFile;
  resealedFile << in.rdbuf();
  EXPECT_FALSE(contains(resealedFile.str(), oldId)) << resealedFile.str();
  EXPECT_TRUE(contains(resealedFile.str(), "kind: Secret\nmetadata: {name: db}"));
  CommandRun resealPlan = hyperctl({"apply", "-f", tmp_->path() + "/v3"});
  ASSERT_EQ(resealPlan.exitCode, 0) << resealPlan.describe();
  EXPECT_TRUE(contains(resealPlan.out, "resealed to another key (the values are the same)"))
      << resealPlan.out;
  CommandRun retired = hyperctl({"keys", "retire", oldId});
  EXPECT_EQ(retired.exitCode, 0) << retired.describe();
  EXPECT_FALSE(contains(hyperctl({"keys"}).out, oldId));
  EXPECT_EQ(hyperctl({"diff", "-f", tmp_->path() + "/v3"}).exitCode, 0);
  // A value sealed only to the retired key no longer opens.
  CommandRun gone = hyperctl({"diff", "-f", tmp_->path() + "/v1"});
  EXPECT_EQ(gone.exitCode, 1);
  EXPECT_TRUE(contains(gone.err, "which this host does not have")) << gone.err;

  // Bad input to seal itself.
  EXPECT_EQ(sealed("x", {"secret", "seal", "--name", "Not_A_Label", "--key", "k"}).exitCode, 1);
  CommandRun badPub = sealed("x", {"secret", "seal", "--name", "db", "--key", "k", "--pubkey",
                                   tmp_->path() + "/v1/db.yaml"});
  EXPECT_EQ(badPub.exitCode, 1);
  EXPECT_TRUE(contains(badPub.err, "not a sealing public key")) << badPub.err;

  // The canary: in no file of the state dir, in nothing hyperctl printed.
  EXPECT_EQ(filesHolding(kCanary), std::vector<std::string>{});
  EXPECT_FALSE(contains(printed_, kCanary)) << printed_;
}

}  // namespace
}  // namespace hyper::test

namespace hyper::test {
namespace {

// `secret seal -f FILE`: a new file gets the manifest; the Secret in an existing one gets a value
// added or replaced, its comments, other values and other documents kept; a file where the value
// cannot be placed safely (flow style, no such Secret) is left as it was.
TEST_F(SecretCommandTest, SealIntoAFileMergesIntoItsSecret) {
  const std::string file = tmp_->path() + "/m/db.yaml";
  fs::create_directories(tmp_->path() + "/m");
  auto seal = [&](const std::string& value, const std::string& name, const std::string& key,
                  const std::string& into) {
    return sealed(value, {"secret", "seal", "--name", name, "--key", key, "-f", into});
  };
  auto text = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  CommandRun made = seal("pw-1", "db", "password", file);
  ASSERT_EQ(made.exitCode, 0) << made.describe();
  EXPECT_EQ(made.out, "wrote Secret/db (password) to " + file + "\n");
  // Beside it: a comment and another document, which stay.
  ASSERT_TRUE(tmp_->write("m/db.yaml", "# the database\n" + text(file) +
                                           "---\napiVersion: hyper.dev/v1alpha1\nkind: Secret\n"
                                           "metadata: {name: other}\nspec:\n  fromFile: {a: /x}\n")
                  .isOk());
  const std::string first = text(file);

  CommandRun added = seal("user-1", "db", "user", file);
  ASSERT_EQ(added.exitCode, 0) << added.describe();
  EXPECT_EQ(added.out, "added user in Secret/db in " + file + "\n");
  CommandRun replaced = seal(std::string(kCanary), "db", "password", file);
  ASSERT_EQ(replaced.exitCode, 0) << replaced.describe();
  EXPECT_EQ(replaced.out, "replaced password in Secret/db in " + file + "\n");
  const std::string merged = text(file);
  EXPECT_EQ(merged.rfind("# the database\n", 0), 0u) << merged;
  EXPECT_TRUE(contains(merged, "metadata: {name: other}\nspec:\n  fromFile: {a: /x}\n")) << merged;
  EXPECT_NE(merged, first);
  EXPECT_FALSE(contains(merged, kCanary));
  // Both values are there and open: applied (without the other document, whose file is not on
  // this host), the Secret has two.
  ASSERT_TRUE(tmp_->write("m/db.yaml", merged.substr(0, merged.find("---\n"))).isOk());
  CommandRun apply = hyperctl({"apply", "-f", file});
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();
  EXPECT_TRUE(contains(hyperctl({"get", "secrets"}).out, "db     2        "));

  // Where it cannot be placed, nothing is written.
  ASSERT_TRUE(tmp_->write("m/flow.yaml",
                          "apiVersion: hyper.dev/v1alpha1\nkind: Secret\nmetadata: {name: f}\n"
                          "spec: {fromFile: {a: /x}}\n")
                  .isOk());
  const std::string flow = text(tmp_->path() + "/m/flow.yaml");
  CommandRun refused = seal("v", "f", "b", tmp_->path() + "/m/flow.yaml");
  EXPECT_EQ(refused.exitCode, 1);
  EXPECT_TRUE(contains(refused.err, "spec is not a block mapping; nothing was written"))
      << refused.err;
  EXPECT_EQ(text(tmp_->path() + "/m/flow.yaml"), flow);
  CommandRun noSuch = seal("v", "nope", "b", file);
  EXPECT_EQ(noSuch.exitCode, 1);
  EXPECT_TRUE(contains(noSuch.err, "has no Secret nope")) << noSuch.err;
  EXPECT_FALSE(contains(printed_, kCanary));
  EXPECT_TRUE(filesHolding(kCanary).empty());
}

}  // namespace
}  // namespace hyper::test
