#include "reconciler/engine.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "reconciler/inventory.h"
#include "reconciler/schema.h"
#include "tests/fakes/fake_provider.h"

namespace hyper {
namespace {

namespace fs = std::filesystem;
using testing::FakeProvider;

// The built-in schemas plus one for the fake's kind, which accepts any spec mapping: what a
// FakeThing spec means is left to FakeProvider.
std::shared_ptr<const SchemaRegistry> schemasWithFakeThing() {
  std::vector<EmbeddedSchema> all = embeddedSchemas();
  all.push_back({"fake.schema.json", "{\"x-hyper-kind\":\"FakeThing\",\"type\":\"object\"}"});
  auto r = SchemaRegistry::fromSchemas(all);
  EXPECT_TRUE(r.isOk()) << r.status().message();
  return r.isOk() ? *r : nullptr;
}

ObjectId fakeId(const std::string& name) { return {"FakeThing", name}; }

// One FakeThing document. Spec lines are written under "spec:" indented by two spaces, so the
// first spec line is line 6 of the document, at column 3.
std::string thing(const std::string& name, const std::vector<std::string>& specLines = {}) {
  std::string doc =
      "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata:\n  name: " + name + "\n";
  if (specLines.empty()) {
    return doc + "spec: {}\n";
  }
  doc += "spec:\n";
  for (const auto& line : specLines) {
    doc += "  " + line + "\n";
  }
  return doc;
}

// Several documents in one file.
std::string documents(const std::vector<std::string>& docs) {
  std::string out;
  for (size_t i = 0; i < docs.size(); ++i) {
    out += (i > 0 ? "---\n" : "") + docs[i];
  }
  return out;
}

std::vector<ObjectId> actionIds(const Plan& plan) {
  std::vector<ObjectId> ids;
  for (const auto& a : plan.actions) {
    ids.push_back(a.id);
  }
  return ids;
}

// Position of `id` in `ids`, or -1 when absent.
int indexOf(const std::vector<ObjectId>& ids, const ObjectId& id) {
  auto it = std::find(ids.begin(), ids.end(), id);
  return it == ids.end() ? -1 : static_cast<int>(it - ids.begin());
}

std::string names(const std::vector<ObjectId>& ids) {
  std::string out;
  for (const auto& id : ids) {
    out += (out.empty() ? "" : ", ") + id.str();
  }
  return out;
}

// A real engine with one FakeProvider and a real SQLite inventory in a fresh temp directory.
class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "hyper-engine-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    auto inventory = Inventory::open(dir_ + "/state");
    ASSERT_TRUE(inventory.isOk()) << inventory.status().message();
    inventory_ = std::move(inventory).value();
    auto schemas = schemasWithFakeThing();
    ASSERT_NE(schemas, nullptr);
    auto fake = std::make_unique<FakeProvider>();
    fake_ = fake.get();
    std::vector<std::unique_ptr<Provider>> providers;
    providers.push_back(std::move(fake));
    engine_ = std::make_unique<Engine>(std::move(providers), std::move(schemas));
  }

