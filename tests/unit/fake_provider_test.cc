#include "tests/fakes/fake_provider.h"

#include <gtest/gtest.h>

#include "base/status.h"

namespace hyper {
namespace {

using testing::FakeProvider;

Object thing(const std::string& name, Json spec) {
  Object o;
  o.id = {"FakeThing", name};
  o.spec = std::move(spec);
  return o;
}

// Observe then plan one object, the way the engine does.
std::optional<PlanAction> planFor(FakeProvider& fake, const ObjectId& id, const Object* desired,
                                  const ManagedRecord* managed) {
  ObserveRequest oreq;
  if (desired) {
    oreq.desired.push_back(desired);
  }
  if (managed) {
    oreq.managed.push_back(managed);
  }
  ObserveResponse oresp;
  fake.observe(oreq, oresp);
  auto seen = oresp.observed.find(id);
  const ObservedState* observed = seen == oresp.observed.end() ? nullptr : &seen->second;
  // Observe answers for every object it was asked about, and only those.
  EXPECT_EQ(observed != nullptr, desired != nullptr || managed != nullptr) << id.str();
  PlanRequest preq{id, desired, observed, managed};
  PlanResponse presp;
  fake.plan(preq, presp);
  return presp.action;
}

Status applyAction(FakeProvider& fake, const PlanAction& a, const Object* desired) {
  ApplyRequest req{&a, desired, nullptr};
  ApplyResponse resp;
  fake.apply(req, resp);
  return resp.diagnostics.hasErrors() ? Status::error(resp.diagnostics.format()) : Status::ok();
}

TEST(FakeProviderTest, DefaultsAndCreateThenInSync) {
  FakeProvider fake;
  EXPECT_EQ(fake.name(), "fake");
  EXPECT_EQ(fake.kinds(), std::vector<std::string>{"FakeThing"});

  Object a = thing("a", {{"size", 1}, {"color", "red"}});
  auto create = planFor(fake, a.id, &a, nullptr);
  ASSERT_TRUE(create);
  EXPECT_EQ(create->type, ActionType::Create);
  EXPECT_FALSE(create->drift);
  ASSERT_EQ(create->changes.size(), 2u);
  EXPECT_EQ(create->changes[0].path, "spec.color");
  EXPECT_EQ(create->changes[0].after, "red");

  ASSERT_TRUE(applyAction(fake, *create, &a).isOk());
  EXPECT_EQ(fake.hostState(a.id), a.spec);
  EXPECT_FALSE(planFor(fake, a.id, &a, nullptr)) << "apply followed by plan must be empty";
  EXPECT_EQ(fake.observeCalls(), 2);
  EXPECT_EQ(fake.applyCalls(), 1);
}

TEST(FakeProviderTest, UpdateReplaceAndDrift) {
  FakeProvider fake;
  fake.setReplaceFields({"bridge"});
  Object a = thing("a", {{"bridge", "hb-a"}, {"mtu", 1500}});
  ManagedRecord managed;
  managed.id = a.id;
  managed.spec = a.spec;
  fake.setHostState(a.id, {{"bridge", "hb-a"}, {"mtu", 1400}});

  auto update = planFor(fake, a.id, &a, &managed);
  ASSERT_TRUE(update);
  EXPECT_EQ(update->type, ActionType::Update);
  EXPECT_TRUE(update->drift) << "the source did not change, the host did";
  ASSERT_EQ(update->changes.size(), 1u);
  EXPECT_EQ(update->changes[0].path, "spec.mtu");
  EXPECT_EQ(update->changes[0].before, 1400);

  fake.setHostState(a.id, {{"bridge", "hb-b"}, {"mtu", 1500}});
  auto replace = planFor(fake, a.id, &a, nullptr);
  ASSERT_TRUE(replace);
  EXPECT_EQ(replace->type, ActionType::Replace);
  EXPECT_FALSE(replace->drift);
  ASSERT_EQ(replace->changes.size(), 1u);
  EXPECT_TRUE(replace->changes[0].forcesReplace);

  fake.eraseHostState(a.id);
  auto recreate = planFor(fake, a.id, &a, &managed);
  ASSERT_TRUE(recreate);
  EXPECT_EQ(recreate->type, ActionType::Create);
  EXPECT_TRUE(recreate->drift);
}

TEST(FakeProviderTest, DeleteOnlyWhatIsManaged) {
  FakeProvider fake;
  ObjectId id{"FakeThing", "gone"};
  fake.setHostState(id, {{"x", 1}});
  EXPECT_FALSE(planFor(fake, id, nullptr, nullptr)) << "never ours: left alone";

  ManagedRecord managed;
  managed.id = id;
  auto del = planFor(fake, id, nullptr, &managed);
  ASSERT_TRUE(del);
  EXPECT_EQ(del->type, ActionType::Delete);
  ASSERT_TRUE(applyAction(fake, *del, nullptr).isOk());
  EXPECT_FALSE(fake.hostState(id));
}

TEST(FakeProviderTest, SensitiveFieldsAreMarked) {
  FakeProvider fake;
  fake.setSensitiveFields({"token"});
  Object a = thing("a", {{"token", "s3cret"}, {"n", 1}});
  auto create = planFor(fake, a.id, &a, nullptr);
  ASSERT_TRUE(create);
  ASSERT_EQ(create->changes.size(), 2u);
  EXPECT_FALSE(create->changes[0].sensitive);  // spec.n
  EXPECT_TRUE(create->changes[1].sensitive);   // spec.token
}

TEST(FakeProviderTest, ObserveAnswersOncePerIdWithTheHostsFingerprint) {
  FakeProvider fake;
  Object a = thing("a", {{"n", 1}});
  Object b = thing("b", {{"n", 2}});
  Object c = thing("c", {{"n", 3}});
  PlanAction create;
  create.id = b.id;
  ApplyRequest areq{&create, &b, nullptr};
  ApplyResponse aresp;
  fake.apply(areq, aresp);
  ASSERT_FALSE(aresp.diagnostics.hasErrors());
  fake.setHostState(c.id, {{"n", 30}});

  // b is both desired and managed; the lists are in no particular order.
  ManagedRecord managedB;
  managedB.id = b.id;
  ManagedRecord managedC;
  managedC.id = c.id;
  ObserveRequest req;
  req.desired = {&b, &a};
  req.managed = {&managedC, &managedB};
  ObserveResponse resp;
  fake.observe(req, resp);
  ASSERT_FALSE(resp.diagnostics.hasErrors());
  ASSERT_EQ(resp.observed.size(), 3u);
  const ObservedState& sa = resp.observed.at(a.id);
  const ObservedState& sb = resp.observed.at(b.id);
  const ObservedState& sc = resp.observed.at(c.id);
  EXPECT_FALSE(sa.exists);
  EXPECT_TRUE(sa.fingerprint.empty());
  EXPECT_TRUE(sb.exists);
  EXPECT_EQ(sb.fields, b.spec);
  EXPECT_EQ(sb.fingerprint, aresp.fingerprint) << "what apply reported is what observe sees";
  EXPECT_TRUE(sc.exists);
  EXPECT_EQ(sc.fields, (Json{{"n", 30}}));
  EXPECT_FALSE(sc.fingerprint.empty());
  EXPECT_NE(sc.fingerprint, sb.fingerprint);
  EXPECT_EQ(fake.observeCalls(), 1);

  // The fingerprint follows a hand change of the host.
  fake.setHostState(b.id, {{"n", 20}});
  ObserveResponse after;
  fake.observe(req, after);
  EXPECT_NE(after.observed.at(b.id).fingerprint, aresp.fingerprint);
  EXPECT_EQ(after.observed.at(c.id).fingerprint, sc.fingerprint);
}

TEST(FakeProviderTest, InjectedErrors) {
  FakeProvider fake;
  Object a = thing("a", {{"n", 1}});
  fake.setFailApply({a.id});
  PlanAction create;
  create.id = a.id;
  Status s = applyAction(fake, create, &a);
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("injected failure"), std::string::npos) << s.message();
  EXPECT_FALSE(fake.hostState(a.id)) << "a failed apply changes nothing";

