// hyperctl: validate, diff, apply and get hyper manifests against the host it runs on (the
// network namespace it starts in) and the state directory it is given.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <sodium.h>
#include <CLI/CLI.hpp>

#include "base/clock.h"
#include "base/file.h"
#include "base/names.h"
#include "base/text_escape.h"
#include "controller/client.h"
#include "controller/event_log.h"
#include "controller/hold.h"
#include "host/command.h"
#include "hyperctl/hyperctl.h"
#include "hyperctl/hyperctl_remote.h"
#include "hyperctl/output.h"
#include "providers/build/build_provider.h"
#include "providers/build/script_build.h"
#include "providers/vmm/qemu_driver.h"
#include "reconciler/engine.h"
#include "reconciler/state_lock.h"
#include "source/source.h"
#include "store/artifact_store.h"
#include "store/provenance.h"
#include "store/sealing.h"

namespace hyper::ctl {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitChanges = 2;

struct GlobalOptions {
  std::string stateDir = "/var/lib/hyper";
  int parallelism = 4;
};

int fail(const std::string& message) {
  std::cerr << "error: " << message << "\n";
  return kExitError;
}

// The kinds hyperctl knows and the providers' settings (--<provider>-<setting>); set once in
// hyperctlMain().
const KindRegistry* kinds = nullptr;
Json providerSettings = Json::object();

// `stateDir`: where providers keep files of their own (the artifact store); "" for validate.
std::unique_ptr<Engine> makeEngine(const std::string& stateDir = "") {
  auto made = kinds->makeProviders(providerSettings, stateDir);
  if (!made.isOk()) {
    std::cerr << "error: " << made.status().message() << "\n";
    return nullptr;
  }
  return std::make_unique<Engine>(std::move(*made), *kinds);
}

// Loads and validates; prints diagnostics to stderr. Null on any error.
std::shared_ptr<const Revision> loadRevision(Engine& engine, const std::vector<std::string>& paths,
                                             const char* consequence = "; nothing was applied") {
  auto files = readManifestFiles(paths);
  if (!files.isOk()) {
    std::cerr << "error: " << files.status().message() << "\n";
    return nullptr;
  }
  if (files->empty()) {
    std::cerr << "error: no manifest files (*.yaml, *.yml, *.json) found in the given paths\n";
    return nullptr;
  }
  // File sources are read relative to each manifest's directory as -f found it.
  DirectoryTree tree("");
  RevisionResult loaded = engine.load(*files, &tree);
  if (!loaded.diagnostics.empty()) {
    std::cerr << loaded.diagnostics.format();
  }
  if (!loaded.revision) {
    size_t n = 0;
    for (const auto& d : loaded.diagnostics.items()) {
      n += d.severity == Severity::Error ? 1 : 0;
    }
    std::cerr << "error: " << n << (n == 1 ? " problem" : " problems") << " found" << consequence
              << "\n";
  }
  return loaded.revision;
}

// The inventory's records, or none when the state directory does not exist yet (diff and get
// must not create state). `unconfirmed`, when given, gets Inventory::unconfirmed().
Result<RecordList> readManaged(const std::string& stateDir, std::unique_ptr<Inventory>* keep,
                               RecordList* unconfirmed = nullptr) {
  if (access((stateDir + "/state.db").c_str(), F_OK) != 0 && keep == nullptr) {
    return RecordList();
  }
  HYPER_ASSIGN_OR_RETURN(auto inventory, Inventory::open(stateDir));
  HYPER_ASSIGN_OR_RETURN(std::shared_ptr<const RecordList> records, inventory->snapshot());
  if (unconfirmed) {
    HYPER_ASSIGN_OR_RETURN(*unconfirmed, inventory->unconfirmed());
  }
  if (keep) {
    *keep = std::move(inventory);
  }
  return *records;
}

// Inventory::contentKeys of `content`: the build keys it was applied with here before (none when
// there is no state yet, or it cannot be read: the Builds then resolve their inputs).
KeptKeys keptKeysOf(const std::string& stateDir, const std::string& content) {
  if (access((stateDir + "/state.db").c_str(), F_OK) != 0) {
    return {};
  }
  auto inventory = Inventory::open(stateDir);
  if (!inventory.isOk()) {
    return {};
  }
  auto kept = (*inventory)->contentKeys(content);
  return kept.isOk() ? std::move(*kept) : KeptKeys{};
}

void printPlan(const Plan& plan, const std::string& output) {
  if (output == "json") {
    Json j = plan.toJson();
    j["hash"] = plan.hash();
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << plan.render(isatty(STDOUT_FILENO) != 0);
  }
}

// Observes and plans, prints the plan; nullopt (errors printed) when it cannot be applied.
std::optional<PlanResult> planAndPrint(Engine& engine, const Revision& revision,
                                       const RecordList& managed, const RecordList& unconfirmed,
                                       bool prune, const std::string& output,
                                       const KeptKeys& kept) {
  PlanOptions options{prune, &unconfirmed};
  options.keptKeys = &kept;
  PlanResult planned = engine.plan(revision, managed, options);
  if (!planned.diagnostics.empty()) {
    std::cerr << planned.diagnostics.format();
  }
  if (planned.diagnostics.hasErrors()) {
    fail("cannot plan revision " + revision.id + "; nothing was applied");
    return std::nullopt;
  }
  printPlan(planned.plan, output);
  return planned;
}

// The file sources `files` name, read here as a local load reads them (refusals included), for
// `hyperctl diff` through hyperd, which cannot read this machine's files.
std::map<std::string, SourceTree::File> readFileSources(const std::vector<SourceFile>& files) {
  DirectoryTree disk("");
  RecordingTree tree(disk);
  ManifestLoader loader(kinds->schemas(), LoaderLimits{}, kinds->fileSources());
  (void)loader.load(files, &tree);  // hyperd says what is wrong, as it does for the manifests
  return tree.reads();
}

int runValidate(const std::vector<std::string>& paths) {
  auto engine = makeEngine();
  if (!engine) {
    return kExitError;
  }
  auto revision = loadRevision(*engine, paths, "");
  if (!revision) {
    return kExitError;
  }
  std::cout << revision->objects.size() << (revision->objects.size() == 1 ? " object" : " objects")
            << " valid (revision " << revision->id << ")\n";
  return kExitOk;
}

int runDiff(const GlobalOptions& g, const RemoteOptions& remote,
            const std::vector<std::string>& paths, bool prune, const std::string& output,
            bool local) {
  if (!local) {
    // With a hyperd running for the state dir (or --server), its view is the one that counts:
    // it plans against its own inventory and observation.
    auto files = readManifestFiles(paths);
    if (!files.isOk()) {
      return fail(files.status().message());
    }
    if (files->empty()) {
      return fail("no manifest files (*.yaml, *.yml, *.json) found in the given paths");
    }
    RemoteOptions o = remote;
    o.stateDir = g.stateDir;
    o.output = output;
    if (auto code = runRemoteDiff(
            o, *files, [&] { return readFileSources(*files); }, prune)) {
      return *code;
    }
  }
  auto engine = makeEngine(g.stateDir);
  if (!engine) {
    return kExitError;
  }
  auto revision = loadRevision(*engine, paths);
  if (!revision) {
    return kExitError;
  }
  RecordList unconfirmed;
  auto managed = readManaged(g.stateDir, nullptr, &unconfirmed);
  if (!managed.isOk()) {
    return fail(managed.status().message());
  }
  const KeptKeys kept = keptKeysOf(g.stateDir, revision->content);
  PlanOptions planOptions{prune, &unconfirmed};
  planOptions.keptKeys = &kept;
  PlanResult planned = engine->plan(*revision, *managed, planOptions);
  if (!planned.diagnostics.empty()) {
    std::cerr << planned.diagnostics.format();
  }
  if (planned.diagnostics.hasErrors()) {
    return fail("cannot plan revision " + revision->id);
  }
  printPlan(planned.plan, output);
  return planned.plan.empty() ? kExitOk : kExitChanges;
}

// `apply --prune` asks hyperd's question (controller/hold.h, default thresholds): a plan that
// deletes every managed object, or more than half of the running VMs, needs --yes. Prints why.
bool refusedWithoutYes(const Revision& revision, const RecordList& managed, bool prune, bool yes) {
  if (!prune) {
    return false;
  }
  controller::HoldVerdict verdict = controller::judgeDeletions(
      controller::countDeletions(revision, managed, kinds->runningObjects()), {});
  if (!verdict.hold) {
    return false;
  }
  if (yes) {
    std::cerr << "warning: the plan " << verdict.reason << "; applying it (--yes)\n";
    return false;
  }
  fail("the plan " + verdict.reason + "; nothing was applied. Check the paths given with -f; " +
       "if this is meant, run again with --yes");
  return true;
}

// Set by SIGINT or SIGTERM while an apply runs: actions not started yet are not started, and a
// build being waited for is given up, so its queue kills the build's process group (which is not
// in ours, so the terminal's Ctrl-C does not reach it) before hyperctl exits.
std::atomic<bool> gInterrupted{false};

// Catches SIGINT and SIGTERM into gInterrupted for its lifetime.
class InterruptCatcher {
 public:
  InterruptCatcher() {
    struct sigaction sa {};
    sa.sa_handler = [](int) { gInterrupted.store(true); };
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &oldInt_);
    ::sigaction(SIGTERM, &sa, &oldTerm_);
  }
  ~InterruptCatcher() {
    ::sigaction(SIGINT, &oldInt_, nullptr);
    ::sigaction(SIGTERM, &oldTerm_, nullptr);
  }
  InterruptCatcher(const InterruptCatcher&) = delete;
  InterruptCatcher& operator=(const InterruptCatcher&) = delete;

