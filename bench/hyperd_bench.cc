// hyperd's controller overhead: push-to-converged latency through the push webhook for a
// one-field change, and the cost of a poll that finds nothing new, for a git repository of N
// manifests. In-process: the real git source (libgit2 on a bare repository made with the git
// command line), the real loop, API server and SQLite state, and the fake provider (so the
// figures are the controller's, with the provider's own observe/apply time shown separately).
//
//   hyper_hyperd_bench [--objects 10000] [--rounds 5]

#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>
#include <httplib.h>
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "hyperd/api.h"
#include "hyperd/loop.h"
#include "hyperd/webhook_auth.h"
#include "tests/fakes/fake_provider.h"

namespace hyper::bench {
namespace {

using controller::Controller;

double cpuSeconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double now() { return cpuSeconds(CLOCK_MONOTONIC); }

void run(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "bench: command failed: %s ...\n", argv[0].c_str());
    std::exit(1);
  }
}

std::string capture(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  char buf[256];
  while (p && fgets(buf, sizeof buf, p)) {
    out += buf;
  }
  if (p) {
    pclose(p);
  }
  while (!out.empty() && out.back() == '\n') {
    out.pop_back();
  }
  return out;
}

void writeFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

// File i holds objects [i*perFile, (i+1)*perFile); object `changed` gets size `size`.
std::string manifestFile(int file, int perFile, int changed, int size) {
  std::string out;
  for (int k = file * perFile; k < (file + 1) * perFile; ++k) {
    char doc[512];
    std::snprintf(doc, sizeof doc,
                  "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata:\n  name: thing-%d\n"
                  "  labels: {app: bench, shard: s%d}\nspec:\n  size: %d\n  image: img-%d\n"
                  "  cpus: 1\n  memoryMiB: 256\n---\n",
                  k, k % 16, k == changed ? size : 1, k % 7);
    out += doc;
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace
}  // namespace hyper::bench

int main(int argc, char** argv) {
  using namespace hyper;
  using namespace hyper::bench;
  int objects = 10000;
  int rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--objects") {
      objects = std::atoi(argv[i + 1]);
    } else if (a == "--rounds") {
      rounds = std::atoi(argv[i + 1]);
    }
  }
  if (sodium_init() < 0) {
    return 1;
  }
  git_libgit2_init();
  spdlog::set_level(spdlog::level::warn);

  char tmpl[] = "/tmp/hyper-hyperd-bench.XXXXXX";
  std::string root = mkdtemp(tmpl);
  std::string bare = root + "/env.git";
  std::string work = root + "/work";
  std::string state = root + "/state";
  const int perFile = 100;
  const int files = (objects + perFile - 1) / perFile;
  run({"git", "init", "--quiet", "--bare", "-b", "main", bare});
  run({"git", "init", "--quiet", "-b", "main", work});
  run({"git", "-C", work, "remote", "add", "origin", bare});
  auto commitAndPush = [&](const std::string& message) {
    run({"git", "-C", work, "add", "-A"});
    run({"git", "-C", work, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit",
         "--quiet", "-m", message});
    double t = now();
    run({"git", "-C", work, "push", "--quiet", "origin", "HEAD:main"});
    return now() - t;
  };
  for (int f = 0; f < files; ++f) {
    writeFile(work + "/envs/host1/m" + std::to_string(f) + ".yaml",
              manifestFile(f, perFile, -1, 1));
  }
  commitAndPush("initial");

  auto schemas = embeddedSchemas();
  schemas.push_back({"fake.schema.json", R"({"x-hyper-kind":"FakeThing","type":"object"})"});
  auto registry = SchemaRegistry::fromSchemas(schemas);
  auto provider = std::make_unique<testing::FakeProvider>();
  // The fake's observe reads nothing of other objects: a change moves only what it changed.
  provider->setMoves([](const RevisionChange&) { return std::vector<ObjectId>{}; });
  std::vector<std::unique_ptr<Provider>> providers;
  providers.push_back(std::move(provider));
  Engine engine(std::move(providers), *registry);
  auto inventory = Inventory::open(state);
  auto events = controller::EventLog::open(state);
  auto source = controller::openSource({bare, "main", "envs/host1", state + "/source"});
  if (!registry.isOk() || !inventory.isOk() || !events.isOk() || !source.isOk()) {
    std::fprintf(stderr, "bench: setup failed\n");
    return 1;
  }
  controller::Metrics metrics;
  controller::AlertFanout alerts;  // no sinks: alerts are not what is measured
  controller::LoopOptions options;
  options.pollInterval = std::chrono::minutes(10);
  options.driftInterval = std::chrono::minutes(10);
  Controller loop(engine, **inventory, **events, **source, alerts, metrics, options);
  const std::string secret = "bench-secret";
  controller::ApiOptions apiOptions;
  apiOptions.port = 0;
  apiOptions.token = "t";
  apiOptions.githubSecret = secret;
  controller::ApiServer api(loop, **events, metrics, apiOptions);
  if (!api.start().isOk()) {
    return 1;
  }

  double t0 = now();
  std::thread thread([&] { loop.run(); });
  while (!loop.ready()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  double cold = now() - t0;

  // Poll cost when nothing moved: the source's check alone, and a whole poll reconcile.
  auto probe = controller::openSource({bare, "main", "envs/host1", root + "/probe-cache"});
  (void)(*probe)->fetch();
  std::vector<double> checkCpu;
  for (int i = 0; i < 20; ++i) {
    double c = cpuSeconds(CLOCK_THREAD_CPUTIME_ID);
    (void)(*probe)->changed();
    checkCpu.push_back(cpuSeconds(CLOCK_THREAD_CPUTIME_ID) - c);
  }
  std::vector<double> pollWall, pollCpu;
  int pollsObserved = 0;
  for (int i = 0; i < 10; ++i) {
    double c = cpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
    double w = now();
    controller::ReconcileSummary summary;
    loop.waitFor(loop.trigger("poll", true), std::chrono::seconds(60), &summary);
    pollWall.push_back(now() - w);
    pollCpu.push_back(cpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - c);
    pollsObserved += summary.observed ? 1 : 0;
  }

  // Push to converged through the webhook, one field of one object per round.
  httplib::Client client(api.url());
  std::vector<double> latency, pushSeconds, fetchSeconds, loadSeconds, planSeconds, applySeconds,
      restSeconds, outsideSeconds;
  size_t actions = 0;
  size_t scoped = 0;  // the objects the last push observed and planned (0: all)
  for (int r = 0; r < rounds; ++r) {
    int changed = (r * 7919) % objects;
    int file = changed / perFile;
    writeFile(work + "/envs/host1/m" + std::to_string(file) + ".yaml",
              manifestFile(file, perFile, changed, 100 + r));
    pushSeconds.push_back(commitAndPush("round " + std::to_string(r)));
    std::string commit = "git:" + capture("git -C " + work + " rev-parse HEAD");
    std::string body = R"({"ref":"refs/heads/main"})";
    double start = now();
    auto res =
        client.Post("/v1/hooks/git",
                    {{"X-Hub-Signature-256", "sha256=" + controller::hmacSha256Hex(secret, body)}},
                    body, "application/json");
    if (!res || res->status != 202) {
      std::fprintf(stderr, "bench: webhook refused\n");
      return 1;
    }
    // Polled through lastReconcile(), which copies one summary: statusJson() counts the 10k
    // objects' conditions under the loop's lock, and polled every 0.5 ms it slowed the reconcile
    // it waited for.
    while (true) {
      controller::ReconcileSummary last = loop.lastReconcile();
      if (last.revision == commit && last.sourceChanged) {
        const double total = now() - start;
        latency.push_back(total);
        fetchSeconds.push_back(last.fetchSeconds);
        loadSeconds.push_back(last.loadSeconds);
        planSeconds.push_back(last.planSeconds);
        applySeconds.push_back(last.applySeconds);
        restSeconds.push_back(last.seconds - last.fetchSeconds - last.loadSeconds -
                              last.planSeconds - last.applySeconds);
        outsideSeconds.push_back(total - last.seconds);
        actions = last.planned;
        scoped = last.scoped;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }
  loop.stop();
  thread.join();
  api.stop();

  std::printf(
      "hyperd bench: %d manifests in %d files, git file:// bare repository, fake provider\n",
      objects, files);
  std::printf("  first converge (fetch, load, plan, %d creates)     %9.1f ms\n", objects,
              cold * 1e3);
  std::printf(
      "  poll, nothing new: source check (ls-remote) CPU    %9.3f ms  (target < 5 ms: %s)\n",
      median(checkCpu) * 1e3, median(checkCpu) < 0.005 ? "PASS" : "MISS");
  std::printf(
      "  poll, nothing new: whole reconcile, wall / CPU     %9.1f / %.1f ms  "
      "(%d of 10 observed the %d objects; the others planned from the last full observe; "
      "issue 17's target at 100k: < 50 ms)\n",
      median(pollWall) * 1e3, median(pollCpu) * 1e3, pollsObserved, objects);
  std::printf("  git push (the git CLI, not hyperd)                 %9.1f ms\n",
              median(pushSeconds) * 1e3);
  std::printf(
      "  webhook -> converged, one-field change             %9.1f ms  (issue 17's target < 30 ms: "
      "%s; Flux polls every 60 s)\n",
      median(latency) * 1e3, median(latency) < 0.030 ? "PASS" : "MISS");
  std::printf(
      "    of which (medians): fetch %.1f ms, load+validate %.1f ms, observe+plan %.1f ms, apply "
      "%.1f ms, the rest of the reconcile (records, events) %.1f ms, outside it (the webhook, "
      "waking the loop, seeing it done) %.1f ms; actions in the plan: %zu, objects observed and "
      "planned: %zu (0: all)\n",
      median(fetchSeconds) * 1e3, median(loadSeconds) * 1e3, median(planSeconds) * 1e3,
      median(applySeconds) * 1e3, median(restSeconds) * 1e3, median(outsideSeconds) * 1e3, actions,
      scoped);
  std::filesystem::remove_all(root);
  return actions == 1 ? 0 : 1;
}
