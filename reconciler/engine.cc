#include "reconciler/engine.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iterator>
#include <set>

#include "base/clock.h"
#include "base/crash_point.h"
#include "base/sha256.h"

namespace hyper {

namespace {

std::string firstError(const Diagnostics& diags) {
  for (const auto& d : diags.items()) {
    if (d.severity == Severity::Error) {
      return d.summary;
    }
  }
  return "";
}

// The inventory's records by id, without building a map of ObjectIds on every plan and apply:
// records come sorted from the inventory (other callers' are sorted here, stably), and a
// revision's objects are sorted too, so matching the two is one merge.
class RecordIndex {
 public:
  explicit RecordIndex(const RecordList& managed) : managed_(managed) {
    sorted_.reserve(managed.size());
    for (size_t j = 0; j < managed.size(); ++j) {
      sorted_.emplace_back(&managed[j], j);
    }
    if (!std::is_sorted(sorted_.begin(), sorted_.end(), less)) {
      std::stable_sort(sorted_.begin(), sorted_.end(), less);
    }
  }

  // Of several records with one id (never from the inventory, whose key is kind/name), the last.
  const ManagedRecord* find(const ObjectId& id) const {
    auto it =
        std::upper_bound(sorted_.begin(), sorted_.end(), id,
                         [](const ObjectId& key, const Entry& e) { return key < e.first->id; });
    return it != sorted_.begin() && std::prev(it)->first->id == id ? std::prev(it)->first : nullptr;
  }

  // Calls `f` with each record whose id is in neither `a` nor `b` (both sorted by id).
  template <class F>
  void forEachNotIn(const std::vector<std::shared_ptr<const Object>>& a,
                    const std::vector<std::shared_ptr<const Object>>& b, F&& f) const {
    auto x = a.begin();
    auto y = b.begin();
    for (const Entry& e : sorted_) {
      const ObjectId& id = e.first->id;
      while (x != a.end() && (*x)->id < id) {
        ++x;
      }
      while (y != b.end() && (*y)->id < id) {
        ++y;
      }
      if ((x == a.end() || (*x)->id != id) && (y == b.end() || (*y)->id != id)) {
        f(*e.first);
      }
    }
  }

  // recordOf[i]: the record of objects[i] (sorted by id), or null. inRevision[j]: whether
  // managed[j] is one of the objects.
  void match(const std::vector<std::shared_ptr<const Object>>& objects,
             std::vector<const ManagedRecord*>& recordOf, std::vector<bool>& inRevision) const {
    recordOf.assign(objects.size(), nullptr);
    inRevision.assign(managed_.size(), false);
    auto m = sorted_.begin();
    for (size_t i = 0; i < objects.size(); ++i) {
      const ObjectId& id = objects[i]->id;
      while (m != sorted_.end() && m->first->id < id) {
        ++m;
      }
      for (; m != sorted_.end() && m->first->id == id; ++m) {
        recordOf[i] = m->first;
        inRevision[m->second] = true;
      }
    }
  }

 private:
  using Entry = std::pair<const ManagedRecord*, size_t>;  // a record and its index in managed_
  static bool less(const Entry& a, const Entry& b) { return a.first->id < b.first->id; }

  const RecordList& managed_;
  std::vector<Entry> sorted_;
};

// A kind's provider, looked up once per run of a kind: a revision's objects and the inventory's
// records come sorted by kind, so a walk over them looks up each kind once or so rather than
// once per object. The kind string must outlive the next call (the objects' own).
class ProviderByKind {
 public:
  explicit ProviderByKind(const Engine& engine) : engine_(engine) {}
  Provider* operator()(const std::string& kind) {
    if (last_ == nullptr || *last_ != kind) {
      last_ = &kind;
      provider_ = engine_.providerForKind(kind);
    }
    return provider_;
  }

