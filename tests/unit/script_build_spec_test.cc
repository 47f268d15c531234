// parseBuildSpec's script section (providers/build/build_spec.cc, parseScript) and
// scriptEnvironment: every field with its default, and the semantic errors at their field paths.

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "providers/build/build_spec.h"
#include "reconciler/directory_archive.h"

namespace hyper::providers::build {
namespace {

const ObjectId kId{"Build", "app"};
const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

Json fullSpec() {
  return Json::parse(R"({"type":"script","script":{
    "source":{"git":{"url":"/srv/app.git","commit":"0123456789abcdef0123456789abcdef01234567",
                     "path":"app"}},
    "builder":{"kernel":{"build":"k"},"initrd":{"build":"i"},"rootfs":{"build":"r"},
               "vcpus":2,"memoryMiB":1024},
    "steps":[["make","-j2"],["make","install","DESTDIR=/out"]],
    "env":{"CFLAGS":"-O2","LANG":"C"},
    "outputs":[{"name":"app","path":"/out/app"},{"name":"lib","path":"/out/lib/libapp.so"}],
    "outputSizeMiB":64,
    "secrets":[{"secret":"npm","key":"token"},{"secret":"gh","key":"pat","id":"github"}],
    "timeoutSeconds":60,"keepFailed":true}})");
}

// A script spec whose script section is `script` (JSON text).
Json scriptSpec(const std::string& script) {
  Json spec = Json::object();
  spec["type"] = "script";
  spec["script"] = Json::parse(script);
  return spec;
}

std::vector<std::string> fieldPaths(const Diagnostics& d) {
  std::vector<std::string> out;
  for (const auto& item : d.items()) {
    out.push_back(item.fieldPath);
  }
  return out;
}

TEST(ScriptBuildSpecTest, ParsesEveryField) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(kId, fullSpec(), d);
  EXPECT_TRUE(d.empty()) << d.format();
  EXPECT_EQ(s.type, "script");
  EXPECT_EQ(s.gitUrl, "/srv/app.git");
  EXPECT_EQ(s.gitCommit, kCommit);
  EXPECT_EQ(s.gitPath, "app");
  EXPECT_EQ(s.builderKernel, "k");
  EXPECT_EQ(s.builderInitrd, "i");
  EXPECT_EQ(s.builderRootfs, "r");
  EXPECT_EQ(s.builderVcpus, 2);
  EXPECT_EQ(s.builderMemoryMiB, 1024);
  ASSERT_EQ(s.steps.size(), 2u);
  EXPECT_EQ(s.steps[0], (std::vector<std::string>{"make", "-j2"}));
  EXPECT_EQ(s.steps[1], (std::vector<std::string>{"make", "install", "DESTDIR=/out"}));
  EXPECT_EQ(s.env, (std::map<std::string, std::string>{{"CFLAGS", "-O2"}, {"LANG", "C"}}));
  ASSERT_EQ(s.outputs.size(), 2u);
  EXPECT_EQ(s.outputs[0].name, "app");
  EXPECT_EQ(s.outputs[0].path, "/out/app");
  EXPECT_EQ(s.outputs[1].name, "lib");
  EXPECT_EQ(s.outputs[1].path, "/out/lib/libapp.so");
  EXPECT_EQ(s.outputSizeMiB, 64u);
  ASSERT_EQ(s.secrets.size(), 2u);
  EXPECT_EQ(s.secrets[0].secret, "npm");
  EXPECT_EQ(s.secrets[0].key, "token");
  EXPECT_EQ(s.secrets[0].id, "npm-token");
  EXPECT_EQ(s.secrets[1].secret, "gh");
  EXPECT_EQ(s.secrets[1].key, "pat");
  EXPECT_EQ(s.secrets[1].id, "github");
  EXPECT_EQ(s.timeoutSeconds, 60);
  EXPECT_TRUE(s.keepFailed);
  // busybox and hyper's init are an initramfs's.
  EXPECT_FALSE(s.busybox);
  EXPECT_FALSE(s.hyperInit);
}

