// hyper_build_bench: what the Build kind (providers/build/, store/) costs.
//
// 1. Cache-hit check: 1,000 Builds (distinct names; 10 distinct initramfs specs with busybox, 100
//    Builds each, so 10 keys and 10 artifacts in the store) are applied once in a temp state dir;
//    then the provider's observe of all 1,000 and a plan of each, the no-op reconcile a
//    controller does each tick, is timed (median of 7, CPU time of the process, wall beside).
//    Informational target: under 10 ms in all. The pieces of observe are timed apart through the
//    public calls observe makes: resolving the inputs (a stat of busybox, whose digest is cached
//    by file identity), the key (sha256 of canonical JSON; remembered per Build while its spec and
//    inputs compare equal), the store's key record and artifact.
// 2. Initramfs build: apply of a Build with busybox and 200 files of mixed sizes (64 B to 64 KiB
//    of text, content inline), in a fresh state dir each run so nothing is cached, against
//    `find . | sort | cpio -o -H newc | gzip -n -9` run by /bin/sh over the same tree written to
//    a temp directory. Wall time (both spend most of it in a gzip child), median of 5; the ratio.
//    Apply also fsyncs the artifact, signs its provenance and writes its records; the image alone
//    (buildInitramfsImage) is shown beside it.
// 3. Store writes: ArtifactStore::put of 1, 16 and 64 MiB (fresh store each run) against `cp` of
//    the same bytes from a file to a new file followed by `sync -f` (the store fsyncs), in MB/s,
//    and the ratio; put also hashes the bytes, whose cost is shown alone. The baseline includes
//    starting sh, cp and sync (a few ms), which matters only at 1 MiB.
//
// busybox is the real /bin/busybox when present, a 1 MiB stand-in otherwise; the output says
// which. It prints figures and informational targets; it is not a test. It exits 1 only when
// something is functionally wrong (a cache hit that built something, a no-op plan with actions,
// two builds of one spec with different digests, a put whose bytes are not in the store), because
// then the figures mean nothing; 2 on a bad argument.

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/file.h"
#include "host/command.h"
#include "providers/build/build_provider.h"
#include "providers/build/build_spec.h"
#include "store/artifact_store.h"

namespace hyper::bench {
namespace {

namespace fs = std::filesystem;
using providers::build::BuildProvider;
using providers::build::BuildProviderConfig;

constexpr size_t kBuilds = 1000;
constexpr size_t kDistinctSpecs = 10;
constexpr double kCacheHitTargetMs = 10.0;  // observe + plan of kBuilds, all cached
constexpr size_t kImageFiles = 200;
constexpr const char* kRealBusybox = "/bin/busybox";

using Clock = std::chrono::steady_clock;

double cpuMs(int who) {
  struct rusage ru {};
  ::getrusage(who, &ru);
  auto ms = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_usec) / 1e3;
  };
  return ms(ru.ru_utime) + ms(ru.ru_stime);
}

// CPU time counts this process and the children it has waited for (gzip, the shell pipeline),
// so that a build that compresses in a child is not flattered.
struct Span {
  double cpu = 0;
  double wall = 0;
};

class Stopwatch {
 public:
  Span elapsed() const {
    return {cpuMs(RUSAGE_SELF) + cpuMs(RUSAGE_CHILDREN) - cpu_,
            std::chrono::duration<double, std::milli>(Clock::now() - wall_).count()};
  }

 private:
  double cpu_ = cpuMs(RUSAGE_SELF) + cpuMs(RUSAGE_CHILDREN);
  Clock::time_point wall_ = Clock::now();
};

// The run with the median of `by` (CPU for in-process work, wall for what waits on a disk or a
// child).
Span median(std::vector<Span> v, double Span::*by) {
  std::sort(v.begin(), v.end(), [by](const Span& a, const Span& b) { return a.*by < b.*by; });
  return v.empty() ? Span{} : v[v.size() / 2];
}

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/hyper-build-bench-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
    }
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What went functionally wrong; any entry makes the exit code 1.
std::vector<std::string> problems;

