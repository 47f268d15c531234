// The VM kind end to end through the real hyperctl: QEMU microVMs (TCG here) on a hyper Network in
// a network namespace the test creates. Boots are few: each takes seconds under TCG.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/integration/guest_util.h"
#include "tests/integration/hyperctl_util.h"
#include "tests/integration/netns_util.h"

namespace hyper {
namespace {
namespace fs = std::filesystem;
using test::CommandRun;
using Json = nlohmann::json;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

template <typename F>
bool eventually(std::chrono::seconds limit, F&& done) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return done();
}

// A daemon started for a test (stdout and stderr to a log file), stopped with SIGTERM, then
// SIGKILL, when it goes out of scope.
class Daemon {
 public:
  static std::unique_ptr<Daemon> start(const std::vector<std::string>& argv,
                                       const std::string& log) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> args;
      for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
      }
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    return pid > 0 ? std::unique_ptr<Daemon>(new Daemon(pid)) : nullptr;
  }
  ~Daemon() {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

 private:
  explicit Daemon(pid_t pid) : pid_(pid) {}
  pid_t pid_;
};

class VmProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (network namespaces, taps)";
    }
    const auto& image = test::guestImage();
    if (!image.skipReason.empty()) {
      GTEST_SKIP() << image.skipReason;
    }
    auto ns = test::NamedNetns::create(test::uniqueNetnsName("vm"));
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
    ASSERT_TRUE(ns_->run({"ip", "link", "set", "lo", "up"}).isOk());
    auto tmp = test::TempDir::create("vmprov");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    runDir_ = tmp_->path() + "/run";
    ::setenv("HYPER_VM_RUN_DIR", runDir_.c_str(), 1);  // hyperctl inherits it
    cli_ = std::make_unique<test::Hyperctl>(ns_->name(), tmp_->path() + "/state");
  }

  void TearDown() override {
    if (tmp_) {
      test::killQemusUnder(runDir_);
    }
    ::unsetenv("HYPER_VM_RUN_DIR");
  }

  std::string vm(const std::string& name, const std::string& extra, int memory = 256) const {
    const auto& image = test::guestImage();
    return "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata:\n  name: " + name +
           "\n  labels: {role: web}\nspec:\n  memoryMiB: " + std::to_string(memory) +
           "\n  kernel: {path: " + image.kernel + "}\n  initrd: {path: " + image.initrd +
           "}\n  cmdline: \"quiet hyper.ping=1\"\n" + extra;
  }
  static std::string network() {
    return "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata:\n  name: lab\nspec:\n"
           "  cidr: 10.77.0.0/24\n";
  }
  void write(const std::string& dir, const std::string& file, const std::string& content) {
    Status s = tmp_->write(dir + "/" + file, content);
    ASSERT_TRUE(s.isOk()) << s.message();
  }
  CommandRun hyperctl(const std::vector<std::string>& args) const { return cli_->run(args); }

  std::string qemuPid(const std::string& name) const {
    std::string pid = readFile(runDir_ + "/" + name + "/qemu.pid");
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) {
      pid.pop_back();
    }
    return pid;
  }
  // Alive and not a zombie: a daemonized QEMU that exited stays one until init reaps it.
  bool processAlive(const std::string& pid) const {
    if (pid.empty()) {
      return false;
    }
    std::string stat = readFile("/proc/" + pid + "/stat");
    size_t paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
  }
  bool linkExists(const std::string& name) const {
    auto r = ns_->exitCode({"ip", "link", "show", name});
    return r.isOk() && *r == 0;
  }

  std::unique_ptr<test::NamedNetns> ns_;
  std::unique_ptr<test::TempDir> tmp_;
  std::unique_ptr<test::Hyperctl> cli_;
  std::string runDir_;
};

