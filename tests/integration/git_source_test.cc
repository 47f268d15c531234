#include "source/git_source.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "host/command.h"
#include "tests/integration/git_util.h"

// The git source against real repositories made with the git command line in a temporary
// directory: a bare "remote" and a working clone that commits and pushes to it. No network: the
// remote is a local path or file:// URL, and the unreachable case uses a port that refuses.

namespace hyper::controller {
namespace {
namespace fs = std::filesystem;

const char* kNetwork =
    "apiVersion: hyper.dev/v1alpha1\n"
    "kind: Network\n"
    "metadata:\n"
    "  name: lab\n"
    "spec:\n"
    "  cidr: 10.77.0.0/24\n";

class GitSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hyper-gitsrc-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    bare_ = root_ + "/remote.git";
    work_ = root_ + "/work";
    git({"init", "--quiet", "--bare", "-b", "main", bare_});
    git({"init", "--quiet", "-b", "main", work_});
    git({"-C", work_, "remote", "add", "origin", bare_});
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::string git(const std::vector<std::string>& args) { return test::runGit(args); }

  // Writes the files (an empty content deletes), commits everything, returns the commit id.
  std::string commit(const std::map<std::string, std::string>& files,
                     const std::string& message = "change manifests") {
    for (const auto& [path, content] : files) {
      fs::path p = fs::path(work_) / path;
      if (content.empty()) {
        fs::remove(p);
        continue;
      }
      fs::create_directories(p.parent_path());
      std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    }
    git({"-C", work_, "add", "-A"});
    git({"-C", work_, "commit", "--quiet", "--allow-empty", "-m", message});
    return git({"-C", work_, "rev-parse", "HEAD"});
  }

  void push(const std::string& refspec = "HEAD:refs/heads/main") {
    git({"-C", work_, "push", "--quiet", "--force", "origin", refspec});
  }

  std::unique_ptr<GitSource> open(const std::string& location, const std::string& ref = "main",
                                  const std::string& path = "") {
    auto src = GitSource::open({location, ref, path, root_ + "/cache-" + std::to_string(++n_)});
    EXPECT_TRUE(src.isOk()) << src.status().message();
    return src.isOk() ? std::move(src).value() : nullptr;
  }

  Snapshot fetch(Source& src) {
    auto snap = src.fetch();
    EXPECT_TRUE(snap.isOk()) << snap.status().message();
    return snap.isOk() ? std::move(snap).value() : Snapshot{};
  }

  bool changed(Source& src) {
    auto c = src.changed();
    EXPECT_TRUE(c.isOk()) << c.status().message();
    return c.isOk() && *c;
  }

  static std::map<std::string, std::string> files(const Snapshot& s) {
    std::map<std::string, std::string> out;
    for (const auto& f : s.files) {
      out[f.path] = f.content;
    }
    return out;
  }