TEST(ScriptBuildSpecTest, DefaultsWhenFieldsAreLeftOut) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(
      kId,
      scriptSpec(R"({"source":{"git":{"url":"https://host/x.git","commit":")" + kCommit +
                 R"("}},"builder":{"kernel":{"build":"k"},"initrd":{"build":"i"}},)"
                 R"("steps":[["true"]],"outputs":[{"name":"a","path":"/out/a"}]})"),
      d);
  EXPECT_TRUE(d.empty()) << d.format();
  EXPECT_EQ(s.gitUrl, "https://host/x.git");
  EXPECT_EQ(s.gitCommit, kCommit);
  EXPECT_EQ(s.gitPath, "");
  EXPECT_EQ(s.builderKernel, "k");
  EXPECT_EQ(s.builderInitrd, "i");
  EXPECT_EQ(s.builderRootfs, "");
  EXPECT_EQ(s.builderVcpus, 1);
  EXPECT_EQ(s.builderMemoryMiB, 512);
  EXPECT_TRUE(s.env.empty());
  EXPECT_EQ(s.outputSizeMiB, 256u);
  EXPECT_TRUE(s.secrets.empty());
  EXPECT_EQ(s.timeoutSeconds, 900);
  EXPECT_FALSE(s.keepFailed);
  ASSERT_EQ(s.steps.size(), 1u);
  EXPECT_EQ(s.steps[0], std::vector<std::string>{"true"});
}

TEST(ScriptBuildSpecTest, SecretIdDefaultsToSecretDashKey) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(
      kId, scriptSpec(R"({"secrets":[{"secret":"SECRET","key":"KEY"},{"secret":"a","key":"b"}]})"),
      d);
  EXPECT_TRUE(d.empty()) << d.format();
  ASSERT_EQ(s.secrets.size(), 2u);
  EXPECT_EQ(s.secrets[0].id, "SECRET-KEY");
  EXPECT_EQ(s.secrets[1].id, "a-b");
}

class FixedEnvTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FixedEnvTest, SettingAFixedVariableIsAnErrorAtItsName) {
  const std::string name = GetParam();
  Diagnostics d;
  BuildSpec s = parseBuildSpec(kId, scriptSpec(R"({"env":{"CC":"gcc",")" + name + R"(":"x"}})"), d);
  ASSERT_EQ(d.items().size(), 1u) << d.format();
  EXPECT_TRUE(d.hasErrors());
  EXPECT_EQ(d.items()[0].fieldPath, "spec.script.env." + name);
  EXPECT_EQ(d.items()[0].object, kId);
  EXPECT_NE(d.items()[0].summary.find("set by hyper"), std::string::npos) << d.items()[0].summary;
  // The fixed one is dropped; the others are kept.
  EXPECT_EQ(s.env, (std::map<std::string, std::string>{{"CC", "gcc"}}));
}

INSTANTIATE_TEST_SUITE_P(Names, FixedEnvTest,
                         ::testing::Values("SOURCE_DATE_EPOCH", "HOME", "TZ", "LC_ALL"));

TEST(ScriptBuildSpecTest, FixedEnvListIsTheFourNames) {
  std::vector<std::string> names(std::begin(kScriptFixedEnv), std::end(kScriptFixedEnv));
  EXPECT_EQ(names, (std::vector<std::string>{"SOURCE_DATE_EPOCH", "HOME", "TZ", "LC_ALL"}));
}

TEST(ScriptBuildSpecTest, SimilarEnvNamesAreNotFixed) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(
      kId, scriptSpec(R"({"env":{"HOMEDIR":"/h","tz":"x","LC_CTYPE":"C","PATH":"/bin"}})"), d);
  EXPECT_TRUE(d.empty()) << d.format();
  EXPECT_EQ(s.env, (std::map<std::string, std::string>{
                       {"HOMEDIR", "/h"}, {"tz", "x"}, {"LC_CTYPE", "C"}, {"PATH", "/bin"}}));
}

TEST(ScriptBuildSpecTest, DuplicateOutputNameIsAnErrorAtTheSecond) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(kId, scriptSpec(R"({"outputs":[{"name":"app","path":"/out/a"},
                                                         {"name":"lib","path":"/out/b"},
                                                         {"name":"app","path":"/out/c"}]})"),
                               d);
  ASSERT_EQ(d.items().size(), 1u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.script.outputs[2].name");
  EXPECT_NE(d.items()[0].summary.find("\"app\" is given twice"), std::string::npos)
      << d.items()[0].summary;
  ASSERT_EQ(s.outputs.size(), 2u);
  EXPECT_EQ(s.outputs[0].path, "/out/a");
  EXPECT_EQ(s.outputs[1].path, "/out/b");
}