 private:
  struct sigaction oldInt_ {};
  struct sigaction oldTerm_ {};
};

// While an apply waits for work that goes on in a provider (a build), prints what it goes
// through, a line each, on the terminal (stderr, when it is one): the queue, each log line, the
// end. Nothing when stderr is not a terminal (scripts read the plan and the result only).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(Engine& engine) {
    for (const auto& p : engine.providers()) {
      if (auto* source = dynamic_cast<ProgressSource*>(p.get())) {
        sources_.push_back(source);
      }
    }
    tty_ = ::isatty(STDERR_FILENO) == 1;
    if (!sources_.empty()) {
      thread_ = std::thread([this] {
        while (!stop_.load()) {
          print();
          for (int i = 0; i < 5 && !stop_.load(); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }
      });
    }
  }
  ~ProgressPrinter() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
    print();
  }
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

 private:
  void print() {
    for (ProgressSource* source : sources_) {
      for (const ProgressEvent& e : source->takeProgress()) {
        if (tty_ && e.type != "build-cached") {
          std::cerr << "  " << e.object.str() << ": " << escapeControl(e.message) << "\n";
        }
      }
    }
  }
  std::vector<ProgressSource*> sources_;
  bool tty_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int runApply(const GlobalOptions& g, const std::vector<std::string>& paths, bool prune, bool dryRun,
             bool yes, const std::string& output) {
  auto engine = makeEngine(g.stateDir);
  if (!engine) {
    return kExitError;
  }
  // Validate before taking the lock, so a bad revision never waits on or blocks a writer.
  auto revision = loadRevision(*engine, paths);
  if (!revision) {
    return kExitError;
  }
  if (dryRun) {
    // A dry run is a diff that prints like apply: no lock, and no state is created.
    RecordList unconfirmed;
    auto managed = readManaged(g.stateDir, nullptr, &unconfirmed);
    if (!managed.isOk()) {
      return fail(managed.status().message());
    }
    auto planned = planAndPrint(*engine, *revision, *managed, unconfirmed, prune, output,
                                keptKeysOf(g.stateDir, revision->content));
    if (!planned) {
      return kExitError;
    }
    if (prune) {
      controller::HoldVerdict verdict = controller::judgeDeletions(
          controller::countDeletions(*revision, *managed, kinds->runningObjects()), {});
      if (verdict.hold) {
        std::cerr << "warning: the plan " << verdict.reason
                  << "; a real apply --prune needs --yes\n";
      }
    }
    if (!planned->plan.empty() && output != "json") {
      // The plan reads the same as the one a real apply prints first: say that it stopped there.
      std::cout << "Dry run: nothing was applied.\n";
    }
    return kExitOk;
  }
  auto lock = StateLock::acquire(g.stateDir, "hyperctl apply");
  if (!lock.isOk()) {
    auto hyperd = controller::discoverEndpoint(g.stateDir, "", "");
    if (hyperd.isOk() && *hyperd) {
      return fail(lock.status().message() +
                  "\nhyperd owns this state dir: change its source (git push, or edit its "
                  "directory), or run `hyperctl reconcile`");
    }
    return fail(lock.status().message());
  }
  std::unique_ptr<Inventory> inventory;
  RecordList unconfirmed;
  auto managed = readManaged(g.stateDir, &inventory, &unconfirmed);
  if (!managed.isOk()) {
    return fail(managed.status().message());
  }
  // Actions a killed hyperctl or hyperd left half done: said once, then planned afresh like any
  // other difference (every provider action is idempotent), so this apply finishes them.
  auto interrupted = inventory->closeInterrupted();
  if (!interrupted.isOk()) {
    return fail(interrupted.status().message());
  }
  for (const auto& entry : *interrupted) {
    std::cerr << "hyper: " << entry.action << " " << entry.object.str()
              << " was interrupted (reconcile " << entry.reconcileId
              << "); this apply finishes it\n";
  }
  auto kept = inventory->contentKeys(revision->content);
  auto plannedOr = planAndPrint(*engine, *revision, *managed, unconfirmed, prune, output,
                                kept.isOk() ? *kept : KeptKeys{});
  if (!plannedOr) {
    return kExitError;
  }
  const PlanResult& planned = *plannedOr;
  if (planned.plan.empty()) {
    return kExitOk;
  }
  if (refusedWithoutYes(*revision, *managed, prune, yes)) {
    return kExitError;
  }
  ApplyOptions options;
  options.parallelism = g.parallelism;
  options.reconcileId = controller::newReconcileId();
  options.unconfirmed = &unconfirmed;
  options.cancel = &gInterrupted;
  options.wholePlan = true;  // planned without errors (planAndPrint), applied whole
  ApplyReport report;
  {
    InterruptCatcher interrupts;
    ProgressPrinter progress(*engine);
    report = engine->apply(planned.plan, *revision, *managed, *inventory, options);
  }
  for (const auto& o : report.outcomes) {
    if (o.skipped) {
      std::cerr << "skipped " << o.id.str() << ": " << o.status.message() << "\n";
    } else if (!o.status.isOk()) {
      std::cerr << "failed " << o.id.str() << ": " << o.status.message() << "\n";
    } else if (output != "json") {
      std::printf("%s %s (%.0f ms)\n", o.id.str().c_str(),
                  o.type == ActionType::Delete    ? "deleted"
                  : o.type == ActionType::Create  ? "created"
                  : o.type == ActionType::Replace ? "replaced"
                                                  : "updated",
                  o.seconds * 1000);
    }
  }
  if (!report.ok()) {
    return fail(std::to_string(report.failed()) + " of " + std::to_string(report.outcomes.size()) +
                " actions did not complete (reconcile " + options.reconcileId + ")");
  }
  if (output != "json") {
    std::cout << "Apply complete: " << report.outcomes.size() << " actions (reconcile "
              << options.reconcileId << ").\n";
  }
  return kExitOk;
}

// `hyperctl build release NAME`: the builder a failed script build kept goes (its VM stopped, its
// run dir removed). Builders run detached from whoever started them (hyperd or hyperctl apply),
// so any process finds them under the builders' run root.
int runReleaseBuilder(const std::string& name) {
  if (std::string why = checkDnsLabel(name); !why.empty()) {
    return fail("build release: \"" + escapeControl(name) + "\" is not a Build name: " + why);
  }
  std::string root = providers::build::BuildProviderConfig{}.builderRunRoot;
  if (const char* dir = std::getenv("HYPER_BUILDER_RUN_DIR"); dir != nullptr && *dir != '\0') {
    root = dir;
  }
  providers::vmm::QemuDriver driver({root});
  auto released = providers::build::releaseBuilder(driver, name);
  if (!released.isOk()) {
    return fail("build release " + name + ": " + released.status().message());
  }
  if (!*released) {
    return fail("build release " + name + ": no builder is kept for Build " + name + " (in " +
                root + ")");
  }
  std::cout << "Released the builder of Build " << name << ".\n";
  return kExitOk;
}

