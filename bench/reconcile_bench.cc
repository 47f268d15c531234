// hyper_bench: how the reconcile engine scales with the number of manifest objects.
//
// For each size N it generates N synthetic FakeThing manifests in memory (100 documents per file
// by default), loads them into a fresh Engine, applies them once to a real SQLite inventory in a
// temporary directory (the FakeProvider plays the host), and then times what a controller does on
// every tick: reload unchanged sources, and plan against a snapshot of the inventory's records
// (cached in memory, as hyperd holds them) when nothing changed or one field of one object
// changed. It also measures the memory a loaded revision keeps.
//
// It prints figures and informational targets; it is not a test. It exits 1 only when something
// is functionally wrong (the manifests do not load, a no-op plan is not empty, one change does not
// give one action), because then the figures mean nothing.

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "reconciler/engine.h"
#include "reconciler/inventory.h"
#include "reconciler/loader.h"
#include "reconciler/schema.h"
#include "tests/fakes/fake_provider.h"

namespace hyper::bench {
namespace {

// Informational targets: a no-op reconcile of 10k objects that leaves a reconcile loop mostly
// idle, and 100k objects in no more than some 400 MB.
constexpr double kNoopTargetMs = 50.0;  // no-op reconcile of 10k objects
constexpr size_t kNoopTargetSize = 10000;
constexpr double kRetainedTargetBytes = 4096.0;  // per object, every size

// A kind shaped like a real one: patterns, ranges, enums, nested lists and maps, and references.
constexpr const char* kFakeThingSchema = R"json({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "x-hyper-kind": "FakeThing",
  "title": "FakeThing: a synthetic kind for tests and benchmarks (tests/fakes/fake_provider.h)",
  "type": "object",
  "additionalProperties": false,
  "required": ["image", "cpus", "memoryMiB"],
  "properties": {
    "image": {"type": "string", "pattern": "^[a-z0-9][a-z0-9./_:-]*$", "description": "an image reference"},
    "cpus": {"type": "integer", "minimum": 1, "maximum": 64, "description": "an integer from 1 to 64"},
    "memoryMiB": {"type": "integer", "minimum": 64, "maximum": 1048576, "description": "MiB of memory"},
    "diskGiB": {"type": "integer", "minimum": 1, "maximum": 65536, "description": "GiB of disk"},
    "network": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", "description": "a DNS label"},
    "address": {"type": "string", "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$", "description": "an IPv4 address"},
    "autostart": {"type": "boolean", "description": "true or false"},
    "kernelArgs": {"type": "string", "maxLength": 1024, "description": "a kernel command line"},
    "tags": {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 63}, "description": "a list of tags"},
    "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "a map of strings"},
    "ports": {
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["port"],
        "properties": {
          "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "a port from 1 to 65535"},
          "protocol": {"type": "string", "enum": ["tcp", "udp"], "description": "tcp or udp"}
        }
      },
      "description": "a list of ports"
    },
    "dependsOn": {
      "type": "array",
      "items": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
      "description": "names of FakeThings this one needs"
    },
    "dependsOnKind": {"type": "string", "description": "the kind dependsOn names"},
    "invalid": {"type": "boolean", "description": "true makes the fake provider reject it"}
  }
})json";

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double cpuMs() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// CPU time is the figure that means something on a shared machine; wall time is what a user
// waits. The process CPU clock is the benchmark thread's, except during apply (worker threads).
struct Span {
  double cpu = 0;
  double wall = 0;
  Span operator+(const Span& o) const { return {cpu + o.cpu, wall + o.wall}; }
};

class Stopwatch {
 public:
  Span elapsed() const { return {cpuMs() - cpu_, msSince(wall_)}; }

 private:
  double cpu_ = cpuMs();
  Clock::time_point wall_ = Clock::now();
};

// The run with the median CPU time.
Span median(std::vector<Span> v) {
  std::sort(v.begin(), v.end(), [](const Span& a, const Span& b) { return a.cpu < b.cpu; });
  return v.empty() ? Span{} : v[v.size() / 2];
}

std::string thingName(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "thing-%06zu", i);
  return buf;
}

