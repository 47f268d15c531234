// Script Builds (issue 15) through the real hyperctl: the source comes from a git repository at a
// pinned commit (or a followed branch, resolved when planned) or from a directory beside the
// manifest, the steps run in an ephemeral
// builder VM under real QEMU booted from the Builds of the same revision (Debian's kernel, hyper's
// initramfs with the build agent), the outputs come back as content-addressed artifacts, a Secret's
// value is readable by the steps for the build and nowhere else, a failing step is named with its
// exit code, and a build past its timeout is killed and leaves no builder behind. Kept in one test:
// under TCG every builder boot counts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/base64.h"
#include "base/file.h"
#include "store/artifact_store.h"
#include "tests/integration/git_util.h"
#include "tests/integration/guest_util.h"
#include "tests/integration/hyperctl_util.h"
#include "tests/integration/netns_util.h"

namespace hyper {
namespace {

namespace fs = std::filesystem;
using test::CommandRun;

constexpr const char* kBuilderBuilds = R"(apiVersion: hyper.dev/v1alpha1
kind: Build
metadata: {name: builder-kernel}
spec:
  type: debian-kernel
---
apiVersion: hyper.dev/v1alpha1
kind: Build
metadata: {name: builder-initrd}
spec:
  type: initramfs
  initramfs:
    kernel: {build: builder-kernel}
    hyperInit: true
)";

// A script Build of `source` (YAML flow text, "{url: R, commit: C}"), with `steps` as YAML flow
// text.
std::string scriptBuild(const std::string& name, const std::string& source,
                        const std::string& steps, const std::string& extra = "") {
  return "---\napiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: " + name +
         "}\nspec:\n  type: script\n  script:\n    source: {git: " + source +
         "}\n    builder: {kernel: {build: builder-kernel}, initrd: {build: builder-initrd}}\n"
         "    steps: " +
         steps + "\n" + extra + "    outputs:\n    - {name: app, path: /out/app}\n";
}

// A run directory for the builder VMs and VMs of one test: made at once; every QEMU under it
// killed and the directory removed at the end, whatever the test did.
struct RunDir {
  explicit RunDir(std::string p) : path(std::move(p)) { fs::create_directories(path); }
  ~RunDir() {
    test::killQemusUnder(path);
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  std::string path;
};

// The digest of Build `name`'s artifact `artifact` in `hyperctl get builds -o json`.
std::string artifactDigest(const std::string& state, const std::string& name,
                           const std::string& artifact) {
  CommandRun get = test::runHyperctl(state, {"get", "builds", "-o", "json"});
  auto list = nlohmann::json::parse(get.out, nullptr, false);
  if (!list.is_object()) {
    return "";
  }
  for (const auto& item : list.value("items", nlohmann::json::array())) {
    if (item["metadata"].value("name", "") == name) {
      const auto& a = item["status"]["observed"]["artifacts"];
      return a.contains(artifact) ? a[artifact].value("digest", "") : "";
    }
  }
  return "";
}

// Everything under `dir` as one string (logs, the database, the store's records): what a secret
// must never be found in.
std::string everythingUnder(const std::string& dir) {
  std::string all;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && it->file_size(ec) < (64u << 20)) {
      auto bytes = readFile(it->path().string(), 64u << 20);
      if (bytes.isOk()) {
        all += *bytes;
      }
    }
  }
  return all;
}

