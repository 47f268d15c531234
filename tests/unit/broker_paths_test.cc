#include "broker/paths.h"

#include <gtest/gtest.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace hyper::broker {
namespace {

namespace fs = std::filesystem;

UserInfo alice() { return UserInfo{"alice", 1000, 1000, "/home/alice"}; }

TEST(BrokerTemplateTest, ExpandsUserUidHome) {
  EXPECT_EQ(expandTemplate("/srv/{user}/{uid}{home}", alice()), "/srv/alice/1000/home/alice");
  EXPECT_EQ(checkTemplate("/home/{user}/ws"), "");
  EXPECT_NE(checkTemplate("/home/{usr}"), "");
  EXPECT_NE(checkTemplate("/home/{user"), "");
}

struct MapCase {
  std::string name;
  std::string path;
  std::string want;
};

class BrokerMapPathTest : public ::testing::TestWithParam<MapCase> {};

TEST_P(BrokerMapPathTest, Maps) {
  std::vector<PathMapping> mapping = {{"/workspace", "/home/{user}/workspace"},
                                      {"/workspace/deep", "/srv/deep"}};
  EXPECT_EQ(mapPath(GetParam().path, mapping, alice()), GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerMapPathTest,
    ::testing::Values(MapCase{"Exact", "/workspace", "/home/alice/workspace"},
                      MapCase{"Below", "/workspace/app/src", "/home/alice/workspace/app/src"},
                      MapCase{"LongestPrefixWins", "/workspace/deep/x", "/srv/deep/x"},
                      MapCase{"WholeComponentsOnly", "/workspaces/x", "/workspaces/x"},
                      MapCase{"Unmapped", "/tmp/x", "/tmp/x"}),
    [](const ::testing::TestParamInfo<MapCase>& info) { return info.param.name; });

// A workspace with a project, a symlink that points out of it and one that stays inside.
class BrokerConfineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/hyper-broker-paths.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    char real[PATH_MAX];
    ASSERT_NE(::realpath(pattern, real), nullptr);
    top_ = real;
    ws_ = top_ + "/ws";
    fs::create_directories(ws_ + "/proj/sub");
    fs::create_directories(top_ + "/outside");
    fs::create_directory_symlink("/etc", ws_ + "/etc-link");
    fs::create_directory_symlink(ws_ + "/proj", ws_ + "/proj-link");
    fs::create_directory_symlink("../outside", ws_ + "/up-link");
    std::ofstream(ws_ + "/proj/Makefile") << "all:\n";
  }
  void TearDown() override { fs::remove_all(top_); }

  std::string top_;
  std::string ws_;
};

TEST_F(BrokerConfineTest, AcceptsPathsInside) {
  auto r = confine(ws_ + "/proj/sub", "/", ws_, "cwd");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(*r, ws_ + "/proj/sub");
  r = confine("sub/../sub", ws_ + "/proj", ws_, "cwd");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(*r, ws_ + "/proj/sub");
  r = confine(ws_ + "/proj-link", "/", ws_, "cwd");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(*r, ws_ + "/proj");
  r = confine(ws_, "/", ws_, "cwd");
  EXPECT_TRUE(r.isOk());
  r = confine("not-yet/file.mk", ws_ + "/proj", ws_, "make -f argument");
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_EQ(*r, ws_ + "/proj/not-yet/file.mk");
}

struct EscapeCase {
  std::string name;
  std::string path;  // relative to the workspace's proj/ unless absolute ("@" = the temp dir)
};

class BrokerConfineEscapeTest : public BrokerConfineTest,
                                public ::testing::WithParamInterface<EscapeCase> {};