// Object i refers only to lower-numbered objects, so the graph is acyclic; about 3 in 4 objects
// have one or two references, and chains are O(log N) deep.
std::vector<size_t> dependenciesOf(size_t i) {
  std::vector<size_t> deps;
  if (i == 0 || i % 4 == 0) {
    return deps;
  }
  deps.push_back(i / 2);
  if (i % 3 == 0 && i - 1 != i / 2) {
    deps.push_back(i - 1);
  }
  return deps;
}

// One realistic manifest (~470 bytes): a name, four labels, and a spec of ten fields (two of them
// lists) plus, for three objects in four, dependsOn.
void appendDocument(std::string& out, size_t i, int cpus) {
  static const char* kTiers[] = {"frontend", "backend", "data", "batch"};
  static const char* kTeams[] = {"platform", "payments", "search", "identity", "storage"};
  const char* tier = kTiers[i % 4];
  std::string name = thingName(i);
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "---\n"
                "apiVersion: hyper.dev/v1alpha1\n"
                "kind: FakeThing\n"
                "metadata:\n"
                "  name: %s\n"
                "  labels:\n"
                "    app: app-%zu\n"
                "    tier: %s\n"
                "    team: %s\n"
                "    hyper.dev/env: production\n"
                "spec:\n"
                "  image: registry.example.com/hyper/%s:1.%zu.%zu\n"
                "  cpus: %d\n"
                "  memoryMiB: %zu\n"
                "  diskGiB: %zu\n"
                "  network: net-%03zu\n"
                "  address: 10.%zu.%zu.%zu\n"
                "  autostart: %s\n"
                "  kernelArgs: \"console=ttyS0 reboot=k panic=1\"\n"
                "  tags: [%s, canary]\n"
                "  ports:\n"
                "    - port: %zu\n"
                "      protocol: tcp\n",
                name.c_str(), i % 97, tier, kTeams[i % 5], tier, i % 10, i % 7, cpus,
                512 * (1 + i % 8), 10 + i % 90, i % 100, (i >> 16) & 255, (i >> 8) & 255, i & 255,
                i % 2 ? "true" : "false", tier, 8000 + i % 1000);
  out += buf;
  std::vector<size_t> deps = dependenciesOf(i);
  if (!deps.empty()) {
    out += "  dependsOn: [";
    for (size_t k = 0; k < deps.size(); ++k) {
      out += (k ? ", " : "") + thingName(deps[k]);
    }
    out += "]\n";
  }
}

int defaultCpus(size_t i) { return 1 + static_cast<int>(i % 4); }

SourceFile generateFile(size_t file, size_t docsPerFile, size_t n, size_t changed = SIZE_MAX) {
  SourceFile f;
  char path[64];
  std::snprintf(path, sizeof path, "manifests/things-%05zu.yaml", file);
  f.path = path;
  for (size_t i = file * docsPerFile; i < std::min(n, (file + 1) * docsPerFile); ++i) {
    appendDocument(f.content, i, i == changed ? defaultCpus(i) + 8 : defaultCpus(i));
  }
  return f;
}

std::vector<SourceFile> generateFiles(size_t n, size_t docsPerFile) {
  std::vector<SourceFile> files;
  for (size_t file = 0; file * docsPerFile < n; ++file) {
    files.push_back(generateFile(file, docsPerFile, n));
  }
  return files;
}

struct Memory {
  size_t heapInUse = 0;  // bytes malloc has handed out and not got back
  size_t rss = 0;        // resident set size
};

Memory measureMemory() {
  // Give freed memory back first, so RSS shows what is kept rather than what malloc caches.
  malloc_trim(0);
  Memory m;
  m.heapInUse = mallinfo2().uordblks;
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0;
  size_t resident = 0;
  statm >> pages >> resident;
  m.rss = resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return m;
}

