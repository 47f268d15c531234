// Near misses for the broker's confinement of make's path options (broker/paths.h,
// confineMakeArgs): -f and -I are relative to the directory make ends up in after every -C, not to
// the request's cwd. Each case is chosen so that the other base gives the other answer, and each
// refused path is one component out of the workspace. The far-off cases are in
// broker_paths_test.cc.
//
// The workspace:  TOP/ws/{Makefile, proj/{Makefile, sub/, inc/}}   (the root the rule allows)
//                 TOP/outside/Makefile                              (one component out)
// The request's cwd is TOP/ws/proj unless a case says otherwise.

#include <gtest/gtest.h>
#include <limits.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "broker/paths.h"

namespace hyper::broker {
namespace {

namespace fs = std::filesystem;

struct NearMissCase {
  std::string name;
  std::string cwd;  // relative to the workspace ("" = the workspace itself)
  std::vector<std::string> args;
  bool allowed;
  std::string error;  // a substring of the refusal ("" when allowed)
};

// Failures name the case, not its bytes.
void PrintTo(const NearMissCase& c, std::ostream* os) { *os << c.name; }

class BrokerMakePathsNearMissTest : public ::testing::TestWithParam<NearMissCase> {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/hyper-broker-nearmiss.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    char real[PATH_MAX];
    ASSERT_NE(::realpath(pattern, real), nullptr);
    top_ = real;
    ws_ = top_ + "/ws";
    fs::create_directories(ws_ + "/proj/sub");
    fs::create_directories(ws_ + "/proj/inc");
    fs::create_directories(top_ + "/outside");
    std::ofstream(ws_ + "/Makefile") << "all:\n";
    std::ofstream(ws_ + "/proj/Makefile") << "all:\n";
    std::ofstream(top_ + "/outside/Makefile") << "all:\n";
  }
  void TearDown() override { fs::remove_all(top_); }

  std::string top_;
  std::string ws_;
};

TEST_P(BrokerMakePathsNearMissTest, Checks) {
  const NearMissCase& c = GetParam();
  std::string cwd = c.cwd.empty() ? ws_ : ws_ + "/" + c.cwd;
  auto r = confineMakeArgs(c.args, cwd, ws_, {}, UserInfo{"alice", 1000, 1000, "/home/alice"});
  std::string shown;
  for (const auto& a : c.args) {
    shown += " " + a;
  }
  if (c.allowed) {
    ASSERT_TRUE(r.isOk()) << "make" << shown << " in " << cwd << ": " << r.status().message();
    EXPECT_EQ(*r, c.args) << "relative arguments are passed on as they are";
    return;
  }
  ASSERT_FALSE(r.isOk()) << "accepted make" << shown << " in " << cwd;
  EXPECT_NE(r.status().message().find(c.error), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("is outside the workspace " + ws_), std::string::npos)
      << r.status().message();
}

const char* kFileOut = "make -f/--file argument";
const char* kIncludeOut = "make -I/--include-dir argument";
const char* kDirOut = "make -C/--directory argument";

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokerMakePathsNearMissTest,
    ::testing::Values(
        // -C .. from proj is the workspace; ../outside from there is one component out (from
        // the cwd it would be ws/outside, inside).
        NearMissCase{
            "FileAfterDirUp", "proj", {"-C", "..", "-f", "../outside/Makefile"}, false, kFileOut},
        NearMissCase{"FileAfterDirUpStaysIn", "proj", {"-C", "..", "-f", "Makefile"}, true, ""},
        NearMissCase{
            "FileBeforeDirUp", "proj", {"-f", "../outside/Makefile", "-C", ".."}, false, kFileOut},
        NearMissCase{
            "FileAttached", "proj", {"-C", "..", "-f../outside/Makefile"}, false, kFileOut},
        NearMissCase{
            "FileInCluster", "proj", {"-C", "..", "-sf../outside/Makefile"}, false, kFileOut},
        NearMissCase{"LongFileEquals",
                     "proj",
                     {"--directory=..", "--file=../outside/Makefile"},
                     false,
                     kFileOut},
        NearMissCase{
            "LongFileNextWord", "proj", {"-C..", "--file", "../outside/Makefile"}, false, kFileOut},
        NearMissCase{"LongMakefile",
                     "proj",
                     {"-C", "..", "--makefile=../outside/Makefile"},
                     false,
                     kFileOut},
        NearMissCase{
            "IncludeDirAfterDirUp", "proj", {"-C", "..", "-I", "../outside"}, false, kIncludeOut},
        NearMissCase{
            "IncludeDirAttached", "proj", {"-C", "..", "-I../outside"}, false, kIncludeOut},
        NearMissCase{
            "LongIncludeDir", "proj", {"-C", "..", "--include-dir=../outside"}, false, kIncludeOut},
        NearMissCase{"IncludeDirStaysIn", "proj", {"-C", "..", "-I", "proj/inc"}, true, ""},
        // From proj/sub, -C .. twice is the workspace; ../outside from there is one component
        // out (from the cwd it would be proj/outside, inside).
        NearMissCase{"DirUpTwiceThenFileOut",
                     "proj/sub",
                     {"-C", "..", "-C", "..", "-f", "../outside/Makefile"},
                     false,
                     kFileOut},
        NearMissCase{"DirUpTwiceThenFileIn",
                     "proj/sub",
                     {"-C", "..", "-C", "..", "-f", "Makefile"},
                     true,
                     ""},
        // Each -C is taken from the one before: proj, proj/sub, back to proj.
        NearMissCase{"DirChainThenFileUp",
                     "",
                     {"-C", "proj", "-C", "sub", "-C", "..", "-f", "../Makefile"},
                     true,
                     ""},
        // Relative to the cwd (the workspace) ../../Makefile leaves it; relative to proj/sub it
        // is the workspace's own Makefile.
        NearMissCase{"DeepDirThenFileUp", "", {"-C", "proj/sub", "-f", "../../Makefile"}, true, ""},
        NearMissCase{
            "DeepDirThenIncludeUp", "", {"-C", "proj/sub", "-I", "../../proj/inc"}, true, ""},
        NearMissCase{"DeepDirThenFileOneTooFar",
                     "",
                     {"-C", "proj/sub", "-f", "../../../Makefile"},
                     false,
                     kFileOut},
        // -C alone: each directory on the way must be inside, and the last one decides.
        NearMissCase{"DirOneOut", "", {"-C", "../outside"}, false, kDirOut},
        NearMissCase{"DirInThenOut", "", {"-C", "proj", "-C", "../.."}, false, kDirOut},
        NearMissCase{"DirInThenBackToRoot", "", {"-C", "proj", "-C", ".."}, true, ""},
        // Targets after "--" are not options, whatever they look like.
        NearMissCase{"DoubleDashEndsOptions",
                     "proj",
                     {"-C", "..", "--", "-f../outside/Makefile"},
                     true,
                     ""}),
    [](const ::testing::TestParamInfo<NearMissCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hyper::broker