// A guest line longer than this is printed in pieces, so one endless line cannot grow hyperctl.
constexpr size_t kMaxPartialLineBytes = 64 * 1024;

// `hyperctl logs KIND/NAME [-f] [--raw]`: an object's log, from the files its kind's record
// names (KindRecord::logs; a VM's serial console in its run dir), oldest first. -f follows the
// last until it is gone (the object stopped) or hyperctl is interrupted. What a guest wrote
// reaches the terminal escaped (escapeControl: no escape sequence of the guest's runs in the
// caller's terminal) unless `raw`.
int runLogs(const GlobalOptions& g, const RemoteOptions& remote, const std::string& target,
            bool follow, bool raw) {
  auto withLogs = [](const KindRecord& k) { return static_cast<bool>(k.logs); };
  size_t slash = target.find('/');
  std::string type = slash == std::string::npos ? "" : target.substr(0, slash);
  std::string name = slash == std::string::npos ? "" : target.substr(slash + 1);
  const KindRecord* kind = type.empty() ? nullptr : kinds->find(type);
  if (kind == nullptr || name.empty()) {
    return fail("logs: expected KIND/NAME (" + kinds->pluralsText(withLogs) + "), got \"" +
                escapeControl(target) + "\"");
  }
  if (!kind->logs) {
    return fail("logs: " + kind->kind + " keeps no logs (" + kinds->pluralsText(withLogs) + " do)");
  }
  // The name becomes a path: only what an object can be named gets there.
  if (std::string why = checkDnsLabel(name); !why.empty()) {
    return fail("logs: \"" + escapeControl(name) + "\" is not a " + kind->kind + " name: " + why);
  }
  // A Build's log through a running hyperd (or --server): typed events that end with the build.
  if (kind->kind == "Build" && !raw) {
    RemoteOptions o = remote;
    o.stateDir = g.stateDir;
    if (std::optional<int> code = runBuildLogsRemote(o, name, follow)) {
      return *code;
    }
  }
  LogFiles where = kind->logs(name, g.stateDir);
  if (where.files.empty()) {
    return fail("no log for " + kind->kind + " " + name);
  }
  const std::string path = where.files.back();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail("no log for " + kind->kind + " " + name + " at " + path +
                (where.whenMissing.empty() ? "" : " (" + where.whenMissing + ")"));
  }
  std::string pending;  // escaped output goes by whole lines, so a sequence is never split
  auto emit = [&](std::string_view data, bool flush) {
    if (raw) {
      std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
      return;
    }
    pending.append(data);
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string_view l(pending.data(), nl);
      if (!l.empty() && l.back() == '\r') {
        l.remove_suffix(1);
      }
      std::cout << escapeControl(l) << '\n';
      pending.erase(0, nl + 1);
    }
    if (flush || pending.size() > kMaxPartialLineBytes) {
      std::cout << escapeControl(pending);
      pending.clear();
    }
  };
  std::string chunk(64 * 1024, '\0');
  for (size_t i = 0; i + 1 < where.files.size(); ++i) {
    if (std::ifstream old(where.files[i], std::ios::binary); old) {
      while (old.read(chunk.data(), static_cast<std::streamsize>(chunk.size())), old.gcount() > 0) {
        emit(std::string_view(chunk.data(), static_cast<size_t>(old.gcount())), false);
      }
    }
  }
  std::streamoff offset = 0;
  for (;;) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    std::streamsize n = in.gcount();
    if (n > 0) {
      offset += n;
      emit(std::string_view(chunk.data(), static_cast<size_t>(n)), false);
      std::cout.flush();
      continue;
    }
    emit("", true);
    std::cout.flush();
    if (!follow) {
      return kExitOk;
    }
    if (access(path.c_str(), F_OK) != 0) {
      std::cerr << kind->kind << " " << name << " stopped\n";
      return kExitOk;
    }
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    in.clear();  // at end of file: wait for more
    if (!ec && static_cast<std::streamoff>(size) < offset) {
      in.seekg(0);  // rotated: the log starts again
      offset = 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// `hyperctl gc`: removes from the artifact store (<state-dir>/store) every artifact that neither
// a managed object's handles nor the last `keepRevisions` applied revisions reference. Under the
// state lock, so never while an apply (or hyperd, which collects on its own) writes the store.
int runGc(const GlobalOptions& g, int keepRevisions, bool dryRun, const std::string& output) {
  if (keepRevisions < 0) {
    return fail("gc: --keep-revisions must be 0 or more");
  }
  auto lock = StateLock::acquire(g.stateDir, "hyperctl gc");
  if (!lock.isOk()) {
    return fail(lock.status().message());
  }
  std::set<std::string> keep;
  if (access((g.stateDir + "/state.db").c_str(), F_OK) == 0) {
    auto inventory = Inventory::open(g.stateDir);
    if (!inventory.isOk()) {
      return fail(inventory.status().message());
    }
    auto roots = (*inventory)->artifactRoots(static_cast<size_t>(keepRevisions));
    if (!roots.isOk()) {
      return fail(roots.status().message());
    }
    keep = std::move(*roots);
  }
  store::ArtifactStore artifacts(g.stateDir + "/store");
  auto report = artifacts.collectGarbage(keep, dryRun);
  if (!report.isOk()) {
    return fail(report.status().message());
  }
  if (output == "json") {
    Json j = {{"kept", report->kept},
              {"keptBytes", report->keptBytes},
              {"removed", report->removed},
              {"removedBytes", report->removedBytes},
              {"recordsRemoved", report->recordsRemoved},
              {"dryRun", dryRun}};
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  for (const auto& d : report->removed) {
    std::cout << (dryRun ? "would remove " : "removed ") << d << "\n";
  }
  std::cout << (dryRun ? "Would remove " : "Removed ") << report->removed.size() << " artifacts ("
            << report->removedBytes << " bytes) and " << report->recordsRemoved
            << " build records; kept " << report->kept << " (" << report->keptBytes
            << " bytes) that the inventory or the last " << keepRevisions << " revisions use.\n";
  return kExitOk;
}

// The inputs recorded in an artifact's provenance ({name: digest or version}); empty when there is
// none to read.
Json provenanceInputs(const store::ArtifactStore& artifacts, const std::string& digest,
                      const std::string& stateDir) {
  auto key = store::HostKey::loadPublic(stateDir);
  auto envelope = artifacts.provenanceOf(digest);
  if (!key.isOk() || !envelope.isOk()) {
    return Json::object();
  }
  auto statement = store::openEnvelope(*envelope, *key);
  if (!statement.isOk()) {
    return Json::object();
  }
  return store::statementInputs(*statement);
}

// `hyperctl rebuild -f PATHS [--revision REV]`: makes every object of a reproducible kind (Build)
// in the manifests again, with no cache (a scratch state dir, removed after), and compares each
// artifact's digest with the one recorded when REV (default: the manifests' own revision) was
// applied with this state dir. One line per artifact; for a difference, the inputs that moved
// (from the recorded artifact's provenance) and, when diffoscope is installed, the start of its
// report. Exit 0 all the same, 2 some differ, 1 error.
// The manifests of one commit of a git repository (`location`: a repository path, a working
// copy or a URL, as hyperd's source takes it; `path`: the sub-path), read with the source hyperd
// uses (libgit2, a bare clone in `scratch`), named "git:<commit>" as hyperd names it.
std::shared_ptr<const Revision> loadGitRevision(Engine& engine, std::string location,
                                                const std::string& path,
                                                const std::string& revision,
                                                const std::string& scratch) {
  const std::string commit = revision.rfind("git:", 0) == 0 ? revision.substr(4) : "";
  if (commit.size() != 40 || commit.find_first_not_of("0123456789abcdef") != std::string::npos) {
    std::cerr << "error: rebuild: --repo reads a commit: expected --revision git:<40 hex digits>, "
                 "got \""
              << escapeControl(revision) << "\"\n";
    return nullptr;
  }
  // A working copy: its repository.
  std::error_code ec;
  if (std::filesystem::is_directory(location + "/.git", ec)) {
    location += "/.git";
  }
  controller::SourceSpec spec;
  spec.location = location;
  spec.ref = commit;
  spec.path = path;
  spec.cacheDir = scratch + "/git";
  auto source = controller::openSource(spec);
  if (!source.isOk()) {
    std::cerr << "error: rebuild: " << source.status().message() << "\n";
    return nullptr;
  }
  if ((*source)->describe().rfind("git ", 0) != 0) {
    std::cerr << "error: rebuild: " << location
              << " is not a git repository (expected a repository, a working copy or a git "
                 "URL)\n";
    return nullptr;
  }
  auto snapshot = (*source)->fetch();
  if (!snapshot.isOk()) {
    std::cerr << "error: rebuild: " << snapshot.status().message() << "\n";
    return nullptr;
  }
  if (snapshot->commit != commit) {
    std::cerr << "error: rebuild: " << location << " gave commit " << snapshot->commit << " for "
              << commit << "\n";
    return nullptr;
  }
  RevisionResult loaded = engine.load(snapshot->files, snapshot->tree.get());
  if (!loaded.diagnostics.empty()) {
    std::cerr << loaded.diagnostics.format();
  }
  if (!loaded.revision) {
    std::cerr << "error: the manifests of " << revision << " do not load; nothing was rebuilt\n";
    return nullptr;
  }
  auto named = std::make_shared<Revision>(*loaded.revision);
  named->id = snapshot->revision;
  return named;
}

int runRebuild(const GlobalOptions& g, const std::vector<std::string>& paths,
               const std::string& wantedRevision, const std::string& repo,
               const std::string& repoPath) {
  if (paths.empty() == repo.empty()) {
    return fail(
        "rebuild: expected -f MANIFESTS or --repo REPOSITORY (with --revision "
        "git:<commit>), one of them");
  }
  if (!repoPath.empty() && repo.empty()) {
    return fail("rebuild: --path is the sub-path within --repo");
  }
  char tmpl[] = "/tmp/hyper-rebuild.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    return fail(std::string("rebuild: scratch dir <- ") + std::strerror(errno));
  }
  const std::string scratch = tmpl;
  RemoveTreeOnExit cleanup(scratch);

  auto engine = makeEngine(scratch);
  if (!engine) {
    return kExitError;
  }
  auto revision = repo.empty() ? loadRevision(*engine, paths, "; nothing was rebuilt")
                               : loadGitRevision(*engine, repo, repoPath, wantedRevision, scratch);
  if (!revision) {
    return kExitError;
  }
  const std::string against = wantedRevision.empty() ? revision->id : wantedRevision;
  if (access((g.stateDir + "/state.db").c_str(), F_OK) != 0) {
    return fail("rebuild: no state in " + g.stateDir + ": nothing was applied there to compare");
  }
  auto inventory = Inventory::open(g.stateDir);
  if (!inventory.isOk()) {
    return fail(inventory.status().message());
  }
  auto recorded = (*inventory)->revisionArtifacts(against);
  if (!recorded.isOk()) {
    return fail(recorded.status().message() +
                (wantedRevision.empty() ? " (--revision names the applied revision these "
                                          "manifests are)"
                                        : ""));
  }
  if (against != revision->id) {
    std::cout << "comparing the manifests (" << revision->id << ") with revision " << against
              << "\n";
  }

  auto scratchInventory = Inventory::open(scratch + "/state");
  if (!scratchInventory.isOk()) {
    return fail(scratchInventory.status().message());
  }
  auto reproducible = [](const std::string& kind) {
    const KindRecord* k = kinds->find(kind);
    return k != nullptr && k->reproducible;
  };
  // Only the reproducible objects are planned: the others (a Secret sealed to the host's key,
  // which the scratch state dir does not have) need not even observe. Builds refer only to
  // Builds, so the subset keeps every edge it needs.
  Revision builds;
  builds.id = revision->id;
  builds.content = revision->content;
  for (const auto& o : revision->objects) {
    if (reproducible(o->id.kind)) {
      builds.objects.push_back(o);
      builds.graph.addNode(o->id);
    }
  }
  for (const auto& o : builds.objects) {
    for (const ObjectId& to : revision->graph.dependencies(o->id)) {
      if (reproducible(to.kind)) {
        builds.graph.addEdge(o->id, to);
      }
    }
  }
  PlanResult planned = engine->plan(builds, {}, PlanOptions{});
  Plan plan;
  plan.revision = planned.plan.revision;
  for (const auto& a : planned.plan.actions) {
    if (reproducible(a.id.kind)) {
      plan.actions.push_back(a);
    }
  }
  Diagnostics errors;
  for (const auto& d : planned.diagnostics.items()) {
    if (d.severity == Severity::Error && (d.object.empty() || reproducible(d.object.kind))) {
      errors.add(d);
    }
  }
  if (errors.hasErrors()) {
    std::cerr << errors.format();
    return fail("rebuild: cannot plan the builds of " + revision->id);
  }
  if (plan.actions.empty()) {
    return fail("rebuild: " + revision->id + " has no objects of a reproducible kind (" +
                kinds->pluralsText([](const KindRecord& k) { return k.reproducible; }) + ")");
  }
  ApplyOptions options;
  options.reconcileId = "rebuild";
  ApplyReport report = engine->apply(plan, builds, {}, **scratchInventory, options);
  if (!report.ok()) {
    for (const auto& o : report.outcomes) {
      if (!o.status.isOk()) {
        std::cerr << "error: " << o.status.message() << "\n";
      }
    }
    return fail("rebuild: " + std::to_string(report.failed()) + " builds failed");
  }

  store::ArtifactStore store(g.stateDir + "/store");
  store::ArtifactStore rebuiltStore(scratch + "/store");
  bool differ = false;
  for (const auto& a : plan.actions) {
    auto rebuilt = (*scratchInventory)->get(a.id);
    if (!rebuilt.isOk() || !*rebuilt) {
      return fail("rebuild: " + a.id.str() + " left no record");
    }
    const Json artifacts = (**rebuilt).handles.value("artifacts", Json::object());
    auto was = recorded->find(a.id.str());
    for (const auto& [name, art] : artifacts.items()) {
      const std::string digest = art.value("digest", "");
      if (was != recorded->end() && was->second.count(digest) > 0) {
        std::cout << "same       " << a.id.str() << " " << name << " " << digest << "\n";
        continue;
      }
      differ = true;
      if (was == recorded->end() || was->second.empty()) {
        std::cout << "different  " << a.id.str() << " " << name << ": not built in " << against
                  << "; rebuilt " << digest << "\n";
        continue;
      }
      const std::string old = *was->second.begin();
      std::cout << "different  " << a.id.str() << " " << name << ": recorded " << old
                << ", rebuilt " << digest << "\n";
      Json before = provenanceInputs(store, old, g.stateDir);
      Json after = (**rebuilt).handles.value("inputs", Json::object());
      for (const auto& [input, value] : after.items()) {
        if (!before.contains(input) || before[input] != value) {
          std::cout << "           input " << input << " moved: "
                    << (before.contains(input) ? before[input].dump() : "(not recorded)") << " -> "
                    << value.dump() << "\n";
        }
      }
      if (store.has(old) && access("/usr/bin/diffoscope", X_OK) == 0) {
        auto report = host::runCommand({"diffoscope", "--max-report-size", "4096", "--text", "-",
                                        store.pathOf(old), rebuiltStore.pathOf(digest)});
        if (report.isOk()) {
          std::cout << report->out.substr(0, 4096) << "\n";
        }
      }
    }
  }
  return differ ? kExitChanges : kExitOk;
}

// `hyperctl keys`: the host's public signing key (made on first use).
// `hyperctl keys [rotate]`: the host's public keys, made on first use: the ed25519 key that
// signs provenance and the X25519 sealing keys (the active one seals; the others still open what
// was sealed to them). `rotate` makes a new sealing key the active one.
// `hyperctl keys retire ID`: removes an old sealing key. Refused for the active key and while a
// managed object's record says a value of it is sealed to that key (handles.keyIds): reseal and
// apply first.
int runKeysRetire(const GlobalOptions& g, const std::string& id) {
  auto ring = store::KeyRing::loadOrCreate(g.stateDir);
  if (!ring.isOk()) {
    return fail(ring.status().message());
  }
  auto managed = readManaged(g.stateDir, nullptr);
  if (!managed.isOk()) {
    return fail(managed.status().message());
  }
  std::vector<std::string> users;
  for (const auto& r : *managed) {
    const Json ids =
        r.handles.is_object() ? r.handles.value("keyIds", Json::object()) : Json::object();
    if (!ids.is_object()) {
      continue;
    }
    for (const auto& [key, used] : ids.items()) {
      if (used == id) {
        users.push_back(r.id.str() + " " + key);
      }
    }
  }
  if (!users.empty()) {
    std::string list;
    for (size_t i = 0; i < users.size() && i < 10; ++i) {
      list += (i ? ", " : "") + users[i];
    }
    return fail("keys retire: sealing key " + id + " still opens " + std::to_string(users.size()) +
                " applied value(s) (" + list +
                "): `hyperctl secret reseal -f MANIFESTS`, apply, then retire it");
  }
  if (Status s = ring->retire(g.stateDir, id); !s.isOk()) {
    return fail("keys retire: " + s.message());
  }
  std::cout << "retired sealing key " << id << "\n";
  return kExitOk;
}

// `hyperctl secret reseal -f PATHS`: every sealed value of the Secrets in the manifests that is
// not sealed to the active key is opened for the scope its manifest gives (kind, name, key) and
// sealed again to the active key; the files are rewritten in place with only those strings
// replaced. Through the running hyperd (POST /v1/secrets/reseal) when there is one for the state
// dir or --server names one, which holds the private keys; else with the state dir's key ring.
// All values are resealed before any file is written: one that does not open writes nothing.
int runReseal(const GlobalOptions& g, const RemoteOptions& remote,
              const std::vector<std::string>& paths) {
  auto engine = makeEngine();
  if (!engine) {
    return kExitError;
  }
  auto revision = loadRevision(*engine, paths, "; nothing was resealed");
  if (!revision) {
    return kExitError;
  }
  struct Value {
    std::string file, name, key, text, resealed, from;
  };
  std::vector<Value> values;
  for (const auto& o : revision->objects) {
    if (o->id.kind != "Secret" || !o->spec->contains("sealed") || !o->spec["sealed"].is_object()) {
      continue;
    }
    for (const auto& [key, value] : o->spec["sealed"].items()) {
      auto parsed = store::parseSealed(value.get<std::string>());
      values.push_back({o->sourceMap.file(), o->id.name, key, value.get<std::string>(), "",
                        parsed.isOk() ? parsed->keyId : "?"});
    }
  }
  RemoteOptions o = remote;
  o.stateDir = g.stateDir;
  auto resealed = resealThroughHyperd(o, values.size(), [&](size_t i) {
    return std::tuple<std::string, std::string, std::string>{values[i].name, values[i].key,
                                                             values[i].text};
  });
  std::string active;
  if (resealed.has_value()) {
    if (!resealed->isOk()) {
      return fail("secret reseal: " + resealed->status().message());
    }
    active = (**resealed).active;
    for (size_t i = 0; i < values.size(); ++i) {
      values[i].resealed = (**resealed).texts[i];
    }
  } else {
    auto ring = store::KeyRing::loadOrCreate(g.stateDir);
    if (!ring.isOk()) {
      return fail(ring.status().message());
    }
    active = ring->active().id;
    for (auto& v : values) {
      if (v.from == active) {
        v.resealed = v.text;
        continue;
      }
      auto again = ring->reseal(v.text, {"Secret", v.name, v.key});
      if (!again.isOk()) {
        return fail(v.file + ": Secret/" + v.name + ": spec.sealed." + v.key + ": " +
                    again.status().message() + "; nothing was resealed");
      }
      v.resealed = *again;
    }
  }
  // file -> (old text -> new text)
  std::map<std::string, std::map<std::string, std::string>> edits;
  size_t count = 0;
  for (const auto& v : values) {
    if (v.resealed == v.text) {
      continue;
    }
    edits[v.file][v.text] = v.resealed;
    std::cout << "resealed Secret/" << v.name << " " << v.key << ": key " << v.from << " -> "
              << active << "\n";
    ++count;
  }
  for (const auto& [file, replace] : edits) {
    auto content = readFile(file, size_t{4} << 20);
    if (!content.isOk()) {
      return fail("secret reseal: " + content.status().message());
    }
    std::string text = *content;
    for (const auto& [from, to] : replace) {
      for (size_t at = text.find(from); at != std::string::npos;
           at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
      }
    }
    struct stat st {};
    mode_t mode = ::stat(file.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
    if (Status s = writeFileAtomically(file, text, mode); !s.isOk()) {
      return fail("secret reseal: " + s.message());
    }
  }
  std::cout << count << (count == 1 ? " value" : " values") << " resealed to key " << active
            << (resealed.has_value() ? " (by hyperd)" : "") << "\n";
  return kExitOk;
}

int runKeys(const GlobalOptions& g, bool rotate) {
  auto key = store::HostKey::loadOrCreate(g.stateDir);
  if (!key.isOk()) {
    return fail(key.status().message());
  }
  auto ring = store::KeyRing::loadOrCreate(g.stateDir);
  if (!ring.isOk()) {
    return fail(ring.status().message());
  }
  if (rotate) {
    auto made = ring->rotate(g.stateDir);
    if (!made.isOk()) {
      return fail(made.status().message());
    }
    std::cout << "new active sealing key " << made->id
              << "; values sealed to the others still open (`hyperctl secret seal` uses it "
                 "from now on)\n";
  }
  std::cout << key->publicKeyText() << "  (keyid " << key->keyId() << ", signs provenance)\n";
  for (const auto& k : ring->publicKeys()) {
    std::cout << k.text() << "  (sealing key " << k.id
              << (k.id == ring->active().id ? ", active" : "") << ")\n";
  }
  return kExitOk;
}

// `secret seal -f FILE`: a new FILE gets `manifest`; an existing one gets the value in the Secret
// `name` it holds (other documents, other values, comments and layout kept): the sealed text of
// `key` replaced, or a line added to its block-style spec.sealed (made when the Secret has only
// fromFile values). The result is loaded again and must hold the new value and nothing else
// changed, or the file is left as it was. Written atomically, its mode kept.
int mergeSealed(const std::string& file, const std::string& name, const std::string& key,
                const std::string& sealed, const std::string& manifest) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    if (Status s = writeFileAtomically(file, manifest, 0644); !s.isOk()) {
      return fail("secret seal: " + s.message());
    }
    std::cout << "wrote Secret/" << name << " (" << key << ") to " << file << "\n";
    return kExitOk;
  }
  auto engine = makeEngine();
  if (!engine) {
    return kExitError;
  }
  auto before = loadRevision(*engine, {file}, "; nothing was written");
  if (!before) {
    return kExitError;
  }
  const Object* secret = before->find({"Secret", name});
  if (secret == nullptr) {
    return fail("secret seal: " + file + " has no Secret " + name +
                ": expected the file that holds it (or a new file); nothing was written");
  }
  auto content = readFile(file, size_t{4} << 20);
  if (!content.isOk()) {
    return fail("secret seal: " + content.status().message());
  }
  std::string text = *content;
  const Json& section = secret->spec->contains("sealed") ? secret->spec["sealed"] : Json();
  const std::string quotedValue = "\"" + sealed + "\"";
  auto cannot = [&](const std::string& why) {
    return fail("secret seal: cannot merge into " + file + ": " + why +
                "; nothing was written (print the manifest without -f and edit it in)");
  };
  if (section.is_object() && section.contains(key)) {
    const std::string old = section[key].get<std::string>();
    size_t at = text.find(old);
    if (at == std::string::npos || text.find(old, at + 1) != std::string::npos) {
      return cannot("its sealed text for " + key + " is not written there once");
    }
    text.replace(at, old.size(), sealed);
  } else {
    // A line of its own before a key of the mapping (spec.sealed, or spec when it has none),
    // indented as that key is: it must begin its line (a block mapping).
    const Json& parent = section.is_object() ? section : secret->spec.get();
    const std::string at = section.is_object() ? "spec.sealed" : "spec";
    if (!parent.is_object() || parent.empty()) {
      return cannot(at + " has no key to write beside");
    }
    const SourceLocation loc = secret->sourceMap.locate(at + "." + parent.begin().key());
    size_t lineStart = 0;
    for (int l = 1; l < loc.line && lineStart != std::string::npos; ++l) {
      lineStart = text.find('\n', lineStart);
      lineStart = lineStart == std::string::npos ? lineStart : lineStart + 1;
    }
    if (loc.line <= 0 || loc.column <= 0 || lineStart == std::string::npos ||
        lineStart + loc.column - 1 >= text.size()) {
      return cannot("the place of " + at + " is not known");
    }
    const size_t column = static_cast<size_t>(loc.column - 1);
    const std::string indent = text.substr(lineStart, column);
    if (indent.find_first_not_of(' ') != std::string::npos || text[lineStart + column] == '{') {
      return cannot(at + " is not a block mapping");
    }
    const std::string lines = section.is_object() ? indent + key + ": " + quotedValue + "\n"
                                                  : indent + "sealed:\n" + indent + "  " + key +
                                                        ": " + quotedValue + "\n";
    text.insert(lineStart, lines);
  }
  // The merged file: the same objects, and this one with the new value only.
  auto again = engine->load({{file, text}}, nullptr);
  const Object* merged = again.revision ? again.revision->find({"Secret", name}) : nullptr;
  bool same = merged != nullptr && again.revision->objects.size() == before->objects.size() &&
              merged->spec->contains("sealed") && merged->spec["sealed"].value(key, "") == sealed;
  if (same) {
    Json expected = secret->spec;
    expected["sealed"][key] = sealed;
    same = merged->spec == expected;
    for (const auto& o : before->objects) {
      const Object* now = again.revision->find(o->id);
      same = same && now != nullptr && (o->id == merged->id || now->spec == o->spec);
    }
  }
  if (!same) {
    return cannot("the merged file did not load back as the same manifests with the new value");
  }
  if (Status s = writeFileAtomically(file, text, st.st_mode & 07777); !s.isOk()) {
    return fail("secret seal: " + s.message());
  }
  std::cout << (section.is_object() && section.contains(key) ? "replaced " : "added ") << key
            << " in Secret/" << name << " in " << file << "\n";
  return kExitOk;
}

