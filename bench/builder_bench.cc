// hyper_builder_bench: what building in an ephemeral builder VM costs against building on the
// host (issue 15).
//
// One script build, a shell build.sh in a git repository made in a temp dir (a few MB generated
// with seq and hashed, 300 files written, tarred, unpacked and hashed, a gzip round trip; it
// writes its result to $OUT/result), is run
//   - on the host: the pinned commit's tree exported by GitSource::exportTree into a temp dir, then
//     the same steps with the same environment (scriptEnvironment, with HOME and OUT that exist on
//     the host) run with `env -i` in that directory, as root, with the host's sh and tools;
//   - in a builder VM: runScriptBuild (source export -> ext4 images -> builder VM under QEMU, 1
//     vCPU, TCG here -> hyper-build-agent runs the steps as uid 1000 in /build with the initrd's
//     busybox -> the output read with debugfs once the builder powered off).
// Wall times (steady_clock), median and min of each side (host 5 runs, VM 3 by default), the
// ratio VM / host, the builder's own timings (source, boot, steps, tear-down) for each run, and
// boot + tear-down as a share of the VM's time. Kernel and initrd are the test guest's Builds
// (tests/integration/guest_util.h): Debian's kernel, hyper's initramfs with the build agent.
//
// It prints figures; it is not a test. It exits 1 only when something is functionally wrong (a
// build failed, or the VM's result is not the host's bytes); it prints "skipped: <reason>" and
// exits 0 when not root or when the guest kernel and initrd cannot be made; 2 on a bad argument.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/file.h"
#include "host/command.h"
#include "providers/build/build_queue.h"
#include "providers/build/build_spec.h"
#include "providers/build/script_build.h"
#include "providers/vmm/qemu_driver.h"
#include "source/git_source.h"
#include "store/artifact_store.h"
#include "tests/integration/guest_util.h"

namespace hyper::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using providers::build::BuildLog;
using providers::build::BuildSpec;
using providers::build::ScriptRun;
using providers::build::ScriptTimings;

constexpr const char* kBuildName = "bench";

// The build. The same bytes come out with busybox's sh and tools (the builder) and with a host's
// sh and GNU tools: only content is hashed, never a tar or gzip stream.
constexpr const char* kBuildScript = R"sh(#!/bin/sh
# hyper_builder_bench's build: a few MB generated and hashed, 300 files written, tarred, unpacked
# and hashed again, a gzip round trip.
set -eu
out="${OUT:-/out}"
rm -rf work
mkdir -p work/files work/unpacked
seq 1 200000 > work/numbers.txt
numbers=$(sha256sum < work/numbers.txt | cut -c1-64)
lines=$(wc -l < work/numbers.txt)
i=0
while [ "$i" -lt 300 ]; do
  seq "$i" $((i + 1000)) > "work/files/f$i.txt"
  i=$((i + 1))
done
tar -C work -cf work/files.tar files
tar -C work/unpacked -xf work/files.tar
files=$(cd work/unpacked && sha256sum files/f*.txt | sha256sum | cut -c1-64)
count=$(ls work/unpacked/files | wc -l)
gzip -6 -c < work/files.tar > work/files.tar.gz
if [ "$(gzip -dc < work/files.tar.gz | sha256sum)" = "$(sha256sum < work/files.tar)" ]; then
  gz=ok
else
  gz=differs
fi
printf 'numbers %s %s\nfiles %s %s\ngzip round trip %s\n' "$lines" "$numbers" "$count" "$files" \
  "$gz" > "$out/result"
)sh";

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) {
    return 0;
  }
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double minOf(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}

// A fresh directory under `parent` ("<parent>/<name>-XXXXXX").
std::string makeTemp(const std::string& parent, const std::string& name) {
  std::string tmpl = parent + "/" + name + "-XXXXXX";
  return ::mkdtemp(tmpl.data()) == nullptr ? "" : tmpl;
}

// git with a fixed identity; its stdout (trimmed), or an error.
Result<std::string> git(const std::string& repo, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"git",
                                   "-C",
                                   repo,
                                   "-c",
                                   "user.name=hyper bench",
                                   "-c",
                                   "user.email=bench@hyper.invalid",
                                   "-c",
                                   "commit.gpgsign=false"};
  argv.insert(argv.end(), args.begin(), args.end());
  HYPER_ASSIGN_OR_RETURN(std::string out, host::runChecked(argv));
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