double perObject(size_t after, size_t before, size_t n) {
  return (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(n);
}

struct Figures {
  size_t n = 0;
  size_t files = 0;
  size_t bytes = 0;
  Span rawParse;
  Span coldLoad;
  Span unchangedLoad;
  bool unchanged = false;
  bool sameRevision = false;
  Span apply;
  size_t applied = 0;
  Span firstRead;             // a fresh inventory's first snapshot(): reads the database
  double cachePerObject = 0;  // heap the inventory's cached records keep
  Span snapshotAfterWrite;    // the first snapshot() after a put: copies the records
  Span snapshot;              // inventory.snapshot(), nothing written since the last one
  Span plan;                  // engine.plan()
  Span observe;               // of which the fake's observe, measured alone
  Span noop;                  // snapshot + plan
  Span freePlan;              // freeing plan()'s result
  Span refresh;               // engine.apply() of the empty plan, which hyperd also runs
  size_t noopActions = 0;
  Span changeLoad;
  Span changePlan;
  size_t changeActions = 0;
  double heapPerObject = 0;
  double rssPerObject = 0;
  std::vector<std::string> problems;  // functional failures
};

std::string firstErrors(const Diagnostics& diags) {
  std::string out;
  size_t shown = 0;
  for (const auto& d : diags.items()) {
    if (d.severity == Severity::Error && shown++ < 3) {
      out += "\n    " + d.format();
    }
  }
  return out;
}

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/hyper-bench-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
    }
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Figures runSize(size_t n, size_t docsPerFile,
                const std::shared_ptr<const SchemaRegistry>& schemas) {
  Figures fig;
  fig.n = n;
  std::vector<SourceFile> files = generateFiles(n, docsPerFile);
  fig.files = files.size();
  for (const auto& f : files) {
    fig.bytes += f.content.size();
  }
  const int reps = n >= 100000 ? 3 : 5;

  // Baseline: yaml-cpp parsing the same bytes into its node tree, nothing else.
  {
    std::vector<Span> times;
    for (int r = 0; r < (n >= 100000 ? 1 : 3); ++r) {
      Stopwatch sw;
      size_t docs = 0;
      for (const auto& f : files) {
        docs += YAML::LoadAll(f.content).size();
      }
      times.push_back(sw.elapsed());
      if (docs != n) {
        fig.problems.push_back("yaml-cpp parsed " + std::to_string(docs) + " documents, expected " +
                               std::to_string(n));
      }
    }
    fig.rawParse = median(times);
  }

  std::vector<std::unique_ptr<Provider>> providers;
  auto fakeOwned = std::make_unique<testing::FakeProvider>();
  testing::FakeProvider* fake = fakeOwned.get();
  providers.push_back(std::move(fakeOwned));

  // 1. Cold load and validate, and 5. what the loaded revision (and the engine's caches) keep.
  Memory before = measureMemory();
  auto engine = std::make_unique<Engine>(std::move(providers), schemas);
  Stopwatch cold;
  RevisionResult loaded = engine->load(files);
  fig.coldLoad = cold.elapsed();
  Memory after = measureMemory();
  fig.heapPerObject = perObject(after.heapInUse, before.heapInUse, n);
  fig.rssPerObject = perObject(after.rss, before.rss, n);
  if (!loaded.revision) {
    fig.problems.push_back("the generated manifests did not load:" +
                           firstErrors(loaded.diagnostics));
    return fig;
  }
  if (loaded.revision->objects.size() != n) {
    fig.problems.push_back("loaded " + std::to_string(loaded.revision->objects.size()) +
                           " objects, expected " + std::to_string(n));
  }
  std::shared_ptr<const Revision> revision = loaded.revision;

  // 2. The same files again: one hash per file, no parsing, the same revision object.
  {
    std::vector<Span> times;
    for (int r = 0; r < reps; ++r) {
      Stopwatch sw;
      RevisionResult again = engine->load(files);
      times.push_back(sw.elapsed());
      fig.unchanged = again.unchanged;
      fig.sameRevision = again.revision == revision;
    }
    fig.unchangedLoad = median(times);
    if (!fig.unchanged || !fig.sameRevision) {
      fig.problems.push_back("reloading identical files was not detected as unchanged");
    }
  }

  // Apply everything once to a real inventory; the fake provider becomes the host.
  TempDir stateDir;
  if (stateDir.path().empty()) {
    fig.problems.push_back("cannot create a temporary state directory");
    return fig;
  }
  auto opened = Inventory::open(stateDir.path());
  if (!opened.isOk()) {
    fig.problems.push_back(opened.status().message());
    return fig;
  }
  std::unique_ptr<Inventory> inventory = std::move(opened).value();
  {
    Stopwatch sw;
    PlanResult first = engine->plan(*revision, {}, PlanOptions{});
    ApplyOptions options;
    options.reconcileId = "bench-initial";
    ApplyReport report = engine->apply(first.plan, *revision, {}, *inventory, options);
    fig.apply = sw.elapsed();
    fig.applied = report.outcomes.size();
    if (first.diagnostics.hasErrors() || !report.ok() || fig.applied != n) {
      fig.problems.push_back("the initial apply did not create every object (" +
                             std::to_string(report.failed()) + " failed)");
      return fig;
    }
  }

  // 3. No-op reconcile, as hyperd runs one on every tick: a snapshot of the inventory's records
  // (cached in memory after the first), then observe (the fake) and plan, and free the result.
  {
    // What the cache saves: reading and parsing every record, paid once when hyperd starts.
    {
      auto second = Inventory::open(stateDir.path());
      if (!second.isOk()) {
        fig.problems.push_back(second.status().message());
        return fig;
      }
      Memory beforeRead = measureMemory();
      Stopwatch readWatch;
      auto read = (*second)->snapshot();
      fig.firstRead = readWatch.elapsed();
      // What hyperd keeps for the cache, beside the revision.
      fig.cachePerObject = perObject(measureMemory().heapInUse, beforeRead.heapInUse, n);
      if (!read.isOk() || (*read)->size() != n) {
        fig.problems.push_back("a fresh inventory did not read back every record");
      }
    }
    // The first snapshot after a write copies the records once (a reconcile that applied
    // something pays it on the next one). The record put back is unchanged.
    {
      auto before = inventory->snapshot();
      if (!before.isOk() || (*before)->empty()) {
        fig.problems.push_back("the inventory has no records after the initial apply");
        return fig;
      }
      if (Status s = inventory->put((*before)->front()); !s.isOk()) {
        fig.problems.push_back(s.message());
        return fig;
      }
      Stopwatch afterWrite;
      auto after = inventory->snapshot();
      fig.snapshotAfterWrite = afterWrite.elapsed();
      if (!after.isOk() || (*after)->size() != n || *after == *before) {
        fig.problems.push_back("the snapshot after a write is not a new one of every record");
      }
    }
    std::vector<Span> snapshots, plans, totals, frees, observes, refreshes;
    for (int r = 0; r < reps; ++r) {
      Stopwatch snapshotWatch;
      auto managed = inventory->snapshot();
      Span snapshot = snapshotWatch.elapsed();
      if (!managed.isOk()) {
        fig.problems.push_back(managed.status().message());
        return fig;
      }
      Stopwatch planWatch;
      std::optional<PlanResult> noop = engine->plan(*revision, **managed, PlanOptions{});
      Span plan = planWatch.elapsed();
      fig.noopActions = noop->plan.actions.size();
      if (noop->diagnostics.hasErrors()) {
        fig.problems.push_back("no-op plan reported errors:" + firstErrors(noop->diagnostics));
      }
      snapshots.push_back(snapshot);
      plans.push_back(plan);
      totals.push_back(snapshot + plan);
      // hyperd frees the result (one observed state per object) at the end of the reconcile.
      // glibc defers part of that work to later allocations, so this is shown apart.
      Stopwatch freeWatch;
      noop.reset();
      frees.push_back(freeWatch.elapsed());

      // hyperd then runs apply with the empty plan, to refresh records whose labels or spec text
      // moved without a host change, and records the revision: shown apart, not in the total.
      Stopwatch refreshWatch;
      Plan empty;
      empty.revision = revision->id;
      ApplyOptions refreshOptions;
      refreshOptions.reconcileId = "bench-noop";
      ApplyReport refreshed =
          engine->apply(empty, *revision, **managed, *inventory, refreshOptions);
      refreshes.push_back(refreshWatch.elapsed());
      if (!refreshed.outcomes.empty()) {
        fig.problems.push_back("applying the empty plan ran actions");
      }

      // The provider's share, which no engine change can make smaller.
      ObserveRequest req;
      for (const auto& o : revision->objects) {
        req.desired.push_back(o.get());
      }
      for (const auto& m : **managed) {
        req.managed.push_back(&m);
      }
      ObserveResponse resp;
      Stopwatch observeWatch;
      fake->observe(req, resp);
      observes.push_back(observeWatch.elapsed());
    }
    fig.snapshot = median(snapshots);
    fig.plan = median(plans);
    fig.noop = median(totals);
    fig.observe = median(observes);
    fig.refresh = median(refreshes);
    fig.freePlan = median(frees);
    if (fig.noopActions != 0) {
      fig.problems.push_back("the no-op plan has " + std::to_string(fig.noopActions) +
                             " actions, expected none");
    }
  }

  // 4. One field of one object changes: one file is re-parsed, the revision re-validated.
  {
    size_t changed = n / 2 + 1;
    size_t file = changed / docsPerFile;
    std::vector<SourceFile> edited = files;
    edited[file] = generateFile(file, docsPerFile, n, changed);
    Stopwatch loadWatch;
    RevisionResult next = engine->load(edited);
    fig.changeLoad = loadWatch.elapsed();
    if (!next.revision) {
      fig.problems.push_back("the edited manifests did not load:" + firstErrors(next.diagnostics));
      return fig;
    }
    auto managed = inventory->snapshot();
    if (!managed.isOk()) {
      fig.problems.push_back(managed.status().message());
      return fig;
    }
    Stopwatch planWatch;
    PlanResult one = engine->plan(*next.revision, **managed, PlanOptions{});
    fig.changePlan = planWatch.elapsed();
    fig.changeActions = one.plan.actions.size();
    if (fig.changeActions != 1 ||
        one.plan.actions[0].id != ObjectId{"FakeThing", thingName(changed)}) {
      fig.problems.push_back("one changed object gave " + std::to_string(fig.changeActions) +
                             " actions, expected 1 (update of " + thingName(changed) + ")");
    }
  }
  return fig;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

void printTable(const std::vector<Figures>& all) {
  struct Row {
    const char* label;
    std::function<std::string(const Figures&)> value;
  };
  auto ms = [](double v) { return fixed(v, v < 10 ? 2 : 1); };
  const std::vector<Row> rows = {
      {"objects", [](const Figures& f) { return std::to_string(f.n); }},
      {"files", [](const Figures& f) { return std::to_string(f.files); }},
      {"YAML MB", [](const Figures& f) { return fixed(f.bytes / 1e6, 2); }},
      {"bytes / document", [](const Figures& f) { return std::to_string(f.bytes / f.n); }},
      {"baseline: yaml-cpp LoadAll ms", [&](const Figures& f) { return ms(f.rawParse.cpu); }},
      {"  MB/s", [](const Figures& f) { return fixed(f.bytes / 1e3 / f.rawParse.cpu, 1); }},
      {"1 cold load+validate ms", [&](const Figures& f) { return ms(f.coldLoad.cpu); }},
      {"  wall ms", [&](const Figures& f) { return ms(f.coldLoad.wall); }},
      {"  MB/s", [](const Figures& f) { return fixed(f.bytes / 1e3 / f.coldLoad.cpu, 2); }},
      {"  x raw parse", [](const Figures& f) { return fixed(f.coldLoad.cpu / f.rawParse.cpu, 2); }},
      {"  us / object", [](const Figures& f) { return fixed(f.coldLoad.cpu * 1e3 / f.n, 1); }},
      {"2 unchanged reload ms", [&](const Figures& f) { return ms(f.unchangedLoad.cpu); }},
      {"  wall ms", [&](const Figures& f) { return ms(f.unchangedLoad.wall); }},
      {"  unchanged", [](const Figures& f) { return std::string(f.unchanged ? "true" : "false"); }},
      {"  same revision object",
       [](const Figures& f) { return std::string(f.sameRevision ? "true" : "false"); }},
      {"  x cold load",
       [](const Figures& f) { return fixed(f.unchangedLoad.cpu / f.coldLoad.cpu, 4); }},
      {"(setup) plan+apply all, wall ms", [](const Figures& f) { return fixed(f.apply.wall, 0); }},
      {"(once) inventory first read ms", [&](const Figures& f) { return ms(f.firstRead.cpu); }},
      {"  cached records B / object", [](const Figures& f) { return fixed(f.cachePerObject, 0); }},
      {"(once) snapshot after a write ms",
       [&](const Figures& f) { return ms(f.snapshotAfterWrite.cpu); }},
      {"3 no-op reconcile ms", [&](const Figures& f) { return ms(f.noop.cpu); }},
      {"  wall ms", [&](const Figures& f) { return ms(f.noop.wall); }},
      {"  inventory snapshot ms", [&](const Figures& f) { return ms(f.snapshot.cpu); }},
      {"  engine plan ms", [&](const Figures& f) { return ms(f.plan.cpu); }},
      {"    fake observe alone ms", [&](const Figures& f) { return ms(f.observe.cpu); }},
      {"  us / object", [](const Figures& f) { return fixed(f.noop.cpu * 1e3 / f.n, 2); }},
      {"  actions", [](const Figures& f) { return std::to_string(f.noopActions); }},
      {"  (apart) freeing the result ms", [&](const Figures& f) { return ms(f.freePlan.cpu); }},
      {"  (apart) empty apply ms", [&](const Figures& f) { return ms(f.refresh.cpu); }},
      {"4 one change: load ms", [&](const Figures& f) { return ms(f.changeLoad.cpu); }},
      {"  plan ms", [&](const Figures& f) { return ms(f.changePlan.cpu); }},
      {"  wall ms, load + plan",
       [&](const Figures& f) { return ms(f.changeLoad.wall + f.changePlan.wall); }},
      {"  actions", [](const Figures& f) { return std::to_string(f.changeActions); }},
      {"5 retained heap B / object", [](const Figures& f) { return fixed(f.heapPerObject, 0); }},
      {"  RSS growth B / object", [](const Figures& f) { return fixed(f.rssPerObject, 0); }},
  };
  std::printf("\n%-32s", "");
  for (size_t i = 0; i < all.size(); ++i) {
    std::printf("%12s", ("N=" + std::to_string(all[i].n)).c_str());
  }
  std::printf("\n");
  for (const auto& row : rows) {
    std::printf("%-32s", row.label);
    for (const auto& f : all) {
      std::printf("%12s", row.value(f).c_str());
    }
    std::printf("\n");
  }
}

// Returns true when every functional check passed.
bool printTargets(const std::vector<Figures>& all) {
  std::printf("\ntargets (informational)\n");
  for (const auto& f : all) {
    if (f.n == kNoopTargetSize) {
      std::printf(
          "  %-4s no-op reconcile at %zu objects < %.0f ms: %.1f ms CPU (%.1f ms wall); then "
          "%.1f ms to free the plan result and %.1f ms for hyperd's empty apply\n",
          f.noop.cpu < kNoopTargetMs ? "PASS" : "MISS", f.n, kNoopTargetMs, f.noop.cpu, f.noop.wall,
          f.freePlan.cpu, f.refresh.cpu);
    }
  }
  for (const auto& f : all) {
    std::printf("  %-4s retained memory at %zu objects < %.0f B/object: %.0f B/object\n",
                f.heapPerObject < kRetainedTargetBytes ? "PASS" : "MISS", f.n, kRetainedTargetBytes,
                f.heapPerObject);
  }
  std::printf("\nchecks\n");
  bool ok = true;
  for (const auto& f : all) {
    std::printf(
        "  %-4s N=%zu: unchanged reload detected, no-op plan empty, one change = 1 action\n",
        f.problems.empty() ? "OK" : "FAIL", f.n);
    for (const auto& p : f.problems) {
      std::printf("       %s\n", p.c_str());
    }
    ok = ok && f.problems.empty();
  }
  return ok;
}

bool parseSizes(const std::string& text, std::vector<size_t>& out) {
  out.clear();
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    char* end = nullptr;
    unsigned long long v = std::strtoull(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v == 0 || v > 10'000'000) {
      return false;
    }
    out.push_back(static_cast<size_t>(v));
    if (comma == std::string::npos) {
      break;
    }
    pos = comma + 1;
  }
  return !out.empty();
}

