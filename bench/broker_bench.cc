// hyper_broker_bench: what a run through hyper-broker costs over running the command directly.
//   1. overhead: `hyper-broker-cli make` against `make` on a no-op Makefile, in pairs (target: the
//      median of the paired differences < 2 ms; PASS or MISS is printed)
//   2. throughput: many small requests from several clients at once
// Runs as root (the broker must be able to setuid; the rule allows uid 0 for the benchmark).
// Prints figures; asserts nothing about time. Exits non-zero only when a run fails.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/client.h"
#include "broker/request.h"
#include "broker/runner.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Runs argv in `cwd` with stdout/stderr to /dev/null; returns the exit code.
int spawnWait(const std::vector<std::string>& argv, const std::string& cwd) {
  std::vector<char*> cargv;
  for (const auto& a : argv) {
    cargv.push_back(const_cast<char*>(a.c_str()));
  }
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  pid_t pid;
  int rc = posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return -1;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// CPU seconds of a process (own, and of its reaped children) from /proc/PID/stat: what the
// broker itself spends per request, which the machine's load does not inflate the way it does
// wall-clock time.
struct CpuTimes {
  double self = 0;
  double children = 0;
};

CpuTimes cpuOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CpuTimes t;
  size_t paren = content.rfind(')');
  if (paren == std::string::npos) {
    return t;
  }
  std::istringstream fields(content.substr(paren + 2));
  std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
  // Fields after the name start at 3 (state); utime is 14, stime 15, cutime 16, cstime 17.
  double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (f.size() > 14) {
    t.self = (std::stod(f[11]) + std::stod(f[12])) / tick;
    t.children = (std::stod(f[13]) + std::stod(f[14])) / tick;
  }
  return t;
}