  void TearDown() override {
    engine_.reset();
    inventory_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::vector<ManagedRecord> managed() const {
    auto records = inventory_->list();
    EXPECT_TRUE(records.isOk()) << records.status().message();
    return records.isOk() ? *records : std::vector<ManagedRecord>{};
  }

  std::map<ObjectId, ManagedRecord> inventoryById() const {
    std::map<ObjectId, ManagedRecord> out;
    for (auto& r : managed()) {
      out[r.id] = r;
    }
    return out;
  }

  // Loads a revision that is expected to be valid.
  std::shared_ptr<const Revision> loadValid(const std::vector<SourceFile>& files) {
    RevisionResult r = engine_->load(files);
    EXPECT_NE(r.revision, nullptr) << r.diagnostics.format();
    EXPECT_FALSE(r.diagnostics.hasErrors()) << r.diagnostics.format();
    return r.revision;
  }

  // Plans against the current inventory; the plan is expected to carry no errors.
  Plan planFor(const Revision& revision, bool prune = false) {
    PlanResult r = engine_->plan(revision, managed(), PlanOptions{prune});
    EXPECT_FALSE(r.diagnostics.hasErrors()) << r.diagnostics.format();
    return r.plan;
  }

  ApplyReport applyPlan(const Plan& plan, const Revision& revision, int parallelism = 4) {
    ApplyOptions options;
    options.parallelism = parallelism;
    options.reconcileId = "rc-test";
    return engine_->apply(plan, revision, managed(), *inventory_, options);
  }

  // plan + apply, expecting every action to succeed. Returns the plan that was applied.
  Plan reconcile(const Revision& revision, bool prune = false) {
    Plan plan = planFor(revision, prune);
    ApplyReport report = applyPlan(plan, revision);
    EXPECT_TRUE(report.ok()) << plan.render();
    EXPECT_EQ(report.outcomes.size(), plan.actions.size());
    return plan;
  }

  std::string dir_;
  std::unique_ptr<Inventory> inventory_;
  FakeProvider* fake_ = nullptr;  // owned by engine_
  std::unique_ptr<Engine> engine_;
};

// --- Rejected revisions: every error names where it is, which object and which field. ---

struct RejectCase {
  std::string name;
  std::vector<SourceFile> files;
  std::string where;      // "file:line:column"
  std::string object;     // "FakeThing/a"
  std::string fieldPath;  // "" for the whole document
  std::string message;    // a substring of the summary
};

// Names the case in test output instead of dumping its bytes.
void PrintTo(const RejectCase& c, std::ostream* os) { *os << c.name; }

class EngineRejectsRevisionTest : public EngineTest,
                                  public ::testing::WithParamInterface<RejectCase> {};

TEST_P(EngineRejectsRevisionTest, NamesLocationObjectAndField) {
  const RejectCase& c = GetParam();
  RevisionResult r = engine_->load(c.files);
  EXPECT_EQ(r.revision, nullptr) << "a revision with an error must be rejected as a whole";
  EXPECT_FALSE(r.unchanged);
  ASSERT_TRUE(r.diagnostics.hasErrors());
  bool matched = false;
  for (const auto& d : r.diagnostics.items()) {
    if (d.severity == Severity::Error && d.where.str() == c.where &&
        (d.object.empty() ? std::string() : d.object.str()) == c.object &&
        d.fieldPath == c.fieldPath && d.summary.find(c.message) != std::string::npos) {
      matched = true;
    }
  }
  EXPECT_TRUE(matched) << "expected " << c.where << " " << c.object << " " << c.fieldPath << " ~ \""
                       << c.message << "\", got:\n"
                       << r.diagnostics.format();
  // Loading is pure: validation never looks at or touches the host.
  EXPECT_EQ(fake_->observeCalls(), 0);
  EXPECT_EQ(fake_->applyCalls(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, EngineRejectsRevisionTest,
    ::testing::Values(
        RejectCase{"MissingReference",
                   {{"m/a.yaml", thing("a", {"size: 1", "dependsOn: ghost"})}},
                   "m/a.yaml:7:3",
                   "FakeThing/a",
                   "spec.dependsOn",
                   "refers to FakeThing/ghost, which is not defined in this revision"},
        RejectCase{"MissingReferenceOfAnotherKindInAList",
                   {{"m/a.yaml", thing("a", {"dependsOnKind: Network", "dependsOn:", "  - lab"})},
                    {"m/b.yaml", thing("lab")}},
                   "m/a.yaml:8:7",
                   "FakeThing/a",
                   "spec.dependsOn[0]",
                   "refers to Network/lab, which is not defined"},
        RejectCase{"ReferenceCycle",
                   {{"m/cycle.yaml",
                     documents({thing("a", {"dependsOn: b"}), thing("b", {"dependsOn: a"})})}},
                   "m/cycle.yaml:1:1",
                   "FakeThing/a",
                   "",
                   "reference cycle: FakeThing/a -> FakeThing/b -> FakeThing/a"},
        RejectCase{"ReferenceCycleAcrossFiles",
                   {{"m/1.yaml", thing("x", {"dependsOn: y"})},
                    {"m/2.yaml", thing("y", {"dependsOn: z"})},
                    {"m/3.yaml", thing("z", {"dependsOn: x"})},
                    {"m/4.yaml", thing("free")}},
                   "m/1.yaml:1:1",
                   "FakeThing/x",
                   "",
                   "reference cycle: FakeThing/x -> FakeThing/y -> FakeThing/z -> FakeThing/x"},
        RejectCase{"SelfReference",
                   {{"m/a.yaml", thing("a", {"dependsOn: a"})}},
                   "m/a.yaml:1:1",
                   "FakeThing/a",
                   "",
                   "reference cycle: FakeThing/a -> FakeThing/a"},
        // The provider reports only the field path; the engine adds where it is written.
        RejectCase{
            "ProviderValidationError",
            {{"m/x.yaml", documents({thing("ok"), thing("bad", {"size: 3", "invalid: true"})})}},
            "m/x.yaml:13:3",
            "FakeThing/bad",
            "spec.invalid",
            "injected validation error"}),
    [](const auto& info) { return info.param.name; });

// A revision with the last one's ids whose changed objects refer to what they did keeps its
// graph (a push among 10k objects builds none); a changed reference, a new object or a cycle
// builds it again, with what the new references say.
TEST_F(EngineTest, ARevisionThatRefersToWhatTheLastDidKeepsItsGraph) {
  auto files = [](const std::string& aSpec, const std::string& bDependsOn,
                  const std::vector<std::string>& more = {}) {
    std::vector<SourceFile> out = {{"m/a.yaml", thing("a", {aSpec, "dependsOn: c"})},
                                   {"m/b.yaml", thing("b", {"dependsOn: " + bDependsOn})},
                                   {"m/c.yaml", thing("c")},
                                   {"m/d.yaml", thing("d")}};
    for (size_t i = 0; i < more.size(); ++i) {
      out.push_back({"m/more-" + std::to_string(i) + ".yaml", more[i]});
    }
    return out;
  };
  auto deps = [](const Revision& r, const std::string& name) {
    const auto& d = r.graph.dependencies(fakeId(name));
    return std::vector<ObjectId>(d.begin(), d.end());
  };
  auto first = loadValid(files("size: 1", "c"));
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(deps(*first, "b"), std::vector<ObjectId>{fakeId("c")});

  // a's size changed, its reference did not: the same graph.
  auto sized = loadValid(files("size: 2", "c"));
  ASSERT_NE(sized, nullptr);
  EXPECT_NE(sized->find(fakeId("a")), first->find(fakeId("a")));
  EXPECT_TRUE(sized->graph.sharesEdgesWith(first->graph));

  // b now depends on d: its own graph, with the new edge and without the old one.
  auto moved = loadValid(files("size: 2", "d"));
  ASSERT_NE(moved, nullptr);
  EXPECT_FALSE(moved->graph.sharesEdgesWith(sized->graph));
  EXPECT_EQ(deps(*moved, "b"), std::vector<ObjectId>{fakeId("d")});
  EXPECT_EQ(deps(*sized, "b"), std::vector<ObjectId>{fakeId("c")});  // the old one untouched
  Plan plan = planFor(*moved);
  EXPECT_LT(indexOf(actionIds(plan), fakeId("d")), indexOf(actionIds(plan), fakeId("b")));

  // A cycle, and a reference to an object not defined, among otherwise unchanged objects.
  RevisionResult cycle = engine_->load(files("size: 2", "b"));
  EXPECT_EQ(cycle.revision, nullptr);
  EXPECT_NE(cycle.diagnostics.format().find("reference cycle: FakeThing/b -> FakeThing/b"),
            std::string::npos)
      << cycle.diagnostics.format();
  ASSERT_NE(loadValid(files("size: 2", "d")), nullptr);
  RevisionResult ghost = engine_->load(files("size: 2", "ghost"));
  EXPECT_EQ(ghost.revision, nullptr);
  EXPECT_NE(ghost.diagnostics.format().find("refers to FakeThing/ghost"), std::string::npos)
      << ghost.diagnostics.format();
  auto again = loadValid(files("size: 2", "d"));  // after a rejected one: built anew
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(deps(*again, "b"), std::vector<ObjectId>{fakeId("d")});
  RevisionResult looped = engine_->load(files("size: 2", "d", {thing("e")}));
  ASSERT_NE(looped.revision, nullptr) << looped.diagnostics.format();
  EXPECT_TRUE(looped.revision->graph.hasNode(fakeId("e")));
  RevisionResult closed = engine_->load(files("size: 2", "e", {thing("e", {"dependsOn: b"})}));
  EXPECT_EQ(closed.revision, nullptr);
  EXPECT_NE(closed.diagnostics.format().find("reference cycle: FakeThing/b -> FakeThing/e"),
            std::string::npos)
      << closed.diagnostics.format();
}

// --- Ordering ---

TEST_F(EngineTest, PlanAndApplyPutDependenciesBeforeDependents) {
  // Names sort the other way round from the dependencies, so id order alone would be wrong.
  auto revision = loadValid({{"m/things.yaml", documents({
                                                   thing("a-leaf", {"dependsOn: m-middle"}),
                                                   thing("b-free"),
                                                   thing("m-middle", {"dependsOn: z-root"}),
                                                   thing("z-root"),
                                               })}});
  ASSERT_NE(revision, nullptr);
  Plan plan = planFor(*revision);
  ASSERT_EQ(plan.actions.size(), 4u) << plan.render();
  for (const auto& a : plan.actions) {
    EXPECT_EQ(a.type, ActionType::Create) << a.id.str();
    EXPECT_EQ(a.provider, "fake");
  }
  auto planned = actionIds(plan);
  EXPECT_LT(indexOf(planned, fakeId("z-root")), indexOf(planned, fakeId("m-middle")))
      << names(planned);
  EXPECT_LT(indexOf(planned, fakeId("m-middle")), indexOf(planned, fakeId("a-leaf")))
      << names(planned);
  const PlanAction& leaf = plan.actions[indexOf(planned, fakeId("a-leaf"))];
  EXPECT_EQ(leaf.dependsOn, std::vector<ObjectId>{fakeId("m-middle")});

  // A slow apply gives a wrong executor every chance to start a dependent early.
  fake_->setApplyDelay(std::chrono::milliseconds(20));
  ApplyReport report = applyPlan(plan, *revision, /*parallelism=*/4);
  EXPECT_TRUE(report.ok());
  auto applied = fake_->applyOrder();
  ASSERT_EQ(applied.size(), 4u) << names(applied);
  EXPECT_LT(indexOf(applied, fakeId("z-root")), indexOf(applied, fakeId("m-middle")))
      << names(applied);
  EXPECT_LT(indexOf(applied, fakeId("m-middle")), indexOf(applied, fakeId("a-leaf")))
      << names(applied);
}

TEST_F(EngineTest, ChainNeverOverlapsEvenWithSpareWorkers) {
  auto revision = loadValid({{"m/chain.yaml", documents({
                                                  thing("c1", {"dependsOn: c2"}),
                                                  thing("c2", {"dependsOn: c3"}),
                                                  thing("c3"),
                                              })}});
  ASSERT_NE(revision, nullptr);
  fake_->setApplyDelay(std::chrono::milliseconds(20));
  Plan plan = planFor(*revision);
  ApplyReport report = applyPlan(plan, *revision, /*parallelism=*/4);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(fake_->applyOrder(), (std::vector<ObjectId>{fakeId("c3"), fakeId("c2"), fakeId("c1")}));
  EXPECT_EQ(fake_->maxConcurrentApplies(), 1) << "a dependent started before its dependency ended";
}

// A provider that batches gets the actions ready together in one call, wave by wave; each is
// journaled and recorded on its own, and one failure in a batch is that action's alone.
TEST_F(EngineTest, ABatchingProviderGetsEachWaveInOneCallAndEachActionKeepsItsResult) {
  std::vector<std::string> docs;
  for (int i = 0; i < 6; ++i) {
    docs.push_back(thing("net" + std::to_string(i)));
  }
  docs.push_back(thing("pol0", {"dependsOn: net0"}));
  docs.push_back(thing("pol1", {"dependsOn: net1"}));
  auto revision = loadValid({{"m/a.yaml", documents(docs)}});
  ASSERT_NE(revision, nullptr);
  fake_->setBatches(true);
  fake_->setFailApply({fakeId("net3")});
  Plan plan = planFor(*revision);
  ASSERT_EQ(plan.actions.size(), 8u) << plan.render();
  ApplyReport report = applyPlan(plan, *revision, /*parallelism=*/4);
  EXPECT_EQ(fake_->batchSizes(), (std::vector<size_t>{6, 2}));
  EXPECT_EQ(report.failed(), 1u);
  for (const auto& o : report.outcomes) {
    if (o.id == fakeId("net3")) {
      EXPECT_NE(o.status.message().find("injected failure"), std::string::npos)
          << o.status.message();
    } else {
      EXPECT_TRUE(o.status.isOk()) << o.id.str() << ": " << o.status.message();
    }
  }
  auto records = inventoryById();
  EXPECT_EQ(records.size(), 7u);
  EXPECT_EQ(records.count(fakeId("net3")), 0u);
  auto journal = inventory_->journal(100);
  ASSERT_TRUE(journal.isOk()) << journal.status().message();
  EXPECT_EQ(journal->size(), 8u) << "one journal entry per action, batched or not";

  // Without batching: one apply per action, the same result.
  fake_->setBatches(false);
  fake_->setFailApply({});
  Plan again = planFor(*revision);
  ASSERT_EQ(again.actions.size(), 1u) << again.render();
  EXPECT_TRUE(applyPlan(again, *revision).ok());
  EXPECT_EQ(fake_->batchSizes().size(), 2u);
  EXPECT_EQ(inventoryById().size(), 8u);
}

// An apply sees the records of what its object references as they are after those were applied
// in the same run: a VM gets the digest its Build has just produced.
TEST_F(EngineTest, ApplySeesTheReferencedRecordsAsJustApplied) {
  auto first = loadValid({{"m/a.yaml", documents({thing("user", {"dependsOn: base", "v: 1"}),
                                                  thing("base", {"v: 1"})})}});
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(applyPlan(planFor(*first), *first).ok());
  auto seen = fake_->referencesSeenBy(fakeId("user"));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen.begin()->first, fakeId("base"));
  EXPECT_EQ(seen.begin()->second.spec["v"], 1) << "base was applied first, in this very run";

  auto second = loadValid({{"m/a.yaml", documents({thing("user", {"dependsOn: base", "v: 2"}),
                                                   thing("base", {"v: 2"})})}});
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(applyPlan(planFor(*second), *second).ok());
  seen = fake_->referencesSeenBy(fakeId("user"));
  ASSERT_EQ(seen.count(fakeId("base")), 1u);
  EXPECT_EQ(seen[fakeId("base")].spec["v"], 2) << "not the record from before this apply";
  EXPECT_TRUE(fake_->referencesSeenBy(fakeId("base")).empty());
}

// --- Apply, record, converge ---

TEST_F(EngineTest, ApplyRecordsObjectsAndRevisionThenPlanIsEmpty) {
  auto revision = loadValid({{"m/a.yaml", thing("a", {"size: 1", "color: red"})},
                             {"m/b.yaml", thing("b", {"dependsOn: a"})}});
  ASSERT_NE(revision, nullptr);
  Plan plan = planFor(*revision);
  ASSERT_EQ(plan.actions.size(), 2u) << plan.render();
  EXPECT_EQ(plan.revision, revision->id);

  ApplyReport report = applyPlan(plan, *revision);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report.outcomes.size(), 2u);
  for (const auto& o : report.outcomes) {
    EXPECT_TRUE(o.status.isOk()) << o.id.str() << ": " << o.status.message();
    EXPECT_FALSE(o.skipped);
  }
  EXPECT_EQ(fake_->hostState(fakeId("a")), (Json{{"size", 1}, {"color", "red"}}));
  EXPECT_EQ(fake_->hostState(fakeId("b")), (Json{{"dependsOn", "a"}}));

  auto records = inventoryById();
  ASSERT_EQ(records.size(), 2u);
  for (const auto& [id, r] : records) {
    EXPECT_EQ(r.revision, revision->id) << id.str();
    EXPECT_EQ(r.provider, "fake") << id.str();
    EXPECT_EQ(r.handles, (Json{{"name", id.name}})) << id.str();
    EXPECT_FALSE(r.fingerprint.empty()) << id.str();
    EXPECT_GT(r.appliedAt, 0) << id.str();
  }
  EXPECT_EQ(records[fakeId("a")].spec, (Json{{"size", 1}, {"color", "red"}}));

  auto last = inventory_->lastRevision();
  ASSERT_TRUE(last.isOk()) << last.status().message();
  ASSERT_TRUE(last->has_value());
  EXPECT_EQ((*last)->revision, revision->id);
  EXPECT_EQ((*last)->result, "applied");
  EXPECT_EQ((*last)->planHash, plan.hash());

  auto journal = inventory_->journal(-1);
  ASSERT_TRUE(journal.isOk()) << journal.status().message();
  ASSERT_EQ(journal->size(), 2u);
  for (const auto& e : *journal) {
    EXPECT_EQ(e.phase, "succeeded") << e.object.str();
    EXPECT_EQ(e.reconcileId, "rc-test");
    EXPECT_EQ(e.action, "create");
  }

  // Observation is one batch per provider, whatever the number of objects.
  fake_->resetCounters();
  Plan again = planFor(*revision);
  EXPECT_TRUE(again.empty()) << again.render();
  EXPECT_TRUE(again.orphans.empty());
  EXPECT_EQ(fake_->observeCalls(), 1);
}

TEST_F(EngineTest, ObserveFailureYieldsAPlanWithErrorsAndNoActions) {
  auto revision = loadValid({{"m/a.yaml", thing("a")}});
  ASSERT_NE(revision, nullptr);
  fake_->setFailObserve(true);
  PlanResult r = engine_->plan(*revision, managed(), PlanOptions{});
  EXPECT_TRUE(r.diagnostics.hasErrors());
  EXPECT_NE(r.diagnostics.format().find("injected observe failure"), std::string::npos)
      << r.diagnostics.format();
  // Without knowing the host, "not there" must not turn into a create.
  EXPECT_TRUE(r.plan.empty()) << r.plan.render();
}

TEST_F(EngineTest, DriftOnTheHostIsPlannedForExactlyThatObject) {
  auto revision = loadValid(
      {{"m/all.yaml",
        documents({thing("a", {"size: 1"}), thing("b", {"size: 2"}), thing("c", {"size: 3"})})}});
  ASSERT_NE(revision, nullptr);
  reconcile(*revision);

  fake_->setHostState(fakeId("b"), {{"size", 20}});
  Plan plan = planFor(*revision);
  ASSERT_EQ(plan.actions.size(), 1u) << plan.render();
  const PlanAction& update = plan.actions[0];
  EXPECT_EQ(update.id, fakeId("b"));
  EXPECT_EQ(update.type, ActionType::Update);
  EXPECT_TRUE(update.drift) << "the source did not change, the host did";
  ASSERT_EQ(update.changes.size(), 1u);
  EXPECT_EQ(update.changes[0].path, "spec.size");
  EXPECT_EQ(update.changes[0].before, 20);
  EXPECT_EQ(update.changes[0].after, 2);

  // An object deleted by hand is recreated, also as drift.
  fake_->eraseHostState(fakeId("c"));
  plan = planFor(*revision);
  ASSERT_EQ(plan.actions.size(), 2u) << plan.render();
  auto ids = actionIds(plan);
  ASSERT_NE(indexOf(ids, fakeId("c")), -1) << names(ids);
  const PlanAction& recreate = plan.actions[indexOf(ids, fakeId("c"))];
  EXPECT_EQ(recreate.type, ActionType::Create);
  EXPECT_TRUE(recreate.drift);

  ApplyReport report = applyPlan(plan, *revision);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(fake_->hostState(fakeId("b")), (Json{{"size", 2}}));
  EXPECT_EQ(fake_->hostState(fakeId("c")), (Json{{"size", 3}}));
  EXPECT_TRUE(planFor(*revision).empty());
}

TEST_F(EngineTest, SourceChangeUpdatesTheRecordAndALabelEditRefreshesIt) {
  auto v1 =
      loadValid({{"m/a.yaml", thing("a", {"size: 1"})}, {"m/b.yaml", thing("b", {"size: 1"})}});
  ASSERT_NE(v1, nullptr);
  reconcile(*v1);

  // a's spec changes; b only gains a label, which the host does not see.
  auto v2 = loadValid({{"m/a.yaml", thing("a", {"size: 2"})},
                       {"m/b.yaml",
                        "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata:\n  name: b\n"
                        "  labels:\n    env: prod\nspec:\n  size: 1\n"}});
  ASSERT_NE(v2, nullptr);
  Plan plan = planFor(*v2);
  ASSERT_EQ(plan.actions.size(), 1u) << plan.render();
  EXPECT_EQ(plan.actions[0].id, fakeId("a"));
  EXPECT_EQ(plan.actions[0].type, ActionType::Update);
  EXPECT_FALSE(plan.actions[0].drift) << "the source changed, not the host";

  fake_->resetCounters();
  ApplyReport report = applyPlan(plan, *v2);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(fake_->applyOrder(), std::vector<ObjectId>{fakeId("a")});
  auto records = inventoryById();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[fakeId("a")].spec, (Json{{"size", 2}}));
  EXPECT_EQ(records[fakeId("a")].revision, v2->id);
  EXPECT_EQ(records[fakeId("b")].labels, (std::map<std::string, std::string>{{"env", "prod"}}));
  EXPECT_EQ(records[fakeId("b")].revision, v2->id);
  EXPECT_TRUE(planFor(*v2).empty());
}