 private:
  const Engine& engine_;
  const std::string* last_ = nullptr;
  Provider* provider_ = nullptr;
};

// Engine::plan's observe: one batch per provider, desired objects and managed records (and
// unconfirmed creates gone from the source, which are returned) into `result`'s observed map and
// diagnostics. `providerOf`: Engine::plan's cached kind -> provider lookup.
template <class ProviderOf>
std::vector<const ManagedRecord*> observeAll(const Revision& revision, const RecordList& managed,
                                             const PlanOptions& options, ProviderOf& providerOf,
                                             PlanResult& result) {
  // Observe: one batch per provider. Usually one provider has most objects: its lists are
  // sized once rather than grown.
  std::map<Provider*, ObserveRequest> requests;
  auto requestFor = [&](Provider* p) -> ObserveRequest& {
    auto [it, fresh] = requests.try_emplace(p);
    if (fresh) {
      it->second.revision = &revision.objects;
      it->second.inventory = &managed;
      it->second.keptKeys = options.keptKeys;
      it->second.desired.reserve(revision.objects.size());
      it->second.managed.reserve(managed.size());
    }
    return it->second;
  };
  for (const auto& o : revision.objects) {
    if (Provider* p = providerOf(o->id.kind)) {
      requestFor(p).desired.push_back(o.get());
    }
  }
  for (const auto& r : managed) {
    Provider* p = providerOf(r.id.kind);
    if (!p) {
      result.diagnostics.add({Severity::Warning,
                              {},
                              r.id,
                              "",
                              "in the inventory but no provider handles kind " + r.id.kind});
      continue;
    }
    requestFor(p).managed.push_back(&r);
  }
  // Unconfirmed creates gone from the source are observed and planned like managed records.
  std::vector<const ManagedRecord*> unconfirmedGone;
  if (options.unconfirmed) {
    const RecordIndex managedIndex(managed);
    for (const auto& r : *options.unconfirmed) {
      if (revision.find(r.id) != nullptr || managedIndex.find(r.id) != nullptr) {
        continue;
      }
      if (Provider* p = providerOf(r.id.kind)) {
        requestFor(p).managed.push_back(&r);
        unconfirmedGone.push_back(&r);
      }
    }
  }
  // A scoped plan observes only the providers with an object in its scope, and a
  // PartialObserve one only those objects.
  std::map<Provider*, std::vector<ObjectId>> scopes;
  if (options.scope) {
    for (const ObjectId& id : *options.scope) {
      if (Provider* p = providerOf(id.kind)) {
        scopes[p].push_back(id);
      }
    }
  }
  for (auto& [provider, request] : requests) {
    if (options.scope) {
      auto scope = scopes.find(provider);
      if (scope == scopes.end()) {
        continue;
      }
      if (dynamic_cast<PartialObserve*>(provider) != nullptr) {
        request.scope = &scope->second;
      }
    }
    ObserveResponse response;
    provider->observe(request, response);
    // A finding about a desired object's field (a package apt does not know) is located there.
    for (auto& d : response.diagnostics.items()) {
      if (!d.where.known() && !d.object.empty()) {
        if (const Object* o = revision.find(d.object)) {
          d.where = o->locate(d.fieldPath);
        }
      }
    }
    result.diagnostics.append(response.diagnostics);
    if (result.observed.empty()) {  // the first provider's map is taken whole, not re-inserted
      result.observed = std::move(response.observed);
      continue;
    }
    for (auto& [id, state] : response.observed) {
      result.observed[id] = std::move(state);
    }
  }
  return unconfirmedGone;
}

// Engine::plan's ordering: each action's dependencies, then deletes first (dependents before
// what they reference), then the rest (references first), in the graph's topological order.
// `deleted`: the references of objects planned for deletion, from their stored spec.
void orderActions(const DependencyGraph& graph,
                  const std::vector<std::pair<ObjectId, std::vector<Reference>>>& deleted,
                  std::vector<PlanAction>& actions) {
  // The graph for ordering also covers deletes. It is copied only when deletes add to it, and
  // sorted only when there is more than one action: a no-op reconcile, the common case, does
  // neither (at 10k objects they took some 15 ms, a quarter of the engine's own share of a plan).
  const DependencyGraph* order = &graph;
  DependencyGraph withDeletes;
  if (!deleted.empty()) {
    withDeletes = graph;
    for (const auto& [id, refs] : deleted) {
      withDeletes.addNode(id);
      for (const auto& ref : refs) {
        withDeletes.addEdge(id, ref.target);
      }
    }
    order = &withDeletes;
  }
  for (auto& a : actions) {
    const auto& deps = order->dependencies(a.id);
    a.dependsOn.assign(deps.begin(), deps.end());
  }
  if (actions.size() > 1) {
    // The actions' order in the whole graph's, from the part of it they depend on.
    std::vector<ObjectId> ids;
    ids.reserve(actions.size());
    for (const auto& a : actions) {
      ids.push_back(a.id);
    }
    std::map<ObjectId, size_t> rank;
    size_t i = 0;
    for (const auto& id : order->topologicalOrderOf(ids)) {
      rank[id] = i++;
    }
    std::stable_sort(actions.begin(), actions.end(), [&](const PlanAction& a, const PlanAction& b) {
      bool aDel = a.type == ActionType::Delete;
      bool bDel = b.type == ActionType::Delete;
      if (aDel != bDel) {
        return aDel;
      }
      size_t ra = rank[a.id];
      size_t rb = rank[b.id];
      return aDel ? ra > rb : ra < rb;
    });
  }
}

}  // namespace

const Object* Revision::find(const ObjectId& id) const {
  auto it = std::lower_bound(objects.begin(), objects.end(), id,
                             [](const auto& o, const ObjectId& key) { return o->id < key; });
  return it != objects.end() && (*it)->id == id ? it->get() : nullptr;
}

bool ApplyReport::ok() const { return failed() == 0 && inProgress() == 0; }

size_t ApplyReport::failed() const {
  return static_cast<size_t>(std::count_if(outcomes.begin(), outcomes.end(), [](const auto& o) {
    return (o.skipped || !o.status.isOk()) && !o.inProgress && !o.waiting;
  }));
}

size_t ApplyReport::inProgress() const {
  return static_cast<size_t>(std::count_if(
      outcomes.begin(), outcomes.end(), [](const auto& o) { return o.inProgress || o.waiting; }));
}

Object objectFromRecord(const ManagedRecord& record) {
  Object o;
  o.id = record.id;
  o.labels = record.labels;
  o.spec = record.spec;
  o.where = {"(inventory)", 0, 0};
  return o;
}

Engine::Engine(std::vector<std::unique_ptr<Provider>> providers,
               std::shared_ptr<const SchemaRegistry> schemas)
    : providers_(std::move(providers)), schemas_(schemas), loader_(std::move(schemas)) {
  for (const auto& p : providers_) {
    for (const auto& kind : p->kinds()) {
      byKind_[kind] = p.get();
    }
  }
}

Engine::Engine(std::vector<std::unique_ptr<Provider>> providers, const KindRegistry& kinds)
    : Engine(std::move(providers), kinds.schemas()) {
  secretFields_ = kinds.secretFields();
  fileSources_ = kinds.fileSources();
  loader_ = ManifestLoader(schemas_, LoaderLimits{}, fileSources_);
}

Provider* Engine::providerForKind(const std::string& kind) const {
  auto it = byKind_.find(kind);
  return it == byKind_.end() ? nullptr : it->second;
}

RevisionResult Engine::load(const std::vector<SourceFile>& files, const SourceTree* tree,
                            const RecordList* shareSpecs, const std::string& name) {
  LoadResult loaded = loader_.load(files, tree, shareSpecs);
  if (loaded.unchanged && lastRevision_ && lastRevision_->content == loaded.revision) {
    const std::string& id = name.empty() ? loaded.revision : name;
    if (lastRevision_->id != id) {
      auto renamed = std::make_shared<Revision>(*lastRevision_);
      renamed->id = id;
      lastRevision_ = std::move(renamed);
    }
    RevisionResult result;
    result.revision = lastRevision_;
    result.id = loaded.revision;
    result.unchanged = true;
    return result;
  }
  RevisionResult result = check(std::move(loaded), name, lastRevision_.get());
  lastRevision_ = result.revision;  // null after a rejected revision
  return result;
}

RevisionResult Engine::loadDetached(const std::vector<SourceFile>& files,
                                    const SourceTree* tree) const {
  ManifestLoader loader(schemas_, LoaderLimits{}, fileSources_);
  return check(loader.load(files, tree));
}

namespace {

bool sameReferences(const std::vector<Reference>& a, const std::vector<Reference>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.fieldPath == y.fieldPath && x.target == y.target;
  });
}

}  // namespace

