#include "providers/build/script_build.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "base/text_escape.h"
#include "host/command.h"
#include "netmodel/placement.h"
#include "providers/build/builder_session.h"
#include "providers/build/rootfs_build.h"
#include "providers/vmm/tap_device.h"
#include "reconciler/directory_archive.h"
#include "source/git_source.h"
#include "store/artifact_store.h"

namespace hyper::providers::build {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kBuildChannel = "hyper.build";
// The build user's uid and gid in the builder (hyper's init gives it /build and /out).
constexpr int kBuildUser = 1000;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::chrono::milliseconds leftUntil(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

// The steps' output, turned into log lines "[2] text" (stderr "[2!] text"), at most
// `maxBytes` of it; what is past that is counted and said once at the end.
class StepOutput {
 public:
  StepOutput(BuildLog& log, size_t maxBytes) : log_(log), maxBytes_(maxBytes) {}

  void add(int step, bool err, std::string_view bytes) {
    std::string& pending = pending_[err ? 1 : 0];
    if (step != step_[err ? 1 : 0]) {
      flush(err);
      step_[err ? 1 : 0] = step;
    }
    for (char c : bytes) {
      if (c == '\n') {
        emit(err, pending);
        pending.clear();
      } else if (pending.size() < 4096) {
        pending += c;
      }
    }
  }

  void flush(bool err) {
    std::string& pending = pending_[err ? 1 : 0];
    if (!pending.empty()) {
      emit(err, pending);
      pending.clear();
    }
  }

  void finish() {
    flush(false);
    flush(true);
    if (dropped_ > 0) {
      log_ += "(" + std::to_string(dropped_) + " bytes of step output not logged: over " +
              std::to_string(maxBytes_) + ")\n";
    }
  }

 private:
  void emit(bool err, const std::string& text) {
    if (logged_ + text.size() > maxBytes_) {
      dropped_ += text.size() + 1;
      return;
    }
    logged_ += text.size() + 1;
    const int step = step_[err ? 1 : 0];
    // The guest's bytes are escaped: no control character reaches a terminal or the log's lines.
    log_ += "[" + std::to_string(step) + (err ? "!" : "") + "] " + escapeControl(text) + "\n";
  }

  BuildLog& log_;
  size_t maxBytes_;
  size_t logged_ = 0;
  size_t dropped_ = 0;
  std::string pending_[2];
  int step_[2] = {-1, -1};
};

// The builder's command line: hyper's init in builder mode, its channel, the rootfs, the grants.
// The git source of a script build at `ref`, kept in one bare repository per URL.
controller::SourceSpec sourceSpecOf(const BuildSpec& spec, const std::string& gitCacheDir,
                                    const std::string& ref) {
  controller::SourceSpec source;
  source.location = spec.gitUrl;
  source.ref = ref;
  source.path = spec.gitPath;
  source.cacheDir = gitCacheDir + "/" + store::digestOf(spec.gitUrl).substr(7, 32) + ".git";
  return source;
}

std::string builderCmdline(const BuildSpec& spec, const ScriptRun& run) {
  std::string cmdline = "quiet hyper.builder=" + std::string(kBuildChannel);
  if (!run.rootfs.empty()) {
    cmdline += " hyper.disk=/lower";
  }
  if (!spec.secrets.empty()) {
    cmdline += " hyper.secrets=" + std::string(vmm::kSecretsChannel);
    for (const auto& s : spec.secrets) {
      cmdline += " hyper.secret=" + s.id + ":/run/secrets/" + s.id;
    }
  }
  if (spec.keepFailed) {
    cmdline += " hyper.keep=1";
  }
  if (run.network) {
    cmdline += " hyper.ip=" + netmodel::formatIpv4(run.network->ip) + "/" +
               std::to_string(run.network->prefix) +
               " hyper.gw=" + netmodel::formatIpv4(run.network->gateway);
  }
  return cmdline;
}

// One output file from the output image: its type checked with debugfs' stat (a regular file,
// not a directory, a link or a device the guest made), then dumped to `dest`. The image is the
// guest's work: debugfs reads it bounded in time, and the copy cannot be bigger than the image.
Status readOutput(const std::string& image, const ScriptOutput& output, const std::string& dest,
                  const host::CommandOptions& options) {
  const std::string inside = output.path.substr(4);  // "/out/app" -> "/app"
  auto stat = host::runChecked({"debugfs", "-R", "stat " + inside, image}, "", options);
  if (!stat.isOk()) {
    return stat.status().withContext("output " + output.name + " (" + output.path + ")");
  }
  if (stat->find("Type: regular") == std::string::npos) {
    const bool missing = stat->find("Inode:") == std::string::npos;
    return Status::error("output " + output.name + ": " + output.path +
                         (missing ? " is not there: expected the steps to write it"
                                  : " is not a regular file: expected a file (a directory, a "
                                    "link or a device is not an artifact)"));
  }
  auto dumped =
      host::runChecked({"debugfs", "-R", "dump " + inside + " " + dest, image}, "", options);
  if (!dumped.isOk()) {
    return dumped.status().withContext("output " + output.name + " (" + output.path + ")");
  }
  struct stat st {};
  if (::lstat(dest.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::error("output " + output.name + ": debugfs wrote no file for " + output.path);
  }
  ::chmod(dest.c_str(), 0644);
  return Status::ok();
}

}  // namespace

std::string builderVmName(const std::string& buildName) {
  return "build-" + store::digestOf(buildName).substr(7, 16);
}

Result<bool> releaseBuilder(vmm::VmDriver& driver, const std::string& buildName) {
  const std::string name = builderVmName(buildName);
  HYPER_ASSIGN_OR_RETURN(std::optional<vmm::VmHandle> found, driver.find(name));
  vmm::StopOptions quick;
  quick.powerdownGrace = std::chrono::milliseconds(0);
  HYPER_RETURN_IF_ERROR(driver.stop(name, quick).status());
  HYPER_RETURN_IF_ERROR(vmm::deleteTap(vmm::tapNameFor(name), name));
  return found.has_value();
}

std::string describeStepFailure(const BuildSpec& spec, int step, int code) {
  std::string argv;
  if (step >= 0 && static_cast<size_t>(step) < spec.steps.size()) {
    for (const auto& a : spec.steps[step]) {
      argv += (argv.empty() ? "" : ", ") + a;
    }
  }
  if (argv.size() > 200) {
    argv = argv.substr(0, 197) + "...";
  }
  return "step " + std::to_string(step) + " [" + argv + "] " +
         (code > 128 ? "was killed by signal " + std::to_string(code - 128)
                     : "exited with code " + std::to_string(code));
}

Result<std::string> resolveSourceCommit(const BuildSpec& spec, const std::string& gitCacheDir,
                                        std::chrono::milliseconds timeout) {
  if (spec.gitRef.empty()) {
    return spec.gitCommit;
  }
  controller::SourceSpec source = sourceSpecOf(spec, gitCacheDir, spec.gitRef);
  source.timeout = timeout;
  const std::string context =
      "resolve ref " + spec.gitRef + " of " + controller::stripUrlCredentials(spec.gitUrl);
  auto git = controller::GitSource::open(source);
  if (!git.isOk()) {
    return git.status().withContext(context);
  }
  auto commit = (*git)->remoteCommit();
  if (!commit.isOk()) {
    return commit.status().withContext(context);
  }
  return commit;
}

Result<std::vector<ScriptArtifact>> runScriptBuild(const BuildSpec& spec, const ScriptRun& run,
                                                   BuildLog& log, ScriptTimings* timings) {
  ScriptTimings t;
  const auto deadline =
      std::min(run.deadline, Clock::now() + std::chrono::seconds(spec.timeoutSeconds));
  host::CommandOptions options;
  options.cancel = run.cancel;
  options.timeout = leftUntil(deadline);

  // The source, at its pinned commit or as the manifests' revision has it, as the builder's
  // read-only disk.
  auto sourceStart = Clock::now();
  const std::string tree = run.scratch + "/src";
  fs::create_directories(tree);
  if (spec.sourceTree) {
    // Checked again: the archive may have come over the API from a local caller.
    auto entries = decodeDirectoryArchive(spec.sourceTree->bytes);
    if (!entries.isOk()) {
      return entries.status().withContext("the source " + spec.sourcePath);
    }
    HYPER_RETURN_IF_ERROR(
        writeDirectoryArchive(*entries, tree).withContext("the source " + spec.sourcePath));
    const ArchiveSummary summary = summarizeDirectoryArchive(*entries);
    log += "source path " + spec.sourcePath + " " + spec.sourceTree->digest + ": " +
           std::to_string(summary.files) + " files, " + std::to_string(summary.bytes) + " bytes\n";
  } else {
    if (spec.gitCommit.empty()) {
      return Status::error("the source's commit is not resolved (ref " + spec.gitRef + ")");
    }
    controller::SourceSpec source = sourceSpecOf(spec, run.gitCacheDir, spec.gitCommit);
    source.timeout = std::min(leftUntil(deadline), std::chrono::milliseconds(300000));
    HYPER_ASSIGN_OR_RETURN(auto git, controller::GitSource::open(source));
    HYPER_ASSIGN_OR_RETURN(controller::ExportedTree exported, git->exportTree(tree));
    git.reset();
    log += "source " + controller::stripUrlCredentials(spec.gitUrl) + " commit " + exported.commit +
           (spec.gitPath.empty() ? "" : " path " + spec.gitPath) + ": " +
           std::to_string(exported.files) + " files, " + std::to_string(exported.bytes) +
           " bytes\n";
  }
  HYPER_RETURN_IF_ERROR(
      makeExt4Image(tree, run.scratch + "/src.img", uuidFromHex(run.key), 0, options)
          .withContext("the source image"));
  fs::create_directories(run.scratch + "/empty");
  const std::string outImage = run.scratch + "/out.img";
  HYPER_RETURN_IF_ERROR(makeExt4Image(run.scratch + "/empty", outImage,
                                      uuidFromHex(store::digestOf(run.key + "/out").substr(7)),
                                      spec.outputSizeMiB, options)
                            .withContext("the output image"));
  t.sourceSeconds = secondsSince(sourceStart);

  // The builder: a fresh VM, no network device, gone when this returns (unless kept).
  vmm::VmSpec vm;
  vm.name = builderVmName(run.buildName);
  vm.vcpus = spec.builderVcpus;
  vm.memoryMiB = spec.builderMemoryMiB;
  vm.kernel = run.kernel;
  vm.initrd = run.initrd;
  vm.disk = run.rootfs;
  vm.diskReadOnly = !run.rootfsWritable;
  vm.cmdline = builderCmdline(spec, run);
  vm.socketChannels = {kBuildChannel};
  if (!spec.secrets.empty()) {
    vm.socketChannels.push_back(vmm::kSecretsChannel);
  }
  vm.extraDisks = {{run.scratch + "/src.img", true, "hyper-src"}, {outImage, false, "hyper-out"}};
  // A builder of this name kept from before (keepFailed) or left by a crash goes first.
  if (auto released = releaseBuilder(*run.driver, run.buildName); !released.isOk()) {
    return released.status().withContext("release the previous builder " + vm.name);
  } else if (*released) {
    log += "released the previous builder " + vm.name + "\n";
  }
  bool keep = false;
  // On a build network: a tap of its own on the bridge, gone with the builder (unless kept).
  struct TapOnExit {
    std::string tap;
    std::string vm;
    bool& keep;
    ~TapOnExit() {
      if (!tap.empty() && !keep) {
        (void)vmm::deleteTap(tap, vm);
      }
    }
  } tapOnExit{"", vm.name, keep};
  std::string networkText = "no network";
  if (run.network) {
    vm.tap = vmm::tapNameFor(vm.name);
    vm.mac = netmodel::vmDefaultMac(vm.name);
    HYPER_RETURN_IF_ERROR(vmm::createTap(vm.tap, run.network->bridge, vm.name)
                              .withContext("the builder's tap on " + run.network->bridge));
    tapOnExit.tap = vm.tap;
    networkText = "network " + run.network->network + " " + netmodel::formatIpv4(run.network->ip) +
                  " by NetworkPolicy/" + run.network->policy;
  }
  auto bootStart = Clock::now();
  HYPER_ASSIGN_OR_RETURN(vmm::VmHandle handle, run.driver->start(vm));
  struct StopOnExit {
    vmm::VmDriver& driver;
    std::string name;
    bool& keep;
    ~StopOnExit() {
      if (!keep) {
        vmm::StopOptions quick;
        quick.powerdownGrace = std::chrono::milliseconds(0);
        (void)driver.stop(name, quick);
      }
    }
  } stopOnExit{*run.driver, vm.name, keep};
  const std::string console = handle.consoleLog;
  auto withConsole = [&](const Status& s) {
    return Status::error(s.message() + "\nthe builder's console ends with:\n" +
                         vmm::lastLines(console, 15));
  };
  log += "builder " + vm.name + " (" + std::to_string(vm.vcpus) + " vCPU, " +
         std::to_string(vm.memoryMiB) + " MiB, " + std::string(vmm::accelName(handle.accel)) +
         ", " + networkText + ") started\n";

  if (!run.secrets.empty()) {
    std::vector<std::string> stored;
    Status delivered = vmm::deliverSecrets(
        vmm::channelSocketPath(handle.runDir, vmm::kSecretsChannel), run.secrets,
        vmm::DeliveryMode::Boot, std::min(leftUntil(deadline), std::chrono::milliseconds(120000)),
        run.cancel, &stored);
    if (run.onSecretDelivery) {
      run.onSecretDelivery(stored, delivered);
    }
    if (!delivered.isOk()) {
      return withConsole(delivered.withContext("deliver the build's secrets"));
    }
    log += "secrets delivered: " + std::to_string(stored.size()) + "\n";
  }

  HYPER_ASSIGN_OR_RETURN(
      Fd channel, vmm::connectChannelSocket(vmm::channelSocketPath(handle.runDir, kBuildChannel),
                                            Clock::now() + std::chrono::seconds(10), run.cancel));
  guest::BuildJob job;
  job.steps = spec.steps;
  job.env = scriptEnvironment(spec);
  job.workdir = "/build";
  job.uid = kBuildUser;
  job.gid = kBuildUser;
  StepOutput output(log, run.maxLogBytes);
  BuilderSessionOptions session;
  session.timeout = leftUntil(deadline);
  session.cancel = run.cancel;
  bool helloSeen = false;
  auto stepsStart = Clock::now();
  session.onOutput = [&](int step, bool err, std::string_view bytes) {
    output.add(step, err, bytes);
  };
  session.onStep = [&](const std::string& line) {
    if (!helloSeen) {
      helloSeen = true;
      t.bootSeconds = secondsSince(bootStart);
      stepsStart = Clock::now();
      log += "builder up in " + std::to_string(static_cast<int>(t.bootSeconds * 1000)) + " ms\n";
    }
    output.finish();
    log += line + "\n";
  };
  auto outcome = runBuilderJob(channel.release(), job, session);
  output.finish();
  t.stepsSeconds = helloSeen ? secondsSince(stepsStart) : 0;
  auto teardownStart = Clock::now();
  if (!outcome.isOk()) {
    return withConsole(outcome.status());
  }
  if (!outcome->ok) {
    keep = spec.keepFailed && outcome->error.empty();
    if (keep) {
      log += "keepFailed: builder " + vm.name + " stays up (console " + console +
             "); hyperctl build release " + run.buildName + " stops it\n";
    }
    if (!outcome->error.empty()) {
      return Status::error("the build agent could not run the job: " +
                           quotedExcerpt(outcome->error, 200));
    }
    return Status::error(describeStepFailure(spec, outcome->failedStep, outcome->exitCode));
  }

  // The builder syncs and unmounts /out and powers itself off; then its disk is whole.
  bool gone = false;
  const auto offBy = std::min(deadline, Clock::now() + std::chrono::seconds(60));
  while (!gone && Clock::now() < offBy) {
    auto found = run.driver->find(vm.name);
    gone = found.isOk() && !found->has_value();
    if (!gone) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  if (!gone) {
    return withConsole(Status::error("the builder did not power off after its steps"));
  }
  std::vector<ScriptArtifact> artifacts;
  options.timeout = std::max(leftUntil(deadline), std::chrono::milliseconds(30000));
  fs::create_directories(run.scratch + "/outputs");
  for (size_t i = 0; i < spec.outputs.size(); ++i) {
    const std::string dest = run.scratch + "/outputs/" + std::to_string(i);
    HYPER_RETURN_IF_ERROR(readOutput(outImage, spec.outputs[i], dest, options));
    artifacts.push_back({spec.outputs[i].name, dest});
  }
  t.teardownSeconds = secondsSince(teardownStart);
  if (timings != nullptr) {
    *timings = t;
  }
  return artifacts;
}

}  // namespace hyper::providers::build