// --- Prune ---

TEST_F(EngineTest, RemovedObjectIsAnOrphanWithoutPruneAndDeletedWithPrune) {
  auto v1 = loadValid({{"m/a.yaml", thing("a")}, {"m/b.yaml", thing("b", {"size: 2"})}});
  ASSERT_NE(v1, nullptr);
  reconcile(*v1);
  auto v2 = loadValid({{"m/a.yaml", thing("a")}});
  ASSERT_NE(v2, nullptr);
  EXPECT_NE(v2->id, v1->id);

  Plan keep = planFor(*v2, /*prune=*/false);
  EXPECT_TRUE(keep.empty()) << keep.render();
  EXPECT_EQ(keep.orphans, std::vector<ObjectId>{fakeId("b")});
  ApplyReport kept = applyPlan(keep, *v2);
  EXPECT_TRUE(kept.ok());
  EXPECT_TRUE(fake_->hostState(fakeId("b"))) << "deleted without --prune";
  EXPECT_EQ(inventoryById().count(fakeId("b")), 1u);

  Plan prune = planFor(*v2, /*prune=*/true);
  ASSERT_EQ(prune.actions.size(), 1u) << prune.render();
  EXPECT_EQ(prune.actions[0].id, fakeId("b"));
  EXPECT_EQ(prune.actions[0].type, ActionType::Delete);
  EXPECT_TRUE(prune.orphans.empty());
  ApplyReport pruned = applyPlan(prune, *v2);
  EXPECT_TRUE(pruned.ok());
  EXPECT_FALSE(fake_->hostState(fakeId("b")));
  EXPECT_TRUE(fake_->hostState(fakeId("a")));
  auto records = inventoryById();
  EXPECT_EQ(records.count(fakeId("b")), 0u);
  EXPECT_EQ(records.count(fakeId("a")), 1u);
  EXPECT_TRUE(planFor(*v2, /*prune=*/true).empty());
}