// `hyperctl secret seal --name NAME --key KEY [-f FILE] [--pubkey FILE]`: seals standard input
// (one trailing newline dropped unless --keep-newline) to the active sealing key of the state
// dir, to the public key in FILE (what `hyperctl keys` prints, committed beside the manifests),
// or, with the global --server, to that hyperd's; and prints a Secret manifest holding it, or
// with -f writes it into FILE (mergeSealed).
int runSeal(const GlobalOptions& g, const RemoteOptions& remote, const std::string& name,
            const std::string& key, const std::string& pubkeyFile, bool keepNewline,
            const std::string& mergeInto) {
  if (std::string problem = checkDnsLabel(name); !problem.empty()) {
    return fail("secret seal: --name \"" + escapeControl(name) + "\": " + problem);
  }
  if (key.empty() || key.size() > 63 || !std::isalnum(static_cast<unsigned char>(key.front())) ||
      key.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
          std::string::npos) {
    return fail("secret seal: --key \"" + escapeControl(key) +
                "\": expected 1-63 of A-Z a-z 0-9 . _ - starting alphanumeric");
  }
  store::SealingKey to;
  if (!pubkeyFile.empty()) {
    auto text = readFile(pubkeyFile, 4096);
    if (!text.isOk()) {
      return fail("secret seal: --pubkey " + text.status().message());
    }
    auto parsed = store::SealingKey::parse(*text);
    if (!parsed.isOk()) {
      return fail("secret seal: --pubkey " + pubkeyFile + ": " + parsed.status().message());
    }
    to = *parsed;
  } else if (!remote.server.empty()) {
    // The active key of the hyperd named: sealed here, the value never leaves this process.
    RemoteOptions o = remote;
    o.stateDir = g.stateDir;
    auto text = fetchSealingKey(o);
    if (!text.isOk()) {
      return fail("secret seal: --server " + text.status().message());
    }
    auto parsed = store::SealingKey::parse(*text);
    if (!parsed.isOk()) {
      return fail("secret seal: --server " + remote.server + ": " + parsed.status().message());
    }
    to = *parsed;
  } else {
    auto ring = store::KeyRing::loadOrCreate(g.stateDir);
    if (!ring.isOk()) {
      return fail("secret seal: " + ring.status().message() +
                  " (or give --pubkey FILE with the host's public sealing key)");
    }
    to = ring->active();
  }
  // Read straight into locked memory, bounded.
  auto value = store::SecretBytes::zeroed(store::kMaxSecretValueBytes + 2);
  if (!value.isOk()) {
    return fail(value.status().message());
  }
  size_t got = 0;
  while (got < store::kMaxSecretValueBytes + 2) {
    ssize_t n = ::read(STDIN_FILENO, value->data() + got, store::kMaxSecretValueBytes + 2 - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  if (!keepNewline && got > 0 && value->data()[got - 1] == '\n') {
    --got;
  }
  if (got > store::kMaxSecretValueBytes) {
    return fail("secret seal: the value on standard input is over " +
                std::to_string(store::kMaxSecretValueBytes) + " bytes");
  }
  auto sealed = store::seal(to, {"Secret", name, key}, value->view().substr(0, got));
  if (!sealed.isOk()) {
    return fail("secret seal: " + sealed.status().message());
  }
  const std::string manifest =
      "apiVersion: hyper.dev/v1alpha1\nkind: Secret\nmetadata: {name: " + name +
      "}\nspec:\n  sealed:\n    " + key + ": \"" + *sealed + "\"\n";
  if (mergeInto.empty()) {
    std::cout << manifest;
    return kExitOk;
  }
  return mergeSealed(mergeInto, name, key, *sealed, manifest);
}

// `hyperctl verify KIND/NAME`: for each artifact the object's last apply recorded
// (handles.artifacts), the provenance beside it in the store is signed by this host's key, names
// the artifact with its digest, and records the key, the spec and the inputs the inventory holds;
// and the artifact's bytes still have that digest. Exit 0 when all holds, 1 otherwise.
int runVerify(const GlobalOptions& g, const std::string& target) {
  size_t slash = target.find('/');
  const KindRecord* kind =
      slash == std::string::npos ? nullptr : kinds->find(target.substr(0, slash));
  std::string name = slash == std::string::npos ? "" : target.substr(slash + 1);
  if (kind == nullptr || name.empty()) {
    return fail("verify: expected KIND/NAME, got \"" + escapeControl(target) + "\"");
  }
  auto managed = readManaged(g.stateDir, nullptr);
  if (!managed.isOk()) {
    return fail(managed.status().message());
  }
  const ManagedRecord* record = nullptr;
  for (const auto& r : *managed) {
    if (r.id.kind == kind->kind && r.id.name == name) {
      record = &r;
    }
  }
  if (record == nullptr) {
    return fail(kind->kind + "/" + escapeControl(name) + " is not managed by hyper (state dir " +
                g.stateDir + ")");
  }
  const Json artifacts = record->handles.is_object()
                             ? record->handles.value("artifacts", Json::object())
                             : Json::object();
  if (!artifacts.is_object() || artifacts.empty()) {
    return fail(record->id.str() + " has no artifacts to verify");
  }
  auto key = store::HostKey::loadPublic(g.stateDir);
  if (!key.isOk()) {
    return fail(key.status().message());
  }
  store::ArtifactStore artifactStore(g.stateDir + "/store");
  const Json inputs = record->handles.value("inputs", Json::object());
  bool ok = true;
  for (const auto& [artifact, a] : artifacts.items()) {
    const std::string digest = a.is_object() ? a.value("digest", "") : "";
    std::vector<std::string> failed;
    auto envelope = artifactStore.provenanceOf(digest);
    auto statement =
        envelope.isOk() ? store::openEnvelope(*envelope, *key) : Result<Json>(envelope.status());
    if (!statement.isOk()) {
      failed.push_back("provenance: " + statement.status().message());
    } else {
      const Json& st = *statement;
      bool named = false;
      for (const auto& subject : st.value("subject", Json::array())) {
        named = named || (subject.value("name", "") == artifact &&
                          "sha256:" + subject["digest"].value("sha256", "") == digest);
      }
      if (!named) {
        failed.push_back("the provenance does not name " + artifact + " with digest " + digest);
      }
      const Json predicate = st.value("predicate", Json::object());
      const Json definition = predicate.value("buildDefinition", Json::object());
      if (definition.value("externalParameters", Json::object()).value("spec", Json()) !=
          record->spec) {
        failed.push_back("the provenance's spec is not the one applied");
      }
      std::string invocation = predicate.value("runDetails", Json::object())
                                   .value("metadata", Json::object())
                                   .value("invocationId", "");
      if (invocation != record->handles.value("key", "")) {
        failed.push_back("the provenance's build key is not the one recorded");
      }
      if (store::statementInputs(st) != inputs) {
        failed.push_back("the provenance's inputs are not the ones recorded");
      }
    }
    auto bytes = artifactStore.read(digest, size_t{4} << 30);
    if (!bytes.isOk()) {
      failed.push_back("artifact: " + bytes.status().message());
    }
    if (failed.empty()) {
      std::cout << "ok      " << artifact << " " << digest
                << " (signed by this host, spec, key and inputs match)\n";
    } else {
      ok = false;
      for (const auto& f : failed) {
        std::cout << "FAILED  " << artifact << " " << digest << ": " << f << "\n";
      }
    }
  }
  return ok ? kExitOk : kExitError;
}

int runGet(const GlobalOptions& g, const std::string& what, const std::string& name,
           const std::string& output) {
  const KindRecord* kindRecord = kinds->find(what);
  if (kindRecord == nullptr) {
    return fail("unknown resource type \"" + escapeControl(what) + "\" (expected " +
                kinds->pluralsText() + ")");
  }
  const std::string& kind = kindRecord->kind;
  auto engine = makeEngine(g.stateDir);
  if (!engine) {
    return kExitError;
  }
  auto all = readManaged(g.stateDir, nullptr);
  if (!all.isOk()) {
    return fail(all.status().message());
  }
  std::vector<ManagedRecord> records;
  for (const auto& r : *all) {
    if (r.id.kind == kind && (name.empty() || r.id.name == name)) {
      records.push_back(r);
    }
  }
  if (!name.empty() && records.empty()) {
    return fail(kind + "/" + name + " is not managed by hyper (state dir " + g.stateDir + ")");
  }
  Diagnostics diags;
  auto observed = engine->observeManaged(records, *all, diags);
  if (diags.hasErrors()) {
    std::cerr << diags.format();
    return kExitError;
  }

  // Status: what a plan against the last applied spec would do. In sync means no action.
  struct Row {
    const ManagedRecord* record;
    const ObservedState* observed;
    std::string status;
    std::string detail;
  };
  std::vector<Row> rows;
  for (const auto& r : records) {
    Provider* p = engine->providerForKind(r.id.kind);
    Object desired = objectFromRecord(r);
    auto obs = observed.find(r.id);
    PlanRequest req{r.id, &desired, obs == observed.end() ? nullptr : &obs->second, &r};
    PlanResponse resp;
    p->plan(req, resp);
    std::string status = "InSync";
    std::string detail;
    if (resp.diagnostics.hasErrors()) {
      status = "Error";
      detail = resp.diagnostics.items().front().summary;
    } else if (resp.action) {
      status = resp.action->type == ActionType::Create ? "Missing" : "Drifted";
      detail = resp.action->reason;
    }
    rows.push_back({&r, obs == observed.end() ? nullptr : &obs->second, status, detail});
  }

  if (output == "json" || output == "yaml") {
    Json items = Json::array();
    for (const auto& row : rows) {
      // The spec, and the observed fields shaped like it, without their secret values.
      const SecretFields& secrets = kinds->secretFieldsOf(row.record->id.kind);
      Json item;
      item["apiVersion"] = std::string(kApiVersion);
      item["kind"] = row.record->id.kind;
      item["metadata"]["name"] = row.record->id.name;
      if (!row.record->labels.empty()) {
        item["metadata"]["labels"] = row.record->labels;
      }
      item["spec"] = secrets.redactSpec(row.record->spec);
      item["status"]["state"] = row.status;
      if (!row.detail.empty()) {
        item["status"]["detail"] = row.detail;
      }
      item["status"]["revision"] = row.record->revision;
      item["status"]["appliedAt"] = row.record->appliedAt;
      if (row.observed) {
        item["status"]["observed"] = secrets.redactSpec(row.observed->fields);
      }
      items.push_back(item);
    }
    Json doc =
        name.empty()
            ? Json{{"apiVersion", std::string(kApiVersion)}, {"kind", "List"}, {"items", items}}
            : items.front();
    std::cout << (output == "json" ? doc.dump(2) + "\n" : toYaml(doc));
    return kExitOk;
  }

  int64_t now = nowSeconds();
  // NAME, the kind's columns (its wide ones with -o wide), STATUS, REVISION, AGE.
  std::vector<const Column*> columns;
  for (const auto& c : kindRecord->columns) {
    if (!c.wide || output == "wide") {
      columns.push_back(&c);
    }
  }
  std::vector<std::string> header = {"NAME"};
  for (const Column* c : columns) {
    header.push_back(c->header);
  }
  header.insert(header.end(), {"STATUS", "REVISION", "AGE"});
  std::vector<std::vector<std::string>> table;
  for (const auto& row : rows) {
    const auto& r = *row.record;
    GetRow shown{
        &r, row.observed,
        kindRecord->withDefaults ? kindRecord->withDefaults(r.id.name, r.spec) : r.spec.get()};
    std::vector<std::string> cells = {r.id.name};
    for (const Column* c : columns) {
      cells.push_back(c->value(shown));
    }
    cells.insert(cells.end(), {row.status, r.revision, age(r.appliedAt, now)});
    table.push_back(std::move(cells));
  }
  if (table.empty()) {
    std::cout << "No " << kind << " objects are managed by hyper (state dir " << g.stateDir
              << ").\n";
    return kExitOk;
  }
  std::cout << renderTable(header, table);
  for (const auto& row : rows) {
    if (!row.detail.empty()) {
      std::cout << "  " << row.record->id.str() << ": " << row.detail << "\n";
    }
  }
  return kExitOk;
}

}  // namespace

// Long on purpose: the command line is declared in one place, so every subcommand and flag can be
// read top to bottom; each subcommand's work is its own run* function.
int hyperctlMain(int argc, char** argv, const KindRegistry& registry) {
  kinds = &registry;
  if (sodium_init() < 0) {
    std::cerr << "error: libsodium failed to initialise\n";
    return kExitError;
  }
  CLI::App app{"hyperctl: declare microVM hosts in git and converge them"};
  app.require_subcommand(1);
  GlobalOptions g;
  app.add_option("--state-dir", g.stateDir, "state directory holding the inventory")
      ->capture_default_str();
  // --<provider>-<setting>, from the providers' settings schemas (the kind registry).
  std::vector<KindRegistry::Setting> settings = kinds->settings();
  std::vector<std::string> settingValues(settings.size());
  for (size_t i = 0; i < settings.size(); ++i) {
    app.add_option(settings[i].flag(), settingValues[i], settings[i].description);
  }
  app.add_option("--parallelism", g.parallelism, "actions run at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();

  std::vector<std::string> paths;
  bool follow = false;
  bool prune = false;
  bool dryRun = false;
  std::string output = "text";
  std::string getWhat;
  std::string getName;
  int code = kExitOk;

  auto* validate = app.add_subcommand("validate", "check manifests: exit 0, or 1 with errors");
  validate->add_option("-f,--filename", paths, "manifest files or directories")->required();

  auto* diff = app.add_subcommand("diff", "print the plan: exit 0 in sync, 2 changes, 1 error");
  diff->add_option("-f,--filename", paths, "manifest files or directories")->required();
  diff->add_flag("--prune", prune, "plan deletes of managed objects gone from the source");
  diff->add_option("-o,--output", output, "text or json")->check(CLI::IsMember({"text", "json"}));
  bool local = false;
  diff->add_flag("--local", local, "plan here even when a hyperd runs for the state dir");

  auto* apply = app.add_subcommand("apply", "converge the host to the manifests");
  apply->add_option("-f,--filename", paths, "manifest files or directories")->required();
  apply->add_flag("--prune", prune, "delete managed objects gone from the source");
  apply->add_flag("--dry-run", dryRun, "print the plan and change nothing");
  bool yes = false;
  apply->add_flag("--yes", yes,
                  "apply a --prune that deletes every managed object or more than half of the "
                  "running VMs (refused without it)");
  apply->add_option("-o,--output", output, "text or json")->check(CLI::IsMember({"text", "json"}));

  std::string logsTarget;
  auto* logs =
      app.add_subcommand("logs", "an object's log (a VM's serial console): logs KIND/NAME [-f]");
  logs->add_option("target", logsTarget,
                   "KIND/NAME, KIND one of " +
                       kinds->pluralsText([](const KindRecord& k) { return bool(k.logs); }))
      ->required();
  logs->add_flag("-f,--follow", follow, "keep printing until the object stops");
  bool raw = false;
  logs->add_flag("--raw", raw, "print the log's bytes as they are (no escaping of control bytes)");

  std::string rebuildRevision;
  auto* rebuild = app.add_subcommand(
      "rebuild", "build the manifests' Builds again without the cache and compare the digests");
  std::string rebuildRepo, rebuildPath;
  rebuild->add_option("-f,--filename", paths, "manifest files or directories");
  rebuild->add_option("--repo", rebuildRepo,
                      "instead of -f: the git repository (a path, a working copy or a URL) whose "
                      "commit --revision git:<commit> names");
  rebuild->add_option("--path", rebuildPath, "with --repo: the manifests' sub-path in it");
  rebuild->add_option("--revision", rebuildRevision,
                      "the applied revision to compare with (default: the manifests' own)");

  auto* keys = app.add_subcommand(
      "keys", "print the host's public keys: the one that signs provenance, the sealing keys");
  auto* keysRotate = keys->add_subcommand("rotate", "make a new sealing key the active one");
  std::string retireId;
  auto* keysRetire = keys->add_subcommand(
      "retire", "remove an old sealing key that no applied Secret value is sealed to");
  keysRetire->add_option("id", retireId, "the key id (16 hex digits, from `hyperctl keys`)")
      ->required();
  auto* buildCmd = app.add_subcommand("build", "act on script builds' builder VMs");
  buildCmd->require_subcommand(1);
  std::string releaseName;
  auto* release = buildCmd->add_subcommand(
      "release", "stop the builder VM a failed script build kept (keepFailed: true)");
  release->add_option("name", releaseName, "the Build's name")->required();
  auto* secretCmd = app.add_subcommand("secret", "seal values for Secret manifests");
  secretCmd->require_subcommand(1);
  auto* seal = secretCmd->add_subcommand(
      "seal", "seal standard input for a Secret and print its manifest (safe to commit)");
  std::string sealName, sealKey, sealPubkey;
  bool keepNewline = false;
  seal->add_option("--name", sealName, "the Secret's name")->required();
  seal->add_option("--key", sealKey, "the value's key in spec.sealed, like password")->required();
  seal->add_option("--pubkey", sealPubkey,
                   "a file with the host's public sealing key (x25519:..., from `hyperctl "
                   "keys`); default: the active key of the hyperd --server names, else of the "
                   "state dir");
  std::string sealInto;
  seal->add_option("-f,--filename", sealInto,
                   "write into this manifest file: the value added to (or replaced in) its "
                   "Secret, or a new file");
  auto* reseal = secretCmd->add_subcommand(
      "reseal", "seal every value of the manifests' Secrets to the active key, in place");
  reseal->add_option("-f,--filename", paths, "manifest files or directories")->required();
  seal->add_flag("--keep-newline", keepNewline,
                 "keep a trailing newline of the input (dropped by default: `echo` adds one)");
  std::string verifyTarget;
  auto* verify = app.add_subcommand(
      "verify", "check an object's artifacts against their signed provenance: verify KIND/NAME");
  verify->add_option("target", verifyTarget, "KIND/NAME, e.g. build/guest-kernel")->required();

  int keepRevisions = 10;
  auto* gc = app.add_subcommand(
      "gc", "remove artifacts that no managed object and no recent revision uses from the store");
  gc->add_option("--keep-revisions", keepRevisions,
                 "keep what the last N applied revisions used (default 10), for rollbacks");
  gc->add_flag("--dry-run", dryRun, "say what would be removed and remove nothing");
  gc->add_option("-o,--output", output, "text or json")->check(CLI::IsMember({"text", "json"}));

  auto* get = app.add_subcommand("get", "list managed objects and their state");
  get->add_option("type", getWhat, kinds->pluralsText())->required();
  get->add_option("name", getName, "one object");
  get->add_option("-o,--output", output, "table, wide (more columns), yaml or json")
      ->check(CLI::IsMember({"table", "text", "wide", "yaml", "json"}));

  // Commands served by a running hyperd (found through --state-dir, or --server).
  RemoteOptions remote;
  app.add_option("--server", remote.server, "hyperd API URL (default: found in the state dir)");
  app.add_option("--token-file", remote.tokenFile, "hyperd API token (default: in the state dir)");
  int limit = 50;
  int waitSeconds = 120;
  auto* status = app.add_subcommand("status", "hyperd: source, revision, each object's conditions");
  status->add_option("-o,--output", output, "text or json")->check(CLI::IsMember({"text", "json"}));
  auto* events = app.add_subcommand("events", "reconcile results, drift and errors");
  events->add_flag("-f,--follow", follow, "keep printing new events");
  events->add_option("--limit", limit, "how many past events")->check(CLI::Range(1, 10000));
  events->add_option("-o,--output", output, "text or json")->check(CLI::IsMember({"text", "json"}));
  auto* drift =
      app.add_subcommand("drift", "objects whose host state differs: exit 0 none, 2 some");
  drift->add_option("-o,--output", output, "text or json")->check(CLI::IsMember({"text", "json"}));
  auto* reconcile = app.add_subcommand("reconcile", "ask hyperd to reconcile now");
  reconcile->add_option("--wait", waitSeconds, "seconds to wait for the result (0: do not wait)")
      ->check(CLI::Range(0, 600))
      ->capture_default_str();
  auto* suspend = app.add_subcommand("suspend", "hyperd stops applying (observes and alerts)");
  auto* resume = app.add_subcommand("resume", "hyperd applies again");
  std::string approveRevision;
  auto* approve = app.add_subcommand(
      "approve", "apply the revision hyperd holds because it would delete too much");
  approve
      ->add_option("revision", approveRevision, "the held revision (git:<commit>, or the commit)")
      ->required();
  approve->add_option("--wait", waitSeconds, "seconds to wait for the result (0: do not wait)")
      ->check(CLI::Range(0, 600))
      ->capture_default_str();
  approve->add_option("-o,--output", output, "text or json")
      ->check(CLI::IsMember({"text", "json"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitError;
  }
  if (!g.stateDir.empty()) {
    // Absolute: builds run tools (dpkg-deb, mmdebstrap) in other directories than this one.
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(g.stateDir, ec);
    if (!ec) {
      g.stateDir = abs.lexically_normal().string();
    }
  }
  for (size_t i = 0; i < settings.size(); ++i) {
    if (!settingValues[i].empty()) {
      providerSettings[settings[i].provider][settings[i].key] = settingValues[i];
    }
  }

  if (*validate) {
    code = runValidate(paths);
  } else if (*diff) {
    code = runDiff(g, remote, paths, prune, output, local);
  } else if (*apply) {
    code = runApply(g, paths, prune, dryRun, yes, output);
  } else if (*status || *events || *drift || *reconcile || *suspend || *resume || *approve) {
    remote.stateDir = g.stateDir;
    remote.output = output == "json" ? "json" : "text";
    code = *status      ? runStatus(remote)
           : *approve   ? runApprove(remote, approveRevision, waitSeconds)
           : *events    ? runEvents(remote, follow, limit)
           : *drift     ? runDrift(remote)
           : *reconcile ? runReconcile(remote, waitSeconds)
                        : runSuspend(remote, suspend->parsed());
  } else if (*get) {
    code = runGet(g, getWhat, getName, output);
  } else if (*logs) {
    code = runLogs(g, remote, logsTarget, follow, raw);
  } else if (*rebuild) {
    code = runRebuild(g, paths, rebuildRevision, rebuildRepo, rebuildPath);
  } else if (*keysRetire) {
    code = runKeysRetire(g, retireId);
  } else if (*keys) {
    code = runKeys(g, keysRotate->parsed());
  } else if (*reseal) {
    code = runReseal(g, remote, paths);
  } else if (*seal) {
    code = runSeal(g, remote, sealName, sealKey, sealPubkey, keepNewline, sealInto);
  } else if (*verify) {
    code = runVerify(g, verifyTarget);
  } else if (*release) {
    code = runReleaseBuilder(releaseName);
  } else if (*gc) {
    code = runGc(g, keepRevisions, dryRun, output);
  }
  return code;
}

}  // namespace hyper::ctl