bool Engine::sameGraphAs(const Revision& revision, const Revision& previous) const {
  if (revision.objects.size() != previous.objects.size()) {
    return false;
  }
  ProviderByKind providerOf(*this);
  for (size_t i = 0; i < revision.objects.size(); ++i) {
    const Object& now = *revision.objects[i];
    const Object& before = *previous.objects[i];
    if (&now == &before) {
      continue;  // the loader's cache: the very object parsed for the previous revision
    }
    if (now.id != before.id) {
      return false;
    }
    Provider* p = providerOf(now.id.kind);
    if (!p || !sameReferences(p->references(now), p->references(before))) {
      return false;
    }
  }
  return true;
}

void Engine::buildGraph(Revision& revision, Diagnostics& diagnostics) const {
  ProviderByKind providerOf(*this);
  for (const auto& o : revision.objects) {
    revision.graph.addNode(o->id);
    Provider* p = providerOf(o->id.kind);
    if (!p) {
      continue;
    }
    for (const auto& ref : p->references(*o)) {
      if (!revision.find(ref.target)) {
        diagnostics.add({Severity::Error, o->locate(ref.fieldPath), o->id, ref.fieldPath,
                         "refers to " + ref.target.str() +
                             ", which is not defined in this revision " +
                             "(expected the name of a " + ref.target.kind + " in the manifests)"});
        continue;
      }
      revision.graph.addEdge(o->id, ref.target);
    }
  }
  for (const auto& cycle : revision.graph.cycles()) {
    std::string text;
    for (const auto& id : cycle) {
      text += id.str() + " -> ";
    }
    text += cycle.front().str();
    const Object* first = revision.find(cycle.front());
    diagnostics.add({Severity::Error, first ? first->where : SourceLocation{}, cycle.front(), "",
                     "reference cycle: " + text + " (expected references to form no loop)"});
  }
}