// A new revision over one the host is in sync with: movedBetween names what it added, removed
// or changed (spec, labels; not where or how it is written), what the provider says that moves
// (all of its objects when it cannot say) and records in neither revision; a plan scoped to
// that observes and plans only those, so a hand change elsewhere waits for a full observe.
TEST_F(EngineTest, AScopedPlanObservesAndPlansOnlyWhatANewRevisionMoved) {
  auto v1 = loadValid({{"m/a.yaml", thing("a", {"size: 1"})},
                       {"m/b.yaml", thing("b", {"size: 1"})},
                       {"m/c.yaml", thing("c", {"size: 1"})},
                       {"m/d.yaml", thing("d", {"size: 1"})},
                       {"m/e.yaml", thing("e", {"size: 1"})}});
  ASSERT_NE(v1, nullptr);
  reconcile(*v1, /*prune=*/true);
  // a's spec changes, b gains a label, c is written differently (the same object), d stays, e
  // leaves and f comes.
  auto v2 = loadValid({{"m/a.yaml", thing("a", {"size: 2"})},
                       {"m/b.yaml",
                        "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata:\n  name: b\n"
                        "  labels:\n    env: prod\nspec:\n  size: 1\n"},
                       {"m/c.yaml", "# moved\n\n" + thing("c", {"size: 1"})},
                       {"m/d.yaml", thing("d", {"size: 1"})},
                       {"m/f.yaml", thing("f", {"size: 1"})}});
  ASSERT_NE(v2, nullptr);
  RecordList records = managed();
  std::vector<ObjectId> all = {fakeId("a"), fakeId("b"), fakeId("c"),
                               fakeId("d"), fakeId("e"), fakeId("f")};
  EXPECT_EQ(names(engine_->movedBetween(*v1, *v2, records)), names(all))
      << "a provider that cannot say has all its objects moved";
  fake_->setMoves([](const RevisionChange& change) {
    EXPECT_EQ(names(change.changed), names({fakeId("a"), fakeId("b"), fakeId("e"), fakeId("f")}));
    return std::vector<ObjectId>{};
  });
  const std::vector<ObjectId> moved = engine_->movedBetween(*v1, *v2, records);
  EXPECT_EQ(names(moved), names({fakeId("a"), fakeId("b"), fakeId("e"), fakeId("f")}));
  fake_->setMoves([](const RevisionChange&) { return std::vector<ObjectId>{fakeId("d")}; });
  EXPECT_EQ(names(engine_->movedBetween(*v1, *v2, records)),
            names({fakeId("a"), fakeId("b"), fakeId("d"), fakeId("e"), fakeId("f")}));
  // A record in neither revision is always planned (a delete under prune, or an orphan).
  std::vector<ManagedRecord> withStray = managed();
  ManagedRecord stray = withStray.front();
  stray.id = fakeId("z");
  withStray.push_back(stray);
  std::sort(withStray.begin(), withStray.end(),
            [](const ManagedRecord& x, const ManagedRecord& y) { return x.id < y.id; });
  EXPECT_EQ(names(engine_->movedBetween(*v1, *v2, RecordList(withStray))),
            names({fakeId("a"), fakeId("b"), fakeId("d"), fakeId("e"), fakeId("f"), fakeId("z")}));
  // Nothing changed: nothing moved, whatever the provider would say.
  EXPECT_TRUE(engine_->movedBetween(*v1, *v1, records).empty());

  // c and d drift by hand; the scoped plan sees neither.
  fake_->setHostState(fakeId("c"), {{"size", 7}});
  fake_->setHostState(fakeId("d"), {{"size", 7}});
  PlanOptions scoped{/*prune=*/true};
  scoped.scope = &moved;
  PlanResult r = engine_->plan(*v2, records, scoped);
  ASSERT_FALSE(r.diagnostics.hasErrors()) << r.diagnostics.format();
  EXPECT_EQ(names(fake_->lastObserved()), names(moved));
  EXPECT_EQ(names(actionIds(r.plan)), names({fakeId("e"), fakeId("a"), fakeId("f")}))
      << r.plan.render();
  // Without prune e is an orphan, as in a whole plan.
  PlanOptions kept{/*prune=*/false};
  kept.scope = &moved;
  EXPECT_EQ(engine_->plan(*v2, records, kept).plan.orphans, std::vector<ObjectId>{fakeId("e")});
  // The whole plan finds the drift too.
  Plan whole = planFor(*v2, /*prune=*/true);
  EXPECT_EQ(names(actionIds(whole)),
            names({fakeId("e"), fakeId("a"), fakeId("c"), fakeId("d"), fakeId("f")}))
      << whole.render();
  // A scope no provider has an object in asks none.
  const std::vector<ObjectId> none;
  scoped.scope = &none;
  int observes = fake_->observeCalls();
  EXPECT_TRUE(engine_->plan(*v2, records, scoped).plan.empty());
  EXPECT_EQ(fake_->observeCalls(), observes);
}