void problem(const std::string& what) {
  problems.push_back(what);
  std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

// Runs `script` with /bin/sh; false (recorded as a problem) when it fails.
bool runShell(const std::string& script) {
  auto r = host::runCommand({"/bin/sh", "-c", script});
  if (!r.isOk() || r->exitCode != 0) {
    problem("sh -c " + script + ": " + (r.isOk() ? r->err : r.status().message()));
    return false;
  }
  return true;
}

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// `size` bytes that do not compress: what an artifact's bytes look like to the disk.
std::string randomBytes(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    uint64_t v = splitmix(seed);
    for (size_t k = 0; k < 8 && i + k < size; ++k) {
      out[i + k] = static_cast<char>(v >> (8 * k));
    }
  }
  return out;
}

// `size` bytes of text that compress like configuration or scripts do (words of a small
// vocabulary, lines of varying length), different for every seed.
std::string textOf(size_t size, uint64_t seed) {
  static const char* kWords[] = {
      "server",    "listen",  "port", "8080", "address",  "10.77.0.1", "enable", "true",
      "false",     "timeout", "30s",  "path", "/var/lib", "user",      "root",   "exec",
      "if",        "then",    "fi",   "echo", "mount",    "-t",        "proc",   "sysfs",
      "$HOSTNAME", "#",       "=",    "{",    "}",        "log-level", "info",   "retry"};
  std::string out;
  out.reserve(size + 16);
  while (out.size() < size) {
    uint64_t v = splitmix(seed);
    out += kWords[v % (sizeof kWords / sizeof kWords[0])];
    out += (v >> 32) % 8 == 0 ? '\n' : ' ';
  }
  out.resize(size);
  return out;
}

