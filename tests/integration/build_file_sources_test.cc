// A Build with a file source through the real hyperctl: apply reads the file relative to the
// manifest, verify holds the provenance (the file's digest is an input), an unchanged file is no
// change, a changed file is an input that moved and a new image with its bytes, and a symlink is
// refused with the field's place. No network namespace: a Build touches only the state dir.

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/integration/hyperctl_util.h"

namespace hyper {
namespace {
using test::CommandRun;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

const char* kManifest =
    "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: web}\nspec:\n"
    "  type: initramfs\n  initramfs:\n    busybox: false\n    files:\n"
    "      - path: /init\n        mode: \"0755\"\n        source: web/init.sh\n";

class BuildFileSourcesCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = test::TempDir::create("build-files");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    ASSERT_TRUE(tmp_->write("src/envs/build.yaml", kManifest).isOk());
    ASSERT_TRUE(tmp_->write("src/envs/web/init.sh", "#!/bin/sh\necho one\n").isOk());
  }
  CommandRun hyperctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {HYPERCTL_PATH, "--state-dir", tmp_->path() + "/state"};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::runArgv(argv);
  }
  // The bytes of /init in the Build's artifact, as applied.
  std::string appliedInit() {
    CommandRun get = hyperctl({"get", "builds", "web", "-o", "json"});
    EXPECT_EQ(get.exitCode, 0) << get.describe();
    std::string digest;
    auto j = nlohmann::json::parse(get.out, nullptr, false);
    auto find = [&](const nlohmann::json& v, auto&& self) -> void {
      if (v.is_string() && v.get<std::string>().rfind("sha256:", 0) == 0 && digest.empty() &&
          std::filesystem::exists(tmp_->path() + "/state/store/sha256/" +
                                  v.get<std::string>().substr(7))) {
        digest = v.get<std::string>().substr(7);
      }
      if (v.is_structured()) {
        for (const auto& item : v) {
          self(item, self);
        }
      }
    };
    find(j, find);
    EXPECT_FALSE(digest.empty()) << get.out;
    const std::string unpack = tmp_->path() + "/unpack";
    std::filesystem::remove_all(unpack);
    std::filesystem::create_directories(unpack);
    CommandRun cat = test::runArgv(
        {"sh", "-c", "cd \"$1\" && gzip -dc \"$2\" | cpio -i --quiet init && cat init", "sh",
         unpack, tmp_->path() + "/state/store/sha256/" + digest});
    EXPECT_EQ(cat.exitCode, 0) << cat.describe();
    return cat.out;
  }
  std::unique_ptr<test::TempDir> tmp_;
};

TEST_F(BuildFileSourcesCommandTest, ApplyVerifyAndAChangedFileIsAnInputThatMoved) {
  const std::string src = tmp_->path() + "/src";
  CommandRun apply = hyperctl({"apply", "-f", src});
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();
  EXPECT_EQ(appliedInit(), "#!/bin/sh\necho one\n");
  CommandRun verify = hyperctl({"verify", "build/web"});
  EXPECT_EQ(verify.exitCode, 0) << verify.describe();
  CommandRun rebuild = hyperctl({"rebuild", "-f", src});
  EXPECT_EQ(rebuild.exitCode, 0) << rebuild.describe();
  EXPECT_TRUE(contains(rebuild.out, "same       Build/web initrd sha256:")) << rebuild.out;
  CommandRun same = hyperctl({"diff", "-f", src});
  EXPECT_EQ(same.exitCode, 0) << same.describe();

  // Only the file changes: the diff names it, apply builds the new bytes.
  ASSERT_TRUE(tmp_->write("src/envs/web/init.sh", "#!/bin/sh\necho two\n").isOk());
  CommandRun diff = hyperctl({"diff", "-f", src});
  EXPECT_EQ(diff.exitCode, 2) << diff.describe();
  EXPECT_TRUE(contains(diff.out, "an input changed (inputs.source:web/init.sh)")) << diff.out;
  ASSERT_EQ(hyperctl({"apply", "-f", src}).exitCode, 0);
  EXPECT_EQ(appliedInit(), "#!/bin/sh\necho two\n");
  EXPECT_EQ(hyperctl({"verify", "build/web"}).exitCode, 0);

  // The manifest file given alone: its directory is where the source is found.
  CommandRun single = hyperctl({"diff", "-f", src + "/envs/build.yaml"});
  EXPECT_EQ(single.exitCode, 0) << single.describe();
}

TEST_F(BuildFileSourcesCommandTest, ASymlinkOrAPathOutOfTheDirectoryIsRefusedAndNothingApplied) {
  const std::string src = tmp_->path() + "/src";
  std::filesystem::rename(src + "/envs/web/init.sh", src + "/envs/web/real.sh");
  std::filesystem::create_symlink("real.sh", src + "/envs/web/init.sh");
  CommandRun linked = hyperctl({"apply", "-f", src});
  EXPECT_EQ(linked.exitCode, 1) << linked.describe();
  EXPECT_TRUE(contains(linked.err, src + "/envs/build.yaml:11:9: error: Build/web: "
                                         "spec.initramfs.files[0].source: \"web/init.sh\" "
                                         "reaches a symlink ("))
      << linked.err;
  EXPECT_FALSE(std::filesystem::exists(tmp_->path() + "/state/store")) << "something was built";

  std::string escaping = kManifest;
  escaping.replace(escaping.find("web/init.sh"), 11, "../outside.sh");
  ASSERT_TRUE(tmp_->write("src/envs/build.yaml", escaping).isOk());
  ASSERT_TRUE(tmp_->write("src/outside.sh", "#!/bin/sh\n").isOk());
  CommandRun validate = hyperctl({"validate", "-f", src});
  EXPECT_EQ(validate.exitCode, 1) << validate.describe();
  EXPECT_TRUE(contains(validate.err,
                       "spec.initramfs.files[0].source: \"../outside.sh\" leaves "
                       "the manifest's directory: expected a path inside it (no "
                       "\"..\", not absolute, no symlinks)"))
      << validate.err;
}

}  // namespace
}  // namespace hyper