// The inventory lists records sorted; other callers may not, and plan and apply match records to
// objects the same either way.
TEST_F(EngineTest, RecordsInAnyOrderAreMatchedToTheirObjects) {
  auto v1 = loadValid(
      {{"m/all.yaml", documents({thing("a", {"size: 1"}), thing("b"), thing("c", {"size: 3"})})}});
  ASSERT_NE(v1, nullptr);
  reconcile(*v1);
  // b leaves the source; c gains a label, which no host change follows.
  auto v2 = loadValid(
      {{"m/all.yaml", documents({thing("a", {"size: 1"}),
                                 "apiVersion: hyper.dev/v1alpha1\nkind: FakeThing\nmetadata:\n"
                                 "  name: c\n  labels:\n    env: prod\nspec:\n  size: 3\n"})}});
  ASSERT_NE(v2, nullptr);
  std::vector<ManagedRecord> reversed = managed();
  ASSERT_EQ(reversed.size(), 3u);
  std::reverse(reversed.begin(), reversed.end());

  PlanResult keep = engine_->plan(*v2, reversed, PlanOptions{/*prune=*/false});
  EXPECT_FALSE(keep.diagnostics.hasErrors()) << keep.diagnostics.format();
  EXPECT_TRUE(keep.plan.empty()) << keep.plan.render();
  EXPECT_EQ(keep.plan.orphans, std::vector<ObjectId>{fakeId("b")});
  PlanResult prune = engine_->plan(*v2, reversed, PlanOptions{/*prune=*/true});
  ASSERT_EQ(prune.plan.actions.size(), 1u) << prune.plan.render();
  EXPECT_EQ(prune.plan.actions[0].id, fakeId("b"));
  EXPECT_EQ(prune.plan.actions[0].type, ActionType::Delete);

  ApplyReport report = engine_->apply(prune.plan, *v2, reversed, *inventory_, ApplyOptions{});
  EXPECT_TRUE(report.ok());
  auto records = inventoryById();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[fakeId("a")].revision, v1->id) << "unchanged: not rewritten";
  EXPECT_EQ(records[fakeId("c")].labels, (std::map<std::string, std::string>{{"env", "prod"}}));
  EXPECT_EQ(records[fakeId("c")].revision, v2->id);
  EXPECT_EQ(records[fakeId("c")].specHash, sha256Hex(canonicalJson(Json{{"size", 3}})));
}