TEST_F(VmProviderTest, BootsReplacesStopsAndPrunesWithNothingLeft) {
  write("m", "net.yaml", network());
  write("m", "web.yaml", vm("web-1", "  network: {name: lab, ip: 10.77.0.10}\n"));
  const std::string dir = tmp_->path() + "/m";

  CommandRun r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "VM/web-1 will be created [start]")) << r.describe();
  std::string pid = qemuPid("web-1");
  ASSERT_TRUE(processAlive(pid)) << "no QEMU after apply\n" << r.describe();
  EXPECT_TRUE(linkExists("hv-web-1")) << "no tap";

  // Ready means the guest said so; then it pings its gateway through the tap and the bridge.
  CommandRun logs = hyperctl({"logs", "vm/web-1"});
  EXPECT_EQ(logs.exitCode, 0) << logs.describe();
  EXPECT_TRUE(contains(logs.out, "hyper-ready")) << logs.describe();
  EXPECT_TRUE(eventually(std::chrono::seconds(60), [&] {
    return contains(hyperctl({"logs", "vm/web-1"}).out, "hyper-ping-ok");
  })) << hyperctl({"logs", "vm/web-1"}).out;

  r = hyperctl({"apply", "-f", dir});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "No changes.")) << r.describe();
  EXPECT_EQ(qemuPid("web-1"), pid) << "a no-op apply restarted the VM";

  // Its tap's isolation turned off by hand (the guest could reach its neighbours around the
  // policy): drift, set again in place, the same QEMU.
  auto isolated = [&] {
    auto d = ns_->run({"ip", "-d", "-j", "link", "show", "dev", "hv-web-1"});
    return d.isOk() && contains(*d, "\"isolated\":true");
  };
  ASSERT_TRUE(isolated()) << "the tap is not an isolated port";
  ASSERT_TRUE(
      ns_->run({"ip", "link", "set", "dev", "hv-web-1", "type", "bridge_slave", "isolated", "off"})
          .isOk());
  ASSERT_FALSE(isolated());
  r = hyperctl({"diff", "-f", dir});
  EXPECT_EQ(r.exitCode, 2) << r.describe();
  EXPECT_TRUE(contains(r.out, "no longer an isolated port")) << r.describe();
  r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(isolated()) << "not set again";
  EXPECT_EQ(qemuPid("web-1"), pid) << "isolating the tap again restarted the VM";
  r = hyperctl({"diff", "-f", dir});
  EXPECT_EQ(r.exitCode, 0) << r.describe();

  // An egress `none` policy on the VM's label stops its pings (the guest says so on its console);
  // removing the policy lets them through again.
  const std::string console = runDir_ + "/web-1/console.log";
  write("m", "policy.yaml",
        "apiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: web-out}\n"
        "spec:\n  network: lab\n  selector: {matchLabels: {role: web}}\n"
        "  egress: {mode: none}\n");
  r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  auto table = ns_->run({"nft", "list", "set", "inet", "hyper", "pol-web-out-sel"});
  ASSERT_TRUE(table.isOk()) << table.status().message();
  EXPECT_TRUE(contains(*table, "10.77.0.10")) << "the VM is not in the selector set\n" << *table;
  size_t mark = readFile(console).size();
  EXPECT_TRUE(
      eventually(std::chrono::seconds(60),
                 [&] { return contains(readFile(console).substr(mark), "hyper-ping-fail"); }))
      << "pings still pass under egress none\n"
      << readFile(console).substr(mark);
  fs::remove(dir + "/policy.yaml");
  r = hyperctl({"apply", "--prune", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  mark = readFile(console).size();
  EXPECT_TRUE(eventually(std::chrono::seconds(60),
                         [&] { return contains(readFile(console).substr(mark), "hyper-ping-ok"); }))
      << "pings still blocked after the policy went\n"
      << readFile(console).substr(mark);
  EXPECT_EQ(qemuPid("web-1"), pid) << "a policy change restarted the VM";

  // Its tap deleted by hand: drift, planned as a restart, and after apply the guest pings again.
  ASSERT_TRUE(ns_->run({"ip", "link", "del", "hv-web-1"}).isOk());
  r = hyperctl({"diff", "-f", dir});
  EXPECT_EQ(r.exitCode, 2) << r.describe();
  EXPECT_TRUE(contains(r.out, "[restart]")) << r.describe();
  EXPECT_TRUE(contains(r.out, "tap hv-web-1 was deleted")) << r.describe();
  r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  std::string restarted = qemuPid("web-1");
  EXPECT_NE(restarted, pid) << "not restarted";
  EXPECT_TRUE(processAlive(restarted));
  EXPECT_FALSE(processAlive(pid)) << "the VM without a tap still runs";
  EXPECT_TRUE(linkExists("hv-web-1")) << "no new tap";
  mark = readFile(console).size();
  EXPECT_TRUE(eventually(std::chrono::seconds(60),
                         [&] { return contains(readFile(console).substr(mark), "hyper-ping-ok"); }))
      << "no network after the restart\n"
      << readFile(console).substr(mark);
  pid = restarted;

  // A memory change replaces the VM, and says so before.
  write("m", "web.yaml", vm("web-1", "  network: {name: lab, ip: 10.77.0.10}\n", 320));
  r = hyperctl({"diff", "-f", dir});
  EXPECT_EQ(r.exitCode, 2) << r.describe();
  EXPECT_TRUE(contains(r.out, "VM/web-1 must be replaced [replace] (spec changed (memoryMiB)"))
      << r.describe();
  r = hyperctl({"diff", "-f", dir, "-o", "json"});
  EXPECT_TRUE(contains(r.out, "\"disruption\": \"replace\"")) << r.describe();
  r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  std::string replaced = qemuPid("web-1");
  EXPECT_TRUE(processAlive(replaced));
  EXPECT_NE(replaced, pid);
  EXPECT_FALSE(processAlive(pid)) << "the old VM still runs";
  EXPECT_TRUE(contains(readFile(runDir_ + "/web-1/vm.json"), "320")) << "not the new memory";

  // running: false stops it and keeps it in the inventory.
  write("m", "web.yaml",
        vm("web-1", "  network: {name: lab, ip: 10.77.0.10}\n  running: false\n", 320));
  r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "[stop]")) << r.describe();
  EXPECT_FALSE(processAlive(replaced)) << "still running with running: false";
  EXPECT_FALSE(linkExists("hv-web-1")) << "the tap of a stopped VM was left";

  // Started again, ready through a virtio-serial channel this time (the guest writes its line
  // there and the console only says so), then pruned while running: stopped, tap removed, run
  // dir gone.
  write("m", "web.yaml",
        vm("web-1",
           "  network: {name: lab}\n  readiness: {channel: {name: org.hyper.ready}, "
           "timeoutSeconds: 600}\n",
           320));
  r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  std::string again = qemuPid("web-1");
  ASSERT_TRUE(processAlive(again)) << r.describe();
  EXPECT_TRUE(contains(readFile(runDir_ + "/web-1/channel-org.hyper.ready.log"), "hyper-ready"));
  EXPECT_TRUE(contains(readFile(console), "readiness sent on channel org.hyper.ready"))
      << readFile(console);
  r = hyperctl({"apply", "-f", dir});
  EXPECT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "No changes.")) << r.describe();
  r = hyperctl({"get", "vms", "web-1", "-o", "json"});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  Json got = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(got.is_object()) << r.describe();
  EXPECT_EQ(got["status"]["observed"]["ready"], true) << "not seen ready through the channel\n"
                                                      << r.describe();
  EXPECT_EQ(got["status"]["observed"]["pid"], std::stoi(again)) << r.describe();
  r = hyperctl({"get", "vms"});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  std::vector<std::string> row;  // the table's web-1 line, split at blanks
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("web-1 ", 0) == 0) {
      std::istringstream words(line);
      for (std::string w; words >> w;) {
        row.push_back(w);
      }
    }
  }
  ASSERT_EQ(row.size(), 11u) << r.describe();
  EXPECT_EQ(row[1], "lab");   // NETWORK
  EXPECT_EQ(row[6], "true");  // READY
  EXPECT_EQ(row[7], again);   // PID
  EXPECT_EQ(row[8], "InSync") << r.describe();
  fs::remove(dir + "/web.yaml");
  // The only running VM: more than half of them, which apply --prune asks --yes for.
  r = hyperctl({"apply", "--prune", "--yes", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "VM/web-1 will be deleted")) << r.describe();
  EXPECT_FALSE(processAlive(again));
  EXPECT_FALSE(linkExists("hv-web-1"));
  EXPECT_FALSE(fs::exists(runDir_ + "/web-1")) << "run dir left behind";
  auto links = ns_->run({"ip", "-o", "link", "show"});
  ASSERT_TRUE(links.isOk());
  EXPECT_FALSE(contains(*links, "hv-")) << *links;
}

TEST_F(VmProviderTest, BadInputIsRejectedBeforeAnythingStarts) {
  write("m", "net.yaml", network());
  write("m", "other.yaml", vm("db", "  network: {name: lab, ip: 10.77.0.20}\n"));
  const std::string dir = tmp_->path() + "/m";
  struct Case {
    std::string manifest;
    std::string expected;  // in stderr
  };
  const std::string k = test::guestImage().kernel;
  std::vector<Case> cases = {
      {vm("web", "  vcpus: 0\n"), "spec.vcpus"},
      {vm("web", "", 16), "spec.memoryMiB"},
      {"apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata: {name: web}\nspec:\n"
       "  kernel: {path: /nonexistent/vmlinuz}\n",
       "/nonexistent/vmlinuz does not exist"},
      {vm("web", "  network: {name: lab, ip: 10.78.0.5}\n"),
       "10.78.0.5 is not a host address of network lab (10.77.0.0/24)"},
      {vm("web", "  network: {name: lab, ip: 10.77.0.20}\n"),
       "10.77.0.20 is already taken by VM db"},
      {vm("Web_1", ""), "metadata.name"},
  };
  for (const auto& c : cases) {
    write("m", "web.yaml", c.manifest);
    CommandRun r = hyperctl({"apply", "-f", dir});
    EXPECT_EQ(r.exitCode, 1) << r.describe();
    EXPECT_TRUE(contains(r.err, c.expected)) << c.expected << "\n" << r.describe();
    EXPECT_TRUE(contains(r.err, dir + "/web.yaml:")) << "no file:line\n" << r.describe();
    EXPECT_FALSE(fs::exists(runDir_) && !fs::is_empty(runDir_)) << "a VM was started";
    auto links = ns_->run({"ip", "-o", "link", "show"});
    ASSERT_TRUE(links.isOk());
    EXPECT_FALSE(contains(*links, "hb-lab")) << "the network was applied\n" << *links;
  }
}

TEST_F(VmProviderTest, HyperdRestartsAKilledVmAtOnceOrOnlyReportsItUnderAlert) {
  write("src", "net.yaml", network());
  write("src", "web.yaml", vm("web-1", "  network: {name: lab}\n"));
  const std::string log = tmp_->path() + "/hyperd.log";
  // A drift check interval of an hour: only the exit notification can notice the kill in time.
  auto hyperd = Daemon::start(
      {"ip", "netns", "exec", ns_->name(), HYPERD_PATH, "--source", tmp_->path() + "/src",
       "--state-dir", tmp_->path() + "/state", "--listen", "127.0.0.1:0", "--drift-interval", "1h",
       "--debounce", "200ms", "--log-level", "debug"},
      log);
  ASSERT_TRUE(hyperd);
  std::string pid;
  ASSERT_TRUE(eventually(std::chrono::seconds(180), [&] {
    pid = qemuPid("web-1");
    return processAlive(pid) && contains(readFile(runDir_ + "/web-1/console.log"), "hyper-ready");
  })) << readFile(log);
  ASSERT_TRUE(eventually(std::chrono::seconds(60), [&] {
    return hyperctl({"drift"}).exitCode == 0 && contains(hyperctl({"status"}).out, "VM/web-1");
  })) << readFile(log);

  ::kill(std::stoi(pid), SIGKILL);
  std::string next;
  ASSERT_TRUE(eventually(std::chrono::seconds(180),
                         [&] {
                           next = qemuPid("web-1");
                           return !next.empty() && next != pid && processAlive(next);
                         }))
      << "the killed VM was not started again\n"
      << readFile(log);
  CommandRun events = hyperctl({"events"});
  EXPECT_TRUE(contains(events.out, "drift  VM/web-1")) << events.describe();
  EXPECT_TRUE(contains(readFile(log), "VM web-1: process " + pid + " exited")) << readFile(log);

  // driftPolicy: alert changes nothing on the host (the controller reads it, the VM provider never
  // sees it); a kill is then only reported.
  write("src", "web.yaml", vm("web-1", "  network: {name: lab}\n  driftPolicy: alert\n"));
  // In sync through hyperd's own view once it has recorded the change.
  ASSERT_TRUE(eventually(std::chrono::seconds(60), [&] {
    return hyperctl({"diff", "-f", tmp_->path() + "/src"}).exitCode == 0;
  })) << hyperctl({"diff", "-f", tmp_->path() + "/src"}).describe();
  EXPECT_EQ(qemuPid("web-1"), next) << "an in-place change restarted the VM";
  ::kill(std::stoi(next), SIGKILL);
  ASSERT_TRUE(eventually(std::chrono::seconds(60), [&] {
    return hyperctl({"drift"}).exitCode == 2;
  })) << readFile(log);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_FALSE(processAlive(qemuPid("web-1"))) << "restarted despite driftPolicy: alert";
  CommandRun drift = hyperctl({"drift"});
  EXPECT_TRUE(contains(drift.out, "VM/web-1")) << drift.describe();
}

// NetworkPolicy against the guest, with real guests that misbehave (guest/initramfs.h: hyper.addr
// adds an address the guest was not given, hyper.mac changes its MAC, hyper.targets pings other
// VMs from each of its addresses). Run with br_netfilter's switch as this host has it, and with
// it off inside the test's namespace: the result must not depend on it.
class NetworkPolicyVmTest : public VmProviderTest, public ::testing::WithParamInterface<bool> {
 protected:
  std::string guest(const std::string& name, const std::string& role, const std::string& ip,
                    const std::string& args) const {
    const auto& image = test::guestImage();
    return "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata:\n  name: " + name +
           "\n  labels: {role: " + role + "}\nspec:\n  kernel: {path: " + image.kernel +
           "}\n  initrd: {path: " + image.initrd + "}\n  cmdline: \"quiet hyper.ping=1 " + args +
           "\"\n  network: {name: lab, ip: " + ip + "}\n";
  }
  static std::string policy(const std::string& name, const std::string& role,
                            const std::string& rule) {
    return "apiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: " + name +
           "}\nspec:\n  network: lab\n  selector: {matchLabels: {role: " + role + "}}\n  " + rule +
           "\n";
  }

  // The result ("ok" or "fail") of the first ping "hyper-ping TARGET from SOURCE" that the VM
  // prints after `mark` bytes of its console; "" when none comes.
  std::string nextPing(const std::string& vm, size_t mark, const std::string& target,
                       const std::string& source) const {
    const std::string key = "hyper-ping " + target + " from " + source + " ";
    const std::string console = runDir_ + "/" + vm + "/console.log";
    std::string result;
    eventually(std::chrono::seconds(60), [&] {
      std::string text = readFile(console);
      size_t at = text.find(key, std::min(mark, text.size()));
      if (at == std::string::npos) {
        return false;
      }
      size_t end = text.find_first_of("\r\n", at);
      if (end == std::string::npos) {
        return false;
      }
      result = text.substr(at + key.size(), end - at - key.size());
      return true;
    });
    return result;
  }
  // Whether pings from `source` to `target` settle on `expected`: a new policy takes effect
  // within a few pings, then two pings in a row must give it (the second one fully after the
  // first, so an old result in flight does not count).
  bool settles(const std::string& vm, const std::string& target, const std::string& source,
               const std::string& expected) const {
    const std::string console = runDir_ + "/" + vm + "/console.log";
    for (int i = 0; i < 10; ++i) {
      std::string r = nextPing(vm, readFile(console).size(), target, source);
      if (r.empty()) {
        return false;
      }
      if (r == expected) {
        return nextPing(vm, readFile(console).size(), target, source) == expected;
      }
    }
    return false;
  }
  std::string consoleTail(const std::string& vm) const {
    std::string text = readFile(runDir_ + "/" + vm + "/console.log");
    return text.substr(text.size() > 1500 ? text.size() - 1500 : 0);
  }
};

