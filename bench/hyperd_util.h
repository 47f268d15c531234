#pragma once
// What the benchmarks that run a real hyperd share (hyper_net_apply_bench, hyper_vm_bench): the
// N Networks + N NetworkPolicies they give it, a daemon in the background, and what /proc and
// /metrics say of it. Header-only: each benchmark is one program.

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace hyper::bench {

inline std::string networkName(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "n%04d", i + 1);
  return buf;
}

inline std::string subnet(int i) {
  return "10." + std::to_string(100 + i / 250) + "." + std::to_string(i % 250) + ".0";
}

// N Networks and N NetworkPolicies in one file: cidr 10.(100+i/250).(i%250).0/24, `nat: true`
// on every tenth, an egress allowlist of two rules each; network `changed` (or none: -1) has
// mtu 1400, and the policy of network `changedPolicy` allows port 8443 instead of 443. With
// `from`: networks from..n-1 only (a repository's later files).
inline std::string networksAndPolicies(int n, int changed = -1, int changedPolicy = -1,
                                       int from = 0) {
  std::string out;
  out.reserve(static_cast<size_t>(n - from) * 600);
  for (int i = from; i < n; ++i) {
    const std::string name = networkName(i);
    out += "---\napiVersion: hyper.dev/v1alpha1\nkind: Network\nmetadata: {name: " + name +
           "}\nspec:\n  cidr: " + subnet(i) + "/24\n  mtu: " + (i == changed ? "1400" : "1500") +
           "\n  nat: " + (i % 10 == 0 ? "true" : "false") + "\n";
    out += "---\napiVersion: hyper.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: " + name +
           "-egress}\nspec:\n  network: " + name +
           "\n  egress:\n    mode: allowlist\n    allow:\n"
           "      - {cidr: 203.0.113.0/24, ports: [" +
           (i == changedPolicy ? "8443" : "443") +
           "], protocol: tcp}\n"
           "      - {cidr: 192.0.2.53, ports: [53], protocol: udp}\n"
           "  ingress: {mode: any}\n";
  }
  return out;
}

inline std::string readProcText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// CPU seconds (user + system) the process has used so far; 0 when it is gone.
inline double cpuSecondsOf(pid_t pid) {
  std::string stat = readProcText("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos || close + 2 > stat.size()) {
    return 0;
  }
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) {  // utime, stime
      ticks += std::stod(field);
    }
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// A value of hyperd's /metrics (a line "NAME VALUE"); 0 when absent.
inline double metricValue(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > name.size() && line.compare(0, name.size(), name) == 0 &&
        line[name.size()] == ' ') {
      return std::stod(line.substr(name.size() + 1));
    }
  }
  return 0;
}

// Every series of a labelled metric family: "{trigger=\"drift-check\"}" -> value.
inline std::map<std::string, double> metricSeries(const std::string& text,
                                                  const std::string& family) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > family.size() && line.compare(0, family.size(), family) == 0 &&
        line[family.size()] == '{') {
      size_t space = line.rfind(' ');
      if (space != std::string::npos && space > family.size()) {
        out[line.substr(family.size(), space - family.size())] = std::stod(line.substr(space + 1));
      }
    }
  }
  return out;
}

// A daemon started in the background (`ip netns exec` and `env` exec it: the child's pid is the
// daemon's) with its output in a log file; stopped (SIGTERM, then SIGKILL after 30 s) by stop()
// or the destructor.
class Daemon {
 public:
  Daemon() = default;
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  ~Daemon() { stop(); }

  bool start(const std::vector<std::string>& argv, const std::string& log) {
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
      std::fprintf(stderr, "FAIL: open %s: %s\n", log.c_str(), std::strerror(errno));
      return false;
    }
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      sigset_t none;
      sigemptyset(&none);
      pthread_sigmask(SIG_SETMASK, &none, nullptr);  // main() may have blocked the stop signals
      int in = ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execvp(args[0], args.data());
      _exit(127);
    }
    ::close(out);
    if (pid_ < 0) {
      std::fprintf(stderr, "FAIL: fork: %s\n", std::strerror(errno));
      return false;
    }
    return true;
  }

  void stop() {
    if (pid_ <= 0) {
      return;
    }
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 300; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::fprintf(stderr, "%s did not stop within 30 s of SIGTERM: SIGKILL\n", "the daemon");
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // Reaps it when it has exited (so that stop() signals no other process by that pid).
  bool running() {
    if (pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
    }
    return pid_ > 0;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

}  // namespace hyper::bench