TEST_F(EngineTest, PruneDeletesDependentsBeforeTheirDependencies) {
  auto v1 = loadValid(
      {{"m/all.yaml",
        documents({thing("keep"), thing("a-child", {"dependsOn: z-parent"}), thing("z-parent")})}});
  ASSERT_NE(v1, nullptr);
  reconcile(*v1);
  auto v2 = loadValid({{"m/all.yaml", thing("keep")}});
  ASSERT_NE(v2, nullptr);

  Plan plan = planFor(*v2, /*prune=*/true);
  ASSERT_EQ(plan.actions.size(), 2u) << plan.render();
  EXPECT_EQ(actionIds(plan), (std::vector<ObjectId>{fakeId("a-child"), fakeId("z-parent")}));
  // The stored spec supplies the references of objects that left the source.
  EXPECT_EQ(plan.actions[0].dependsOn, std::vector<ObjectId>{fakeId("z-parent")});

  fake_->resetCounters();
  fake_->setApplyDelay(std::chrono::milliseconds(20));
  ApplyReport report = applyPlan(plan, *v2);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(fake_->applyOrder(), (std::vector<ObjectId>{fakeId("a-child"), fakeId("z-parent")}));
  EXPECT_EQ(fake_->maxConcurrentApplies(), 1);
  EXPECT_EQ(fake_->hostSnapshot().size(), 1u);
  EXPECT_EQ(managed().size(), 1u);
}

TEST_F(EngineTest, ObjectsHyperNeverCreatedAreNeverDeleted) {
  // Something else made these; the inventory has no record of them.
  fake_->setHostState(fakeId("foreign"), {{"owner", "someone else"}});
  fake_->setHostState(fakeId("other"), {{"owner", "someone else"}});
  auto v1 = loadValid({{"m/a.yaml", thing("a")}, {"m/b.yaml", thing("b")}});
  ASSERT_NE(v1, nullptr);
  reconcile(*v1, /*prune=*/true);

  Plan plan = planFor(*v1, /*prune=*/true);
  EXPECT_TRUE(plan.empty()) << plan.render();
  EXPECT_TRUE(plan.orphans.empty());

  // Even when pruning a managed object, only that one goes.
  auto v2 = loadValid({{"m/a.yaml", thing("a")}});
  ASSERT_NE(v2, nullptr);
  plan = planFor(*v2, /*prune=*/true);
  ASSERT_EQ(plan.actions.size(), 1u) << plan.render();
  EXPECT_EQ(plan.actions[0].id, fakeId("b"));
  EXPECT_EQ(plan.actions[0].type, ActionType::Delete);
  ApplyReport report = applyPlan(plan, *v2);
  EXPECT_TRUE(report.ok());

  auto host = fake_->hostSnapshot();
  EXPECT_EQ(host.count(fakeId("foreign")), 1u);
  EXPECT_EQ(host.count(fakeId("other")), 1u);
  EXPECT_EQ(host.count(fakeId("a")), 1u);
  EXPECT_EQ(host.count(fakeId("b")), 0u);
  for (const auto& id : fake_->applyOrder()) {
    EXPECT_NE(id, fakeId("foreign"));
    EXPECT_NE(id, fakeId("other"));
  }
}

// --- Invalid revisions change nothing ---

TEST_F(EngineTest, AnyInvalidDocumentRejectsTheWholeRevisionAndChangesNothing) {
  std::vector<SourceFile> good = {{"m/a.yaml", thing("a", {"size: 1"})}};
  auto v1 = loadValid(good);
  ASSERT_NE(v1, nullptr);
  reconcile(*v1);
  auto hostBefore = fake_->hostSnapshot();
  auto recordsBefore = managed();
  fake_->resetCounters();

  struct BadDocument {
    std::string name;
    std::string text;
  };
  const std::vector<BadDocument> bad = {
      {"provider validation", thing("bad", {"invalid: true"})},
      {"schema", "apiVersion: hyper.dev/v2\nkind: FakeThing\nmetadata:\n  name: bad\nspec: {}\n"},
      {"yaml syntax", "apiVersion: [\n"},
      {"missing reference", thing("bad", {"dependsOn: nowhere"})},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.name);
    // Otherwise good changes travel with the bad document: an update of a and a new c.
    RevisionResult r = engine_->load(
        {{"m/a.yaml", thing("a", {"size: 2"})}, {"m/bad.yaml", b.text}, {"m/c.yaml", thing("c")}});
    EXPECT_EQ(r.revision, nullptr);
    EXPECT_TRUE(r.diagnostics.hasErrors());
    bool located = false;
    for (const auto& d : r.diagnostics.items()) {
      located = located || d.where.file == "m/bad.yaml";
    }
    EXPECT_TRUE(located) << r.diagnostics.format();

    // Loading the same rejected files again still rejects them: "unchanged" never hides errors.
    RevisionResult again = engine_->load(
        {{"m/a.yaml", thing("a", {"size: 2"})}, {"m/bad.yaml", b.text}, {"m/c.yaml", thing("c")}});
    EXPECT_EQ(again.revision, nullptr);
    EXPECT_FALSE(again.unchanged);
    EXPECT_TRUE(again.diagnostics.hasErrors());
  }
  EXPECT_EQ(fake_->observeCalls(), 0);
  EXPECT_EQ(fake_->applyCalls(), 0);
  EXPECT_EQ(fake_->hostSnapshot(), hostBefore);
  auto recordsAfter = managed();
  ASSERT_EQ(recordsAfter.size(), recordsBefore.size());
  EXPECT_EQ(recordsAfter[0].spec, recordsBefore[0].spec);
  EXPECT_EQ(recordsAfter[0].revision, v1->id);
  auto last = inventory_->lastRevision();
  ASSERT_TRUE(last.isOk() && last->has_value());
  EXPECT_EQ((*last)->revision, v1->id);

  // The last good source is still accepted afterwards, and the host still matches it.
  RevisionResult back = engine_->load(good);
  ASSERT_NE(back.revision, nullptr) << back.diagnostics.format();
  EXPECT_EQ(back.revision->id, v1->id);
  EXPECT_TRUE(planFor(*back.revision).empty());
}

