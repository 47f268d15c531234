#include "providers/vmm/qemu_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/crash_point.h"
#include "base/fd.h"
#include "base/names.h"
#include "base/text_escape.h"
#include "host/command.h"
#include "providers/vmm/exit_watcher.h"
#include "providers/vmm/guest_log.h"
#include "providers/vmm/qmp_client.h"
#include "providers/vmm/tap_device.h"
#include "reconciler/state_dir.h"

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace hyper::providers::vmm {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kMinMemoryMiB = 64;  // below this Debian's kernel and initramfs do not unpack
constexpr int kMaxVcpus = 255;

const char* kPidFile = "qemu.pid";
const char* kQmpSocket = "qmp.sock";
const char* kConsoleLog = "console.log";
const char* kVmJson = "vm.json";
const char* kDiskCopy = "disk.img";  // a writable disk: the VM's own copy

bool hasParam(const std::string& cmdline, const std::string& key) {
  std::istringstream words(cmdline);
  for (std::string w; words >> w;) {
    if (w.rfind(key + "=", 0) == 0 || w == key) {
      return true;
    }
  }
  return false;
}

Result<std::string> readSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::error("read " + path + " <- cannot open");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A path in a QEMU option string: a comma doubled.
std::string qemuOptionValue(const std::string& path) {
  std::string escaped;
  for (char c : path) {
    escaped += c == ',' ? std::string(",,") : std::string(1, c);
  }
  return escaped;
}

Json specToJson(const VmSpec& s) {
  Json j{{"name", s.name},     {"vcpus", s.vcpus},   {"memoryMiB", s.memoryMiB},
         {"kernel", s.kernel}, {"initrd", s.initrd}, {"cmdline", s.cmdline},
         {"tap", s.tap},       {"mac", s.mac},       {"channels", s.channels}};
  if (!s.socketChannels.empty()) {
    j["socketChannels"] = s.socketChannels;
  }
  for (const auto& d : s.extraDisks) {
    j["extraDisks"].push_back({{"path", d.path}, {"readOnly", d.readOnly}, {"serial", d.serial}});
  }
  if (!s.disk.empty()) {
    j["disk"] = s.disk;
    j["diskReadOnly"] = s.diskReadOnly;
  }
  return j;
}

VmSpec specFromJson(const Json& j) {
  VmSpec s;
  if (!j.is_object()) {
    return s;
  }
  s.name = j.value("name", "");
  s.vcpus = j.value("vcpus", 0);
  s.memoryMiB = j.value("memoryMiB", 0);
  s.kernel = j.value("kernel", "");
  s.initrd = j.value("initrd", "");
  s.disk = j.value("disk", "");
  s.diskReadOnly = j.value("diskReadOnly", true);
  if (auto it = j.find("extraDisks"); it != j.end() && it->is_array()) {
    for (const auto& d : *it) {
      if (d.is_object()) {
        s.extraDisks.push_back(
            {d.value("path", ""), d.value("readOnly", true), d.value("serial", "")});
      }
    }
  }
  s.cmdline = j.value("cmdline", "");
  s.tap = j.value("tap", "");
  s.mac = j.value("mac", "");
  for (auto [key, list] :
       {std::pair{"channels", &s.channels}, std::pair{"socketChannels", &s.socketChannels}}) {
    if (auto it = j.find(key); it != j.end() && it->is_array()) {
      for (const auto& c : *it) {
        if (c.is_string()) {
          list->push_back(c.get<std::string>());
        }
      }
    }
  }
  return s;
}

// Waits for the process behind `pidfd` to exit; true when it did within the timeout.
bool waitExit(int pidfd, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{pidfd, POLLIN, 0};
    int rc = ::poll(&p, 1, left.count() < 0 ? 0 : static_cast<int>(left.count()));
    if (rc > 0) {
      return true;
    }
    if (rc == 0 || errno != EINTR) {
      return false;
    }
  }
}