  fake.setFailObserve(true);
  ObserveRequest req;
  req.desired.push_back(&a);
  ObserveResponse resp;
  fake.observe(req, resp);
  EXPECT_TRUE(resp.diagnostics.hasErrors());
}

TEST(FakeProviderTest, ReferencesAndValidation) {
  FakeProvider fake;
  Object one = thing("vm", {{"dependsOn", "net"}});
  auto refs = fake.references(one);
  ASSERT_EQ(refs.size(), 1u);
  EXPECT_EQ(refs[0].target, (ObjectId{"FakeThing", "net"}));
  EXPECT_EQ(refs[0].fieldPath, "spec.dependsOn");

  Object many = thing("vm", {{"dependsOn", {"a", "b"}}, {"dependsOnKind", "Network"}});
  refs = fake.references(many);
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[1].target, (ObjectId{"Network", "b"}));
  EXPECT_EQ(refs[1].fieldPath, "spec.dependsOn[1]");
  EXPECT_TRUE(fake.references(thing("x", {{"n", 1}})).empty());

  Object bad = thing("bad", {{"invalid", true}});
  Object good = thing("good", {{"invalid", false}});
  ValidateRequest vreq{{&bad, &good}};
  ValidateResponse vresp;
  fake.validate(vreq, vresp);
  ASSERT_EQ(vresp.diagnostics.size(), 1u);
  EXPECT_EQ(vresp.diagnostics.items()[0].object.str(), "FakeThing/bad");
  EXPECT_EQ(vresp.diagnostics.items()[0].fieldPath, "spec.invalid");
}

}  // namespace
}  // namespace hyper