// --- Failure propagation ---

TEST_F(EngineTest, FailedParentSkipsItsDependentsAndRecordsNone) {
  auto revision = loadValid({{"m/all.yaml", documents({
                                                thing("parent"),
                                                thing("child", {"dependsOn: parent"}),
                                                thing("grandchild", {"dependsOn: child"}),
                                                thing("sibling"),
                                            })}});
  ASSERT_NE(revision, nullptr);
  fake_->setFailApply({fakeId("parent")});
  Plan plan = planFor(*revision);
  ASSERT_EQ(plan.actions.size(), 4u) << plan.render();
  ApplyReport report = applyPlan(plan, *revision);

  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.failed(), 3u);
  std::map<ObjectId, ActionOutcome> outcome;
  for (const auto& o : report.outcomes) {
    outcome[o.id] = o;
  }
  ASSERT_EQ(outcome.size(), 4u);
  const auto& parent = outcome[fakeId("parent")];
  EXPECT_FALSE(parent.status.isOk());
  EXPECT_FALSE(parent.skipped);
  EXPECT_NE(parent.status.message().find("create FakeThing/parent <- injected failure"),
            std::string::npos)
      << parent.status.message();
  for (const char* name : {"child", "grandchild"}) {
    const auto& o = outcome[fakeId(name)];
    EXPECT_TRUE(o.skipped) << name;
    EXPECT_FALSE(o.status.isOk()) << name;
    EXPECT_NE(o.status.message().find("create of FakeThing/parent failed"), std::string::npos)
        << name << ": " << o.status.message();
  }
  EXPECT_TRUE(outcome[fakeId("sibling")].status.isOk());
  EXPECT_FALSE(outcome[fakeId("sibling")].skipped);

  // Skipped actions never reached the provider; only the sibling is on the host.
  auto applied = fake_->applyOrder();
  EXPECT_EQ(indexOf(applied, fakeId("child")), -1) << names(applied);
  EXPECT_EQ(indexOf(applied, fakeId("grandchild")), -1) << names(applied);
  auto host = fake_->hostSnapshot();
  ASSERT_EQ(host.size(), 1u);
  EXPECT_EQ(host.begin()->first, fakeId("sibling"));

  auto records = inventoryById();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records.begin()->first, fakeId("sibling"));

  auto journal = inventory_->journal(-1);
  ASSERT_TRUE(journal.isOk());
  std::map<ObjectId, JournalEntry> journalled;
  for (const auto& e : *journal) {
    journalled[e.object] = e;
  }
  EXPECT_EQ(journalled.size(), 2u) << "a skipped action must not be journalled as run";
  EXPECT_EQ(journalled[fakeId("parent")].phase, "failed");
  EXPECT_NE(journalled[fakeId("parent")].detail.find("injected failure"), std::string::npos);
  EXPECT_EQ(journalled[fakeId("sibling")].phase, "succeeded");
  auto last = inventory_->lastRevision();
  ASSERT_TRUE(last.isOk() && last->has_value());
  EXPECT_EQ((*last)->result, "partial");

  // Once the failure is gone, the next reconcile creates exactly what was left out.
  fake_->setFailApply({});
  Plan retry = planFor(*revision);
  auto ids = actionIds(retry);
  EXPECT_EQ(ids, (std::vector<ObjectId>{fakeId("parent"), fakeId("child"), fakeId("grandchild")}))
      << names(ids);
  EXPECT_TRUE(applyPlan(retry, *revision).ok());
  EXPECT_EQ(managed().size(), 4u);
}

// --- Revision identity ---

TEST_F(EngineTest, SameFilesAreUnchangedAndOneByteChangesTheRevision) {
  fs::path manifests = fs::path(dir_) / "manifests";
  fs::create_directories(manifests / "sub");
  auto write = [](const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << text;
  };
  write(manifests / "a.yaml", thing("a", {"size: 1"}));
  write(manifests / "sub" / "b.yaml", thing("b", {"dependsOn: a"}));
  auto read = [&] {
    auto files = readManifestFiles({manifests.string()});
    EXPECT_TRUE(files.isOk()) << files.status().message();
    return files.isOk() ? *files : std::vector<SourceFile>{};
  };

  RevisionResult first = engine_->load(read());
  ASSERT_NE(first.revision, nullptr) << first.diagnostics.format();
  EXPECT_FALSE(first.unchanged);
  EXPECT_EQ(first.revision->objects.size(), 2u);

  RevisionResult second = engine_->load(read());
  ASSERT_NE(second.revision, nullptr);
  EXPECT_TRUE(second.unchanged);
  EXPECT_EQ(second.revision->id, first.revision->id);
  EXPECT_EQ(second.revision.get(), first.revision.get()) << "an unchanged revision is reused";

  write(manifests / "a.yaml", thing("a", {"size: 2"}));  // "1" -> "2": one byte
  RevisionResult third = engine_->load(read());
  ASSERT_NE(third.revision, nullptr) << third.diagnostics.format();
  EXPECT_FALSE(third.unchanged);
  EXPECT_NE(third.revision->id, first.revision->id);
  EXPECT_EQ(third.revision->find(fakeId("a"))->spec, (Json{{"size", 2}}));

  // The id is a function of the content: changing the byte back gives the first id again.
  write(manifests / "a.yaml", thing("a", {"size: 1"}));
  RevisionResult fourth = engine_->load(read());
  ASSERT_NE(fourth.revision, nullptr);
  EXPECT_FALSE(fourth.unchanged);
  EXPECT_EQ(fourth.revision->id, first.revision->id);
}