// The source repository: build.sh committed on main. The commit, or an error.
Result<std::string> makeRepository(const std::string& repo) {
  fs::create_directories(repo);
  HYPER_RETURN_IF_ERROR(git(repo, {"init", "--quiet", "--initial-branch=main"}).status());
  std::ofstream(repo + "/build.sh") << kBuildScript;
  std::ofstream(repo + "/README") << "hyper_builder_bench's source: sh ./build.sh\n";
  fs::permissions(repo + "/build.sh", fs::perms::owner_exec, fs::perm_options::add);
  HYPER_RETURN_IF_ERROR(git(repo, {"add", "-A"}).status());
  HYPER_RETURN_IF_ERROR(git(repo, {"commit", "--quiet", "-m", "build"}).status());
  return git(repo, {"rev-parse", "HEAD"});
}

struct HostRun {
  double exportMs = 0;
  double stepsMs = 0;
  std::string result;
};

// The build on the host: the commit's tree exported into a fresh directory, each step run there
// with exactly the build's environment (env -i), HOME being that directory and OUT `out`.
Result<HostRun> runOnHost(const BuildSpec& spec, const std::string& work,
                          const std::string& cacheDir) {
  HostRun r;
  const std::string tree = work + "/src";
  const std::string out = work + "/out";
  fs::create_directories(tree);
  fs::create_directories(out);
  auto start = Clock::now();
  controller::SourceSpec source;
  source.location = spec.gitUrl;
  source.ref = spec.gitCommit;
  source.path = spec.gitPath;
  source.cacheDir = cacheDir;
  HYPER_ASSIGN_OR_RETURN(auto gitSource, controller::GitSource::open(source));
  HYPER_ASSIGN_OR_RETURN(controller::ExportedTree exported, gitSource->exportTree(tree));
  gitSource.reset();
  if (exported.commit != spec.gitCommit) {
    return Status::error("exported commit " + exported.commit + ", expected " + spec.gitCommit);
  }
  auto stepsStart = Clock::now();
  r.exportMs = ms(stepsStart - start);

  BuildSpec hostSpec = spec;
  hostSpec.env["OUT"] = out;
  auto env = providers::build::scriptEnvironment(hostSpec);
  env["HOME"] = tree;  // /build is not on the host; the build's own directory stands in for it
  host::CommandOptions options;
  options.cwd = tree;
  options.timeout = std::chrono::seconds(spec.timeoutSeconds);
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    std::vector<std::string> argv = {"env", "-i"};
    for (const auto& [k, v] : env) {
      argv.push_back(k + "=" + v);
    }
    argv.insert(argv.end(), spec.steps[i].begin(), spec.steps[i].end());
    auto step = host::runCommand(argv, "", options);
    if (!step.isOk()) {
      return step.status().withContext("host step " + std::to_string(i));
    }
    if (step->exitCode != 0) {
      return Status::error(
          providers::build::describeStepFailure(spec, static_cast<int>(i), step->exitCode) +
          " on the host: " + step->err);
    }
  }
  r.stepsMs = ms(Clock::now() - stepsStart);
  HYPER_ASSIGN_OR_RETURN(r.result, readFile(out + "/result", 1 << 20));
  return r;
}

struct VmRun {
  double totalMs = 0;
  ScriptTimings timings;
  std::string result;
  std::string log;
};

// The build in a builder VM: runScriptBuild with a fresh scratch directory (a ScriptRun is not
// copyable: its secrets are not).
Result<VmRun> runInVm(const BuildSpec& spec, ScriptRun& run, const std::string& scratch) {
  VmRun r;
  run.scratch = scratch;
  fs::create_directories(scratch);
  BuildLog log;
  auto start = Clock::now();
  auto artifacts = providers::build::runScriptBuild(spec, run, log, &r.timings);
  r.totalMs = ms(Clock::now() - start);
  r.log = log.text();
  if (!artifacts.isOk()) {
    return artifacts.status().withContext("runScriptBuild; its log:\n" + r.log);
  }
  if (artifacts->size() != 1 || (*artifacts)[0].name != "result") {
    return Status::error("runScriptBuild returned " + std::to_string(artifacts->size()) +
                         " artifacts, expected the one named result");
  }
  HYPER_ASSIGN_OR_RETURN(r.result, readFile((*artifacts)[0].path, 1 << 20));
  return r;
}