TEST(ScriptBuildTest, StepsRunInABuilderVmFromAPinnedCommitAndTheirOutputIsAnArtifact) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root";
  }
  if (!test::guestImage().skipReason.empty()) {
    GTEST_SKIP() << test::guestImage().skipReason;
  }
  auto tmp = test::TempDir::create("script-build");
  ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
  const std::string dir = (*tmp)->path();
  // Short (a QMP socket path must fit in sun_path); killed and removed at the end.
  const RunDir run("/tmp/hb-" + std::to_string(::getpid()));
  const std::string& runDir = run.path;
  test::HyperctlEnv how;
  how.env = {"HYPER_BUILDER_RUN_DIR=" + runDir};

  // The source: a generator script (executable in git) and a data file in a subdirectory.
  const std::string repo = dir + "/app.git";
  const std::string work = dir + "/work";
  test::runGit({"init", "--quiet", "--bare", repo});
  test::runGit({"clone", "--quiet", repo, work});
  ASSERT_TRUE((*tmp)
                  ->write("work/app/gen.sh",
                          "#!/bin/sh\n"
                          "echo \"$(cat data/greeting.txt) uid=$(id -u) host=$(hostname) "
                          "pwd=$(pwd) home=$HOME epoch=$SOURCE_DATE_EPOCH tz=$TZ\"\n"
                          "echo \"secret=$(sha256sum < /run/secrets/token | cut -c1-16)\"\n"
                          "echo \"secrets=$(ls /run/secrets)\"\n"
                          "echo \"net=$(ls /sys/class/net)\"\n")
                  .isOk());
  ASSERT_TRUE((*tmp)->write("work/app/data/greeting.txt", "hello from git\n").isOk());
  ASSERT_TRUE((*tmp)->write("work/README", "not built\n").isOk());
  fs::permissions(work + "/app/gen.sh", fs::perms::owner_exec, fs::perm_options::add);
  test::runGit({"-C", work, "add", "-A"});
  test::runGit({"-C", work, "commit", "--quiet", "-m", "app"});
  test::runGit({"-C", work, "push", "--quiet", "origin", "HEAD:main"});
  const std::string commit = test::runGit({"-C", work, "rev-parse", "HEAD"});
  ASSERT_EQ(commit.size(), 40u);

  const std::string state = dir + "/state";
  std::error_code ec;
  const std::string value = "build-token-6c1f9e2a";  // the canary: it must show up nowhere
  CommandRun seal =
      test::runArgv({"sh", "-c", "printf %s \"$0\" | \"$@\"", value, HYPERCTL_PATH, "--state-dir",
                     state, "secret", "seal", "--name", "npm", "--key", "token"});
  ASSERT_EQ(seal.exitCode, 0) << seal.describe();
  const std::string steps =
      "[[./gen.sh], [sh, -c, './gen.sh > /out/app && cat /out/app'], [sh, -c, 'printf "
      "\"#!/bin/sh\\necho ran: %s\\n\" \"$(cat data/greeting.txt)\" > /out/run']]";
  const std::string source = "{url: " + repo + ", commit: " + commit;
  std::ofstream(dir + "/builds.yaml")
      << kBuilderBuilds << "---\n"
      << seal.out
      << scriptBuild("app", source + ", path: app}", steps,
                     "    secrets: [{secret: npm, key: token, id: token}]\n")
      << "    - {name: run, path: /out/run}\n";
  CommandRun apply = test::runHyperctl(state, {"apply", "-f", dir + "/builds.yaml"}, how);
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();

  const std::string digest = artifactDigest(state, "app", "app");
  ASSERT_EQ(digest.rfind("sha256:", 0), 0u) << digest;
  auto bytes = readFile(state + "/store/sha256/" + digest.substr(7), 1 << 20);
  ASSERT_TRUE(bytes.isOk());
  const std::string tokenHash = store::digestOf(value).substr(7, 16);
  EXPECT_EQ(*bytes,
            "hello from git uid=1000 host=builder pwd=/build home=/build epoch=0 tz=UTC\n"
            "secret=" +
                tokenHash + "\nsecrets=token\nnet=lo\n");

  // The log has each step and its output; the secret's value is nowhere in the state directory
  // (logs, database, store records, provenance) nor in what hyperctl printed.
  CommandRun logs = test::runHyperctl(state, {"logs", "build/app"});
  EXPECT_NE(logs.out.find("step 0 start"), std::string::npos) << logs.out;
  EXPECT_NE(logs.out.find("[1] hello from git uid=1000"), std::string::npos) << logs.out;
  EXPECT_NE(logs.out.find("source " + repo + " commit " + commit + " path app"), std::string::npos)
      << logs.out;
  EXPECT_EQ(everythingUnder(state).find(value), std::string::npos);
  EXPECT_EQ((apply.out + apply.err + logs.out).find(value), std::string::npos);
  CommandRun verify = test::runHyperctl(state, {"verify", "build/app"});
  EXPECT_EQ(verify.exitCode, 0) << verify.describe();
  // The provenance (a DSSE envelope: base64 of the in-toto statement) names the commit and steps.
  auto envelopeText = readFile(state + "/store/provenance/" + digest.substr(7) + ".dsse.json");
  ASSERT_TRUE(envelopeText.isOk()) << envelopeText.status().message();
  auto envelope = nlohmann::json::parse(*envelopeText, nullptr, false);
  ASSERT_TRUE(envelope.is_object());
  std::string statement;
  ASSERT_TRUE(decodeBase64(envelope.value("payload", ""), statement));
  EXPECT_NE(statement.find(commit), std::string::npos);
  EXPECT_NE(statement.find("./gen.sh > /out/app"), std::string::npos);

  // The artifact runs in a VM: an initramfs takes it as a file (artifact: {build, name}) and the
  // VM's readiness line is what it prints.
  const std::string vmRun = dir + "/vmrun";
  std::ofstream(dir + "/vm.yaml")
      << readFile(dir + "/builds.yaml").value()
      << "---\napiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: app-initrd}\n"
         "spec:\n  type: initramfs\n  initramfs:\n    files:\n"
         "    - {path: /init, mode: \"0755\", content: \"#!/bin/sh\\n/bin/busybox --install -s "
         "/bin\\n/bin/run\\npoweroff -f\\n\"}\n"
         "    - {path: /bin/run, mode: \"0755\", artifact: {build: app, name: run}}\n"
         "---\napiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: app-vm}\nspec:\n"
         "  kernel: {build: builder-kernel}\n  initrd: {build: app-initrd}\n"
         "  readiness: {consoleLine: \"ran: hello from git\"}\n";
  test::HyperctlEnv vmHow = how;
  vmHow.env.push_back("HYPER_VM_RUN_DIR=" + vmRun);
  CommandRun vm = test::runHyperctl(state, {"apply", "-f", dir + "/vm.yaml"}, vmHow);
  EXPECT_EQ(vm.exitCode, 0) << vm.describe();
  auto console = readFile(vmRun + "/app-vm/console.log");
  EXPECT_TRUE(console.isOk() && console->find("ran: hello from git") != std::string::npos)
      << (console.isOk() ? *console : console.status().message());
  test::killQemusUnder(vmRun);

  // A failing step is named with its exit code. With keepFailed its builder stays up for
  // inspection until `hyperctl build release`.
  std::ofstream(dir + "/fail.yaml")
      << kBuilderBuilds
      << scriptBuild("broken", source + "}", "[['true'], [sh, -c, 'echo no >&2; exit 3']]",
                     "    keepFailed: true\n");
  CommandRun failed = test::runHyperctl(state, {"apply", "-f", dir + "/fail.yaml"}, how);
  EXPECT_NE(failed.exitCode, 0);
  EXPECT_NE(failed.err.find("step 1 [sh, -c, echo no >&2; exit 3] exited with code 3"),
            std::string::npos)
      << failed.describe();
  CommandRun brokenLog = test::runHyperctl(state, {"logs", "build/broken"});
  EXPECT_NE(brokenLog.out.find("[1!] no"), std::string::npos) << brokenLog.out;
  EXPECT_NE(brokenLog.out.find("keepFailed: builder build-"), std::string::npos) << brokenLog.out;
  EXPECT_FALSE(fs::is_empty(runDir, ec)) << "the failed builder was not kept";
  CommandRun kept = test::runArgv({"pgrep", "-f", runDir});
  EXPECT_EQ(kept.exitCode, 0) << "no QEMU runs for the kept builder";
  CommandRun release = test::runHyperctl(state, {"build", "release", "broken"}, how);
  EXPECT_EQ(release.exitCode, 0) << release.describe();
  CommandRun again2 = test::runHyperctl(state, {"build", "release", "broken"}, how);
  EXPECT_NE(again2.exitCode, 0) << again2.describe();
  EXPECT_NE(again2.err.find("no builder is kept"), std::string::npos) << again2.describe();

  // Past its timeout the builder is killed: no QEMU, no run dir left.
  std::ofstream(dir + "/slow.yaml")
      << kBuilderBuilds
      << scriptBuild("slow", source + "}", "[[sleep, '600']]", "    timeoutSeconds: 10\n");
  CommandRun slow = test::runHyperctl(state, {"apply", "-f", dir + "/slow.yaml"}, how);
  EXPECT_NE(slow.exitCode, 0);
  EXPECT_NE(slow.err.find("timeout"), std::string::npos) << slow.describe();
  EXPECT_TRUE(fs::is_empty(runDir, ec)) << "a builder's run dir is left in " << runDir;
  CommandRun qemus = test::runArgv({"pgrep", "-f", runDir});
  EXPECT_NE(qemus.exitCode, 0) << "a process of " << runDir << " still runs: " << qemus.out;

  // A Build that follows a branch: plan resolves the branch to its commit (an input of the key),
  // a push moves it, and the build runs at the commit its plan saw.
  std::ofstream(dir + "/follow.yaml")
      << kBuilderBuilds
      << scriptBuild("follow", "{url: " + repo + ", ref: main, path: app}",
                     "[[sh, -c, 'cat data/greeting.txt > /out/app']]");
  auto plannedCommit = [&]() -> std::string {
    CommandRun diff = test::runHyperctl(state, {"diff", "-f", dir + "/follow.yaml", "-o", "json"});
    auto plan = nlohmann::json::parse(diff.out, nullptr, false);
    if (!plan.is_object()) {
      return "unparsable plan: " + diff.describe();
    }
    for (const auto& a : plan.value("actions", nlohmann::json::array())) {
      if (a.value("id", "") == "Build/follow") {
        return a["private"]["inputs"].value("commit", "no commit input");
      }
    }
    return "no action for Build/follow: " + diff.out;
  };
  EXPECT_EQ(plannedCommit(), commit);
  ASSERT_TRUE((*tmp)->write("work/app/data/greeting.txt", "hello again\n").isOk());
  test::runGit({"-C", work, "commit", "--quiet", "-am", "again"});
  test::runGit({"-C", work, "push", "--quiet", "origin", "HEAD:main"});
  const std::string second = test::runGit({"-C", work, "rev-parse", "HEAD"});
  ASSERT_NE(second, commit);
  EXPECT_EQ(plannedCommit(), second);
  CommandRun follow = test::runHyperctl(state, {"apply", "-f", dir + "/follow.yaml"}, how);
  ASSERT_EQ(follow.exitCode, 0) << follow.describe();
  const std::string followed = artifactDigest(state, "follow", "app");
  ASSERT_EQ(followed.rfind("sha256:", 0), 0u) << followed;
  auto followedBytes = readFile(state + "/store/sha256/" + followed.substr(7), 1 << 10);
  EXPECT_EQ(followedBytes.isOk() ? *followedBytes : followedBytes.status().message(),
            "hello again\n");
  CommandRun followLog = test::runHyperctl(state, {"logs", "build/follow"});
  EXPECT_NE(followLog.out.find("commit " + second + " path app"), std::string::npos)
      << followLog.out;
  CommandRun settled = test::runHyperctl(state, {"diff", "-f", dir + "/follow.yaml"});
  EXPECT_EQ(settled.exitCode, 0) << settled.describe();
  EXPECT_NE(settled.out.find("No changes"), std::string::npos) << settled.describe();

  // The source may be a directory of the manifests' own tree: read by the loader with the
  // manifest (an executable keeps its mode), a change to a file in it is a new key.
  ASSERT_TRUE((*tmp)->write("local/app/data/greeting.txt", "hello from the manifests\n").isOk());
  ASSERT_TRUE((*tmp)->write("local/app/show.sh", "#!/bin/sh\ncat data/greeting.txt\n").isOk());
  fs::permissions(dir + "/local/app/show.sh", fs::perms::owner_exec, fs::perm_options::add);
  std::ofstream(dir + "/local/build.yaml")
      << kBuilderBuilds
      << "---\napiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: local}\nspec:\n"
         "  type: script\n  script:\n    source: {path: app/}\n"
         "    builder: {kernel: {build: builder-kernel}, initrd: {build: builder-initrd}}\n"
         "    steps: [[sh, -c, './show.sh > /out/app']]\n"
         "    outputs:\n    - {name: app, path: /out/app}\n";
  CommandRun local = test::runHyperctl(state, {"apply", "-f", dir + "/local"}, how);
  ASSERT_EQ(local.exitCode, 0) << local.describe();
  const std::string localDigest = artifactDigest(state, "local", "app");
  ASSERT_EQ(localDigest.rfind("sha256:", 0), 0u) << localDigest;
  auto localBytes = readFile(state + "/store/sha256/" + localDigest.substr(7), 1 << 10);
  EXPECT_EQ(localBytes.isOk() ? *localBytes : localBytes.status().message(),
            "hello from the manifests\n");
  CommandRun localLog = test::runHyperctl(state, {"logs", "build/local"});
  EXPECT_NE(localLog.out.find("source path app/ sha256:"), std::string::npos) << localLog.out;
  EXPECT_NE(localLog.out.find(": 2 files, 57 bytes"), std::string::npos) << localLog.out;
  ASSERT_TRUE((*tmp)->write("local/app/data/greeting.txt", "changed\n").isOk());
  CommandRun localDiff = test::runHyperctl(state, {"diff", "-f", dir + "/local"});
  EXPECT_NE(localDiff.out.find("source:app/"), std::string::npos) << localDiff.describe();

  // The same key on a fresh state directory gives the same bytes (the kernel and image are
  // cache hits of the .deb cache; the builder runs again).
  const std::string state2 = dir + "/state2";
  fs::create_directories(state2 + "/keys");
  fs::copy(state + "/keys", state2 + "/keys", fs::copy_options::recursive, ec);
  CommandRun again = test::runHyperctl(state2, {"apply", "-f", dir + "/builds.yaml"}, how);
  ASSERT_EQ(again.exitCode, 0) << again.describe();
  EXPECT_EQ(artifactDigest(state2, "app", "app"), digest);
}