  std::string root_, bare_, work_;
  int n_ = 0;
};

TEST_F(GitSourceTest, FetchReturnsManifestsAtTheCommit) {
  std::string c1 = commit({{"net.yaml", kNetwork},
                           {"envs/host1/vm.yml", "a: 1\n"},
                           {"envs/host1/policy.json", "{}\n"},
                           {"envs/host1/README.md", "not a manifest\n"},
                           {".hidden.yaml", "a: 1\n"},
                           {".github/ci.yaml", "a: 1\n"}},
                          "add the lab network\n\nWith a body that is not the summary.");
  push();
  auto src = open(bare_);
  ASSERT_TRUE(src);
  EXPECT_TRUE(changed(*src));  // the first call, before any fetch
  Snapshot s = fetch(*src);
  EXPECT_EQ(s.revision, "git:" + c1);
  EXPECT_EQ(s.commit, c1);
  EXPECT_EQ(s.message, "add the lab network");
  std::vector<std::string> paths;
  for (const auto& f : s.files) {
    paths.push_back(f.path);
  }
  EXPECT_EQ(paths,
            (std::vector<std::string>{"envs/host1/policy.json", "envs/host1/vm.yml", "net.yaml"}));
  EXPECT_EQ(files(s)["net.yaml"], kNetwork);
  EXPECT_EQ(src->describe(), "git " + bare_ + " ref main");
}

TEST_F(GitSourceTest, APruneTrailerInTheCommitMessageIsReadForThatCommitOnly) {
  commit({{"net.yaml", kNetwork}}, "add the lab network");
  push();
  auto src = open(bare_);
  ASSERT_TRUE(src);
  EXPECT_FALSE(fetch(*src).allowPrune);
  // Not a trailer of its own: the near miss stays unapproved.
  commit({{"net.yaml", ""}}, "remove the lab\n\nNo Hyper-Allow-Prune: yes here");
  push();
  EXPECT_FALSE(fetch(*src).allowPrune);
  commit({{"other.yaml", "a: 1\n"}}, "remove the lab\n\nHyper-Allow-Prune: yes");
  push();
  Snapshot approved = fetch(*src);
  EXPECT_TRUE(approved.allowPrune);
  EXPECT_EQ(approved.message, "remove the lab");
  // The next commit is judged anew: the marker does not carry over.
  commit({{"other.yaml", "a: 2\n"}}, "change other");
  push();
  EXPECT_FALSE(fetch(*src).allowPrune);
}

TEST_F(GitSourceTest, ChangedOnlyAfterAPush) {
  std::string c1 = commit({{"net.yaml", kNetwork}});
  push();
  auto src = open(bare_);
  ASSERT_TRUE(src);
  EXPECT_EQ(fetch(*src).commit, c1);
  EXPECT_FALSE(changed(*src));
  // A commit that is not pushed changes nothing on the remote.
  std::string c2 = commit({{"net.yaml", std::string(kNetwork) + "  mtu: 1400\n"}}, "mtu");
  EXPECT_FALSE(changed(*src));
  push();
  EXPECT_TRUE(changed(*src));
  EXPECT_TRUE(changed(*src));  // still, until fetched
  Snapshot s = fetch(*src);
  EXPECT_EQ(s.commit, c2);
  EXPECT_EQ(s.message, "mtu");
  EXPECT_NE(files(s)["net.yaml"].find("mtu: 1400"), std::string::npos);
  EXPECT_FALSE(changed(*src));
  // Fetching again with nothing new gives the same snapshot.
  Snapshot again = fetch(*src);
  EXPECT_EQ(again.revision, s.revision);
  EXPECT_EQ(files(again), files(s));
}

TEST_F(GitSourceTest, SubPathKeepsRepositoryRelativePaths) {
  std::string c1 = commit({{"envs/host1/net.yaml", kNetwork},
                           {"envs/host1/deep/vm.yaml", "a: 1\n"},
                           {"envs/host2/net.yaml", "b: 2\n"},
                           {"top.yaml", "c: 3\n"}});
  push();
  auto src = open(bare_, "main", "envs/host1");
  ASSERT_TRUE(src);
  EXPECT_EQ(src->describe(), "git " + bare_ + " ref main path envs/host1");
  Snapshot s = fetch(*src);
  EXPECT_EQ(files(s), (std::map<std::string, std::string>{{"envs/host1/deep/vm.yaml", "a: 1\n"},
                                                          {"envs/host1/net.yaml", kNetwork}}));

  auto missing = open(bare_, "main", "envs/host9");
  ASSERT_TRUE(missing);
  auto r = missing->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(),
            "fetch " + bare_ + " ref main <- path envs/host9 not found in commit " + c1);
}