Status validateSpec(const VmSpec& spec) {
  if (std::string why = checkDnsLabel(spec.name); !why.empty()) {
    return Status::error("name '" + spec.name + "' " + why);
  }
  if (spec.vcpus < 1 || spec.vcpus > kMaxVcpus) {
    return Status::error("vcpus must be 1-" + std::to_string(kMaxVcpus) + ", got " +
                         std::to_string(spec.vcpus));
  }
  if (spec.memoryMiB < kMinMemoryMiB) {
    return Status::error("memoryMiB must be at least " + std::to_string(kMinMemoryMiB) + ", got " +
                         std::to_string(spec.memoryMiB));
  }
  std::error_code ec;
  if (spec.kernel.empty() || !fs::is_regular_file(spec.kernel, ec)) {
    return Status::error("kernel '" + spec.kernel + "' is not a file");
  }
  if (!spec.initrd.empty() && !fs::is_regular_file(spec.initrd, ec)) {
    return Status::error("initrd '" + spec.initrd + "' is not a file");
  }
  if (!spec.disk.empty() && !fs::is_regular_file(spec.disk, ec)) {
    return Status::error("disk '" + spec.disk + "' is not a file");
  }
  for (const auto& d : spec.extraDisks) {
    if (!fs::is_regular_file(d.path, ec)) {
      return Status::error("disk '" + d.path + "' is not a file");
    }
    if (d.serial.empty() || d.serial.size() > 20 ||
        d.serial.find_first_not_of(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
            std::string::npos) {
      return Status::error("disk '" + d.path + "': serial '" + d.serial +
                           "': expected 1-20 of A-Z a-z 0-9 - _");
    }
  }
  std::vector<std::string> all = spec.channels;
  all.insert(all.end(), spec.socketChannels.begin(), spec.socketChannels.end());
  for (size_t i = 0; i < all.size(); ++i) {
    if (std::string why = checkChannelName(all[i]); !why.empty()) {
      return Status::error("channel '" + all[i] + "' " + why);
    }
    for (size_t j = 0; j < i; ++j) {
      if (all[j] == all[i]) {
        return Status::error("channel '" + all[i] + "' is named twice");
      }
    }
  }
  if (!spec.tap.empty() && !interfaceExists(spec.tap)) {
    return Status::error("tap '" + spec.tap + "' does not exist in this network namespace");
  }
  return Status::ok();
}

}  // namespace

std::string channelLogPath(const std::string& runDir, const std::string& channel) {
  return runDir + "/channel-" + channel + ".log";
}

std::string channelSocketPath(const std::string& runDir, const std::string& channel) {
  return runDir + "/" + channel + ".sock";
}

std::string checkChannelName(const std::string& name) {
  if (name.empty() || name.size() > 63) {
    return "must be 1-63 characters long";
  }
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) {
    return "must start with a letter or a digit";
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) {
      return "may hold only a-z, 0-9, '.', '_' and '-'";
    }
  }
  return "";
}

std::string waitCancelledMessage(const std::string& vmName) {
  // The one who sets an apply's cancel flag is hyperd, on its way out.
  return "stopped waiting for VM " + vmName + " to be ready: hyperd is stopping";
}

std::string lastLines(const std::string& path, size_t n) {
  // Guest text: read with a bounded line buffer, escaped before it reaches any message.
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.get() < 0) {
    return "";
  }
  std::deque<std::string> lines;
  LineSplitter splitter;
  auto keep = [&](std::string_view l) {
    if (!l.empty() && l.back() == '\r') {
      l.remove_suffix(1);
    }
    lines.push_back(escapeControl(l));
    if (lines.size() > n) {
      lines.pop_front();
    }
    return false;
  };
  char buf[64 * 1024];
  for (;;) {
    ssize_t got = ::read(in.get(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      break;
    }
    splitter.feed(std::string_view(buf, static_cast<size_t>(got)), keep);
  }
  std::string out;
  for (const auto& l : lines) {
    out += l + "\n";
  }
  return out;
}

bool isQemuOfRunDir(pid_t pid, const std::string& pidFile) {
  auto raw = readSmallFile("/proc/" + std::to_string(pid) + "/cmdline");
  if (!raw.isOk() || raw->empty()) {
    return false;
  }
  std::vector<std::string> argv;
  size_t start = 0;
  while (start < raw->size()) {
    size_t end = raw->find('\0', start);
    if (end == std::string::npos) {
      end = raw->size();
    }
    argv.push_back(raw->substr(start, end - start));
    start = end + 1;
  }
  if (argv.empty() || fs::path(argv[0]).filename().string().rfind("qemu-system-", 0) != 0) {
    return false;
  }
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "-pidfile" && argv[i + 1] == pidFile) {
      return true;
    }
  }
  return false;
}

QemuDriver::QemuDriver(QemuDriverOptions options) : options_(std::move(options)) {}

