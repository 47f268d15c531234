// The diff and the plan (reconciler/diff.cc, plan.cc, engine.h) on two revisions made from the
// input: the bytes before a line "%%" are revision A, the bytes after it revision B (without the
// line, B is A). Objects are FakeThings (tests/fakes/fake_provider.h: spec.dependsOn makes graph
// edges, spec.replaceMe forces a replace, spec.password is sensitive). A is taken as applied: the
// fake's host and the managed records hold A. Invariants checked on our own output:
//  - the plan of A against A is empty;
//  - the plan of B against A has the same hash when made twice, has at most one action per object,
//    and its JSON serialises, parses back and serialises to the same bytes;
//  - a change under spec.password is sensitive, and its values never reach the plan's JSON.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "reconciler/engine.h"
#include "reconciler/schema.h"
#include "tests/fakes/fake_provider.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using hyper::testing::FakeProvider;

std::shared_ptr<const hyper::SchemaRegistry> schemas() {
  static const std::shared_ptr<const hyper::SchemaRegistry> registry = [] {
    std::vector<hyper::EmbeddedSchema> all = hyper::embeddedSchemas();
    all.push_back({"fake.schema.json", "{\"x-hyper-kind\":\"FakeThing\",\"type\":\"object\"}"});
    auto r = hyper::SchemaRegistry::fromSchemas(all);
    FUZZ_CHECK(r.isOk());
    return *r;
  }();
  return registry;
}

struct Setup {
  std::unique_ptr<hyper::Engine> engine;
  FakeProvider* fake = nullptr;
};

Setup makeEngine() {
  auto fake = std::make_unique<FakeProvider>();
  fake->setReplaceFields({"replaceMe"});
  fake->setSensitiveFields({"password"});
  Setup s;
  s.fake = fake.get();
  std::vector<std::unique_ptr<hyper::Provider>> providers;
  providers.push_back(std::move(fake));
  s.engine = std::make_unique<hyper::Engine>(std::move(providers), schemas());
  return s;
}

// A as applied: every object on the fake's host and in the managed records.
std::vector<hyper::ManagedRecord> applyToHost(const hyper::Revision& revision, FakeProvider& fake) {
  std::vector<hyper::ManagedRecord> managed;
  for (const auto& object : revision.objects) {
    fake.setHostState(object->id, object->spec);
    hyper::ManagedRecord record;
    record.id = object->id;
    record.provider = "fake";
    record.labels = object->labels;
    record.spec = object->spec;
    record.specHash = hyper::sha256Hex(hyper::canonicalJson(object->spec));
    record.fingerprint = record.specHash;
    record.revision = revision.id;
    managed.push_back(std::move(record));
  }
  return managed;
}

bool underPassword(const std::string& path) {
  const std::string field = "spec.password";
  return path.rfind(field, 0) == 0 &&
         (path.size() == field.size() || path[field.size()] == '.' || path[field.size()] == '[');
}

void checkPlan(const hyper::Plan& plan) {
  std::set<hyper::ObjectId> seen;
  for (const auto& action : plan.actions) {
    FUZZ_CHECK(seen.insert(action.id).second);
    for (const auto& change : action.changes) {
      if (underPassword(change.path)) {
        FUZZ_CHECK(change.sensitive);
      }
    }
  }
  hyper::Json json = plan.toJson();
  for (const auto& action : json["actions"]) {
    for (const auto& change : action["changes"]) {
      if (change["sensitive"].get<bool>()) {
        FUZZ_CHECK(!change.contains("before") && !change.contains("after"));
      }
    }
  }
  std::string text = json.dump(-1, ' ', false, hyper::Json::error_handler_t::replace);
  hyper::Json back = hyper::Json::parse(text, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!back.is_discarded());
  FUZZ_CHECK(back.dump(-1, ' ', false, hyper::Json::error_handler_t::replace) == text);
  (void)plan.render(false);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  if (input.size() > (64 << 10)) {
    return 0;  // the loader's limits are fuzzed by manifest_loader; keep runs fast here
  }
  std::string a = input;
  std::string b = input;
  size_t sep = input.find("\n%%\n");
  if (sep != std::string::npos) {
    a = input.substr(0, sep + 1);
    b = input.substr(sep + 4);
  }

  Setup s = makeEngine();
  hyper::RevisionResult revA = s.engine->loadDetached({{"a.yaml", a}});
  if (revA.revision == nullptr) {
    return 0;
  }
  hyper::RevisionResult revB = s.engine->loadDetached({{"b.yaml", b}});
  std::vector<hyper::ManagedRecord> managed = applyToHost(*revA.revision, *s.fake);

  for (bool prune : {false, true}) {
    hyper::PlanResult same = s.engine->plan(*revA.revision, managed, hyper::PlanOptions{prune});
    FUZZ_CHECK(!same.diagnostics.hasErrors());
    FUZZ_CHECK(same.plan.empty());
    FUZZ_CHECK(same.plan.orphans.empty());
  }
  if (revB.revision == nullptr) {
    return 0;
  }
  for (bool prune : {false, true}) {
    hyper::PlanResult first = s.engine->plan(*revB.revision, managed, hyper::PlanOptions{prune});
    hyper::PlanResult second = s.engine->plan(*revB.revision, managed, hyper::PlanOptions{prune});
    FUZZ_CHECK(first.plan.hash() == second.plan.hash());
    FUZZ_CHECK(first.plan.actions.size() == second.plan.actions.size());
    checkPlan(first.plan);
    // A fresh engine and host give the same plan: nothing is carried over in members.
    Setup t = makeEngine();
    hyper::RevisionResult revB2 = t.engine->loadDetached({{"b.yaml", b}});
    FUZZ_CHECK(revB2.revision != nullptr);
    applyToHost(*revA.revision, *t.fake);
    hyper::PlanResult third = t.engine->plan(*revB2.revision, managed, hyper::PlanOptions{prune});
    FUZZ_CHECK(third.plan.hash() == first.plan.hash());
  }
  return 0;
}