RevisionResult Engine::check(LoadResult loaded, const std::string& name,
                             const Revision* previous) const {
  RevisionResult result;
  result.id = loaded.revision;
  result.diagnostics = std::move(loaded.diagnostics);

  auto revision = std::make_shared<Revision>();
  revision->id = name.empty() ? loaded.revision : name;
  revision->content = loaded.revision;
  revision->objects = std::move(loaded.objects);

  ProviderByKind providerOf(*this);
  // Semantic validation, one batch per provider.
  std::map<Provider*, ValidateRequest> requests;
  for (const auto& o : revision->objects) {
    Provider* p = providerOf(o->id.kind);
    if (!p) {
      result.diagnostics.add({Severity::Error, o->locate("kind"), o->id, "kind",
                              "no provider handles kind \"" + o->id.kind + "\""});
      continue;
    }
    requests[p].objects.push_back(o.get());
    requests[p].revision = &revision->objects;
  }
  for (auto& [provider, request] : requests) {
    ValidateResponse response;
    provider->validate(request, response);
    for (auto& d : response.diagnostics.items()) {
      if (!d.where.known()) {
        for (const auto* o : request.objects) {
          if (o->id == d.object) {
            d.where = o->locate(d.fieldPath);
            break;
          }
        }
      }
    }
    result.diagnostics.append(response.diagnostics);
  }

  // The dependency graph: a reference to a missing object is an error on the referrer. The
  // previous revision's when this one has its ids and references (a push that changes one
  // object's fields among 10k): every target is then defined and there is no cycle, as there.
  if (previous && sameGraphAs(*revision, *previous)) {
    revision->graph = previous->graph;
  } else {
    buildGraph(*revision, result.diagnostics);
  }

  if (result.diagnostics.hasErrors()) {
    return result;
  }
  result.revision = std::move(revision);
  return result;
}

