// File sources from the git source: a snapshot's tree reads them from the commit (at the
// sub-path's manifests, relative to each manifest's directory), each revision its own bytes,
// and refuses a symlink (mode 120000), a directory, a missing or too big blob with the field's
// place. Real repositories made with the git command line in a temporary directory.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "providers/builtin.h"
#include "reconciler/loader.h"
#include "source/git_source.h"
#include "tests/integration/git_util.h"

namespace hyper {
namespace {
namespace fs = std::filesystem;
using controller::GitSource;
using controller::Snapshot;

// A Build whose /init comes from `source`: the field is at line 10, column 9.
std::string buildManifest(const std::string& source) {
  return "apiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: web}\nspec:\n"
         "  type: initramfs\n  initramfs:\n    busybox: false\n    files:\n"
         "      - path: /init\n        source: " +
         source + "\n";
}

class GitFileSourcesTest : public ::testing::Test {
 public:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-gitfiles-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    bare_ = root_ + "/remote.git";
    work_ = root_ + "/work";
    test::runGit({"init", "--quiet", "--bare", "-b", "main", bare_});
    test::runGit({"init", "--quiet", "-b", "main", work_});
    test::runGit({"-C", work_, "remote", "add", "origin", bare_});
    auto kinds = providers::builtinKinds();
    ASSERT_TRUE(kinds.isOk()) << kinds.status().message();
    kinds_ = *kinds;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void write(const std::string& rel, const std::string& content) {
    fs::path p = fs::path(work_) / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  }
  void symlink(const std::string& target, const std::string& rel) {
    fs::create_directories((fs::path(work_) / rel).parent_path());
    fs::create_symlink(target, fs::path(work_) / rel);
  }
  void commitAndPush() {
    test::runGit({"-C", work_, "add", "-A"});
    test::runGit({"-C", work_, "commit", "--quiet", "-m", "change"});
    test::runGit({"-C", work_, "push", "--quiet", "origin", "HEAD:refs/heads/main"});
  }
  std::unique_ptr<GitSource> open(const std::string& path) {
    auto src = GitSource::open({bare_, "main", path, root_ + "/cache"});
    EXPECT_TRUE(src.isOk()) << src.status().message();
    return src.isOk() ? std::move(src).value() : nullptr;
  }
  Snapshot fetch(GitSource& src) {
    auto s = src.fetch();
    EXPECT_TRUE(s.isOk()) << s.status().message();
    return s.isOk() ? std::move(s).value() : Snapshot{};
  }
  LoadResult load(const Snapshot& s, LoaderLimits limits = LoaderLimits{}) {
    EXPECT_NE(s.tree, nullptr);
    EXPECT_FALSE(s.revisionFromLoader) << "the commit names a git revision";
    ManifestLoader loader(kinds_->schemas(), limits, kinds_->fileSources());
    return loader.load(s.files, s.tree.get());
  }

  std::string root_, bare_, work_;
  std::shared_ptr<const KindRegistry> kinds_;
};

TEST_F(GitFileSourcesTest, EachCommitReadsItsOwnBytesBelowTheManifestsDirectory) {
  write("envs/host1/build.yaml", buildManifest("web/init.sh"));
  write("envs/host1/web/init.sh", "#!/bin/sh\necho one\n");
  write("web/init.sh", "the repository top's, which the manifest does not name\n");
  commitAndPush();
  auto src = open("envs/host1");
  ASSERT_TRUE(src);
  Snapshot one = fetch(*src);
  ASSERT_EQ(one.files.size(), 1u);
  EXPECT_EQ(one.files[0].path, "envs/host1/build.yaml");

  // Only the file changes.
  write("envs/host1/web/init.sh", "#!/bin/sh\necho two\n");
  commitAndPush();
  ASSERT_TRUE(*src->changed());
  Snapshot two = fetch(*src);
  EXPECT_NE(two.revision, one.revision);

  LoadResult r2 = load(two);
  ASSERT_FALSE(r2.diagnostics.hasErrors()) << r2.diagnostics.format();
  ASSERT_EQ(r2.objects.size(), 1u);
  EXPECT_EQ(r2.objects[0]->files.at("web/init.sh")->bytes, "#!/bin/sh\necho two\n");
  // The older snapshot still reads its own commit, after the source moved on.
  LoadResult r1 = load(one);
  ASSERT_FALSE(r1.diagnostics.hasErrors()) << r1.diagnostics.format();
  EXPECT_EQ(r1.objects[0]->files.at("web/init.sh")->bytes, "#!/bin/sh\necho one\n");
  EXPECT_NE(r1.revision, r2.revision);
}

struct GitRefusal {
  std::string name;
  std::string source;
  std::function<void(GitFileSourcesTest&)> setUp;  // adds to envs/host1 of the work tree
  std::string message;
  size_t maxSourceFileBytes = 16 << 20;
};

class GitFileSourceRefusalTest : public GitFileSourcesTest,
                                 public ::testing::WithParamInterface<GitRefusal> {};

TEST_P(GitFileSourceRefusalTest, IsAnErrorAtTheFieldAndNothingIsLoaded) {
  const auto& c = GetParam();
  write("envs/host1/build.yaml", buildManifest(c.source));
  write("envs/secret", "outside the manifest's directory\n");
  c.setUp(*this);
  commitAndPush();
  auto src = open("envs/host1");
  ASSERT_TRUE(src);
  LoaderLimits limits;
  limits.maxSourceFileBytes = c.maxSourceFileBytes;
  LoadResult r = load(fetch(*src), limits);
  const std::string text = r.diagnostics.format();
  EXPECT_NE(text.find("envs/host1/build.yaml:10:9: error: Build/web: "
                      "spec.initramfs.files[0].source: "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(c.message), std::string::npos) << text;
  EXPECT_TRUE(r.objects.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GitFileSourceRefusalTest,
    ::testing::Values(
        GitRefusal{"UpAndOut", "../secret", [](GitFileSourcesTest&) {},
                   "\"../secret\" leaves the manifest's directory"},
        GitRefusal{"Missing", "web/init.sh", [](GitFileSourcesTest&) {},
                   "\"web/init.sh\" not found: envs/host1/web does not exist"},
        GitRefusal{"SymlinkedFile", "init.sh",
                   [](GitFileSourcesTest& t) { t.symlink("../secret", "envs/host1/init.sh"); },
                   "\"init.sh\" reaches a symlink (envs/host1/init.sh)"},
        GitRefusal{"SymlinkedDirectory", "web/init.sh",
                   [](GitFileSourcesTest& t) {
                     t.write("envs/host1/real/init.sh", "x");
                     t.symlink("real", "envs/host1/web");
                   },
                   "\"web/init.sh\" reaches a symlink (envs/host1/web)"},
        GitRefusal{"ADirectory", "web",
                   [](GitFileSourcesTest& t) { t.write("envs/host1/web/init.sh", "x"); },
                   "\"web\" is not a regular file: envs/host1/web is a directory"},
        GitRefusal{"OverTheLimit", "big",
                   [](GitFileSourcesTest& t) { t.write("envs/host1/big", std::string(11, 'b')); },
                   "limit maxSourceFileBytes exceeded: \"big\" (envs/host1/big) has 11 bytes", 10}),
    [](const ::testing::TestParamInfo<GitRefusal>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper
