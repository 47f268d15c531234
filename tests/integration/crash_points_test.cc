// Crashes, proven: hyperctl is killed (SIGKILL, through HYPER_TEST_CRASH_AT; reconciler/
// crash_point.h) at every crash point of an apply that creates a Network, a NetworkPolicy, a
// BrokerRule and a VM, and of the prune that deletes them again. After each kill one more
// hyperctl apply must finish the work: one QEMU for the VM, one tap, one bridge, hyper's two nft
// tables and the rule in the broker's file, then an empty plan; after the prune nothing at all,
// also when the source lost everything between the killed apply and the next run.
// Every point is walked in its own state directory, in one network namespace that must be as
// empty after each walk as before the first. The table of points covered is printed.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "host/command.h"
#include "tests/integration/broker_util.h"
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

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) {
      out.push_back(line);
    }
  }
  return out;
}

// One line of a crash log: "<n> <name>" or "killed <n> <name>".
struct LoggedPoint {
  bool killed = false;
  long n = 0;
  std::string name;
};

std::vector<LoggedPoint> readCrashLog(const std::string& path) {
  std::vector<LoggedPoint> out;
  for (std::string line : lines(readFile(path))) {
    LoggedPoint p;
    if (line.rfind("killed ", 0) == 0) {
      p.killed = true;
      line = line.substr(7);
    }
    size_t space = line.find(' ');
    p.n = std::stol(line.substr(0, space));
    p.name = space == std::string::npos ? "" : line.substr(space + 1);
    out.push_back(p);
  }
  return out;
}

// Live QEMU processes whose command line names `runDir` (zombies of daemonized QEMUs excluded).
int qemuProcessesUnder(const std::string& runDir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::string cmdline = readFile(e.path().string() + "/cmdline");
    for (char& c : cmdline) {
      c = c == '\0' ? ' ' : c;
    }
    if (!contains(cmdline, "qemu-system") || !contains(cmdline, runDir + "/")) {
      continue;
    }
    std::string stat = readFile(e.path().string() + "/stat");
    size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z') {
      ++n;
    }
  }
  return n;
}

class CrashPointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (network namespaces, taps, the broker)";
    }
    const auto& image = test::guestImage();
    if (!image.skipReason.empty()) {
      GTEST_SKIP() << image.skipReason;
    }
    auto ns = test::NamedNetns::create(test::uniqueNetnsName("crash"));
    ASSERT_TRUE(ns.isOk()) << ns.status().message();
    ns_ = std::move(*ns);
    ASSERT_TRUE(ns_->run({"ip", "link", "set", "lo", "up"}).isOk());
    auto tmp = test::TempDir::create("crash");
    ASSERT_TRUE(tmp.isOk()) << tmp.status().message();
    tmp_ = std::move(*tmp);
    runDir_ = tmp_->path() + "/run";
    socket_ = tmp_->path() + "/broker.sock";
    rules_ = tmp_->path() + "/etc/broker-rules.json";
    fs::create_directories(tmp_->path() + "/etc");
    auto broker = test::BrokerProcess::start({"--socket", socket_, "--rules", rules_}, socket_,
                                             tmp_->path() + "/broker.log");
    ASSERT_TRUE(broker.isOk()) << broker.status().message();
    broker_ = std::move(*broker);

    const auto& img = test::guestImage();
    write("full/net.yaml",
          "apiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata: {name: lab}\n"
          "spec: {cidr: 10.79.0.0/24}\n");
    write("full/policy.yaml",
          "apiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: web-out}\n"
          "spec:\n  network: lab\n  selector: {matchLabels: {role: web}}\n"
          "  egress: {mode: none}\n");
    write("full/rule.yaml",
          "apiVersion: hyper.dev/v1alpha1\nkind: BrokerRule\nmetadata: {name: make}\n"
          "spec:\n  command: /usr/bin/make\n  callers: {uids: [0]}\n  workspace: " +
              tmp_->path() + "/ws\n");
    write("full/vm.yaml",
          "apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata:\n  name: web-1\n"
          "  labels: {role: web}\nspec:\n  memoryMiB: 256\n  kernel: {path: " +
              img.kernel + "}\n  initrd: {path: " + img.initrd +
              "}\n  cmdline: quiet\n  network: {name: lab, ip: 10.79.0.10}\n");
    // The prune's source: a file, but no object in it.
    write("none/empty.yaml", "# everything above was removed\n");
  }

  void TearDown() override {
    if (tmp_) {
      test::killQemusUnder(runDir_);
    }
  }

  void write(const std::string& relative, const std::string& content) {
    Status s = tmp_->write(relative, content);
    ASSERT_TRUE(s.isOk()) << s.message();
  }

  // hyperctl in the namespace, with one state dir per walk, its VMs under runDir_, the broker's
  // files by flag, actions one at a time (the points come in the same order every run), and the
  // crash switch set only when crashAt > 0.
  CommandRun hyperctl(const std::string& stateDir, std::vector<std::string> args, long crashAt,
                      const std::string& crashLog) const {
    std::vector<std::string> argv = {"ip",        "netns", "exec",
                                     ns_->name(), "env",   "HYPER_VM_RUN_DIR=" + runDir_};
    if (crashAt > 0) {
      argv.push_back("HYPER_TEST_CRASH_AT=" + std::to_string(crashAt));
    }
    if (!crashLog.empty()) {
      argv.push_back("HYPER_TEST_CRASH_LOG=" + crashLog);
    }
    for (const std::string& a :
         {std::string(HYPERCTL_PATH), std::string("--state-dir"), stateDir,
          std::string("--broker-rules"), rules_, std::string("--broker-socket"), socket_,
          std::string("--parallelism"), std::string("1")}) {
      argv.push_back(a);
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return test::runArgv(argv);
  }

  std::vector<std::string> applyArgs() const { return {"apply", "-f", tmp_->path() + "/full"}; }
  std::vector<std::string> pruneArgs() const {
    return {"apply", "--prune", "--yes", "-f", tmp_->path() + "/none"};
  }

  std::vector<std::string> linksInNamespace() const {
    std::vector<std::string> names;
    auto out = ns_->run({"ip", "-o", "link", "show"});
    for (const std::string& line : lines(out.isOk() ? *out : "")) {
      // "<index>: <name>[@<peer>]: <flags> ..."
      size_t a = line.find(": ");
      size_t b = line.find(':', a + 2);
      if (a != std::string::npos && b != std::string::npos) {
        std::string name = line.substr(a + 2, b - a - 2);
        names.push_back(name.substr(0, name.find('@')));
      }
    }
    return names;
  }

  std::string nftTables() const {
    auto out = ns_->run({"nft", "list", "tables"});
    return out.isOk() ? *out : "nft failed: " + out.status().message();
  }

  // The rule names in the broker's file, and any file beside it (a temp file a kill left).
  std::string brokerFiles() const {
    std::string out;
    for (const auto& e : fs::directory_iterator(fs::path(rules_).parent_path())) {
      out += e.path().filename().string() + " ";
    }
    Json doc = Json::parse(readFile(rules_), nullptr, false);
    out += "rules:";
    if (doc.is_object() && doc["rules"].is_array()) {
      for (const auto& r : doc["rules"]) {
        out += " " + r.value("name", "?");
      }
    }
    return out;
  }

  // What the host holds of the full source, one line per fact, compared as a whole.
  std::string hostState() const {
    std::string links;
    for (const auto& l : linksInNamespace()) {
      links += " " + l;
    }
    std::string runDirs;
    if (fs::exists(runDir_)) {
      for (const auto& e : fs::directory_iterator(runDir_)) {
        runDirs += " " + e.path().filename().string();
      }
    }
    return "links:" + links + "\nnft: " + nftTables() +
           "qemu: " + std::to_string(qemuProcessesUnder(runDir_)) + "\nrun dirs:" + runDirs +
           "\nbroker: " + brokerFiles() + "\n";
  }

  std::unique_ptr<test::NamedNetns> ns_;
  std::unique_ptr<test::TempDir> tmp_;
  std::unique_ptr<test::BrokerProcess> broker_;
  std::string runDir_;
  std::string socket_;
  std::string rules_;
};

TEST_F(CrashPointsTest, AKillAtAnyPointOfApplyOrPruneIsFinishedByTheNextApply) {
  const std::string empty = hostState();
  ASSERT_EQ(empty, "links: lo\nnft: qemu: 0\nrun dirs:\nbroker: rules:\n")
      << "the namespace is not empty before the walk";

  // A run without a kill lists the points, in order, and gives the converged state to compare.
  const std::string calibration = tmp_->path() + "/calibration";
  CommandRun r = hyperctl(calibration + "/state", applyArgs(), 0, calibration + "/apply.log");
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  const std::string converged = hostState();
  EXPECT_TRUE(contains(converged, "links: lo hb-lab hv-web-1\n")) << converged;
  EXPECT_TRUE(contains(converged, "nft: table inet hyper\ntable bridge hyper\n")) << converged;
  EXPECT_TRUE(contains(converged, "qemu: 1\nrun dirs: web-1\n")) << converged;
  EXPECT_TRUE(contains(converged, "broker: broker-rules.json rules: make\n")) << converged;
  r = hyperctl(calibration + "/state", pruneArgs(), 0, calibration + "/prune.log");
  ASSERT_EQ(r.exitCode, 0) << r.describe();
  ASSERT_EQ(hostState(), "links: lo\nnft: qemu: 0\nrun dirs:\nbroker: broker-rules.json rules:\n")
      << "the prune left something";
  const std::string pruned = hostState();

  // Three walks. "apply": killed applying the full source, then the same apply again.
  // "prune": applied, killed pruning everything, then the same prune again. "apply-prune": killed
  // applying, and then the source loses everything: the prune must find what the killed create
  // left although no record names it (an unconfirmed create, Inventory::unconfirmed).
  struct Walk {
    const char* name;
    bool applyFirst;                 // apply the full source before the run that is killed
    std::vector<std::string> crash;  // the run that is killed
    std::vector<std::string> next;   // the one run that must finish the work
    std::string source;              // what `next` converges to (for the diff)
    std::string expected;            // hostState() after `next`
    std::vector<LoggedPoint> points;
  };
  const std::vector<LoggedPoint> applyPoints = readCrashLog(calibration + "/apply.log");
  const std::vector<LoggedPoint> prunePoints = readCrashLog(calibration + "/prune.log");
  const std::vector<Walk> walks = {
      {"apply", false, applyArgs(), applyArgs(), "/full", converged, applyPoints},
      {"prune", true, pruneArgs(), pruneArgs(), "/none", pruned, prunePoints},
      {"apply-prune", false, applyArgs(), pruneArgs(), "/none", pruned, applyPoints}};
  // The points a walk must cover: every journal step of all four objects, both ways, and each
  // provider's points between two host changes.
  std::string all;
  for (const auto& w : walks) {
    for (const auto& p : w.points) {
      all += std::string(w.name) + ": " + p.name + "\n";
    }
  }
  for (const char* must :
       {"apply: journal-begun Network/lab create", "apply: bridge-configured Network/lab",
        "apply: rules-staged BrokerRule/make", "apply: rules-written BrokerRule/make",
        "apply: tap-created VM/web-1", "apply: run-dir-written VM/web-1",
        "apply: vm-started VM/web-1", "apply: host-changed NetworkPolicy/web-out create",
        "apply: recorded VM/web-1 create", "apply: journal-ended VM/web-1 create",
        "prune: vm-stopped VM/web-1", "prune: bridge-deleted Network/lab",
        "prune: rules-staged BrokerRule/make", "prune: journal-ended Network/lab delete"}) {
    EXPECT_TRUE(contains(all, std::string(must) + "\n")) << "no point " << must << " in\n" << all;
  }

  std::string table = "crash points walked (hyperctl killed with SIGKILL at each):\n";
  char row[512];
  std::snprintf(row, sizeof row, "%3s  %-11s  %-48s  %-11s  %s\n", "#", "walk", "point",
                "interrupted", "after one more run");
  table += row;
  int walked = 0;
  // HYPER_TEST_CRASH_WALK=TEXT walks only the points whose name contains TEXT (to debug one).
  const char* only = std::getenv("HYPER_TEST_CRASH_WALK");
  for (const Walk& w : walks) {
    for (const LoggedPoint& point : w.points) {
      if (only != nullptr && !contains(point.name, only)) {
        continue;
      }
      const std::string where =
          std::string(w.name) + " point " + std::to_string(point.n) + " (" + point.name + ")";
      SCOPED_TRACE(where);
      const std::string walk = tmp_->path() + "/walk-" + std::to_string(++walked);
      const std::string state = walk + "/state";
      if (w.applyFirst) {
        r = hyperctl(state, applyArgs(), 0, "");
        ASSERT_EQ(r.exitCode, 0) << r.describe();
      }
      // Killed where it should be, and nowhere else.
      r = hyperctl(state, w.crash, point.n, walk + "/crash.log");
      std::vector<LoggedPoint> log = readCrashLog(walk + "/crash.log");
      ASSERT_FALSE(log.empty()) << r.describe();
      ASSERT_TRUE(log.back().killed && log.back().n == point.n && log.back().name == point.name)
          << "killed at " << log.back().n << " " << log.back().name << "\n"
          << r.describe();
      EXPECT_NE(r.exitCode, 0) << r.describe();
      EXPECT_FALSE(contains(r.out, "Apply complete")) << r.describe();

      // One more run finishes the work, and says what was interrupted (every point but the
      // last of an action lies inside its journal entry).
      auto started = std::chrono::steady_clock::now();
      CommandRun again = hyperctl(state, w.next, 0, "");
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      ASSERT_EQ(again.exitCode, 0) << again.describe();
      const bool insideEntry = point.name.rfind("journal-ended ", 0) != 0;
      EXPECT_EQ(contains(again.err, "was interrupted"), insideEntry) << again.describe();
      CommandRun diff = hyperctl(state, {"diff", "-f", tmp_->path() + w.source}, 0, "");
      EXPECT_EQ(diff.exitCode, 0) << "not converged after one run\n" << diff.describe();
      EXPECT_FALSE(contains(diff.out, "orphan")) << diff.describe();
      ASSERT_EQ(hostState(), w.expected) << "after the kill and one run\n" << again.describe();

      // Back to nothing for the next walk: the prune must leave exactly what the calibration
      // prune left.
      if (w.expected != pruned) {
        r = hyperctl(state, pruneArgs(), 0, "");
        ASSERT_EQ(r.exitCode, 0) << r.describe();
        ASSERT_EQ(hostState(), pruned) << "the prune after the walk left something";
      }
      std::snprintf(row, sizeof row, "%3d  %-11s  %-48s  %-11s  %s (%.1f s)\n", walked, w.name,
                    point.name.c_str(), insideEntry ? "yes" : "no",
                    w.expected == pruned ? "nothing left, empty plan" : "converged, empty plan",
                    seconds);
      table += row;
    }
  }
  std::cout << table << std::flush;
  if (only == nullptr) {
    EXPECT_EQ(walked, static_cast<int>(2 * applyPoints.size() + prunePoints.size()));
    EXPECT_GE(walked, 60) << table;
  }
}

}  // namespace
}  // namespace hyper