TEST_F(GitSourceTest, TagsFollowTheirTargetAndPinnedCommitsNeverMove) {
  std::string c1 = commit({{"net.yaml", kNetwork}}, "first");
  git({"-C", work_, "tag", "-a", "-m", "release 1", "v1"});
  git({"-C", work_, "tag", "light", c1});
  push();
  push("refs/tags/v1");
  push("refs/tags/light");
  std::string c2 = commit({{"net.yaml", std::string(kNetwork) + "# two\n"}}, "second");
  push();

  auto annotated = open(bare_, "v1");
  ASSERT_TRUE(annotated);
  Snapshot s = fetch(*annotated);
  EXPECT_EQ(s.commit, c1);
  EXPECT_EQ(s.message, "first");
  EXPECT_FALSE(changed(*annotated));
  auto light = open(bare_, "light");
  ASSERT_TRUE(light);
  EXPECT_EQ(fetch(*light).commit, c1);
  auto fullName = open(bare_, "refs/tags/v1");
  ASSERT_TRUE(fullName);
  EXPECT_EQ(fetch(*fullName).commit, c1);

  auto pinned = open(bare_, c1);
  ASSERT_TRUE(pinned);
  EXPECT_TRUE(changed(*pinned));
  EXPECT_EQ(fetch(*pinned).commit, c1);
  EXPECT_FALSE(changed(*pinned));

  // Moving the tag moves the source; the pinned commit stays.
  git({"-C", work_, "tag", "-f", "-a", "-m", "release 1 again", "v1", c2});
  push("refs/tags/v1");
  EXPECT_TRUE(changed(*annotated));
  EXPECT_EQ(fetch(*annotated).commit, c2);
  EXPECT_FALSE(changed(*pinned));
  EXPECT_EQ(fetch(*pinned).commit, c1);

  // A pinned commit the remote does not have is an error naming it.
  std::string unknown(40, 'a');
  auto ghost = open(bare_, unknown);
  ASSERT_TRUE(ghost);
  auto r = ghost->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("commit " + unknown + " not found"), std::string::npos)
      << r.status().message();
}

TEST_F(GitSourceTest, PinnedCommitOffAnyBranchTipIsFound) {
  std::string c1 = commit({{"net.yaml", kNetwork}}, "first");
  commit({{"net.yaml", std::string(kNetwork) + "# two\n"}}, "second");
  push();
  auto pinned = open(bare_, c1);
  ASSERT_TRUE(pinned);
  Snapshot s = fetch(*pinned);
  EXPECT_EQ(s.commit, c1);
  EXPECT_EQ(files(s)["net.yaml"], kNetwork);
}

TEST_F(GitSourceTest, ForcePushToAnOlderCommitIsFetched) {
  std::string c1 = commit({{"net.yaml", kNetwork}}, "first");
  push();
  std::string c2 =
      commit({{"net.yaml", std::string(kNetwork) + "# two\n"}, {"b.yaml", "b\n"}}, "second");
  push();
  auto src = open("file://" + bare_);
  ASSERT_TRUE(src);
  Snapshot first = fetch(*src);
  EXPECT_EQ(first.commit, c2);
  EXPECT_FALSE(first.rewound);

  push(c1 + ":refs/heads/main");
  EXPECT_TRUE(changed(*src));
  Snapshot s = fetch(*src);
  EXPECT_EQ(s.commit, c1);
  EXPECT_TRUE(s.rewound);  // c1 does not contain c2: reported as a force-push
  EXPECT_EQ(s.previousCommit, c2);
  EXPECT_EQ(files(s), (std::map<std::string, std::string>{{"net.yaml", kNetwork}}));
  EXPECT_FALSE(changed(*src));

  // And forward again, to a rewritten history the cache has never seen.
  git({"-C", work_, "reset", "--quiet", "--hard", c1});
  std::string c3 = commit({{"c.yaml", "c\n"}}, "rewritten");
  push();
  EXPECT_TRUE(changed(*src));
  Snapshot forward = fetch(*src);
  EXPECT_EQ(forward.commit, c3);
  EXPECT_FALSE(forward.rewound);  // c3 descends from c1: a normal push
}