std::string QemuDriver::runDirFor(const std::string& name) const {
  return (fs::path(options_.runRoot) / name).string();
}

std::string QemuDriver::effectiveCmdline(const std::string& cmdline, Accel accel, long tscKhz) {
  std::string out = cmdline;
  auto append = [&out](const std::string& param) {
    if (!out.empty()) {
      out += ' ';
    }
    out += param;
  };
  if (!hasParam(out, "console")) {
    append("console=ttyS0");
  }
  if (!hasParam(out, "panic")) {
    append("panic=-1");
  }
  if (accel == Accel::Tcg && tscKhz > 0 && !hasParam(out, "tsc_early_khz")) {
    append("tsc_early_khz=" + std::to_string(tscKhz));
  }
  return out;
}

std::vector<std::string> QemuDriver::buildArgv(const std::string& qemuBinary, const VmSpec& spec,
                                               Accel accel, const std::string& runDir,
                                               long tscKhz) {
  const std::string dir = runDir + "/";
  std::vector<std::string> argv = {
      qemuBinary,
      "-name",
      spec.name,
      "-M",
      "microvm",
      "-accel",
      std::string(accelName(accel)),
      "-cpu",
      accel == Accel::Kvm ? "host" : "max",
      "-smp",
      std::to_string(spec.vcpus),
      "-m",
      std::to_string(spec.memoryMiB),
      "-nodefaults",
      "-no-user-config",
      "-nographic",
      // A guest reboot or panic ends the process: hyper restarts VMs itself, and an exit is
      // what the exit watcher can see.
      "-no-reboot",
      "-kernel",
      spec.kernel,
      "-append",
      effectiveCmdline(spec.cmdline, accel, tscKhz),
      // append=on: hyper truncates the log when it outgrows its cap (guest_log.h), and QEMU
      // then goes on writing at the new end instead of at its old offset.
      "-chardev",
      "file,id=console,path=" + dir + kConsoleLog + ",append=on",
      "-serial",
      "chardev:console",
      "-qmp",
      "unix:" + dir + kQmpSocket + ",server=on,wait=off",
      "-pidfile",
      dir + kPidFile,
      "-daemonize",
  };
  if (!spec.initrd.empty()) {
    argv.insert(argv.end(), {"-initrd", spec.initrd});
  }
  if (!spec.disk.empty()) {
    // A writable disk is the run dir's copy (start() makes it); QEMU's option syntax needs a
    // comma in a path doubled.
    std::string file = spec.diskReadOnly ? spec.disk : dir + kDiskCopy;
    argv.insert(argv.end(), {"-drive",
                             "file=" + qemuOptionValue(file) + ",format=raw,if=none,id=disk0" +
                                 (spec.diskReadOnly ? ",readonly=on" : ""),
                             "-device", "virtio-blk-device,drive=disk0"});
  }
  for (size_t i = 0; i < spec.extraDisks.size(); ++i) {
    const auto& d = spec.extraDisks[i];
    const std::string id = "disk" + std::to_string(i + 1);
    argv.insert(argv.end(), {"-drive",
                             "file=" + qemuOptionValue(d.path) + ",format=raw,if=none,id=" + id +
                                 (d.readOnly ? ",readonly=on" : ""),
                             "-device", "virtio-blk-device,drive=" + id + ",serial=" + d.serial});
  }
  if (!spec.tap.empty()) {
    std::string device = "virtio-net-device,netdev=net0";
    if (!spec.mac.empty()) {
      device += ",mac=" + spec.mac;
    }
    argv.insert(argv.end(),
                {"-netdev", "tap,id=net0,ifname=" + spec.tap + ",script=no,downscript=no",
                 "-device", device});
  }
  if (!spec.channels.empty() || !spec.socketChannels.empty()) {
    // One virtio-serial controller (virtio-mmio on microvm), one port per channel, each port's
    // guest output appended to a file in the run dir, or, for a socket channel, passed to whoever
    // is connected to its socket (QEMU listens; wait=off: the VM starts without a client).
    argv.insert(argv.end(), {"-device", "virtio-serial-device"});
    for (size_t i = 0; i < spec.socketChannels.size(); ++i) {
      std::string id = "socket" + std::to_string(i);
      argv.insert(argv.end(),
                  {"-chardev",
                   "socket,id=" + id + ",path=" +
                       channelSocketPath(runDir, spec.socketChannels[i]) + ",server=on,wait=off",
                   "-device", "virtserialport,chardev=" + id + ",name=" + spec.socketChannels[i]});
    }
    for (size_t i = 0; i < spec.channels.size(); ++i) {
      std::string id = "channel" + std::to_string(i);
      argv.insert(
          argv.end(),
          {"-chardev",
           "file,id=" + id + ",path=" + channelLogPath(runDir, spec.channels[i]) + ",append=on",
           "-device", "virtserialport,chardev=" + id + ",name=" + spec.channels[i]});
    }
  }
  return argv;
}