TEST(ScriptBuildSpecTest, DuplicateOutputPathIsAnErrorAtTheSecond) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(kId, scriptSpec(R"({"outputs":[{"name":"a","path":"/out/app"},
                                                         {"name":"b","path":"/out/app"}]})"),
                               d);
  ASSERT_EQ(d.items().size(), 1u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.script.outputs[1].path");
  EXPECT_NE(d.items()[0].summary.find("\"/out/app\" is given twice"), std::string::npos)
      << d.items()[0].summary;
  ASSERT_EQ(s.outputs.size(), 1u);
  EXPECT_EQ(s.outputs[0].name, "a");
}

TEST(ScriptBuildSpecTest, OutputPathWithDotSegmentsIsAnError) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(kId, scriptSpec(R"({"outputs":[{"name":"ok","path":"/out/app..v2"},
                                                         {"name":"up","path":"/out/../etc/passwd"},
                                                         {"name":"end","path":"/out/.."},
                                                         {"name":"dot","path":"/out/./x"}]})"),
                               d);
  EXPECT_EQ(fieldPaths(d),
            (std::vector<std::string>{"spec.script.outputs[1].path", "spec.script.outputs[2].path",
                                      "spec.script.outputs[3].path"}))
      << d.format();
  ASSERT_EQ(d.items().size(), 3u);
  EXPECT_NE(d.items()[0].summary.find("\"..\" segment"), std::string::npos) << d.items()[0].summary;
  EXPECT_NE(d.items()[0].summary.find("/out/../etc/passwd"), std::string::npos);
  // A name with dots in it that is not a segment is fine.
  ASSERT_EQ(s.outputs.size(), 1u);
  EXPECT_EQ(s.outputs[0].name, "ok");
  EXPECT_EQ(s.outputs[0].path, "/out/app..v2");
}

TEST(ScriptBuildSpecTest, DuplicateSecretIdIsAnErrorAtTheSecond) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(kId, scriptSpec(R"({"secrets":[{"secret":"npm","key":"token"},
                                                         {"secret":"a","key":"b","id":"x"},
                                                         {"secret":"other","key":"k",
                                                          "id":"npm-token"}]})"),
                               d);
  ASSERT_EQ(d.items().size(), 1u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.script.secrets[2].id");
  EXPECT_NE(d.items()[0].summary.find("\"npm-token\" is given twice"), std::string::npos)
      << d.items()[0].summary;
  ASSERT_EQ(s.secrets.size(), 2u);
  EXPECT_EQ(s.secrets[0].id, "npm-token");
  EXPECT_EQ(s.secrets[1].id, "x");
}

struct UrlCase {
  std::string name;
  std::string url;
  bool credentials;
};

class ScriptGitUrlTest : public ::testing::TestWithParam<UrlCase> {};