// The builder's line of the log ("builder build-... (1 vCPU, 512 MiB, tcg, no network) started").
std::string builderLine(const std::string& log) {
  size_t at = log.find("builder build-");
  if (at == std::string::npos) {
    return "";
  }
  return log.substr(at, log.find('\n', at) - at);
}

int run(int hostRuns, int vmRuns) {
  if (::geteuid() != 0) {
    std::printf("hyper_builder_bench: skipped: needs root (a builder VM under QEMU)\n");
    return 0;
  }
  const auto& image = test::guestImage();
  if (!image.skipReason.empty()) {
    std::printf("hyper_builder_bench: skipped: %s\n", image.skipReason.c_str());
    return 0;
  }
  const std::string root = makeTemp(fs::temp_directory_path().string(), "hyper-builder-bench");
  if (root.empty()) {
    std::fprintf(stderr, "cannot make a temp directory\n");
    return 1;
  }
  const std::string runRoot = "/tmp/hyper-bb-" + std::to_string(::getpid());  // short: sockets
  auto driver =
      std::make_shared<providers::vmm::QemuDriver>(providers::vmm::QemuDriverOptions{runRoot});
  struct Cleanup {
    std::string root, runRoot;
    std::shared_ptr<providers::vmm::QemuDriver> driver;
    ~Cleanup() {
      // No QEMU outlives the benchmark: the builder (runScriptBuild stops it; this is for a
      // failure half-way), and whatever else is under the run root.
      (void)providers::build::releaseBuilder(*driver, kBuildName);
      auto vms = driver->list();
      if (vms.isOk()) {
        for (const auto& vm : *vms) {
          (void)driver->stop(vm.name);
        }
      }
      test::killQemusUnder(runRoot);
      std::error_code ec;
      fs::remove_all(runRoot, ec);
      fs::remove_all(root, ec);
    }
  } cleanup{root, runRoot, driver};

  auto commit = makeRepository(root + "/repo");
  if (!commit.isOk() || commit->size() != 40) {
    std::fprintf(stderr, "the source repository: %s\n",
                 commit.isOk() ? commit->c_str() : commit.status().message().c_str());
    return 1;
  }

  BuildSpec spec;
  spec.type = "script";
  spec.gitUrl = root + "/repo";
  spec.gitCommit = *commit;
  spec.steps = {{"sh", "./build.sh"}};
  spec.env = {{"OUT", "/out"}};
  spec.outputs = {{"result", "/out/result"}};
  spec.outputSizeMiB = 64;

  std::printf(
      "script build: sh ./build.sh (seq + sha256sum of 1.3 MB, 300 files written, tarred, "
      "unpacked and hashed, gzip round trip) from commit %.12s\n",
      commit->c_str());
  std::error_code ec;
  std::printf("host: %s, as root; builder: kernel and initrd of the test guest, busybox\n",
              fs::canonical("/bin/sh", ec).c_str());
  std::fflush(stdout);

  // The host, first: its runs are quick and show what the VM's result must be.
  std::vector<double> hostTotal, hostSteps, hostExport;
  std::string hostResult;
  for (int i = 0; i < hostRuns; ++i) {
    auto r = runOnHost(spec, root + "/host-" + std::to_string(i), root + "/host-cache.git");
    if (!r.isOk()) {
      std::fprintf(stderr, "host run %d: %s\n", i, r.status().message().c_str());
      return 1;
    }
    if (i == 0) {
      hostResult = r->result;
    } else if (r->result != hostResult) {
      std::fprintf(stderr, "host run %d made other bytes than run 0:\n%s---\n%s", i,
                   r->result.c_str(), hostResult.c_str());
      return 1;
    }
    hostExport.push_back(r->exportMs);
    hostSteps.push_back(r->stepsMs);
    hostTotal.push_back(r->exportMs + r->stepsMs);
    std::printf("host run %d: %7.0f ms = export %5.1f ms + steps %7.0f ms\n", i,
                r->exportMs + r->stepsMs, r->exportMs, r->stepsMs);
    std::fflush(stdout);
    fs::remove_all(root + "/host-" + std::to_string(i), ec);
  }
  std::printf("result (host):\n%s", hostResult.c_str());

  ScriptRun vm;
  vm.buildName = kBuildName;
  vm.key = store::digestOf("hyper_builder_bench " + *commit).substr(7);
  vm.kernel = image.kernel;
  vm.initrd = image.initrd;
  vm.gitCacheDir = root + "/git-cache";
  vm.driver = driver;
  fs::create_directories(vm.gitCacheDir);

  std::vector<double> vmTotal, vmSource, vmBoot, vmSteps, vmTeardown, fixedShare;
  for (int i = 0; i < vmRuns; ++i) {
    const std::string scratch = root + "/vm-" + std::to_string(i);
    auto r = runInVm(spec, vm, scratch);
    if (!r.isOk()) {
      std::fprintf(stderr, "VM run %d: %s\n", i, r.status().message().c_str());
      return 1;
    }
    if (i == 0) {
      std::printf("%s\n", builderLine(r->log).c_str());
    }
    if (r->result != hostResult) {
      std::fprintf(stderr, "VM run %d made other bytes than the host:\n%s--- host:\n%s", i,
                   r->result.c_str(), hostResult.c_str());
      return 1;
    }
    const ScriptTimings& t = r->timings;
    const double other =
        r->totalMs - 1000 * (t.sourceSeconds + t.bootSeconds + t.stepsSeconds + t.teardownSeconds);
    vmTotal.push_back(r->totalMs);
    vmSource.push_back(1000 * t.sourceSeconds);
    vmBoot.push_back(1000 * t.bootSeconds);
    vmSteps.push_back(1000 * t.stepsSeconds);
    vmTeardown.push_back(1000 * t.teardownSeconds);
    fixedShare.push_back(1000 * (t.bootSeconds + t.teardownSeconds) / r->totalMs);
    std::printf(
        "VM run %d: %7.0f ms = source %5.0f ms + boot %6.0f ms + steps %7.0f ms + tear-down %5.0f "
        "ms (+ %3.0f ms else); boot + tear-down %.1f%%\n",
        i, r->totalMs, 1000 * t.sourceSeconds, 1000 * t.bootSeconds, 1000 * t.stepsSeconds,
        1000 * t.teardownSeconds, other, 100 * fixedShare.back());
    std::fflush(stdout);
    fs::remove_all(scratch, ec);
  }

  // No builder may be left once runScriptBuild returned.
  auto left = driver->list();
  if (left.isOk() && !left->empty()) {
    std::fprintf(stderr, "%zu VMs still running after the builds (builder %s)\n", left->size(),
                 (*left)[0].name.c_str());
    return 1;
  }

  std::printf("result (VM): the same %zu bytes as the host's\n", hostResult.size());
  std::printf(
      "host over %d runs: median %.0f ms, min %.0f ms (export median %.1f ms; steps median "
      "%.0f ms, min %.0f ms)\n",
      hostRuns, median(hostTotal), minOf(hostTotal), median(hostExport), median(hostSteps),
      minOf(hostSteps));
  std::printf(
      "VM over %d runs:   median %.0f ms, min %.0f ms (medians: source %.0f ms, boot %.0f ms, "
      "steps %.0f ms, tear-down %.0f ms)\n",
      vmRuns, median(vmTotal), minOf(vmTotal), median(vmSource), median(vmBoot), median(vmSteps),
      median(vmTeardown));
  std::printf("ratio VM / host: %.1fx on the medians, %.1fx on the mins; the steps alone: %.1fx\n",
              median(vmTotal) / median(hostTotal), minOf(vmTotal) / minOf(hostTotal),
              median(vmSteps) / median(hostSteps));
  std::printf(
      "builder boot + tear-down: median %.1f%% of the VM's time (boot %.0f ms, tear-down %.0f "
      "ms)\n",
      100 * median(fixedShare), median(vmBoot), median(vmTeardown));
  return 0;
}

}  // namespace
}  // namespace hyper::bench

// hyper_builder_bench [VM_RUNS [HOST_RUNS]]: builds in a builder VM (default 3) and on the host
// (default 5).
int main(int argc, char** argv) {
  int vmRuns = 3, hostRuns = 5;
  if (argc > 3 || (argc > 1 && (vmRuns = std::atoi(argv[1])) < 1) ||
      (argc > 2 && (hostRuns = std::atoi(argv[2])) < 1)) {
    std::fprintf(stderr, "usage: hyper_builder_bench [VM_RUNS [HOST_RUNS]] (both at least 1)\n");
    return 2;
  }
  return hyper::bench::run(hostRuns, vmRuns);
}