std::string busyboxPath(const TempDir& tmp) {
  if (::access(kRealBusybox, R_OK) == 0) {
    return kRealBusybox;
  }
  std::string standIn = tmp.path() + "/busybox";
  std::ofstream(standIn, std::ios::binary) << randomBytes(1u << 20, 1);
  return standIn;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// ---- 1. the cache-hit check ----------------------------------------------------------------

Json smallSpec(size_t variant) {
  Json files = Json::array();
  files.push_back({{"path", "/init"},
                   {"mode", "0755"},
                   {"content", "#!/bin/sh\nmount -t proc proc /proc\necho variant " +
                                   std::to_string(variant) + "\nexec sh\n"}});
  files.push_back(
      {{"path", "/etc/hostname"}, {"content", "node-" + std::to_string(variant) + "\n"}});
  files.push_back({{"path", "/etc/motd"}, {"content", textOf(300, variant)}});
  return {{"type", "initramfs"}, {"initramfs", {{"busybox", true}, {"files", files}}}};
}

struct Builds {
  std::vector<Object> objects;
  std::vector<ManagedRecord> records;
};

// Observes `objects` in one batch and plans each; the actions that came out.
std::vector<PlanAction> observeAndPlan(BuildProvider& p, const std::vector<Object>& objects,
                                       const std::vector<ManagedRecord>& records,
                                       ObserveResponse& observed, Span* observeTime = nullptr,
                                       Span* planTime = nullptr, const KeptKeys* kept = nullptr) {
  ObserveRequest oreq;
  oreq.keptKeys = kept;
  for (const auto& o : objects) {
    oreq.desired.push_back(&o);
  }
  for (const auto& r : records) {
    oreq.managed.push_back(&r);
  }
  Stopwatch sw;
  p.observe(oreq, observed);
  if (observeTime) {
    *observeTime = sw.elapsed();
  }
  Stopwatch planSw;
  std::vector<PlanAction> actions;
  for (size_t i = 0; i < objects.size(); ++i) {
    const Object& o = objects[i];
    PlanRequest preq{o.id, &o, &observed.observed[o.id], records.empty() ? nullptr : &records[i]};
    PlanResponse presp;
    p.plan(preq, presp);
    if (presp.diagnostics.hasErrors()) {
      problem("plan " + o.id.str() + ": " + presp.diagnostics.format());
    }
    if (presp.action) {
      actions.push_back(std::move(*presp.action));
    }
  }
  if (planTime) {
    *planTime = planSw.elapsed();
  }
  return actions;
}

// Applies kBuilds Builds of kDistinctSpecs specs once: the first of each spec builds, every other
// one must be a cache hit with the same digest.
std::optional<Builds> applyBuilds(BuildProvider& p, const std::string& stateDir) {
  Builds b;
  for (size_t i = 0; i < kBuilds; ++i) {
    Object o;
    char name[32];
    std::snprintf(name, sizeof name, "build-%04zu", i);
    o.id = {"Build", name};
    o.spec = smallSpec(i % kDistinctSpecs);
    b.objects.push_back(std::move(o));
  }
  ObserveResponse observed;
  std::vector<PlanAction> actions = observeAndPlan(p, b.objects, {}, observed);
  if (observed.diagnostics.hasErrors() || actions.size() != kBuilds) {
    problem("the first plan of " + std::to_string(kBuilds) + " Builds gave " +
            std::to_string(actions.size()) + " actions: " + observed.diagnostics.format());
    return std::nullopt;
  }
  std::map<std::string, std::string> digestOfKey;
  size_t built = 0;
  for (size_t i = 0; i < kBuilds; ++i) {
    ApplyRequest areq;
    areq.action = &actions[i];
    areq.desired = &b.objects[i];
    ApplyResponse aresp;
    p.apply(areq, aresp);
    if (aresp.diagnostics.hasErrors()) {
      problem("apply " + b.objects[i].id.str() + ": " + aresp.diagnostics.format());
      return std::nullopt;
    }
    const std::string key = aresp.handles.value("key", "");
    const std::string digest = aresp.handles["artifacts"]["initrd"].value("digest", "");
    const bool cached = aresp.handles.value("cached", false);
    auto [it, first] = digestOfKey.emplace(key, digest);
    if (first == cached) {
      problem(b.objects[i].id.str() + (cached ? ": a new key reported cached"
                                              : ": a key already in the store was built again"));
    }
    if (it->second != digest) {
      problem(b.objects[i].id.str() + ": digest " + digest + " differs from " + it->second +
              " of the same key");
    }
    built += cached ? 0 : 1;
    ManagedRecord r;
    r.id = b.objects[i].id;
    r.provider = "build";
    r.spec = b.objects[i].spec;
    r.handles = aresp.handles;
    r.fingerprint = aresp.fingerprint;
    b.records.push_back(std::move(r));
  }
  size_t artifacts = 0;
  std::error_code ec;
  for (fs::directory_iterator it(stateDir + "/store/sha256", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++artifacts;
  }
  if (built != kDistinctSpecs || artifacts != kDistinctSpecs) {
    problem(std::to_string(kDistinctSpecs) + " distinct specs gave " + std::to_string(built) +
            " builds and " + std::to_string(artifacts) + " artifacts in the store");
  }
  return b;
}

void runCacheHit(const std::string& busybox, const TempDir& tmp) {
  std::printf(
      "\n1. cache-hit check: %zu Builds (distinct names; %zu distinct specs with busybox, "
      "%zu Builds each) applied in a temp state dir\n",
      kBuilds, kDistinctSpecs, kBuilds / kDistinctSpecs);
  const std::string stateDir = tmp.path() + "/cache-hit";
  BuildProvider p(BuildProviderConfig{stateDir, busybox});
  Stopwatch setupSw;
  std::optional<Builds> b = applyBuilds(p, stateDir);
  Span setup = setupSw.elapsed();
  if (!b) {
    return;
  }
  std::printf("   (setup) observe, plan and apply of all: %.0f ms wall, %zu builds\n", setup.wall,
              kDistinctSpecs);

  // A new provider's first observe resolves its inputs afresh: hashes busybox, runs gzip
  // --version. Every later one finds them cached.
  BuildProvider fresh(BuildProviderConfig{stateDir, busybox});
  Span first;
  {
    ObserveResponse observed;
    observeAndPlan(fresh, b->objects, b->records, observed, &first);
  }

  constexpr int kReps = 7;
  std::vector<Span> totals, observes, plans;
  for (int r = 0; r < kReps; ++r) {
    ObserveResponse observed;
    Span o, pl;
    Stopwatch sw;
    std::vector<PlanAction> actions = observeAndPlan(p, b->objects, b->records, observed, &o, &pl);
    totals.push_back(sw.elapsed());
    observes.push_back(o);
    plans.push_back(pl);
    // Built with the key it has now: its artifacts are in the store and the key is the record's.
    size_t built = 0;
    for (const auto& [id, s] : observed.observed) {
      built += s.exists && s.fields.value("key", "") == s.context.value("key", "-") ? 1 : 0;
    }
    if (!actions.empty() || built != kBuilds || observed.diagnostics.hasErrors()) {
      problem("no-op reconcile " + std::to_string(r) + ": " + std::to_string(actions.size()) +
              " actions, " + std::to_string(built) + " of " + std::to_string(kBuilds) +
              " observed as built with their key " + observed.diagnostics.format());
      return;
    }
  }

  // What hyperd passes on a converged reconcile: the content was applied with these keys
  // (ObserveRequest::keptKeys), which observe takes without resolving any input.
  KeptKeys kept;
  for (const auto& r : b->records) {
    kept[r.id.str()] = {r.handles.value("key", "")};
  }
  std::vector<Span> keptTotals;
  for (int r = 0; r < kReps; ++r) {
    ObserveResponse observed;
    Stopwatch sw;
    std::vector<PlanAction> actions =
        observeAndPlan(p, b->objects, b->records, observed, nullptr, nullptr, &kept);
    keptTotals.push_back(sw.elapsed());
    if (!actions.empty() || observed.diagnostics.hasErrors()) {
      problem("no-op reconcile with kept keys: " + std::to_string(actions.size()) + " actions " +
              observed.diagnostics.format());
      return;
    }
  }

  // The pieces of observe, through the same public calls it makes for each Build.
  store::ArtifactStore store(stateDir + "/store");
  const std::string busyboxDigest = b->records[0].handles["inputs"].value("busybox", "");
  const std::string gzip = b->records[0].handles["inputs"].value("gzip", "");
  std::vector<Span> inputTimes, keyTimes, storeTimes;
  for (int r = 0; r < kReps; ++r) {
    std::vector<Json> inputs(kBuilds);
    std::vector<std::string> keys(kBuilds);
    Stopwatch inputSw;
    struct stat st {};
    ::stat(busybox.c_str(), &st);  // once per observe: the file's identity, the digest cached
    for (size_t i = 0; i < kBuilds; ++i) {
      inputs[i] = {{"gzip", gzip}};
      if (b->objects[i].spec->value("initramfs", Json::object()).value("busybox", true)) {
        inputs[i]["busybox"] = busyboxDigest;
      }
    }
    inputTimes.push_back(inputSw.elapsed());
    Stopwatch keySw;
    for (size_t i = 0; i < kBuilds; ++i) {
      keys[i] = providers::build::buildKey(b->objects[i].spec, inputs[i]);
    }
    keyTimes.push_back(keySw.elapsed());
    Stopwatch storeSw;
    // Observe stats each built object's artifacts; it reads keys/<key>.json only for objects
    // not built with their key, of which a no-op reconcile has none.
    size_t hits = 0;
    for (size_t i = 0; i < kBuilds; ++i) {
      hits += store.has(b->records[i].handles["artifacts"]["initrd"].value("digest", "")) ? 1 : 0;
    }
    storeTimes.push_back(storeSw.elapsed());
    if (hits != kBuilds || keys[0] != b->records[0].handles.value("key", "") ||
        !store.lookupKey(keys[0]).has_value()) {
      problem("the pieces of observe found " + std::to_string(hits) + " of " +
              std::to_string(kBuilds) + " keys, or another key than apply recorded");
      return;
    }
  }

  Span total = median(totals, &Span::cpu);
  Span observe = median(observes, &Span::cpu);
  Span plan = median(plans, &Span::cpu);
  Span inputs = median(inputTimes, &Span::cpu);
  Span keys = median(keyTimes, &Span::cpu);
  Span lookups = median(storeTimes, &Span::cpu);
  std::printf(
      "   no-op reconcile (observe all + plan each), median of %d: %.2f ms CPU, %.2f ms "
      "wall, %.2f us / Build, 0 actions\n",
      kReps, total.cpu, total.wall, total.cpu * 1e3 / kBuilds);
  std::printf("     observe %.2f ms, plan %.2f ms\n", observe.cpu, plan.cpu);
  Span keptTotal = median(keptTotals, &Span::cpu);
  std::printf(
      "     with the content's kept keys (hyperd's converged reconcile): %.2f ms CPU, ratio to "
      "without %.2f\n",
      keptTotal.cpu, keptTotal.cpu / total.cpu);
  std::printf(
      "     observe's pieces timed apart: inputs %.2f ms (%.0f%% of the total; a stat of "
      "busybox per observe, its digest cached), store %.2f ms (a stat of each artifact); the "
      "keys, were they made anew, %.2f ms (sha256 of canonical JSON: observe remembers each "
      "Build's key while its spec and inputs compare equal)\n",
      inputs.cpu, 100 * inputs.cpu / total.cpu, lookups.cpu, keys.cpu);
  std::printf(
      "   (once) a new provider's first observe: %.2f ms wall (hashes busybox, runs gzip "
      "--version)\n",
      first.wall);
  std::printf("   %-4s cache-hit check of %zu Builds < %.0f ms: %.2f ms CPU (%.2f ms wall)\n",
              total.cpu < kCacheHitTargetMs ? "PASS" : "MISS", kBuilds, kCacheHitTargetMs,
              total.cpu, total.wall);
}

// ---- 2. an initramfs build against the shell pipeline ---------------------------------------

struct TreeFile {
  std::string path;  // "/usr/share/bench/d3/f-042.txt"
  std::string mode;  // "0644"
  std::string content;
};

std::vector<TreeFile> imageFiles() {
  static const size_t kSizes[] = {64, 512, 2048, 8192, 32768, 65536};
  std::vector<TreeFile> files;
  for (size_t i = 0; i < kImageFiles; ++i) {
    char path[64];
    std::snprintf(path, sizeof path, "/usr/share/bench/d%zu/f-%03zu.txt", i % 10, i);
    files.push_back({path, i % 7 == 0 ? "0755" : "0644",
                     textOf(kSizes[i % (sizeof kSizes / sizeof kSizes[0])], 1000 + i)});
  }
  return files;
}

// The tree the image holds, on disk: what `find | cpio` reads.
bool writeTree(const std::string& root, const std::string& busybox,
               const std::vector<TreeFile>& files) {
  std::error_code ec;
  for (const char* dir : {"dev", "proc", "sys", "tmp", "bin"}) {
    if (!ec) {
      fs::create_directories(root + "/" + dir, ec);
    }
  }
  if (!ec) {
    fs::copy_file(busybox, root + "/bin/busybox", ec);
  }
  if (!ec) {
    fs::create_symlink("busybox", root + "/bin/sh", ec);
  }
  ::chmod((root + "/bin/busybox").c_str(), 0755);
  for (const auto& f : files) {
    const std::string path = root + f.path;
    if (!ec) {
      fs::create_directories(fs::path(path).parent_path(), ec);
    }
    if (!ec && !writeFileAtomically(path, f.content, std::stoul(f.mode, nullptr, 8)).isOk()) {
      ec = std::make_error_code(std::errc::io_error);
    }
  }
  if (ec) {
    problem("write the tree " + root + ": " + ec.message());
    return false;
  }
  return true;
}

void runInitramfs(const std::string& busybox, const TempDir& tmp) {
  std::vector<TreeFile> files = imageFiles();
  size_t bytes = 0;
  Json list = Json::array();
  for (const auto& f : files) {
    bytes += f.content.size();
    list.push_back({{"path", f.path}, {"mode", f.mode}, {"content", f.content}});
  }
  const Json spec = {{"type", "initramfs"}, {"initramfs", {{"busybox", true}, {"files", list}}}};
  std::printf(
      "\n2. initramfs build: busybox (%zu bytes) and %zu files of 64 B to 64 KiB (%zu "
      "bytes of text, content inline)\n",
      static_cast<size_t>(fs::file_size(busybox)), files.size(), bytes);

  Object o;
  o.id = {"Build", "bench-initrd"};
  o.spec = spec;
  constexpr int kReps = 5;
  std::vector<Span> applies, images, pipelines;
  std::string digest;
  size_t imageSize = 0;
  for (int r = 0; r < kReps; ++r) {
    // A fresh state dir and provider: nothing cached, the host key made anew.
    const std::string stateDir = tmp.path() + "/initramfs-" + std::to_string(r);
    BuildProvider p(BuildProviderConfig{stateDir, busybox});
    ObserveResponse observed;
    std::vector<PlanAction> actions = observeAndPlan(p, {o}, {}, observed);
    if (actions.size() != 1) {
      problem("plan of the initramfs Build: " + observed.diagnostics.format());
      return;
    }
    ApplyRequest areq;
    areq.action = &actions[0];
    areq.desired = &o;
    ApplyResponse aresp;
    Stopwatch sw;
    p.apply(areq, aresp);
    applies.push_back(sw.elapsed());
    const std::string d = aresp.handles["artifacts"]["initrd"].value("digest", "");
    if (aresp.diagnostics.hasErrors() || aresp.handles.value("cached", true)) {
      problem("apply of the initramfs Build in a fresh state dir did not build: " +
              aresp.diagnostics.format());
      return;
    }
    if (!digest.empty() && d != digest) {
      problem("two builds of one spec gave different digests: " + digest + " and " + d);
    }
    digest = d;
    imageSize = aresp.handles["artifacts"]["initrd"].value("size", size_t{0});
    std::error_code ec;
    fs::remove_all(stateDir, ec);
  }

  // The image alone: cpio and gzip, without the store, the records and the provenance.
  Diagnostics diags;
  providers::build::BuildSpec parsed = providers::build::parseBuildSpec(o.id, spec, diags);
  auto busyboxBytes = readFile(busybox);
  if (diags.hasErrors() || !busyboxBytes.isOk()) {
    problem("parse the initramfs spec or read busybox: " + diags.format());
    return;
  }
  for (int r = 0; r < kReps; ++r) {
    Stopwatch sw;
    auto image = providers::build::buildInitramfsImage(parsed, *busyboxBytes, "", {});
    images.push_back(sw.elapsed());
    if (!image.isOk() || store::digestOf(*image) != digest) {
      problem("buildInitramfsImage gave other bytes than apply");
      return;
    }
  }

  const std::string tree = tmp.path() + "/tree";
  const std::string out = tmp.path() + "/pipeline.cpio.gz";
  if (!writeTree(tree, busybox, files)) {
    return;
  }
  const std::string script =
      "cd " + shellQuote(tree) +
      " && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -n -9 > " + shellQuote(out);
  for (int r = 0; r < kReps; ++r) {
    Stopwatch sw;
    if (!runShell(script)) {
      return;
    }
    pipelines.push_back(sw.elapsed());
  }
  std::error_code ec;
  const size_t pipelineSize = static_cast<size_t>(fs::file_size(out, ec));

  Span apply = median(applies, &Span::wall);
  Span image = median(images, &Span::wall);
  Span pipeline = median(pipelines, &Span::wall);
  std::printf(
      "   hyper apply (fresh state dir), median of %d: %.1f ms wall, %.1f ms CPU with "
      "children; image %zu bytes, the same digest every run\n",
      kReps, apply.wall, apply.cpu, imageSize);
  std::printf(
      "     of which the image (buildInitramfsImage: cpio + gzip -n -9): %.1f ms wall; the "
      "rest (busybox read and hashed, store put, key record, a new host key, signed "
      "provenance, log: each fsynced) %.1f ms\n",
      image.wall, apply.wall - image.wall);
  std::printf(
      "   sh: find . | sort | cpio -o -H newc | gzip -n -9, median of %d: %.1f ms wall, "
      "%.1f ms CPU with children; %zu bytes\n",
      kReps, pipeline.wall, pipeline.cpu, pipelineSize);
  std::printf("   ratio apply / pipeline: %.2f (image alone / pipeline: %.2f)\n",
              apply.wall / pipeline.wall, image.wall / pipeline.wall);
}

// ---- 3. store writes against cp + sync ------------------------------------------------------

void runStoreWrites(const TempDir& tmp) {
  std::printf(
      "\n3. store writes: ArtifactStore::put (fresh store each run) against sh -c 'cp "
      "SRC DST && sync -f DST'; MB = 10^6 bytes\n");
  std::printf("   %8s %12s %12s %14s %10s %14s\n", "size", "put MB/s", "put ms", "cp+sync MB/s",
              "cp+sync ms", "put / cp+sync");
  std::vector<std::string> hashing;
  for (size_t mib : {1, 16, 64}) {
    const size_t size = mib << 20;
    const std::string bytes = randomBytes(size, mib);
    const std::string src = tmp.path() + "/src-" + std::to_string(mib);
    if (!writeFileAtomically(src, bytes).isOk()) {
      problem("write " + src);
      return;
    }
    const int reps = mib >= 64 ? 3 : mib >= 16 ? 5 : 9;
    Stopwatch hashSw;
    const std::string digest = store::digestOf(bytes);
    Span hash = hashSw.elapsed();
    hashing.push_back(std::to_string(mib) + " MiB " + fixed(size / 1e3 / hash.wall, 0) + " MB/s");

    std::vector<Span> puts, copies;
    for (int r = 0; r < reps; ++r) {
      const std::string root = tmp.path() + "/store-" + std::to_string(r);
      store::ArtifactStore store(root);
      Stopwatch sw;
      auto put = store.put(bytes);
      puts.push_back(sw.elapsed());
      std::error_code ec;
      if (!put.isOk() || *put != digest || fs::file_size(store.pathOf(digest), ec) != size) {
        problem("put of " + std::to_string(mib) +
                " MiB: " + (put.isOk() ? *put + " is not " + digest : put.status().message()));
        return;
      }
      fs::remove_all(root, ec);
    }
    for (int r = 0; r < reps; ++r) {
      const std::string dst = tmp.path() + "/copy-" + std::to_string(r);
      Stopwatch sw;
      if (!runShell("cp " + shellQuote(src) + " " + shellQuote(dst) + " && sync -f " +
                    shellQuote(dst))) {
        return;
      }
      copies.push_back(sw.elapsed());
      std::error_code ec;
      fs::remove(dst, ec);
    }
    std::error_code ec;
    fs::remove(src, ec);
    Span put = median(puts, &Span::wall);
    Span copy = median(copies, &Span::wall);
    std::printf("   %4zu MiB %12.0f %12.1f %14.0f %10.1f %14.2f\n", mib, size / 1e3 / put.wall,
                put.wall, size / 1e3 / copy.wall, copy.wall, put.wall / copy.wall);
  }
  std::printf("   (median of 9, 5 and 3 runs) put hashes what it writes; sha256 alone: ");
  for (size_t i = 0; i < hashing.size(); ++i) {
    std::printf("%s%s", i ? ", " : "", hashing[i].c_str());
  }
  std::printf("\n");
}

// ---- 4. a rootfs build against plain mmdebstrap (--rootfs) ---------------------------------

void runRootfs(const std::string& busybox, const TempDir& tmp) {
  std::printf(
      "\n4. rootfs build: bookworm minbase + busybox as an erofs image (apply of a Build, fresh "
      "state dir) against plain `mmdebstrap --variant=minbase --include=busybox bookworm "
      "out.tar`; one run each (they download from the mirror)\n");
  Json spec = {{"type", "rootfs"},
               {"rootfs", {{"suite", "bookworm"}, {"packages", Json::array({"busybox"})}}}};
  const std::string stateDir = tmp.path() + "/rootfs";
  BuildProvider p(BuildProviderConfig{stateDir, busybox});
  Object o;
  o.id = {"Build", "bench-rootfs"};
  o.spec = spec;
  ObserveResponse observed;
  std::vector<PlanAction> actions = observeAndPlan(p, {o}, {}, observed);
  if (observed.diagnostics.hasErrors() || actions.size() != 1) {
    problem("rootfs: no plan to build it: " + observed.diagnostics.format());
    return;
  }
  Stopwatch sw;
  ApplyRequest areq;
  areq.action = &actions[0];
  areq.desired = &o;
  ApplyResponse aresp;
  p.apply(areq, aresp);
  Span build = sw.elapsed();
  if (aresp.diagnostics.hasErrors()) {
    problem("rootfs: " + aresp.diagnostics.format());
    return;
  }
  const std::string out = tmp.path() + "/plain-rootfs.tar";
  Stopwatch plainSw;
  bool ok = runShell(
      "SOURCE_DATE_EPOCH=0 mmdebstrap --quiet --variant=minbase --include=busybox "
      "bookworm " +
      shellQuote(out) + " >/dev/null 2>&1");
  Span plain = plainSw.elapsed();
  if (!ok) {
    problem("rootfs: plain mmdebstrap failed");
    return;
  }
  std::error_code ec;
  const uint64_t image = aresp.handles["artifacts"]["rootfs"].value("size", uint64_t{0});
  std::printf(
      "   Build apply (mmdebstrap to a directory, mkfs.erofs, hash, sign)  %8.0f ms wall, "
      "image %.0f MiB\n",
      build.wall, static_cast<double>(image) / (1 << 20));
  std::printf(
      "   plain mmdebstrap to a tarball                                   %8.0f ms wall, "
      "tarball %.0f MiB\n",
      plain.wall, static_cast<double>(fs::file_size(out, ec)) / (1 << 20));
  std::printf(
      "   ratio %s (informational: the Build also makes the filesystem image and signs "
      "it)\n",
      fixed(build.wall / plain.wall, 2).c_str());
}

constexpr const char* kUsage =
    "usage: hyper_build_bench [--rootfs]\n"
    "  the cache-hit check of 1000 Builds, an initramfs build against find | cpio | gzip, and\n"
    "  ArtifactStore::put against cp + sync; in a temp dir ($TMPDIR or /tmp)\n"
    "  --rootfs: also a rootfs Build against plain mmdebstrap (needs root, mmdebstrap,\n"
    "  erofs-utils and the Debian mirror)\n";

}  // namespace
}  // namespace hyper::bench

