// hyper_validate_bench: `hyperctl validate` of N one-object manifest files (default 10,000)
// against PyYAML's C loader (yaml.CSafeLoader, libyaml) merely parsing the same files (issue 17:
// hyperctl within 0.35 x of it).
//
// The files alternate Networks and NetworkPolicies (an allowlist rule each), one document per
// file, in a fresh temporary directory. Each side runs --rounds times (default 3) as a child
// process; the bench prints the median wall time and the median CPU time (user + system, from
// wait4) of each, and hyperctl / PyYAML for both. hyperctl loads, parses and checks every document
// against its kind's JSON Schema and the revision's rules; PyYAML only builds Python objects, so
// the comparison favours it. Without python3 or a PyYAML built with libyaml the comparison is
// skipped (said so) and hyperctl's figures are still printed.
//
// It prints figures and an informational target; it is not a test. It exits 1 only when
// something is functionally wrong (hyperctl does not say all N objects are valid, or the Python
// side fails), because then the figures mean nothing.

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#ifndef HYPERCTL_PATH
#define HYPERCTL_PATH "hyperctl"
#endif

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr double kTargetRatio = 0.35;  // hyperctl validate / PyYAML's C loader

struct Run {
  int exitCode = -1;
  double wallMs = 0;
  double cpuMs = 0;  // user + system of the child
  std::string out;   // stdout and stderr
};

// Runs argv with its output in a file; wall time and the child's CPU from wait4.
Run runTimed(const std::vector<std::string>& argv, const std::string& outFile) {
  Run r;
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, outFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  auto start = Clock::now();
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    r.out = std::string("cannot start ") + argv[0] + ": " + std::strerror(rc);
    return r;
  }
  int status = 0;
  struct rusage usage {};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  r.wallMs = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  r.cpuMs = ms(usage.ru_utime) + ms(usage.ru_stime);
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(outFile);
  r.out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::string manifest(int i) {
  char name[16];
  std::snprintf(name, sizeof name, "n%05d", i);
  std::string out = "apiVersion: hyper.dev/v1alpha1\n";
  if (i % 2 == 0) {
    out += "kind: Network\nmetadata: {name: " + std::string(name) + "}\nspec:\n  cidr: 10." +
           std::to_string(100 + i / 250) + "." + std::to_string(i % 250) + ".0/24\n  mtu: 1500\n";
  } else {
    char network[16];
    std::snprintf(network, sizeof network, "n%05d", i - 1);
    out += "kind: NetworkPolicy\nmetadata: {name: " + std::string(name) +
           ", labels: {team: web}}\nspec:\n  network: " + network +
           "\n  egress:\n    mode: allowlist\n    allow:\n"
           "      - {cidr: 203.0.113.0/24, ports: [443], protocol: tcp}\n"
           "  ingress: {mode: any}\n";
  }
  return out;
}

struct Side {
  std::vector<double> wall, cpu;
};

void usage() {
  std::fprintf(stderr,
               "usage: hyper_validate_bench [--files 10000] [--rounds 3] [--hyperctl PATH]\n");
}

}  // namespace

int main(int argc, char** argv) {
  int files = 10000;
  int rounds = 3;
  std::string hyperctl = HYPERCTL_PATH;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--files" || arg == "--rounds" || arg == "--hyperctl") && i + 1 < argc) {
      std::string value = argv[++i];
      if (arg == "--hyperctl") {
        hyperctl = value;
        continue;
      }
      int n = std::atoi(value.c_str());
      if (n < 1 || n > 1000000) {
        usage();
        return 2;
      }
      (arg == "--files" ? files : rounds) = n;
    } else {
      usage();
      return 2;
    }
  }

  char dirTemplate[] = "/tmp/hyper-validate-bench.XXXXXX";
  if (!mkdtemp(dirTemplate)) {
    std::perror("mkdtemp");
    return 1;
  }
  const fs::path dir = dirTemplate;
  const fs::path manifests = dir / "manifests";
  fs::create_directory(manifests);
  size_t bytes = 0;
  for (int i = 0; i < files; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "n%05d.yaml", i);
    std::string text = manifest(i);
    bytes += text.size();
    std::ofstream(manifests / name) << text;
  }
  const std::string python =
      "import glob, sys, yaml\n"
      "n = 0\n"
      "for f in sorted(glob.glob(sys.argv[1] + '/*.yaml')):\n"
      "    with open(f) as s:\n"
      "        n += len(list(yaml.load_all(s, Loader=yaml.CSafeLoader)))\n"
      "print(n, 'documents')\n";
  const std::string script = (dir / "load.py").string();
  std::ofstream(script) << python;
  const std::string outFile = (dir / "out").string();

  std::printf("hyper_validate_bench: %d one-object files (%zu KB), %d rounds, median\n", files,
              bytes / 1024, rounds);
  int status = 0;
  Side hyper, yaml;
  bool pythonOk = true;
  std::string pythonWhy;
  Run probe = runTimed({"python3", "-c", "import yaml; yaml.CSafeLoader"}, outFile);
  if (probe.exitCode != 0) {
    pythonOk = false;
    pythonWhy = "python3 with PyYAML's C loader (python3-yaml) is not available";
  }
  const std::string expect = std::to_string(files) + " objects valid";
  for (int round = 0; round < rounds && status == 0; ++round) {
    Run h = runTimed({hyperctl, "validate", "-f", manifests.string()}, outFile);
    if (h.exitCode != 0 || h.out.find(expect) == std::string::npos) {
      std::fprintf(stderr, "FAIL: hyperctl validate (exit %d) did not say \"%s\":\n%s\n",
                   h.exitCode, expect.c_str(), h.out.substr(0, 2000).c_str());
      status = 1;
      break;
    }
    hyper.wall.push_back(h.wallMs);
    hyper.cpu.push_back(h.cpuMs);
    if (!pythonOk) {
      continue;
    }
    Run p = runTimed({"python3", script, manifests.string()}, outFile);
    if (p.exitCode != 0 || p.out.find(std::to_string(files) + " documents") == std::string::npos) {
      std::fprintf(stderr, "FAIL: PyYAML (exit %d): %s\n", p.exitCode,
                   p.out.substr(0, 2000).c_str());
      status = 1;
      break;
    }
    yaml.wall.push_back(p.wallMs);
    yaml.cpu.push_back(p.cpuMs);
  }
  if (status == 0) {
    double hw = median(hyper.wall), hc = median(hyper.cpu);
    std::printf("hyperctl validate: %.0f ms wall, %.0f ms CPU (%.1f us CPU per file)\n", hw, hc,
                hc * 1e3 / files);
    if (pythonOk) {
      double yw = median(yaml.wall), yc = median(yaml.cpu);
      std::printf("PyYAML CSafeLoader load_all: %.0f ms wall, %.0f ms CPU\n", yw, yc);
      std::printf("hyperctl / PyYAML: wall %.2f x, CPU %.2f x (target <= %.2f x: %s)\n", hw / yw,
                  hc / yc, kTargetRatio, hw / yw <= kTargetRatio ? "PASS" : "MISS");
    } else {
      std::printf("PyYAML comparison skipped: %s\n", pythonWhy.c_str());
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return status;
}