TEST_P(ScriptGitUrlTest, CredentialsInTheUrlAreAnError) {
  Diagnostics d;
  Json spec = scriptSpec(R"({"source":{"git":{"commit":")" + kCommit + R"("}}})");
  spec["script"]["source"]["git"]["url"] = GetParam().url;
  BuildSpec s = parseBuildSpec(kId, spec, d);
  EXPECT_EQ(s.gitUrl, GetParam().url);
  if (GetParam().credentials) {
    ASSERT_EQ(d.items().size(), 1u) << d.format();
    EXPECT_EQ(d.items()[0].fieldPath, "spec.script.source.git.url");
    EXPECT_NE(d.items()[0].summary.find("credentials"), std::string::npos) << d.items()[0].summary;
    // The message does not repeat the secret.
    EXPECT_EQ(d.items()[0].summary.find("s3cr3t"), std::string::npos) << d.items()[0].summary;
  } else {
    EXPECT_TRUE(d.empty()) << d.format();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ScriptGitUrlTest,
    ::testing::Values(UrlCase{"UserAndToken", "https://user:s3cr3t@host/x.git", true},
                      UrlCase{"TokenOnly", "https://s3cr3t@host/x.git", true},
                      UrlCase{"NoPathAfterHost", "https://user:s3cr3t@host", true},
                      UrlCase{"ScpLike", "git@host:x.git", false},
                      UrlCase{"Plain", "https://host/x.git", false},
                      UrlCase{"AtInPath", "https://host/x@y.git", false},
                      UrlCase{"LocalPath", "/srv/app.git", false},
                      UrlCase{"FileUrl", "file:///srv/a@b.git", false}),
    [](const ::testing::TestParamInfo<UrlCase>& info) { return info.param.name; });

TEST(ScriptBuildSpecTest, GitPathWithDotSegmentIsAnError) {
  for (const char* path : {"../etc", "app/..", "a/./b"}) {
    Diagnostics d;
    Json spec = scriptSpec(R"({"source":{"git":{"url":"/srv/app.git","ref":"main"}}})");
    spec["script"]["source"]["git"]["path"] = path;
    parseBuildSpec(kId, spec, d);
    ASSERT_EQ(d.items().size(), 1u) << path << ": " << d.format();
    EXPECT_EQ(d.items()[0].fieldPath, "spec.script.source.git.path") << path;
  }
  Diagnostics ok;
  Json spec =
      scriptSpec(R"({"source":{"git":{"url":"/srv/app.git","ref":"main","path":"a..b/c"}}})");
  BuildSpec s = parseBuildSpec(kId, spec, ok);
  EXPECT_TRUE(ok.empty()) << ok.format();
  EXPECT_EQ(s.gitPath, "a..b/c");
}

TEST(ScriptBuildSpecTest, ARefIsFollowedInsteadOfACommit) {
  Diagnostics d;
  BuildSpec s = parseBuildSpec(
      kId, scriptSpec(R"({"source":{"git":{"url":"/srv/app.git","ref":"release/v1"}}})"), d);
  EXPECT_TRUE(d.empty()) << d.format();
  EXPECT_EQ(s.gitRef, "release/v1");
  EXPECT_EQ(s.gitCommit, "");
}

TEST(ScriptBuildSpecTest, CommitAndRefAreOneOrTheOther) {
  Diagnostics both;
  parseBuildSpec(kId,
                 scriptSpec(R"({"source":{"git":{"url":"/srv/app.git","ref":"main","commit":")" +
                            kCommit + R"("}}})"),
                 both);
  ASSERT_EQ(both.items().size(), 1u) << both.format();
  EXPECT_EQ(both.items()[0].fieldPath, "spec.script.source.git");
  EXPECT_NE(both.items()[0].summary.find("has both commit and ref"), std::string::npos)
      << both.format();
  Diagnostics neither;
  parseBuildSpec(kId, scriptSpec(R"({"source":{"git":{"url":"/srv/app.git"}}})"), neither);
  ASSERT_EQ(neither.items().size(), 1u) << neither.format();
  EXPECT_EQ(neither.items()[0].fieldPath, "spec.script.source.git");
  EXPECT_NE(neither.items()[0].summary.find("has neither commit nor ref"), std::string::npos)
      << neither.format();
}

TEST(ScriptBuildSpecTest, APathSourceTakesTheDirectoryTheLoaderRead) {
  auto blob = std::make_shared<SourceBlob>();
  blob->bytes = encodeDirectoryArchive({{"main.c", ArchiveEntry::Type::File, "int main;"}});
  blob->digest = "sha256:x";
  Diagnostics d;
  BuildSpec s =
      parseBuildSpec(kId, scriptSpec(R"({"source":{"path":"app/"}})"), d, {{"app/", blob}});
  EXPECT_TRUE(d.empty()) << d.format();
  EXPECT_EQ(s.sourcePath, "app/");
  EXPECT_EQ(s.sourceTree, blob);
  EXPECT_TRUE(s.gitUrl.empty());

  Diagnostics unread;
  parseBuildSpec(kId, scriptSpec(R"({"source":{"path":"app/"}})"), unread);
  EXPECT_EQ(fieldPaths(unread), std::vector<std::string>{"spec.script.source.path"})
      << unread.format();
  EXPECT_NE(unread.format().find("\"app/\" was not read"), std::string::npos) << unread.format();
}

TEST(ScriptBuildSpecTest, GitAndPathAreOneOrTheOther) {
  Diagnostics both;
  parseBuildSpec(kId,
                 scriptSpec(R"({"source":{"path":"app","git":{"url":"/srv/app.git","commit":")" +
                            kCommit + R"("}}})"),
                 both, {{"app", std::make_shared<SourceBlob>()}});
  EXPECT_EQ(fieldPaths(both), std::vector<std::string>{"spec.script.source"}) << both.format();
  EXPECT_NE(both.format().find("has both git and path"), std::string::npos) << both.format();
  Diagnostics neither;
  parseBuildSpec(kId, scriptSpec(R"({"source":{}})"), neither);
  EXPECT_EQ(fieldPaths(neither), std::vector<std::string>{"spec.script.source"})
      << neither.format();
  EXPECT_NE(neither.format().find("has neither git nor path"), std::string::npos)
      << neither.format();
}