constexpr const char* kUsage =
    "usage: hyper_bench [--sizes N[,N...]] [--docs-per-file N] [--source [--source-files N]]\n"
    "  --sizes          object counts to run (default 1000,10000,100000)\n"
    "  --docs-per-file  YAML documents per generated file (default 100)\n"
    "  --source         also run the git source benchmark (bench/source_bench.cc)\n"
    "  --source-files   manifest files in its repository (default 10000)\n";

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one.empty() ? "unknown" : one;
}

}  // namespace

// bench/source_bench.cc: polling a git source. Returns a process exit code.
int runSourceBench(int files);

}  // namespace hyper::bench

int main(int argc, char** argv) {
  using namespace hyper;
  using namespace hyper::bench;
  // Line-buffered, so the table and the progress on stderr interleave in order.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<size_t> sizes = {1000, 10000, 100000};
  size_t docsPerFile = 100;
  bool sourceBench = false;
  size_t sourceFiles = 10000;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (arg.rfind(flag + "=", 0) == 0) {
        return arg.substr(flag.size() + 1);
      }
      return arg == flag && i + 1 < argc ? argv[++i] : "";
    };
    auto count = [&](const std::string& flag, size_t& out) {
      std::vector<size_t> one;
      if (!parseSizes(value(flag), one) || one.size() != 1) {
        std::fprintf(stderr, "hyper_bench: %s wants one positive integer\n%s", flag.c_str(),
                     kUsage);
        return false;
      }
      out = one[0];
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (arg == "--sizes" || arg.rfind("--sizes=", 0) == 0) {
      if (!parseSizes(value("--sizes"), sizes)) {
        std::fprintf(stderr, "hyper_bench: --sizes wants positive integers separated by commas\n%s",
                     kUsage);
        return 2;
      }
    } else if (arg == "--docs-per-file" || arg.rfind("--docs-per-file=", 0) == 0) {
      if (!count("--docs-per-file", docsPerFile)) {
        return 2;
      }
    } else if (arg == "--source") {
      sourceBench = true;
    } else if (arg == "--source-files" || arg.rfind("--source-files=", 0) == 0) {
      if (!count("--source-files", sourceFiles)) {
        return 2;
      }
      sourceBench = true;
    } else {
      std::fprintf(stderr, "hyper_bench: unknown argument %s\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }

  std::vector<EmbeddedSchema> schemaFiles = embeddedSchemas();
  schemaFiles.push_back({"fakething.schema.json", kFakeThingSchema});
  auto schemas = SchemaRegistry::fromSchemas(schemaFiles);
  if (!schemas.isOk()) {
    std::fprintf(stderr, "hyper_bench: %s\n", schemas.status().message().c_str());
    return 1;
  }

  std::printf(
      "hyper_bench: reconcile engine; FakeThing manifests, %zu documents per file, FakeProvider "
      "host, SQLite inventory in a temp dir\n"
      "times are CPU ms of the process (median of several runs), wall where it says so; load "
      "average %s on %ld CPUs\n",
      docsPerFile, loadAverage().c_str(), sysconf(_SC_NPROCESSORS_ONLN));
  std::vector<Figures> all;
  for (size_t n : sizes) {
    std::fprintf(stderr, "running N=%zu ...\n", n);
    auto start = Clock::now();
    all.push_back(runSize(n, docsPerFile, *schemas));
    std::fprintf(stderr, "  N=%zu done in %.1f s\n", n, msSince(start) / 1e3);
  }
  printTable(all);
  int rc = printTargets(all) ? 0 : 1;
  if (sourceBench) {
    std::printf("\n");
    int sourceRc = runSourceBench(static_cast<int>(sourceFiles));
    rc = rc != 0 ? rc : sourceRc;
  }
  return rc;
}
