// The cost of polling a git source, for a repository of 10k manifests in one commit:
//   - changed() when nothing moved (the poll hyperd does every interval), against the target of
//     under 5 ms of CPU for a poll that finds nothing new;
//   - fetch() of an unchanged commit and of a commit that changes one file.
// The remote is a local bare repository, so libgit2 serves it in-process and the CPU figures
// include the "server" side; over http(s) the server's half runs elsewhere.
//
// bench/CMakeLists.txt puts every bench/*.cc into one hyper_bench executable, which has its own
// main(); this file's main() is compiled only with HYPER_SOURCE_BENCH_MAIN, for a target of its
// own (see runSourceBench).

#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "host/command.h"
#include "source/git_source.h"

namespace hyper::bench {
namespace {
namespace fs = std::filesystem;

double cpuMs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double wallMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool git(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"git",
                                   "-c",
                                   "user.name=bench",
                                   "-c",
                                   "user.email=bench@hyper.invalid",
                                   "-c",
                                   "commit.gpgsign=false"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = host::runChecked(argv);
  if (!r.isOk()) {
    std::fprintf(stderr, "%s\n", r.status().message().c_str());
  }
  return r.isOk();
}

std::string manifest(int i, int generation) {
  char name[32];
  std::snprintf(name, sizeof(name), "vm-%05d", i);
  return std::string("apiVersion: hyper.dev/v1alpha1\nkind: VM\nmetadata:\n  name: ") + name +
         "\nspec:\n  vcpus: 1\n  memoryMiB: " + std::to_string(256 + generation) +
         "\n  network: lab\n";
}

std::string pathOf(int i) {
  char p[64];
  std::snprintf(p, sizeof(p), "envs/host-%02d/vm-%05d.yaml", i % 100, i);
  return p;
}

struct Stats {
  double cpuMedian = 0;
  double cpuMean = 0;
  double wallMedian = 0;
};

template <typename F>
Stats measure(int runs, F&& f) {
  std::vector<double> cpu, wall;
  for (int i = 0; i < runs; ++i) {
    double c0 = cpuMs(), w0 = wallMs();
    f();
    cpu.push_back(cpuMs() - c0);
    wall.push_back(wallMs() - w0);
  }
  Stats s;
  for (double c : cpu) {
    s.cpuMean += c / runs;
  }
  std::sort(cpu.begin(), cpu.end());
  std::sort(wall.begin(), wall.end());
  s.cpuMedian = cpu[cpu.size() / 2];
  s.wallMedian = wall[wall.size() / 2];
  return s;
}

}  // namespace

// Returns a process exit code.
int runSourceBench(int files) {
  std::string tmpl = (fs::temp_directory_path() / "hyper-srcbench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  std::string root = tmpl, bare = root + "/env.git", work = root + "/work";
  auto cleanup = [&] {
    std::error_code ec;
    fs::remove_all(root, ec);
  };
  if (!git({"init", "--quiet", "--bare", "-b", "main", bare}) ||
      !git({"init", "--quiet", "-b", "main", work})) {
    cleanup();
    return 1;
  }
  for (int i = 0; i < files; ++i) {
    fs::path p = fs::path(work) / pathOf(i);
    fs::create_directories(p.parent_path());
    std::ofstream(p) << manifest(i, 0);
  }
  if (!git({"-C", work, "add", "-A"}) ||
      !git({"-C", work, "commit", "--quiet", "-m", "10k manifests"}) ||
      !git({"-C", work, "push", "--quiet", bare, "HEAD:refs/heads/main"})) {
    cleanup();
    return 1;
  }

  auto opened = controller::GitSource::open({bare, "main", "", root + "/cache"});
  if (!opened.isOk()) {
    std::fprintf(stderr, "%s\n", opened.status().message().c_str());
    cleanup();
    return 1;
  }
  controller::GitSource& src = **opened;
  bool ok = true;
  auto mustFetch = [&] {
    auto s = src.fetch();
    if (!s.isOk() || s->files.size() != static_cast<size_t>(files)) {
      std::fprintf(stderr, "fetch: %s\n",
                   s.isOk() ? "wrong file count" : s.status().message().c_str());
      ok = false;
    }
  };
  Stats cold = measure(1, mustFetch);
  Stats poll = measure(50, [&] {
    auto c = src.changed();
    if (!c.isOk() || *c) {
      std::fprintf(stderr, "changed: %s\n", c.isOk() ? "true" : c.status().message().c_str());
      ok = false;
    }
  });
  Stats unchanged = measure(10, mustFetch);
  std::vector<double> oneCpu, oneWall;
  for (int round = 1; round <= 5 && ok; ++round) {
    int i = round * 997 % files;
    std::ofstream(fs::path(work) / pathOf(i)) << manifest(i, round);
    if (!git({"-C", work, "commit", "--quiet", "-am", "one file"}) ||
        !git({"-C", work, "push", "--quiet", bare, "HEAD:refs/heads/main"})) {
      ok = false;
      break;
    }
    Stats one = measure(1, mustFetch);
    oneCpu.push_back(one.cpuMedian);
    oneWall.push_back(one.wallMedian);
  }
  std::sort(oneCpu.begin(), oneCpu.end());
  std::sort(oneWall.begin(), oneWall.end());
  cleanup();
  if (!ok || oneCpu.empty()) {
    return 1;
  }

  std::printf("git source, %d manifests in one commit, local bare remote\n", files);
  std::printf(
      "  changed(), nothing moved : %7.3f ms CPU median (%.3f mean, %.3f ms wall)"
      "  target < 5 ms CPU: %s (%.1fx headroom)\n",
      poll.cpuMedian, poll.cpuMean, poll.wallMedian, poll.cpuMedian < 5 ? "met" : "MISSED",
      5.0 / std::max(poll.cpuMedian, 1e-3));
  std::printf("  fetch(), first (cold)    : %7.1f ms CPU (%.1f ms wall)\n", cold.cpuMedian,
              cold.wallMedian);
  std::printf("  fetch(), unchanged       : %7.1f ms CPU median (%.1f ms wall)\n",
              unchanged.cpuMedian, unchanged.wallMedian);
  std::printf(
      "  fetch(), one file changed: %7.1f ms CPU median (%.1f ms wall)  = %.2fx unchanged\n",
      oneCpu[oneCpu.size() / 2], oneWall[oneWall.size() / 2],
      oneCpu[oneCpu.size() / 2] / std::max(unchanged.cpuMedian, 1e-3));
  return 0;
}

}  // namespace hyper::bench

#ifdef HYPER_SOURCE_BENCH_MAIN
int main(int argc, char** argv) {
  int files = argc > 1 ? std::atoi(argv[1]) : 10000;
  return hyper::bench::runSourceBench(files > 0 ? files : 10000);
}
#endif