double childrenCpu() {
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Stats {
  double median = 0;
  double mean = 0;
  double p10 = 0;
  double p90 = 0;
};

Stats summarise(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  Stats s;
  s.median = v[v.size() / 2];
  s.p10 = v[v.size() / 10];
  s.p90 = v[v.size() * 9 / 10];
  for (double x : v) {
    s.mean += x;
  }
  s.mean /= static_cast<double>(v.size());
  return s;
}

// One request over the socket from this process; returns the exit code (-1: protocol failure).
int inProcessRun(const std::string& socket, const std::string& cwd) {
  auto fd = hyper::broker::connectBroker(socket);
  if (!fd.isOk()) {
    return -1;
  }
  hyper::broker::RunRequest req;
  req.command = "make";
  req.args = {"-s"};
  req.cwd = cwd;
  int code = -1;
  if (hyper::broker::sendAll(*fd, hyper::broker::runRequestToJson(req).dump() + "\n")) {
    std::string buffer, line;
    while (hyper::broker::readFrameLine(*fd, buffer, line)) {
      Json frame = Json::parse(line, nullptr, false);
      if (frame.is_object() && frame.value("type", "") == "exit") {
        code = frame.value("code", -1);
        break;
      }
    }
  }
  close(*fd);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 200;
  if (geteuid() != 0) {
    std::printf("hyper_broker_bench: skipped (needs root to run the broker)\n");
    return 0;
  }
  char pattern[] = "/tmp/hyper-broker-bench.XXXXXX";
  if (mkdtemp(pattern) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  std::string dir = pattern;
  std::string ws = dir + "/ws";
  std::filesystem::create_directories(ws);
  std::ofstream(ws + "/Makefile") << "all:\n\t@:\n";
  const unsigned clients = std::max(4u, std::thread::hardware_concurrency());
  Json rules = {{"schemaVersion", "1"},
                {"rules",
                 {{{"name", "make"},
                   {"command", "/usr/bin/make"},
                   {"callers", {{"uids", {0}}}},
                   {"workspace", ws},
                   {"env", {"PATH"}},
                   {"concurrency", clients}}}}};
  std::ofstream(dir + "/rules.json") << rules.dump();
  std::string socket = dir + "/broker.sock";

  pid_t broker = fork();
  if (broker == 0) {
    int log = open((dir + "/broker.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(log, STDERR_FILENO);
    execl(HYPER_BROKER_PATH, HYPER_BROKER_PATH, "--socket", socket.c_str(), "--rules",
          (dir + "/rules.json").c_str(), (char*)nullptr);
    _exit(127);
  }
  for (int i = 0; i < 200 && !std::filesystem::exists(socket); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  setenv("HYPER_BROKER_SOCKET", socket.c_str(), 1);
  // Another client binary can be measured in the same conditions (an older build, say).
  const char* envCli = std::getenv("HYPER_BROKER_BENCH_CLI");
  const std::string cli = envCli != nullptr && *envCli != '\0' ? envCli : HYPER_BROKER_CLI_PATH;
  std::printf("client: %s\n", cli.c_str());
  int failures = 0;

  // 1. Overhead over running make directly. Runs go in pairs (make directly, then through the
  // client, the order swapped every other pair) so that drift and the other load of a shared
  // machine hit both alike; the figure judged is the median of the paired differences.
  std::vector<double> direct, viaCli, viaSocket, spawnOnly, added, clientPart;
  double directCpu = 0, cliCpu = 0;
  CpuTimes brokerBefore = cpuOf(broker);
  for (int i = 0; i < iterations + 10; ++i) {
    double d = 0, c = 0, dCpu = 0, cCpu = 0;
    int a = 0, b = 0;
    auto runDirect = [&] {
      double cpu0 = childrenCpu();
      auto t = Clock::now();
      a = spawnWait({"/usr/bin/make", "-s"}, ws);
      d = msSince(t);
      dCpu = childrenCpu() - cpu0;
    };
    auto runCli = [&] {
      double cpu0 = childrenCpu();
      auto t = Clock::now();
      b = spawnWait({cli, "make", "-s"}, ws);
      c = msSince(t);
      cCpu = childrenCpu() - cpu0;
    };
    if (i % 2 == 0) {
      runDirect();
      runCli();
    } else {
      runCli();
      runDirect();
    }
    directCpu += dCpu;
    cliCpu += cCpu;
    auto t = Clock::now();
    int s = inProcessRun(socket, ws);
    double k = msSince(t);
    t = Clock::now();
    spawnWait({"/bin/true"}, ws);
    double p = msSince(t);
    if (a != 0 || b != 0 || s != 0) {
      ++failures;
      std::fprintf(stderr, "run failed: make %d, via cli %d, via socket %d\n", a, b, s);
      continue;
    }
    if (i >= 10) {  // warm-up excluded
      direct.push_back(d);
      viaCli.push_back(c);
      viaSocket.push_back(k);
      spawnOnly.push_back(p);
      added.push_back(c - d);
      clientPart.push_back(c - k);
    }
  }
  CpuTimes brokerAfter = cpuOf(broker);
  if (!direct.empty()) {
    Stats d = summarise(direct), c = summarise(viaCli), k = summarise(viaSocket),
          p = summarise(spawnOnly), x = summarise(added), cp = summarise(clientPart);
    std::printf("broker overhead, no-op Makefile, %zu pairs (median / mean / p10 / p90, ms)\n",
                direct.size());
    auto row = [](const char* name, const Stats& st) {
      std::printf("  %-34s %7.3f / %7.3f / %7.3f / %7.3f\n", name, st.median, st.mean, st.p10,
                  st.p90);
    };
    row("make directly", d);
    row("hyper-broker-cli make", c);
    row("same request from this process", k);
    row("/bin/true (one process creation)", p);
    row("added: cli - direct, paired", x);
    row("of it, the client: cli - in-process", cp);
    std::printf(
        "  added by the broker (median of paired differences): %.3f ms; medians %.3f vs %.3f ms, "
        "ratio %.2fx -> %s (target < 2 ms added)\n",
        x.median, c.median, d.median, c.median / d.median, x.median < 2.0 ? "PASS" : "MISS");
    int runs = iterations + 10;
    int brokerRequests = 2 * runs;  // the cli's and this process's
    std::printf(
        "  CPU per run (less load-sensitive than wall time, not immune): make %.3f ms; "
        "hyper-broker-cli process %.3f ms; "
        "hyper-broker itself %.3f ms per request; the make it ran %.3f ms\n",
        directCpu * 1000 / runs, cliCpu * 1000 / runs,
        (brokerAfter.self - brokerBefore.self) * 1000 / brokerRequests,
        (brokerAfter.children - brokerBefore.children) * 1000 / brokerRequests);
  }

  // 2. Throughput: `clients` threads, each sending requests back to back over its own
  // connections (one request per connection, as the protocol has it): first from this process,
  // then as hyper-broker-cli processes, as callers would.
  const int perClient = std::max(20, iterations / 2);
  auto throughput = [&](const char* how, const std::function<int()>& one) {
    std::atomic<int> bad{0};
    auto t = Clock::now();
    std::vector<std::thread> threads;
    for (unsigned c = 0; c < clients; ++c) {
      threads.emplace_back([&] {
        for (int i = 0; i < perClient; ++i) {
          if (one() != 0) {
            ++bad;
          }
        }
      });
    }
    for (auto& th : threads) {
      th.join();
    }
    double total = msSince(t);
    int requests = static_cast<int>(clients) * perClient;
    std::printf(
        "throughput, %s: %d no-op make runs from %u concurrent clients (rule concurrency %u): "
        "%.0f ms, %.0f runs/s, %.3f ms per run\n",
        how, requests, clients, clients, total, requests * 1000.0 / total, total / requests);
    failures += bad;
  };
  throughput("requests from this process", [&] { return inProcessRun(socket, ws); });
  throughput("hyper-broker-cli processes", [&] { return spawnWait({cli, "make", "-s"}, ws); });

  kill(broker, SIGTERM);
  int status;
  waitpid(broker, &status, 0);
  std::filesystem::remove_all(dir);
  if (failures > 0) {
    std::fprintf(stderr, "hyper_broker_bench: %d run(s) failed\n", failures);
    return 1;
  }
  return 0;
}