// A source's name for a revision (a commit) is given at load: the revision is not copied to be
// renamed, and the same content under another name (a revert commit) is the one copy.
TEST_F(EngineTest, ARevisionIsNamedAtLoadAndSharedWhileItsNameHolds) {
  const std::vector<SourceFile> files = {{"m/a.yaml", thing("a", {"size: 1"})}};
  RevisionResult first = engine_->load(files, nullptr, nullptr, "git:c1");
  ASSERT_NE(first.revision, nullptr) << first.diagnostics.format();
  EXPECT_EQ(first.revision->id, "git:c1");
  EXPECT_EQ(first.revision->content, first.id) << "the content keeps the loader's name";
  EXPECT_NE(first.id, "git:c1");

  RevisionResult again = engine_->load(files, nullptr, nullptr, "git:c1");
  EXPECT_TRUE(again.unchanged);
  EXPECT_EQ(again.revision.get(), first.revision.get());

  RevisionResult reverted = engine_->load(files, nullptr, nullptr, "git:c2");
  ASSERT_NE(reverted.revision, nullptr);
  EXPECT_TRUE(reverted.unchanged);
  EXPECT_EQ(reverted.revision->id, "git:c2");
  EXPECT_EQ(reverted.revision->content, first.revision->content);
  EXPECT_EQ(first.revision->id, "git:c1") << "the revision handed out before keeps its name";
  EXPECT_EQ(engine_->load(files, nullptr, nullptr, "git:c2").revision.get(),
            reverted.revision.get());

  RevisionResult unnamed = engine_->load(files);
  EXPECT_EQ(unnamed.revision->id, first.id) << "no name: the loader's";
}

// --- Parallelism ---

class EngineParallelismTest : public EngineTest, public ::testing::WithParamInterface<int> {};

TEST_P(EngineParallelismTest, IndependentObjectsApplyConcurrentlyUpToTheBound) {
  const int parallelism = GetParam();
  std::vector<std::string> docs;
  for (int i = 0; i < 8; ++i) {
    docs.push_back(thing("t" + std::to_string(i), {"index: " + std::to_string(i)}));
  }
  auto revision = loadValid({{"m/many.yaml", documents(docs)}});
  ASSERT_NE(revision, nullptr);
  Plan plan = planFor(*revision);
  ASSERT_EQ(plan.actions.size(), 8u);

  fake_->setApplyDelay(std::chrono::milliseconds(40));
  ApplyReport report = applyPlan(plan, *revision, parallelism);
  EXPECT_TRUE(report.ok());
  EXPECT_EQ(fake_->applyCalls(), 8);
  EXPECT_EQ(managed().size(), 8u);
  EXPECT_LE(fake_->maxConcurrentApplies(), parallelism);
  if (parallelism > 1) {
    EXPECT_GT(fake_->maxConcurrentApplies(), 1) << "independent applies never overlapped";
  } else {
    EXPECT_EQ(fake_->maxConcurrentApplies(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Bounds, EngineParallelismTest, ::testing::Values(1, 2, 3, 8),
                         [](const auto& info) {
                           return "Parallelism" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace hyper

namespace hyper {
namespace {

// A create killed after the host changed but before the record was written, and the object then
// removed from the source: the prune deletes what the create left (from the spec its journal
// entry kept), where without it the host object would be hyper's but named by no record.
TEST_F(EngineTest, AnUnconfirmedCreateGoneFromTheSourceIsDeletedByAPrune) {
  auto keep = loadValid({{"m/a.yaml", thing("a", {"size: 1"})}});
  reconcile(*keep);
  // What the kill left: b on the host, its create journalled "started", no record.
  PlanAction create;
  create.id = fakeId("b");
  create.type = ActionType::Create;
  Json spec = {{"size", 2}};
  ASSERT_TRUE(inventory_->journalBegin("rc-killed", create, &spec).isOk());
  fake_->setHostState(fakeId("b"), spec);
  auto unconfirmed = inventory_->unconfirmed();
  ASSERT_TRUE(unconfirmed.isOk()) << unconfirmed.status().message();
  ASSERT_EQ(unconfirmed->size(), 1u);
  EXPECT_EQ((*unconfirmed)[0].id, fakeId("b"));
  EXPECT_EQ((*unconfirmed)[0].spec, spec);
  EXPECT_EQ((*unconfirmed)[0].fingerprint, Inventory::kUnconfirmed);

  // Without prune it is an orphan, as a record would be; without the list, nothing at all.
  PlanResult listed = engine_->plan(*keep, managed(), PlanOptions{false, &*unconfirmed});
  ASSERT_FALSE(listed.diagnostics.hasErrors()) << listed.diagnostics.format();
  EXPECT_TRUE(listed.plan.actions.empty()) << listed.plan.render();
  EXPECT_EQ(listed.plan.orphans, std::vector<ObjectId>{fakeId("b")});
  EXPECT_TRUE(engine_->plan(*keep, managed(), PlanOptions{true}).plan.actions.empty());

  PlanResult pruned = engine_->plan(*keep, managed(), PlanOptions{true, &*unconfirmed});
  ASSERT_FALSE(pruned.diagnostics.hasErrors()) << pruned.diagnostics.format();
  ASSERT_EQ(pruned.plan.actions.size(), 1u) << pruned.plan.render();
  EXPECT_EQ(pruned.plan.actions[0].id, fakeId("b"));
  EXPECT_EQ(pruned.plan.actions[0].type, ActionType::Delete);
  ApplyOptions options;
  options.reconcileId = "rc-prune";
  options.unconfirmed = &*unconfirmed;
  ApplyReport report = engine_->apply(pruned.plan, *keep, managed(), *inventory_, options);
  EXPECT_TRUE(report.ok()) << pruned.plan.render();
  EXPECT_FALSE(fake_->hostState(fakeId("b")).has_value()) << "the leftover of b is still there";
  EXPECT_TRUE(fake_->hostState(fakeId("a")).has_value());
  unconfirmed = inventory_->unconfirmed();
  ASSERT_TRUE(unconfirmed.isOk());
  EXPECT_TRUE(unconfirmed->empty()) << "a confirmed delete ends it";
}

// Still in the source, an unconfirmed create is simply created again and then confirmed.
TEST_F(EngineTest, AnUnconfirmedCreateStillInTheSourceIsCreatedAgain) {
  PlanAction create;
  create.id = fakeId("a");
  create.type = ActionType::Create;
  Json spec = {{"size", 1}};
  ASSERT_TRUE(inventory_->journalBegin("rc-killed", create, &spec).isOk());
  auto unconfirmed = inventory_->unconfirmed();
  ASSERT_TRUE(unconfirmed.isOk());
  ASSERT_EQ(unconfirmed->size(), 1u);
  auto revision = loadValid({{"m/a.yaml", thing("a", {"size: 1"})}});
  PlanResult planned = engine_->plan(*revision, managed(), PlanOptions{true, &*unconfirmed});
  ASSERT_EQ(planned.plan.actions.size(), 1u) << planned.plan.render();
  EXPECT_EQ(planned.plan.actions[0].type, ActionType::Create);
  EXPECT_TRUE(applyPlan(planned.plan, *revision).ok());
  EXPECT_EQ(inventoryById().count(fakeId("a")), 1u);
  unconfirmed = inventory_->unconfirmed();
  ASSERT_TRUE(unconfirmed.isOk());
  EXPECT_TRUE(unconfirmed->empty());
}

}  // namespace
}  // namespace hyper