TEST_P(BrokerConfineEscapeTest, Refuses) {
  std::string path = GetParam().path;
  if (!path.empty() && path[0] == '@') {
    path = top_ + path.substr(1);
  }
  auto r = confine(path, ws_ + "/proj", ws_, "cwd");
  ASSERT_FALSE(r.isOk()) << "accepted " << path << " as " << *r;
  EXPECT_NE(r.status().message().find("cwd"), std::string::npos) << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(Cases, BrokerConfineEscapeTest,
                         ::testing::Values(EscapeCase{"Etc", "/etc"}, EscapeCase{"DotDot", "../.."},
                                           EscapeCase{"DotDotAbsolute", "@/ws/proj/../../outside"},
                                           EscapeCase{"SymlinkOut", "../etc-link"},
                                           EscapeCase{"SymlinkBelowOut", "../etc-link/ssl"},
                                           EscapeCase{"RelativeSymlinkOut", "../up-link"},
                                           EscapeCase{"SiblingWithSharedPrefix", "@/ws-other"},
                                           EscapeCase{"DotDotAfterMissing", "missing/../../.."},
                                           EscapeCase{"Empty", ""}),
                         [](const ::testing::TestParamInfo<EscapeCase>& info) {
                           return info.param.name;
                         });

struct MakeArgsCase {
  std::string name;
  std::vector<std::string> args;  // "@" is replaced by the workspace
  bool allowed;
  std::vector<std::string> rewritten;  // expected output when allowed (empty: unchanged)
};

class BrokerMakeArgsTest : public BrokerConfineTest,
                           public ::testing::WithParamInterface<MakeArgsCase> {};

TEST_P(BrokerMakeArgsTest, Checks) {
  auto fill = [&](std::vector<std::string> args) {
    for (auto& a : args) {
      size_t at = a.find('@');
      if (at != std::string::npos) {
        a.replace(at, 1, ws_);
      }
    }
    return args;
  };
  std::vector<PathMapping> mapping = {{"/workspace", ws_}};
  auto r = confineMakeArgs(fill(GetParam().args), ws_ + "/proj", ws_, mapping, alice());
  if (!GetParam().allowed) {
    ASSERT_FALSE(r.isOk()) << "accepted";
    EXPECT_NE(r.status().message().find("make"), std::string::npos) << r.status().message();
    return;
  }
  ASSERT_TRUE(r.isOk()) << r.status().message();
  auto want = GetParam().rewritten.empty() ? fill(GetParam().args) : fill(GetParam().rewritten);
  EXPECT_EQ(*r, want);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerMakeArgsTest,
    ::testing::Values(
        MakeArgsCase{"Plain", {"-j4", "all"}, true, {}},
        MakeArgsCase{"DirInside", {"-C", "sub"}, true, {}},
        MakeArgsCase{"DirAbsoluteInside", {"-C", "@/proj"}, true, {}},
        MakeArgsCase{"DirEtc", {"-C", "/etc"}, false, {}},
        MakeArgsCase{"DirAttached", {"-C/etc"}, false, {}},
        MakeArgsCase{"DirInCluster", {"-sC/etc"}, false, {}},
        MakeArgsCase{"DirInClusterNextWord", {"-kC", "/etc"}, false, {}},
        MakeArgsCase{"LongDirEquals", {"--directory=/etc"}, false, {}},
        MakeArgsCase{"LongDirNextWord", {"--directory", "/etc"}, false, {}},
        MakeArgsCase{"LongDirAbbreviated", {"--dir=/etc"}, false, {}},
        MakeArgsCase{"DirDotDot", {"-C", "../.."}, false, {}},
        MakeArgsCase{"DirSymlinkOut", {"-C", "../etc-link"}, false, {}},
        MakeArgsCase{"SecondDirLeaves", {"-C", "sub", "-C", "../../.."}, false, {}},
        MakeArgsCase{"FileRelativeToLastDir", {"-C", "..", "-f", "proj/Makefile"}, true, {}},
        MakeArgsCase{"FileOut", {"-f", "/etc/passwd"}, false, {}},
        MakeArgsCase{"FileAttached", {"-f/etc/passwd"}, false, {}},
        MakeArgsCase{"LongFile", {"--file=/etc/passwd"}, false, {}},
        MakeArgsCase{"LongMakefile", {"--makefile", "../etc-link/passwd"}, false, {}},
        MakeArgsCase{"IncludeDirOut", {"-I", "/usr/include"}, false, {}},
        MakeArgsCase{"MissingValue", {"-C"}, false, {}},
        MakeArgsCase{"JobsCountIsNotAPath", {"-j", "4", "all"}, true, {}},
        MakeArgsCase{"EvalValueIsNotAnOption", {"--eval", "-C/etc"}, true, {}},
        MakeArgsCase{"AfterDoubleDashAreTargets", {"--", "-C/etc"}, true, {}},
        MakeArgsCase{"MappedDir", {"-C", "/workspace/proj"}, true, {"-C", "@/proj"}},
        MakeArgsCase{
            "MappedAttached", {"--directory=/workspace/proj"}, true, {"--directory=@/proj"}}),
    [](const ::testing::TestParamInfo<MakeArgsCase>& info) { return info.param.name; });

TEST(BrokerEnvTest, OnlyAllowListedPassAndIdentityIsFilled) {
  std::map<std::string, std::string> requested = {
      {"CC", "clang"}, {"SECRET_TOKEN", "x"}, {"LD_PRELOAD", "/tmp/evil.so"}, {"HOME", "/c"}};
  auto env = filterEnv(requested, {"CC", "CFLAGS"}, alice());
  EXPECT_EQ(env, (std::vector<std::string>{"CC=clang", "HOME=/home/alice", "LOGNAME=alice",
                                           "PATH=/usr/local/bin:/usr/bin:/bin", "USER=alice"}));
  env = filterEnv(requested, {"HOME"}, alice());
  EXPECT_NE(std::find(env.begin(), env.end(), "HOME=/c"), env.end());
}

TEST(BrokerEnvTest, EnvNames) {
  EXPECT_TRUE(isEnvName("PKG_CONFIG_PATH"));
  EXPECT_TRUE(isEnvName("_x1"));
  EXPECT_FALSE(isEnvName("1X"));
  EXPECT_FALSE(isEnvName("A-B"));
  EXPECT_FALSE(isEnvName(""));
}

}  // namespace
}  // namespace hyper::broker