PlanResult Engine::plan(const Revision& revision, const RecordList& managed,
                        const PlanOptions& options) {
  PlanResult result;
  result.plan.revision = revision.id;

  ProviderByKind providerOf(*this);

  std::vector<const ManagedRecord*> recordOf;  // of revision.objects[i]
  std::vector<bool> inRevision;                // of managed[j]
  RecordIndex(managed).match(revision.objects, recordOf, inRevision);

  std::vector<const ManagedRecord*> unconfirmedGone =
      observeAll(revision, managed, options, providerOf, result);
  if (result.diagnostics.hasErrors()) {
    return result;
  }

  // The references of objects planned for deletion, from their stored spec: ordering needs them.
  std::vector<std::pair<ObjectId, std::vector<Reference>>> deleted;
  std::vector<PlanAction> actions;
  auto planOne = [&](Provider* provider, const ObjectId& id, const Object* desired,
                     const ManagedRecord* record, const ObservedState* observed) {
    PlanRequest req;
    req.id = id;
    req.desired = desired;
    req.managed = record;
    req.observed = observed;
    PlanResponse resp;
    provider->plan(req, resp);
    if (!resp.diagnostics.empty()) {
      for (auto& d : resp.diagnostics.items()) {
        if (d.object.empty()) {
          d.object = id;
        }
        if (!d.where.known() && desired) {
          d.where = desired->locate(d.fieldPath);
        }
      }
      result.diagnostics.append(resp.diagnostics);
    }
    if (resp.action) {
      resp.action->id = id;
      resp.action->provider = provider->name();
      // Whatever the provider put in its changes, a secret field's value leaves here hidden.
      if (auto secrets = secretFields_.find(id.kind); secrets != secretFields_.end()) {
        for (auto& change : resp.action->changes) {
          secrets->second.redact(change);
        }
      }
      actions.push_back(std::move(*resp.action));
    }
  };

  auto inScope = [&](const ObjectId& id) {
    return options.scope == nullptr ||
           std::binary_search(options.scope->begin(), options.scope->end(), id);
  };
  // The observed map is sorted like the objects, so one forward walk finds each one's state.
  auto obs = result.observed.begin();
  for (size_t i = 0; i < revision.objects.size(); ++i) {
    const Object& o = *revision.objects[i];
    Provider* p = providerOf(o.id.kind);
    if (!p || !inScope(o.id)) {
      continue;  // load rejects a kind without a provider
    }
    while (obs != result.observed.end() && obs->first < o.id) {
      ++obs;
    }
    const ObservedState* observed =
        obs != result.observed.end() && obs->first == o.id ? &obs->second : nullptr;
    planOne(p, o.id, &o, recordOf[i], observed);
  }
  for (size_t j = 0; j < managed.size(); ++j) {
    const ManagedRecord& r = managed[j];
    if (inRevision[j]) {
      continue;
    }
    Provider* p = providerOf(r.id.kind);
    if (!p) {
      continue;
    }
    if (!options.prune) {
      result.plan.orphans.push_back(r.id);
      continue;
    }
    if (!inScope(r.id)) {
      continue;
    }
    deleted.emplace_back(r.id, p->references(objectFromRecord(r)));
    auto seen = result.observed.find(r.id);
    planOne(p, r.id, nullptr, &r, seen == result.observed.end() ? nullptr : &seen->second);
  }
  for (const ManagedRecord* r : unconfirmedGone) {
    Provider* p = providerOf(r->id.kind);
    if (options.prune && !inScope(r->id)) {
      continue;
    }
    if (!options.prune) {
      result.plan.orphans.push_back(r->id);
      continue;
    }
    deleted.emplace_back(r->id, p->references(objectFromRecord(*r)));
    auto seen = result.observed.find(r->id);
    planOne(p, r->id, nullptr, r, seen == result.observed.end() ? nullptr : &seen->second);
  }

  orderActions(revision.graph, deleted, actions);
  result.plan.actions = std::move(actions);
  return result;
}

namespace {

// Whether a provider could see a difference between two objects of one id: the parts of an
// Object a provider reads (not where it is written).
bool sameToProviders(const Object& a, const Object& b) {
  if (&a == &b) {
    return true;  // the loader's cache: an unchanged file's very object
  }
  if (a.spec != b.spec || a.labels != b.labels || a.annotations != b.annotations ||
      a.driftPolicy != b.driftPolicy || a.files.size() != b.files.size()) {
    return false;
  }
  return std::equal(a.files.begin(), a.files.end(), b.files.begin(),
                    [](const auto& x, const auto& y) {
                      return x.first == y.first &&
                             (x.second == y.second ||
                              (x.second && y.second && x.second->digest == y.second->digest));
                    });
}

}  // namespace