int main(int argc, char** argv) {
  using namespace hyper::bench;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  bool rootfs = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (arg == "--rootfs") {
      rootfs = true;
      continue;
    }
    std::fprintf(stderr, "hyper_build_bench: unknown argument %s\n%s", arg.c_str(), kUsage);
    return 2;
  }
  TempDir tmp;
  if (tmp.path().empty()) {
    std::fprintf(stderr, "hyper_build_bench: cannot make a temp dir\n");
    return 1;
  }
  const std::string busybox = busyboxPath(tmp);
  std::printf(
      "hyper_build_bench: the Build kind and the artifact store, in %s on %ld CPUs\n"
      "busybox: %s\n",
      tmp.path().c_str(), sysconf(_SC_NPROCESSORS_ONLN),
      busybox == kRealBusybox ? "the real /bin/busybox"
                              : "a 1 MiB stand-in (no /bin/busybox here)");
  runCacheHit(busybox, tmp);
  runInitramfs(busybox, tmp);
  runStoreWrites(tmp);
  if (rootfs) {
    runRootfs(busybox, tmp);
  }
  std::printf(
      "\nchecks\n  %-4s cache hits built nothing, no-op plans were empty, one spec gave one "
      "digest, put stored its bytes\n",
      problems.empty() ? "OK" : "FAIL");
  for (const auto& p : problems) {
    std::printf("       %s\n", p.c_str());
  }
  return problems.empty() ? 0 : 1;
}