TEST_P(NetworkPolicyVmTest, GuestsCannotEscapeTheirPolicyAndPolicyNeedsNoBrNetfilter) {
  const char* kSwitch = "/proc/sys/net/bridge/bridge-nf-call-iptables";
  const std::string hostSwitch = readFile(kSwitch);
  if (!GetParam()) {
    // The namespace has its own copy of the switch (checked here): turning it off there leaves
    // the host's alone.
    auto off = ns_->run({"sysctl", "-w", "net.bridge.bridge-nf-call-iptables=0"});
    if (!off.isOk()) {
      GTEST_SKIP() << "no per-namespace net.bridge.bridge-nf-call-iptables here: "
                   << off.status().message();
    }
    auto now = ns_->run({"cat", kSwitch});
    ASSERT_TRUE(now.isOk());
    ASSERT_EQ(*now, "0\n");
    ASSERT_EQ(readFile(kSwitch), hostSwitch) << "the host's switch changed";
  }
  auto inNs = ns_->run({"cat", kSwitch});
  std::cout << "bridge-nf-call-iptables in the namespace: " << (inNs.isOk() ? *inNs : "?")
            << "on the host: " << hostSwitch;

  // a: takes 10.77.0.99 besides its own 10.77.0.10, pings the gateway and b from both.
  // b: pings the gateway and a. c: changes its MAC and pings the gateway.
  write("m", "net.yaml", network());
  write(
      "m", "a.yaml",
      guest("a", "a", "10.77.0.10", "hyper.addr=10.77.0.99/24 hyper.targets=10.77.0.1,10.77.0.11"));
  write("m", "b.yaml", guest("b", "b", "10.77.0.11", "hyper.targets=10.77.0.1,10.77.0.10"));
  write("m", "c.yaml",
        guest("c", "c", "10.77.0.12", "hyper.mac=52:54:00:00:00:99 hyper.targets=10.77.0.1"));
  const std::string dir = tmp_->path() + "/m";
  CommandRun r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  const std::string pidA = qemuPid("a"), pidB = qemuPid("b");
  ASSERT_TRUE(processAlive(pidA) && processAlive(pidB)) << r.describe();
  r = hyperctl({"apply", "-f", dir});
  EXPECT_TRUE(contains(r.out, "No changes.")) << r.describe();

  auto guard = ns_->run({"nft", "list", "set", "bridge", "hyper", "guard-addrs"});
  ASSERT_TRUE(guard.isOk()) << guard.status().message();
  EXPECT_TRUE(contains(*guard, "\"hv-a\" . 10.77.0.10")) << *guard;
  EXPECT_FALSE(contains(*guard, "10.77.0.99")) << *guard;

  // No policy: from their own addresses a and b reach the gateway and each other (the control);
  // a's second address reaches nothing, and c with its own MAC reaches nothing.
  EXPECT_TRUE(settles("a", "10.77.0.1", "10.77.0.10", "ok")) << consoleTail("a");
  EXPECT_TRUE(settles("a", "10.77.0.11", "10.77.0.10", "ok")) << consoleTail("a");
  EXPECT_TRUE(settles("b", "10.77.0.10", "10.77.0.11", "ok")) << consoleTail("b");
  EXPECT_TRUE(settles("a", "10.77.0.1", "10.77.0.99", "fail")) << consoleTail("a");
  EXPECT_TRUE(settles("a", "10.77.0.11", "10.77.0.99", "fail")) << consoleTail("a");
  EXPECT_TRUE(settles("c", "10.77.0.1", "10.77.0.12", "fail")) << consoleTail("c");

  // b: ingress none. a cannot reach it; b still reaches a (answers to its own pings come in).
  write("m", "b-in.yaml", policy("b-in", "b", "ingress: {mode: none}"));
  r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(settles("a", "10.77.0.11", "10.77.0.10", "fail")) << consoleTail("a");
  EXPECT_TRUE(settles("a", "10.77.0.1", "10.77.0.10", "ok")) << consoleTail("a");
  EXPECT_TRUE(settles("b", "10.77.0.10", "10.77.0.11", "ok")) << consoleTail("b");

  // a: egress none as well. From either of its addresses it reaches nothing; b still reaches
  // the gateway, and a still answers b.
  write("m", "a-out.yaml", policy("a-out", "a", "egress: {mode: none}"));
  r = hyperctl({"apply", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(settles("a", "10.77.0.1", "10.77.0.10", "fail")) << consoleTail("a");
  EXPECT_TRUE(settles("a", "10.77.0.1", "10.77.0.99", "fail")) << consoleTail("a");
  EXPECT_TRUE(settles("a", "10.77.0.11", "10.77.0.99", "fail")) << consoleTail("a");
  EXPECT_TRUE(settles("b", "10.77.0.1", "10.77.0.11", "ok")) << consoleTail("b");
  EXPECT_TRUE(settles("b", "10.77.0.10", "10.77.0.11", "ok")) << consoleTail("b");

  // Both policies removed: everything is back, without restarting a VM.
  fs::remove(dir + "/a-out.yaml");
  fs::remove(dir + "/b-in.yaml");
  r = hyperctl({"apply", "--prune", "-f", dir});
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  EXPECT_TRUE(settles("a", "10.77.0.11", "10.77.0.10", "ok")) << consoleTail("a");
  EXPECT_TRUE(settles("a", "10.77.0.1", "10.77.0.10", "ok")) << consoleTail("a");
  EXPECT_TRUE(settles("a", "10.77.0.1", "10.77.0.99", "fail")) << consoleTail("a");
  EXPECT_EQ(qemuPid("a"), pidA) << "a policy change restarted a VM";
  EXPECT_EQ(qemuPid("b"), pidB) << "a policy change restarted a VM";
  EXPECT_EQ(readFile(kSwitch), hostSwitch) << "the host's switch changed";
}

INSTANTIATE_TEST_SUITE_P(BrNetfilter, NetworkPolicyVmTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "AsOnHost" : "OffInNetns"; });

}  // namespace
}  // namespace hyper
