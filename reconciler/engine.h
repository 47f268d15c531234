#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "reconciler/diagnostic.h"
#include "reconciler/executor.h"
#include "reconciler/graph.h"
#include "reconciler/inventory.h"
#include "reconciler/kind_registry.h"
#include "reconciler/loader.h"
#include "reconciler/plan.h"
#include "reconciler/provider.h"
#include "reconciler/record_list.h"

namespace hyper {

// A desired state that passed every check: schema, provider validation, references and cycles.
struct Revision {
  std::string id;
  // The loader's name for the content (manifests and the file sources they name): the same for
  // the same content from any source, whatever `id` a source gives it (a git commit; a revert
  // or an old commit has its own id and the content it had).
  std::string content;
  std::vector<std::shared_ptr<const Object>> objects;  // sorted by kind/name, unique
  DependencyGraph graph;

  // A binary search of `objects`: a map beside them cost some 110 bytes per object.
  const Object* find(const ObjectId& id) const;
};

struct RevisionResult {
  std::shared_ptr<const Revision> revision;  // null when diagnostics has errors
  std::string id;  // the loader's revision id (LoadResult::revision), also of a rejected one
  Diagnostics diagnostics;
  bool unchanged = false;  // same content as the previous load: validation was not redone
};

struct PlanOptions {
  bool prune = false;  // delete managed objects that left the source
  // Inventory::unconfirmed(): objects whose create never completed. One still in the source is
  // planned as a create (as without it); one gone from the source is deleted under prune (from
  // this record: its spec names what the create made) and listed as an orphan otherwise.
  const RecordList* unconfirmed = nullptr;
  // Inventory::contentKeys(revision.content): the build keys objects of reproducible kinds had
  // when this content was last applied in full (ObserveRequest::keptKeys). Null: none kept (a
  // rebuild, which builds afresh).
  const KeptKeys* keptKeys = nullptr;
  // Observe and plan only these objects (sorted; Engine::movedBetween), the rest being known in
  // sync: a new revision over one the host was found in sync with. Records that left the source
  // are still listed as orphans without prune. Null: every object.
  const std::vector<ObjectId>* scope = nullptr;
};

struct PlanResult {
  Plan plan;
  Diagnostics diagnostics;  // errors: the plan must not be applied
  std::map<ObjectId, ObservedState> observed;
};

struct ApplyOptions {
  int parallelism = 4;
  std::string reconcileId;
  // When set (hyperd is stopping), actions not yet started fail with "cancelled" without touching
  // the host, so the dependents are skipped; actions in flight finish.
  const std::atomic<bool>* cancel = nullptr;
  // How long one action may take (ApplyRequest::deadline); zero: no limit beyond the provider's.
  std::chrono::milliseconds actionTimeout{0};
  // The same list the plan had in PlanOptions: a delete of an unconfirmed object finds its record
  // there.
  const RecordList* unconfirmed = nullptr;
  // ApplyRequest::mayDefer: providers may take long work (a build) into their own queue and
  // answer "in progress" (hyperd, whose loop comes back); false: they finish it (hyperctl).
  bool deferLongWork = false;
  // The plan is the whole plan for the revision, which planned without errors: when every action
  // succeeds the inventory matches the revision's content, and its build keys are kept for it
  // (Inventory::recordRevision, RevisionEntry::converged). hyperd leaves it false while it holds
  // actions back.
  bool wholePlan = false;
};

struct ApplyReport {
  std::vector<ActionOutcome> outcomes;
  bool ok() const;            // every action done
  size_t failed() const;      // failed, or skipped because one failed
  size_t inProgress() const;  // in progress, or waiting for one that is
};

// The reconcile engine: load -> validate -> graph -> observe -> plan -> execute -> record. It
// does no host I/O itself: providers do, and the inventory holds state.
class Engine {
 public:
  Engine(std::vector<std::unique_ptr<Provider>> providers,
         std::shared_ptr<const SchemaRegistry> schemas);
  // The kinds' schemas, file sources (the loader reads them) and secret fields (every planned
  // change is redacted with them).
  Engine(std::vector<std::unique_ptr<Provider>> providers, const KindRegistry& kinds);