// The issue's own case: a small C program in a git repository, compiled by gcc in a builder VM
// whose rootfs is a Debian rootfs Build with the toolchain (the steps run chrooted in it), and
// the static binary booted in a VM that runs it.
TEST(ScriptBuildTest, ACProgramCompiledByGccInABuilderRootfsRunsInAVm) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root";
  }
  if (!test::guestImage().skipReason.empty()) {
    GTEST_SKIP() << test::guestImage().skipReason;
  }
  const std::string mirror = test::hostBookwormMirror();
  ASSERT_NE(mirror, "") << "the host's apt lists hold no bookworm (scripts/deps.sh updates them)";
  auto tmp = test::TempDir::create("script-gcc");
  ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
  const std::string dir = (*tmp)->path();
  // Short (a QMP socket path must fit in sun_path); killed and removed at the end.
  const RunDir run("/tmp/hg-" + std::to_string(::getpid()));
  const std::string& runDir = run.path;
  test::HyperctlEnv how;
  how.env = {"HYPER_BUILDER_RUN_DIR=" + runDir, "HYPER_VM_RUN_DIR=" + runDir};

  const std::string repo = dir + "/hello.git";
  const std::string work = dir + "/work";
  test::runGit({"init", "--quiet", "--bare", repo});
  test::runGit({"clone", "--quiet", repo, work});
  ASSERT_TRUE((*tmp)
                  ->write("work/hello.c",
                          "#include <stdio.h>\n\nint main(void) {\n"
                          "  printf(\"hello from C, compiled by gcc %d in a builder VM\\n\", "
                          "__GNUC__);\n  return 0;\n}\n")
                  .isOk());
  test::runGit({"-C", work, "add", "-A"});
  test::runGit({"-C", work, "commit", "--quiet", "-m", "hello"});
  test::runGit({"-C", work, "push", "--quiet", "origin", "HEAD:main"});
  const std::string commit = test::runGit({"-C", work, "rev-parse", "HEAD"});

  std::ofstream(dir + "/builds.yaml")
      << kBuilderBuilds
      << "---\napiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: gcc-rootfs}\n"
         "spec:\n  type: rootfs\n  rootfs:\n    suite: bookworm\n    mirror: "
      << mirror << "\n    packages: [gcc, libc6-dev]\n"
      << "---\napiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: hello}\nspec:\n"
         "  type: script\n  script:\n    source: {git: {url: "
      << repo << ", commit: " << commit
      << "}}\n    builder: {kernel: {build: builder-kernel}, initrd: {build: builder-initrd}, "
         "rootfs: {build: gcc-rootfs}, memoryMiB: 1024}\n"
         "    steps: [[gcc, -static, -O2, -o, /out/hello, hello.c]]\n"
         "    outputs: [{name: hello, path: /out/hello}]\n"
      << "---\napiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: hello-initrd}\n"
         "spec:\n  type: initramfs\n  initramfs:\n    busybox: true\n    files:\n"
         "    - {path: /init, mode: \"0755\", content: \"#!/bin/sh\\n/bin/hello\\n"
         "/bin/busybox poweroff -f\\n\"}\n"
         "    - {path: /bin/hello, mode: \"0755\", artifact: {build: hello, name: hello}}\n"
         "---\napiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: hello-vm}\nspec:\n"
         "  kernel: {build: builder-kernel}\n  initrd: {build: hello-initrd}\n"
         "  readiness: {consoleLine: \"hello from C, compiled by gcc 12 in a builder VM\"}\n";
  const std::string state = dir + "/state";
  CommandRun apply = test::runHyperctl(state, {"apply", "-f", dir + "/builds.yaml"}, how);
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();
  CommandRun logs = test::runHyperctl(state, {"logs", "build/hello"});
  EXPECT_NE(logs.out.find("step 0 exit 0"), std::string::npos) << logs.out;
  // gcc exists only in the rootfs: the step ran chrooted in it.
  const std::string digest = artifactDigest(state, "hello", "hello");
  ASSERT_EQ(digest.rfind("sha256:", 0), 0u) << digest;
  auto binary = readFile(state + "/store/sha256/" + digest.substr(7), 16 << 20);
  ASSERT_TRUE(binary.isOk()) << binary.status().message();
  EXPECT_EQ(binary->substr(0, 4),
            "\x7f"
            "ELF");
  auto console = readFile(runDir + "/hello-vm/console.log");
  EXPECT_TRUE(console.isOk() && console->find("hello from C, compiled by gcc 12 in a builder VM") !=
                                    std::string::npos)
      << (console.isOk() ? *console : console.status().message());
}