std::vector<ObjectId> Engine::movedBetween(const Revision& before, const Revision& after,
                                           const RecordList& managed) const {
  RevisionChange change;
  change.before = &before.objects;
  change.after = &after.objects;
  // Both lists are sorted by id: one merge.
  auto a = before.objects.begin();
  auto b = after.objects.begin();
  while (a != before.objects.end() || b != after.objects.end()) {
    if (b == after.objects.end() || (a != before.objects.end() && (*a)->id < (*b)->id)) {
      change.changed.push_back((*a++)->id);
    } else if (a == before.objects.end() || (*b)->id < (*a)->id) {
      change.changed.push_back((*b++)->id);
    } else {
      if (!sameToProviders(**a, **b)) {
        change.changed.push_back((*b)->id);
      }
      ++a;
      ++b;
    }
  }
  std::vector<ObjectId> moved = change.changed;
  // Records in neither revision: a walk beside the two sorted lists (the inventory's come
  // sorted; RecordIndex sorts others).
  const RecordIndex records(managed);
  records.forEachNotIn(before.objects, after.objects,
                       [&](const ManagedRecord& r) { moved.push_back(r.id); });
  if (!change.changed.empty()) {
    // What each provider says the change moves; every object of one that cannot say.
    std::set<const Provider*> whole;
    for (const auto& p : providers_) {
      const auto* partial = dynamic_cast<const PartialObserve*>(p.get());
      std::optional<std::vector<ObjectId>> also =
          partial ? partial->alsoMovedBy(change) : std::nullopt;
      if (!also) {
        whole.insert(p.get());
        continue;
      }
      moved.insert(moved.end(), also->begin(), also->end());
    }
    // The lists are sorted by kind: a kind's provider is looked up once per run of it.
    const std::string* lastKind = nullptr;
    bool lastWhole = false;
    auto addWhole = [&](const ObjectId& id) {
      if (lastKind == nullptr || *lastKind != id.kind) {
        lastKind = &id.kind;
        lastWhole = whole.count(providerForKind(id.kind)) > 0;
      }
      if (lastWhole) {
        moved.push_back(id);
      }
    };
    if (!whole.empty()) {
      for (const auto& o : before.objects) {
        addWhole(o->id);
      }
      for (const auto& o : after.objects) {
        addWhole(o->id);
      }
      for (const ManagedRecord& r : managed) {
        addWhole(r.id);
      }
    }
  }
  std::sort(moved.begin(), moved.end());
  moved.erase(std::unique(moved.begin(), moved.end()), moved.end());
  return moved;
}