Result<std::optional<VmHandle>> QemuDriver::find(const std::string& name) {
  const std::string dir = runDirFor(name);
  const std::string pidFile = dir + "/" + kPidFile;
  auto pidText = readSmallFile(pidFile);
  if (!pidText.isOk()) {
    return std::optional<VmHandle>();
  }
  pid_t pid = 0;
  try {
    pid = static_cast<pid_t>(std::stol(*pidText));
  } catch (const std::exception&) {
    return std::optional<VmHandle>();
  }
  if (pid <= 0 || !isQemuOfRunDir(pid, pidFile)) {
    return std::optional<VmHandle>();
  }
  VmHandle h;
  h.name = name;
  h.driver = "qemu";
  h.pid = pid;
  h.runDir = dir;
  h.consoleLog = dir + "/" + kConsoleLog;
  h.controlSocket = dir + "/" + kQmpSocket;
  if (auto meta = readSmallFile(dir + "/" + kVmJson); meta.isOk()) {
    Json j = Json::parse(*meta, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) {
      h.spec = specFromJson(j.value("spec", Json::object()));
      h.accel = j.value("accel", "tcg") == "kvm" ? Accel::Kvm : Accel::Tcg;
    }
  }
  h.spec.name = name;
  return std::optional<VmHandle>(std::move(h));
}

Result<std::vector<VmHandle>> QemuDriver::list() {
  std::vector<VmHandle> out;
  std::error_code ec;
  if (!fs::exists(options_.runRoot, ec)) {
    return out;
  }
  // Sockets and pid files there steer what hyper signals and talks to.
  HYPER_RETURN_IF_ERROR(
      checkPrivateDirectory(options_.runRoot, "VM run directory (HYPER_VM_RUN_DIR)"));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(options_.runRoot, ec)) {
    if (entry.is_directory(ec)) {
      names.push_back(entry.path().filename().string());
    }
  }
  if (ec) {
    return Status::error("list VMs in " + options_.runRoot + " <- " + ec.message());
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    HYPER_ASSIGN_OR_RETURN(std::optional<VmHandle> h, find(n));
    if (h) {
      out.push_back(std::move(*h));
    }
  }
  return out;
}