TEST_F(GitSourceTest, MissingRefIsAClearError) {
  commit({{"net.yaml", kNetwork}});
  push();
  push("HEAD:refs/heads/feature");
  auto src = open(bare_, "nope");
  ASSERT_TRUE(src);
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(),
            "fetch " + bare_ + " ref nope <- no branch or tag \"nope\" on the remote");

  // A branch deleted after it was fetched: the poll reports it, and fetch keeps failing cleanly.
  auto feature = open(bare_, "feature");
  ASSERT_TRUE(feature);
  fetch(*feature);
  git({"-C", work_, "push", "--quiet", "origin", ":refs/heads/feature"});
  auto c = feature->changed();
  ASSERT_FALSE(c.isOk());
  EXPECT_EQ(c.status().message(),
            "ls-remote " + bare_ + " ref feature <- no branch or tag \"feature\" on the remote");
  EXPECT_FALSE(feature->fetch().isOk());
}

TEST_F(GitSourceTest, UnreachableRemotesAreErrors) {
  auto missing = open("file://" + root_ + "/does-not-exist.git");
  ASSERT_TRUE(missing);
  auto r = missing->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(
      r.status().message().rfind("fetch file://" + root_ + "/does-not-exist.git ref main <- ", 0),
      0u)
      << r.status().message();

  auto plain = open(root_ + "/nothing-here");
  ASSERT_TRUE(plain);
  r = plain->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(), "fetch " + root_ + "/nothing-here ref main <- no repository at " +
                                      root_ + "/nothing-here");
}

TEST_F(GitSourceTest, ARepositoryOwnedByAnotherUserIsExplained) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give the repository to another user";
  }
  auto safe = host::runCommand({"git", "config", "--get-all", "safe.directory"});
  if (safe.isOk() && !safe->out.empty()) {
    GTEST_SKIP() << "this machine's git config lists safe.directory entries";
  }
  commit({{"net.yaml", kNetwork}});
  push();
  auto chown = host::runChecked({"chown", "-R", "nobody", bare_});
  ASSERT_TRUE(chown.isOk()) << chown.status().message();
  auto src = open(bare_);
  ASSERT_TRUE(src);
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("owned by another user"), std::string::npos)
      << r.status().message();
}