TEST(ScriptBuildSpecTest, ARefEndingInLockIsAnError) {
  Diagnostics d;
  parseBuildSpec(kId, scriptSpec(R"({"source":{"git":{"url":"/srv/app.git","ref":"main.lock"}}})"),
                 d);
  ASSERT_EQ(d.items().size(), 1u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.script.source.git.ref");
  Diagnostics ok;
  parseBuildSpec(kId, scriptSpec(R"({"source":{"git":{"url":"/srv/app.git","ref":"lock"}}})"), ok);
  EXPECT_TRUE(ok.empty()) << ok.format();
}

TEST(ScriptBuildSpecTest, ScriptSectionOnARootfsBuildIsAnError) {
  Diagnostics d;
  Json spec = Json::parse(R"({"type":"rootfs","rootfs":{"suite":"bookworm"},
                              "script":{"steps":[["true"]]}})");
  BuildSpec s = parseBuildSpec(kId, spec, d);
  ASSERT_EQ(d.items().size(), 1u) << d.format();
  EXPECT_EQ(d.items()[0].fieldPath, "spec.script");
  EXPECT_NE(d.items()[0].summary.find("is for type script"), std::string::npos)
      << d.items()[0].summary;
  EXPECT_NE(d.items()[0].summary.find("expected spec.rootfs instead"), std::string::npos)
      << d.items()[0].summary;
  EXPECT_EQ(s.type, "rootfs");
  EXPECT_EQ(s.suite, "bookworm");
}

TEST(ScriptBuildSpecTest, ScriptBuildWithoutOtherSectionsHasNoSectionError) {
  Diagnostics d;
  parseBuildSpec(kId, fullSpec(), d);
  EXPECT_TRUE(d.empty()) << d.format();
  Json withRootfs = fullSpec();
  withRootfs["rootfs"] = Json::parse(R"({"suite":"bookworm"})");
  Diagnostics d2;
  parseBuildSpec(kId, withRootfs, d2);
  ASSERT_EQ(d2.items().size(), 1u) << d2.format();
  EXPECT_EQ(d2.items()[0].fieldPath, "spec.rootfs");
  EXPECT_NE(d2.items()[0].summary.find("expected spec.script instead"), std::string::npos)
      << d2.items()[0].summary;
}

TEST(ScriptEnvironmentTest, DefaultPathAndFixedVariables) {
  BuildSpec spec;
  spec.type = "script";
  EXPECT_EQ(scriptEnvironment(spec),
            (std::map<std::string, std::string>{
                {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                {"SOURCE_DATE_EPOCH", "0"},
                {"HOME", "/build"},
                {"TZ", "UTC"},
                {"LC_ALL", "C.UTF-8"}}));
}

TEST(ScriptEnvironmentTest, SpecVariablesAndPathOverride) {
  Diagnostics d;
  Json spec = scriptSpec(R"({"env":{"CFLAGS":"-O2","PATH":"/opt/bin:/bin"}})");
  BuildSpec parsed = parseBuildSpec(kId, spec, d);
  ASSERT_TRUE(d.empty()) << d.format();
  EXPECT_EQ(scriptEnvironment(parsed),
            (std::map<std::string, std::string>{{"PATH", "/opt/bin:/bin"},
                                                {"CFLAGS", "-O2"},
                                                {"SOURCE_DATE_EPOCH", "0"},
                                                {"HOME", "/build"},
                                                {"TZ", "UTC"},
                                                {"LC_ALL", "C.UTF-8"}}));
}

TEST(ScriptEnvironmentTest, FixedVariablesWinOverTheSpec) {
  // A BuildSpec made in code (not parsed) may carry them; hyper's values still win.
  BuildSpec spec;
  spec.env = {{"HOME", "/root"},
              {"TZ", "Europe/Paris"},
              {"LC_ALL", "de_DE"},
              {"SOURCE_DATE_EPOCH", "1700000000"},
              {"X", "y"}};
  auto env = scriptEnvironment(spec);
  EXPECT_EQ(env.size(), 6u);
  EXPECT_EQ(env["HOME"], "/build");
  EXPECT_EQ(env["TZ"], "UTC");
  EXPECT_EQ(env["LC_ALL"], "C.UTF-8");
  EXPECT_EQ(env["SOURCE_DATE_EPOCH"], "0");
  EXPECT_EQ(env["X"], "y");
  EXPECT_EQ(env["PATH"], "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
}

}  // namespace
}  // namespace hyper::providers::build