Result<VmHandle> QemuDriver::start(const VmSpec& spec) {
  const std::string what = "start VM " + spec.name;
  HYPER_RETURN_IF_ERROR(validateSpec(spec).withContext(what));
  const std::string dir = runDirFor(spec.name);
  if (dir.size() + 1 + std::strlen(kQmpSocket) >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::error(what + " <- run dir " + dir + " too long for a Unix socket path");
  }
  for (const auto& channel : spec.socketChannels) {
    if (channelSocketPath(dir, channel).size() >= sizeof(sockaddr_un{}.sun_path)) {
      return Status::error(what + " <- " + channelSocketPath(dir, channel) +
                           " too long for a Unix socket path (keep the run dir short)");
    }
  }
  HYPER_ASSIGN_OR_RETURN(std::optional<VmHandle> running, find(spec.name));
  if (running) {
    return std::move(*running);
  }
  HYPER_ASSIGN_OR_RETURN(AccelChoice accel, chooseAccel(spec.accel, options_.probe));
  if (!accel.warning.empty()) {
    std::fprintf(stderr, "hyper: VM %s: %s\n", spec.name.c_str(), accel.warning.c_str());
  }
  long tscKhz = accel.accel == Accel::Tcg ? hostTscKhz(options_.probe.cpuinfoPath) : 0;
  std::vector<std::string> argv = buildArgv(options_.qemuBinary, spec, accel.accel, dir, tscKhz);

  // A run dir without a live QEMU is what a crash left: start afresh.
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) {
    return Status::error(what + " <- create " + dir + ": " + ec.message());
  }
  if (Status s = checkPrivateDirectory(options_.runRoot, "VM run directory (HYPER_VM_RUN_DIR)");
      !s.isOk()) {
    fs::remove_all(dir, ec);
    return s.withContext(what);
  }
  fs::permissions(dir, fs::perms::owner_all, ec);
  if (!spec.disk.empty() && !spec.diskReadOnly) {
    // The VM's own copy: what it writes stays in its run dir and goes with it.
    const std::string copy = dir + "/" + kDiskCopy;
    auto copied = host::runChecked({"cp", "--reflink=auto", "--sparse=always", spec.disk, copy});
    if (!copied.isOk() || ::chmod(copy.c_str(), 0600) != 0) {
      fs::remove_all(dir, ec);
      return Status::error(what + " <- copy the disk " + spec.disk + " into " + dir +
                           (copied.isOk() ? std::string() : ": " + copied.status().message()));
    }
  }
  Json meta = {{"driver", "qemu"},
               {"spec", specToJson(spec)},
               {"accel", std::string(accelName(accel.accel))},
               {"accelWarning", accel.warning},
               {"argv", argv}};
  {
    std::ofstream f(dir + "/" + kVmJson, std::ios::trunc);
    f << meta.dump(2) << "\n";
    if (!f) {
      fs::remove_all(dir, ec);
      return Status::error(what + " <- write " + dir + "/" + kVmJson);
    }
  }

  crashPoint("run-dir-written VM/" + spec.name);
  auto run = host::runCommand(argv);
  if (!run.isOk() || run->exitCode != 0) {
    std::string cause = run.isOk() ? run->err : run.status().message();
    while (!cause.empty() && (cause.back() == '\n' || cause.back() == '\r')) {
      cause.pop_back();
    }
    if (cause.empty()) {
      cause = "exited with status " + std::to_string(run->exitCode);
    }
    fs::remove_all(dir, ec);
    return Status::error(what + " <- " + options_.qemuBinary + ": " + cause);
  }
  HYPER_ASSIGN_OR_RETURN(std::optional<VmHandle> started, find(spec.name));
  if (!started) {
    std::string console = lastLines(dir + "/" + kConsoleLog, 20);
    fs::remove_all(dir, ec);
    return Status::error(what + " <- QEMU exited right after starting; console:\n" + console);
  }
  return std::move(*started);
}

Result<VmStatus> QemuDriver::status(const VmHandle& vm) {
  const std::string what = "status of VM " + vm.name;
  HYPER_ASSIGN_OR_RETURN(std::unique_ptr<QmpClient> qmp, QmpClient::connect(vm.controlSocket));
  auto r = qmp->execute("query-status");
  if (!r.isOk()) {
    return r.status().withContext(what);
  }
  VmStatus s;
  s.detail = r->value("status", "");
  if (s.detail == "running") {
    s.state = VmRunState::Running;
  } else if (s.detail == "paused" || s.detail == "suspended" || s.detail == "prelaunch") {
    s.state = VmRunState::Paused;
  } else if (s.detail == "shutdown") {
    s.state = VmRunState::ShuttingDown;
  } else {
    s.state = VmRunState::Other;
  }
  return s;
}

Result<StopOutcome> QemuDriver::stop(const std::string& name, const StopOptions& options) {
  const std::string what = "stop VM " + name;
  const std::string dir = runDirFor(name);
  auto removeRunDir = [&]() -> Status {
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) {
      return Status::error(what + " <- remove " + dir + ": " + ec.message());
    }
    return Status::ok();
  };
  HYPER_ASSIGN_OR_RETURN(std::optional<VmHandle> vm, find(name));
  if (!vm) {
    HYPER_RETURN_IF_ERROR(removeRunDir());
    return StopOutcome::AlreadyStopped;
  }
  // The pidfd pins the process: once it is open and the cmdline still matches, every signal
  // below reaches this QEMU, never a process that reused its pid.
  auto pidfdResult = openPidfd(vm->pid);
  if (!pidfdResult.isOk()) {
    HYPER_RETURN_IF_ERROR(removeRunDir());
    return StopOutcome::AlreadyStopped;
  }
  Fd pidfd(*pidfdResult);
  if (!isQemuOfRunDir(vm->pid, dir + "/" + kPidFile)) {
    HYPER_RETURN_IF_ERROR(removeRunDir());
    return StopOutcome::AlreadyStopped;
  }

  StopOutcome outcome = StopOutcome::Killed;
  auto qmp = QmpClient::connect(vm->controlSocket);
  if (qmp.isOk()) {
    if ((*qmp)->execute("system_powerdown").isOk() &&
        waitExit(pidfd.get(), options.powerdownGrace)) {
      outcome = StopOutcome::Powerdown;
    } else if ((*qmp)->execute("quit").isOk() && waitExit(pidfd.get(), options.quitGrace)) {
      outcome = StopOutcome::Quit;
    }
  }
  if (outcome == StopOutcome::Killed) {
    if (::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
      return Status::error(what + " <- pidfd_send_signal SIGKILL: " + std::strerror(errno));
    }
    if (!waitExit(pidfd.get(), std::chrono::milliseconds(10000))) {
      return Status::error(what + " <- QEMU pid " + std::to_string(vm->pid) +
                           " still alive after SIGKILL");
    }
  }
  HYPER_RETURN_IF_ERROR(removeRunDir());
  return outcome;
}