ApplyReport Engine::apply(const Plan& plan, const Revision& revision, const RecordList& managed,
                          Inventory& inventory, const ApplyOptions& options) {
  const RecordIndex records(managed);
  const RecordList none;
  const RecordIndex unconfirmed(options.unconfirmed ? *options.unconfirmed : none);

  // An action's way through here, in three steps: begin (checks, the journal, the request), the
  // provider's apply (alone, or in a batch with others of its provider), end (the record, the
  // journal). A batch begins every action before the host changes and ends each after, so the
  // journal holds every action and a crash anywhere in it is finished by the next apply. The
  // journal entries of a batch are begun in one transaction, its records written in one and its
  // entries ended in one: three commits a batch rather than three an action, and each crash
  // point still lies after what it names is on disk.
  struct Started {
    Provider* provider = nullptr;
    int64_t journalId = 0;
    std::string step;  // "Kind/name Create", for crash points
    ApplyRequest req;
  };
  // The checks before anything is written.
  auto check = [&](const PlanAction& action, Started& s) -> Status {
    Provider* provider = providerForKind(action.id.kind);
    if (!provider) {
      return Status::error("no provider handles kind " + action.id.kind);
    }
    if (options.cancel && options.cancel->load()) {
      return Status::error("cancelled: " + action.id.str() +
                           " not started because hyper is stopping");
    }
    const Object* desired = action.type == ActionType::Delete ? nullptr : revision.find(action.id);
    if (action.type != ActionType::Delete && !desired) {
      return Status::error(action.id.str() + " is not in revision " + revision.id);
    }
    const ManagedRecord* record = records.find(action.id);
    if (record == nullptr && action.type == ActionType::Delete) {
      record = unconfirmed.find(action.id);
    }
    // The crash points around each step: tests/integration/crash_points_test.cc kills the
    // process at each in turn and proves the next apply finishes the work.
    s.step = action.id.str() + " " + actionTypeName(action.type);
    s.provider = provider;
    ApplyRequest& req = s.req;
    req.action = &action;
    req.desired = desired;
    req.managed = record;
    req.cancel = options.cancel;
    req.mayDefer = options.deferLongWork;
    if (options.actionTimeout.count() > 0) {
      req.deadline = ApplyRequest::Clock::now() + options.actionTimeout;
    }
    return Status::ok();
  };
  // Journals the checked actions `which` (indexes into `started`) in one transaction, then reads
  // what each references. An action that fails here is ended and its result set.
  auto begin = [&](std::vector<Started>& started, std::vector<size_t>& which,
                   std::vector<ActionResult>& results) {
    std::vector<Inventory::JournalStart> starts;
    for (size_t k : which) {
      const Object* desired = started[k].req.desired;
      starts.push_back({started[k].req.action, desired ? &desired->spec.get() : nullptr});
    }
    auto ids = inventory.journalBeginAll(options.reconcileId, starts);
    if (!ids.isOk()) {
      for (size_t k : which) {
        results[k] = ids.status();
      }
      which.clear();
      return;
    }
    std::vector<size_t> begun;
    for (size_t j = 0; j < which.size(); ++j) {
      Started& s = started[which[j]];
      s.journalId = (*ids)[j];
      crashPoint("journal-begun " + s.step);
    }
    for (size_t k : which) {
      Started& s = started[k];
      Status referenced = Status::ok();
      if (s.req.action->type != ActionType::Delete) {
        for (const ObjectId& dep : s.req.action->dependsOn) {
          auto current = inventory.get(dep);
          if (!current.isOk()) {
            referenced = current.status();
            break;
          }
          if (*current) {
            s.req.references.emplace(dep, std::move(**current));
          }
        }
      }
      if (!referenced.isOk()) {
        (void)inventory.journalEnd(s.journalId, false, referenced.message());
        results[k] = referenced;
        continue;
      }
      begun.push_back(k);
    }
    which = std::move(begun);
  };
  // Ends the applied actions `which` with their responses: the records of those that succeeded
  // in one transaction, then every journal entry in one.
  auto end = [&](std::vector<Started>& started, const std::vector<size_t>& which,
                 std::vector<ApplyResponse>& responses, std::vector<ActionResult>& results) {
    std::vector<Inventory::JournalOutcome> outcomes;
    std::vector<Inventory::RecordWrite> writes;
    std::vector<size_t> changed;
    for (size_t j = 0; j < which.size(); ++j) {
      Started& s = started[which[j]];
      ApplyResponse& resp = responses[j];
      const PlanAction& action = *s.req.action;
      if (resp.inProgress && !resp.diagnostics.hasErrors()) {
        // Taken, not done: nothing is recorded; the next reconcile asks again.
        outcomes.push_back({s.journalId, false, "in progress"});
        ActionResult pending(Status::error(
            std::string(actionTypeName(action.type)) + " " + action.id.str() + ": in progress" +
            (resp.progress.empty() ? "" : " (" + resp.progress + ")")));
        pending.inProgress = true;
        pending.retryAfter = resp.retryAfter;
        results[which[j]] = pending;
        continue;
      }
      if (resp.diagnostics.hasErrors()) {
        std::string message = std::string(actionTypeName(action.type)) + " " + action.id.str() +
                              " <- " + firstError(resp.diagnostics);
        outcomes.push_back({s.journalId, false, message});
        ActionResult failed(Status::error(message));
        failed.retryAfter = resp.retryAfter;
        failed.terminal = resp.terminal;
        results[which[j]] = failed;
        continue;
      }
      crashPoint("host-changed " + s.step);
      if (action.type == ActionType::Delete) {
        writes.push_back({action.id, std::nullopt});
      } else {
        const Object* desired = s.req.desired;
        ManagedRecord next;
        next.id = action.id;
        next.provider = s.provider->name();
        next.labels = desired->labels;
        next.spec = desired->spec;
        next.specHash = sha256Hex(canonicalJson(desired->spec));
        next.handles = std::move(resp.handles);
        next.fingerprint = std::move(resp.fingerprint);
        next.revision = revision.id;
        next.appliedAt = nowSeconds();
        writes.push_back({action.id, std::move(next)});
      }
      changed.push_back(which[j]);
    }
    Status recorded = inventory.write(writes);
    for (size_t k : changed) {
      if (recorded.isOk()) {
        crashPoint("recorded " + started[k].step);
      }
      outcomes.push_back({started[k].journalId, recorded.isOk(), recorded.message()});
    }
    Status ended = inventory.journalEndAll(outcomes);
    for (size_t k : changed) {
      results[k] = recorded.isOk() ? ended : recorded;
      if (recorded.isOk()) {
        crashPoint("journal-ended " + started[k].step);
      }
    }
  };
  ActionRunner run = [&](const PlanAction& action) -> ActionResult {
    std::vector<Started> started(1);
    std::vector<ActionResult> results(1);
    HYPER_RETURN_IF_ERROR(check(action, started[0]));
    std::vector<size_t> which{0};
    begin(started, which, results);
    if (which.empty()) {
      return results[0];
    }
    std::vector<ApplyResponse> responses(1);
    started[0].provider->apply(started[0].req, responses[0]);
    end(started, which, responses, results);
    return results[0];
  };
  // Actions of one provider that batches (Provider::batchesApplies), ready together.
  BatchRunner runBatch = [&](const std::vector<const PlanAction*>& actions) {
    std::vector<ActionResult> results(actions.size());
    std::vector<Started> started(actions.size());
    std::vector<size_t> going;
    for (size_t k = 0; k < actions.size(); ++k) {
      Status checked = check(*actions[k], started[k]);
      if (!checked.isOk()) {
        results[k] = checked;
        continue;
      }
      if (!going.empty() && started[k].provider != started[going.front()].provider) {
        // The executor batches by provider: this cannot happen, and must not go unnoticed.
        results[k] = Status::error(actions[k]->id.str() + " was batched with another provider");
        continue;
      }
      going.push_back(k);
    }
    begin(started, going, results);
    if (going.empty()) {
      return results;
    }
    std::vector<const ApplyRequest*> requests;
    for (size_t k : going) {
      requests.push_back(&started[k].req);
    }
    std::vector<ApplyResponse> responses;
    started[going.front()].provider->applyBatch(requests, responses);
    for (size_t j = responses.size(); j < going.size(); ++j) {
      responses.emplace_back();
      responses.back().diagnostics.error(actions[going[j]]->id, "",
                                         "the provider gave no answer for it in its batch");
    }
    end(started, going, responses, results);
    return results;
  };

  ApplyReport report;
  ExecutorOptions executor{options.parallelism};
  executor.batchKey = [&](const PlanAction& action) -> std::string {
    Provider* p = providerForKind(action.id.kind);
    return p && p->batchesApplies() ? p->name() : std::string();
  };
  executor.runBatch = runBatch;
  executor.batchTakesDependents = [&](const PlanAction& action) {
    Provider* p = providerForKind(action.id.kind);
    return p && p->batchesApplies() && p->batchesDependents();
  };
  report.outcomes = executePlan(plan, run, executor);

  // Objects that needed no host change but whose labels or spec moved (e.g. a label edit) get
  // their record refreshed, so the inventory always holds what the source says. hyperd runs this
  // after every reconcile, so the values are compared rather than every spec hashed (hyper_bench:
  // that took some 40 ms at 10k objects); only a record rewritten is hashed.
  std::set<ObjectId> acted;
  for (const auto& a : plan.actions) {
    acted.insert(a.id);
  }
  std::vector<const ManagedRecord*> recordOf;
  std::vector<bool> inRevision;
  records.match(revision.objects, recordOf, inRevision);
  for (size_t i = 0; i < revision.objects.size(); ++i) {
    const Object& o = *revision.objects[i];
    if (!recordOf[i] || acted.count(o.id)) {
      continue;
    }
    const ManagedRecord& old = *recordOf[i];
    if (old.labels == o.labels && old.spec == o.spec) {
      continue;
    }
    ManagedRecord next = old;
    next.labels = o.labels;
    next.spec = o.spec;
    next.specHash = sha256Hex(canonicalJson(o.spec));
    next.revision = revision.id;
    (void)inventory.put(next);
  }

  RevisionEntry entry;
  entry.revision = revision.id;
  entry.planHash = plan.hash();
  entry.result =
      report.ok() ? "applied" : (report.failed() == plan.actions.size() ? "failed" : "partial");
  entry.at = nowSeconds();
  entry.content = revision.content;
  entry.converged = options.wholePlan && report.ok();
  (void)inventory.recordRevision(entry);
  return report;
}

std::map<ObjectId, ObservedState> Engine::observeManaged(const RecordList& managed,
                                                         const RecordList& inventory,
                                                         Diagnostics& diagnostics) {
  std::vector<std::shared_ptr<const Object>> revision;
  revision.reserve(inventory.size());
  for (const auto& r : inventory) {
    revision.push_back(std::make_shared<const Object>(objectFromRecord(r)));
  }
  std::map<Provider*, ObserveRequest> requests;
  for (const auto& r : managed) {
    if (Provider* p = providerForKind(r.id.kind)) {
      ObserveRequest& req = requests[p];
      req.managed.push_back(&r);
      req.revision = &revision;
      req.inventory = &inventory;
    }
  }
  std::map<ObjectId, ObservedState> out;
  for (auto& [provider, request] : requests) {
    ObserveResponse response;
    provider->observe(request, response);
    diagnostics.append(response.diagnostics);
    for (auto& [id, state] : response.observed) {
      out[id] = std::move(state);
    }
  }
  return out;
}

}  // namespace hyper