TEST_F(GitSourceTest, CredentialsInTheUrlNeverAppear) {
  // Port 1 refuses connections: a quick, hermetic "unreachable".
  auto src = open("http://user:secret@127.0.0.1:1/x.git");
  ASSERT_TRUE(src);
  EXPECT_EQ(src->describe(), "git http://127.0.0.1:1/x.git ref main");
  EXPECT_TRUE(changed(*src));
  auto r = src->fetch();
  ASSERT_FALSE(r.isOk());
  const std::string& msg = r.status().message();
  EXPECT_EQ(msg.rfind("fetch http://127.0.0.1:1/x.git ref main <- ", 0), 0u) << msg;
  EXPECT_EQ(msg.find("secret"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("user:"), std::string::npos) << msg;
  // Nothing was written to the cache with the credentials either.
  for (const auto& entry :
       fs::recursive_directory_iterator(root_ + "/cache-" + std::to_string(n_))) {
    if (entry.is_regular_file()) {
      std::ifstream in(entry.path());
      std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_EQ(content.find("secret"), std::string::npos) << entry.path();
    }
  }
}

TEST_F(GitSourceTest, FileUrlAndPlainPathReadTheSameCommit) {
  std::string c1 = commit({{"net.yaml", kNetwork}});
  push();
  auto viaUrl = open("file://" + bare_);
  auto viaPath = open(bare_);
  ASSERT_TRUE(viaUrl && viaPath);
  Snapshot a = fetch(*viaUrl);
  Snapshot b = fetch(*viaPath);
  EXPECT_EQ(a.revision, "git:" + c1);
  EXPECT_EQ(b.revision, "git:" + c1);
  EXPECT_EQ(files(a), files(b));

  // openSource sees a bare repository path as git, not as a directory.
  auto viaOpen = openSource({bare_, "main", "", root_ + "/cache-open"});
  ASSERT_TRUE(viaOpen.isOk()) << viaOpen.status().message();
  auto s = (*viaOpen)->fetch();
  ASSERT_TRUE(s.isOk()) << s.status().message();
  EXPECT_EQ(s->revision, "git:" + c1);
}

TEST_F(GitSourceTest, AReopenedCacheFetchesIncrementally) {
  std::string c1 = commit({{"net.yaml", kNetwork}});
  push();
  std::string cache = root_ + "/shared-cache";
  {
    auto src = GitSource::open({bare_, "main", "", cache});
    ASSERT_TRUE(src.isOk()) << src.status().message();
    EXPECT_EQ(fetch(**src).commit, c1);
  }
  std::string c2 = commit({{"b.yaml", "b\n"}});
  push();
  auto src = GitSource::open({bare_, "main", "", cache});
  ASSERT_TRUE(src.isOk()) << src.status().message();
  Snapshot s = fetch(**src);
  EXPECT_EQ(s.commit, c2);
  EXPECT_EQ(s.files.size(), 2u);
  // The cache is a bare repository with the fetched branch.
  EXPECT_EQ(git({"--git-dir", cache, "rev-parse", "refs/heads/main"}), c2);

  // A cache directory that is something else is an error, not overwritten.
  std::string junk = root_ + "/junk";
  fs::create_directories(junk);
  std::ofstream(junk + "/file") << "x";
  auto bad = GitSource::open({bare_, "main", "", junk});
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find(junk), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace hyper::controller

namespace hyper::controller {
namespace {

// A pushed blob over LoaderLimits::maxFileBytes is never inflated into memory: the source hands
// the loader its size, and the loader reports it; a blob at the limit is read whole.
TEST_F(GitSourceTest, ABlobOverTheFileLimitIsSizedNotRead) {
  const size_t limit = LoaderLimits{}.maxFileBytes;
  std::string atLimit = std::string(kNetwork) + "#";
  atLimit += std::string(limit - atLimit.size(), 'x');
  std::string c1 = commit({{"a.yaml", atLimit}, {"b.yaml", atLimit + "x"}});
  push();
  auto src = open(bare_);
  ASSERT_TRUE(src);
  Snapshot s = fetch(*src);
  ASSERT_EQ(s.files.size(), 2u);
  EXPECT_EQ(s.files[0].content.size(), limit);
  EXPECT_EQ(s.files[0].unreadBytes, 0u);
  EXPECT_EQ(s.files[1].content, "");
  EXPECT_EQ(s.files[1].unreadBytes, limit + 1);

  auto schemas = SchemaRegistry::builtin();
  ASSERT_TRUE(schemas.isOk());
  ManifestLoader loader(*schemas);
  LoadResult r = loader.load(s.files);
  EXPECT_NE(
      r.diagnostics.format().find("b.yaml: error: limit maxFileBytes exceeded: the file has " +
                                  std::to_string(limit + 1) + " bytes"),
      std::string::npos)
      << r.diagnostics.format();
  EXPECT_EQ(r.diagnostics.format().find("a.yaml"), std::string::npos) << r.diagnostics.format();
}

// Listing a tree recurses per directory: 64 levels are listed, 65 are a source error.
TEST_F(GitSourceTest, DirectoriesNestedPastTheLimitAreASourceError) {
  std::string deep;
  for (int i = 0; i < 64; ++i) {
    deep += "d/";
  }
  commit({{deep + "net.yaml", kNetwork}});
  push();
  auto src = open(bare_);
  ASSERT_TRUE(src);
  Snapshot s = fetch(*src);
  ASSERT_EQ(s.files.size(), 1u);
  EXPECT_EQ(s.files[0].path, deep + "net.yaml");

  commit({{"d/" + deep + "net.yaml", kNetwork}});
  push();
  auto again = open(bare_);
  ASSERT_TRUE(again);
  auto snap = again->fetch();
  ASSERT_FALSE(snap.isOk());
  EXPECT_NE(snap.status().message().find("nested deeper than 64 directories (limit "
                                         "maxDirectoryDepth)"),
            std::string::npos)
      << snap.status().message();
}

}  // namespace
}  // namespace hyper::controller