Status QemuDriver::waitForLine(const VmHandle& vm, const std::string& channel,
                               const std::string& line, std::chrono::milliseconds timeout,
                               const std::atomic<bool>* cancel) {
  const std::string what =
      "wait for '" + line + "' on " +
      (channel.empty() ? std::string("the console") : "virtio-serial channel " + channel) +
      " of VM " + vm.name;
  const std::string path = channel.empty() ? vm.consoleLog : channelLogPath(vm.runDir, channel);
  auto deadline = Clock::now() + timeout;
  auto failure = [&](const std::string& why) {
    return Status::error(what + " <- " + why + "; last console lines (" + vm.consoleLog + "):\n" +
                         lastLines(vm.consoleLog, 15));
  };
  Fd notify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (notify.get() < 0) {
    return Status::error(what + " <- inotify_init1: " + std::strerror(errno));
  }
  if (::inotify_add_watch(notify.get(), path.c_str(), IN_MODIFY) < 0) {
    if (errno == ENOENT && !channel.empty()) {
      return Status::error(what + " <- the VM was not started with that channel (no " + path + ")");
    }
    return Status::error(what + " <- watch " + path + ": " + std::strerror(errno));
  }
  auto pidfdResult = openPidfd(vm.pid);
  if (!pidfdResult.isOk()) {
    return failure("the VM is not running");
  }
  Fd pidfd(*pidfdResult);

  Fd log(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (log.get() < 0) {
    return Status::error(what + " <- open " + path + ": " + std::strerror(errno));
  }
  LineSplitter splitter;  // bounded: a guest that never ends a line cannot grow it
  auto matches = [&](std::string_view l) {
    if (!l.empty() && l.back() == '\r') {
      l.remove_suffix(1);
    }
    // The whole line, as observe reads it (vm_provider.cc): a line that merely ends with it
    // ("not hyper-ready", "xhyper-ready") is not the guest saying it is ready, and a VM that
    // apply took for ready must not be found not ready by the next observe.
    return l == line;
  };
  off_t offset = 0;
  bool exited = false;
  for (;;) {
    // Read everything new; the check comes after the watch is armed, so nothing is missed.
    struct stat st {};
    if (::fstat(log.get(), &st) == 0 && st.st_size < offset) {
      offset = 0;  // rotated (copy-truncate): start again at the new beginning
      splitter.reset();
    }
    char buf[4096];
    for (;;) {
      ssize_t n = ::pread(log.get(), buf, sizeof buf, offset);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        break;
      }
      offset += n;
      if (splitter.feed(std::string_view(buf, static_cast<size_t>(n)), matches)) {
        return Status::ok();
      }
    }
    if (exited) {
      return failure("QEMU exited first");
    }
    if (cancel != nullptr && cancel->load()) {
      return Status::error(what + " <- " + waitCancelledMessage(vm.name));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return failure("timed out after " + std::to_string(timeout.count()) + " ms");
    }
    // Nothing signals the flag: with one, the wait wakes at least every slice to look at it.
    if (cancel != nullptr) {
      left = std::min(left, kWaitCancelSlice);
    }
    pollfd fds[2] = {{notify.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    int rc = ::poll(fds, 2, static_cast<int>(left.count()));
    if (rc < 0 && errno != EINTR) {
      return Status::error(what + " <- poll: " + std::strerror(errno));
    }
    if (fds[0].revents & POLLIN) {
      char events[4096];
      while (::read(notify.get(), events, sizeof events) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      exited = true;  // one more read: the line may be the last thing it wrote
    }
  }
}

}  // namespace hyper::providers::vmm