// A builder on a build network: its NetworkPolicy's rules are its own (an allowed port on the
// gateway answers, another does not), its tap is gone with it, and a build without a network
// cannot reach the gateway at all. In a network namespace of the test's own.
TEST(ScriptBuildTest, ABuilderReachesWhatItsNetworkPolicyAllowsAndNothingWithoutOne) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root";
  }
  if (!test::guestImage().skipReason.empty()) {
    GTEST_SKIP() << test::guestImage().skipReason;
  }
  auto tmp = test::TempDir::create("script-build-net");
  ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
  const std::string dir = (*tmp)->path();
  auto ns = test::NamedNetns::create(test::uniqueNetnsName("bnet"));
  ASSERT_TRUE(ns.isOk()) << ns.status().message();
  const RunDir run("/tmp/hbn-" + std::to_string(::getpid()));
  test::HyperctlEnv how;
  how.env = {"HYPER_BUILDER_RUN_DIR=" + run.path};
  how.prefix = {"ip", "netns", "exec", (*ns)->name()};

  // Two web servers in the namespace, on every address (the bridge's comes with the Network).
  ASSERT_TRUE((*tmp)->write("www/hello.txt", "hello over the build network\n").isOk());
  struct Servers {
    std::string root;
    ~Servers() { (void)test::runArgv({"pkill", "-f", "httpd -p 808[01] -h " + root}); }
  } servers{dir + "/www"};
  for (const char* port : {"8080", "8081"}) {
    // It forks into the background; its output goes nowhere, so run() does not wait for it.
    auto started = (*ns)->run({"sh", "-c",
                               "exec busybox httpd -p " + std::string(port) + " -h " +
                                   servers.root + " </dev/null >/dev/null 2>&1"});
    ASSERT_TRUE(started.isOk()) << started.status().message();
  }

  const std::string network =
      "---\napiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata: {name: builds}\n"
      "spec: {cidr: 10.99.0.0/24}\n"
      "---\napiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: builds-web}\n"
      "spec:\n  network: builds\n  egress:\n    mode: allowlist\n"
      "    allow: [{cidr: 10.99.0.1/32, ports: [8080], protocol: tcp}]\n";
  const std::string steps =
      "[[sh, -c, 'timeout 10 wget -q -O /out/app http://10.99.0.1:8080/hello.txt'], "
      "[sh, -c, 'if timeout 5 wget -q -O /dev/null http://10.99.0.1:8081/hello.txt; then echo "
      "reached 8081; exit 1; fi; echo 8081 blocked']]";
  auto fetchBuild = [&](const std::string& name, const std::string& extra) {
    return "---\napiVersion: hyper.dev/v1alpha1\nkind: Build\nmetadata: {name: " + name +
           "}\nspec:\n  type: script\n  script:\n    source: {path: src}\n"
           "    builder: {kernel: {build: builder-kernel}, initrd: {build: builder-initrd}}\n"
           "    steps: " +
           steps + "\n" + extra + "    outputs:\n    - {name: app, path: /out/app}\n";
  };
  ASSERT_TRUE((*tmp)->write("m/src/README", "nothing to build\n").isOk());
  std::ofstream(dir + "/m/builds.yaml")
      << kBuilderBuilds << network << fetchBuild("fetch", "    network: {policy: builds-web}\n");
  const std::string state = dir + "/state";
  CommandRun apply = test::runHyperctl(state, {"apply", "-f", dir + "/m"}, how);
  ASSERT_EQ(apply.exitCode, 0) << apply.describe();
  const std::string digest = artifactDigest(state, "fetch", "app");
  ASSERT_EQ(digest.rfind("sha256:", 0), 0u) << digest;
  auto bytes = readFile(state + "/store/sha256/" + digest.substr(7), 1 << 10);
  EXPECT_EQ(bytes.isOk() ? *bytes : bytes.status().message(), "hello over the build network\n");
  CommandRun log = test::runHyperctl(state, {"logs", "build/fetch"});
  EXPECT_NE(log.out.find("network builds 10.99.0.254 by NetworkPolicy/builds-web) started"),
            std::string::npos)
      << log.out;
  EXPECT_NE(log.out.find("[1] 8081 blocked"), std::string::npos) << log.out;
  auto links = (*ns)->run({"ip", "-o", "link", "show"});
  ASSERT_TRUE(links.isOk()) << links.status().message();
  EXPECT_EQ(links->find("hv-build"), std::string::npos) << "the builder's tap is left: " << *links;

  // Without a network the same step cannot reach the gateway.
  std::ofstream(dir + "/m/offline.yaml") << fetchBuild("offline", "");
  CommandRun offline = test::runHyperctl(state, {"apply", "-f", dir + "/m"}, how);
  EXPECT_NE(offline.exitCode, 0) << offline.describe();
  EXPECT_NE(offline.err.find("Build/offline"), std::string::npos) << offline.describe();
  EXPECT_NE(offline.err.find("step 0 [sh, -c, timeout 10 wget"), std::string::npos)
      << offline.describe();
  fs::remove(dir + "/m/offline.yaml");

  // A policy with a selector, or a network that carries a VM, is no build network.
  std::ofstream(dir + "/m/more.yaml")
      << "---\napiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: picky}\n"
         "spec:\n  network: builds\n  selector: {matchLabels: {role: web}}\n"
      << fetchBuild("picky", "    network: {policy: picky}\n");
  CommandRun picky = test::runHyperctl(state, {"diff", "-f", dir + "/m"}, how);
  EXPECT_NE(picky.err.find("spec.script.network.policy: NetworkPolicy/picky has a selector"),
            std::string::npos)
      << picky.describe();
  std::ofstream(dir + "/m/more.yaml")
      << "---\napiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: squatter}\nspec:\n"
         "  kernel: {build: builder-kernel}\n  initrd: {build: builder-initrd}\n"
         "  network: {name: builds}\n";
  CommandRun squatted = test::runHyperctl(state, {"diff", "-f", dir + "/m"}, how);
  EXPECT_NE(squatted.err.find("Network/builds (of NetworkPolicy/builds-web) carries VM/squatter: "
                              "expected a network for builders only"),
            std::string::npos)
      << squatted.describe();
}

}  // namespace
}  // namespace hyper