  // Loads and fully validates. A revision with any error is rejected as a whole. Parsed files
  // are cached by content, so a reload re-parses only what changed. `tree` reads the kinds'
  // file sources (ManifestLoader::load).
  // `shareSpecs`: see ManifestLoader::load. `name`: the revision's id (a source's name for it,
  // "git:<commit>"); empty: the loader's, from the content. The revision is not copied to be
  // named: the engine keeps the one it hands out, and the same content under another name (a
  // revert) is the one copy.
  RevisionResult load(const std::vector<SourceFile>& files, const SourceTree* tree = nullptr,
                      const RecordList* shareSpecs = nullptr, const std::string& name = "");
  // The same without touching the cache: for a preview (a `hyperctl diff` sent to hyperd) that
  // must not evict the source's files.
  RevisionResult loadDetached(const std::vector<SourceFile>& files,
                              const SourceTree* tree = nullptr) const;

  // Observes (one batch per provider) and plans against the inventory's records.
  PlanResult plan(const Revision& revision, const RecordList& managed, const PlanOptions& options);

  // What a plan of `after` must observe and plan when the host was in sync with `before` and the
  // inventory is still `managed` as it was then: the objects added, removed or changed between
  // the two, those the providers say such a change moves (PartialObserve::alsoMovedBy; every
  // object of a provider that cannot say), and records in neither revision. Sorted, unique.
  std::vector<ObjectId> movedBetween(const Revision& before, const Revision& after,
                                     const RecordList& managed) const;

  // Executes the plan: journals each action before and after, updates the inventory after each
  // success, and records the revision. Objects not in `revision` are looked up in `managed`.
  ApplyReport apply(const Plan& plan, const Revision& revision, const RecordList& managed,
                    Inventory& inventory, const ApplyOptions& options);

  // Observes managed objects only (for `get`): no source needed. `inventory` is every record of
  // every kind; it stands in for the revision (as last applied), so that providers that place
  // objects against others (a VM on its Network) see the same context as at apply time.
  std::map<ObjectId, ObservedState> observeManaged(const RecordList& managed,
                                                   const RecordList& inventory,
                                                   Diagnostics& diagnostics);

  Provider* providerForKind(const std::string& kind) const;
  const std::vector<std::unique_ptr<Provider>>& providers() const { return providers_; }

 private:
  // Validation and the dependency graph of a parsed revision.
  // `name`: the revision's id; empty: the loader's. `previous`: an accepted revision (the last
  // load's) whose graph is taken, not built again, when this one holds the same ids and every
  // object not shared with it refers to what it did there.
  RevisionResult check(LoadResult loaded, const std::string& name = "",
                       const Revision* previous = nullptr) const;
  // `revision`'s graph from its objects' references; a reference to an object it does not
  // define and a cycle are errors.
  void buildGraph(Revision& revision, Diagnostics& diagnostics) const;
  // Whether `revision` has `previous`'s ids in its places and each of its objects refers to what
  // the one there did (the same object, or the same references).
  bool sameGraphAs(const Revision& revision, const Revision& previous) const;

  std::vector<std::unique_ptr<Provider>> providers_;
  std::map<std::string, Provider*> byKind_;
  std::shared_ptr<const SchemaRegistry> schemas_;
  std::map<std::string, SecretFields> secretFields_;     // by kind
  std::map<std::string, FileSourceFields> fileSources_;  // by kind
  ManifestLoader loader_;
  std::shared_ptr<const Revision> lastRevision_;
};

// An Object rebuilt from an inventory record, so providers can compute references and deletes
// for objects that have left the source.
Object objectFromRecord(const ManagedRecord& record);

}  // namespace hyper
